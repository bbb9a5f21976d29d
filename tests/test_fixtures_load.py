"""The generated GGUF fixtures really load and run in llama.cpp / libmtmd.

llama.cpp aborts the process (GGML_ASSERT, SIGSEGV) on malformed models, so
every load runs in a subprocess that prints one JSON line; an abort shows up
as a failed test with its stderr instead of killing pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gguf_models import write_all

# Runs in a child process: load text model (+ mmproj), report capabilities,
# tokenize a ChatML prompt with media markers, evaluate it and decode greedily.
_PROBE = r"""
import ctypes, json, sys
import numpy as np
import llama_cpp
from llama_cpp import mtmd_cpp as mtmd

args = json.loads(sys.argv[1])
_quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)
llama_cpp.llama_log_set(_quiet, None)
mtmd.mtmd_log_set(_quiet, None)  # libmtmd/clip log separately from llama.cpp
mtmd.mtmd_helper_log_set(_quiet, None)
llama_cpp.llama_backend_init()

out = {}
model = llama_cpp.llama_model_load_from_file(args["model"].encode(), llama_cpp.llama_model_default_params())
assert model, "model failed to load"
vocab = llama_cpp.llama_model_get_vocab(model)
n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
out["n_vocab"] = n_vocab
out["n_embd_inp"] = llama_cpp.llama_model_n_embd_inp(model)
out["has_template"] = llama_cpp.llama_model_chat_template(model, None) is not None

cparams = llama_cpp.llama_context_default_params()
cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 2048, 512, 512
cparams.n_threads = cparams.n_threads_batch = 1  # 2 threads stall under CPU contention
ctx = llama_cpp.llama_init_from_model(model, cparams)
assert ctx, "context failed"

media = args.get("media", [])
mctx = None
if args.get("mmproj"):
    mparams = mtmd.mtmd_context_params_default()
    mparams.use_gpu, mparams.n_threads, mparams.print_timings = False, 1, False
    mctx = mtmd.mtmd_init_from_file(args["mmproj"].encode(), model, mparams)
    assert mctx, "mmproj failed to load"
    out["vision"] = bool(mtmd.mtmd_support_vision(mctx))
    out["audio"] = bool(mtmd.mtmd_support_audio(mctx))

bitmaps = []
for kind in media:
    if kind == "image":  # deterministic 96x64 RGB pattern
        rgb = np.random.default_rng(7).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        buf = (ctypes.c_uint8 * rgb.size).from_buffer(bytearray(rgb.tobytes()))
        bitmaps.append(mtmd.mtmd_bitmap_init(96, 64, buf))
    else:  # 1 s of a 440 Hz tone at 16 kHz
        pcm = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
        buf = (ctypes.c_float * pcm.size).from_buffer(bytearray(pcm.tobytes()))
        bitmaps.append(mtmd.mtmd_bitmap_init_from_audio(pcm.size, buf))

marker = mtmd.mtmd_default_marker().decode()
prompt = ("<|im_start|>user\n" + marker * len(media) + "\nDescribe it.<|im_end|>\n"
          "<|im_start|>assistant\n").encode()
if mctx:
    text = mtmd.mtmd_input_text(prompt, len(prompt), True, True)
    chunks = mtmd.mtmd_input_chunks_init()
    arr = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
    rc = mtmd.mtmd_tokenize(mctx, chunks, ctypes.byref(text), arr, len(bitmaps))
    assert rc == 0, f"mtmd_tokenize rc={rc}"
    out["chunks"] = []
    for i in range(mtmd.mtmd_input_chunks_size(chunks)):
        chunk = mtmd.mtmd_input_chunks_get(chunks, i)
        out["chunks"].append([mtmd.mtmd_input_chunk_get_type(chunk),
                              mtmd.mtmd_input_chunk_get_n_tokens(chunk)])
    n_past = llama_cpp.llama_pos(0)
    rc = mtmd.mtmd_helper_eval_chunks(mctx, ctx, chunks, 0, 0, 512, True, ctypes.byref(n_past))
    assert rc == 0, f"mtmd_helper_eval_chunks rc={rc}"
else:
    toks = (llama_cpp.llama_token * 512)()
    n = llama_cpp.llama_tokenize(vocab, prompt, len(prompt), toks, 512, True, True)
    assert n > 0 and llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(toks, n)) == 0

ids, pieces = [], b""
for _ in range(args.get("n_predict", 12)):
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
    tok = int(np.argmax(logits))
    ids.append(tok)
    piece = (ctypes.c_char * 64)()
    pieces += bytes(piece[: llama_cpp.llama_token_to_piece(vocab, tok, piece, 64, 0, False)])
    one = (llama_cpp.llama_token * 1)(tok)
    assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) == 0
out["ids"] = ids
out["text"] = pieces.decode("latin-1")
out["control"] = [t for t in ids if llama_cpp.llama_vocab_is_control(vocab, t)]
print(json.dumps(out))
"""

TEXT, IMAGE, AUDIO = 0, 1, 2  # MTMD_INPUT_CHUNK_TYPE_*


def probe(model: Path, mmproj: Path | None = None, media: tuple[str, ...] = ()) -> dict:
    """Run _PROBE in a fresh interpreter; fail with llama.cpp's stderr if it dies."""
    args = {"model": str(model), "mmproj": str(mmproj) if mmproj else None, "media": list(media)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"probe died (rc={proc.returncode}):\n{proc.stderr[:3000]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fixtures_are_small_and_deterministic(models: dict[str, Path], tmp_path: Path) -> None:
    again = write_all(tmp_path)
    assert again.keys() == models.keys()
    for stem, path in models.items():
        assert path.stat().st_size < 500_000, stem
        assert path.read_bytes() == again[stem].read_bytes(), f"{stem} differs between runs"


# (text model, mmproj, media in the prompt, vision?, audio?, expected chunk layout)
# Text chunks: "<|im_start|>user\n" is 5 tokens + the media-start token = 6; the media-end
# token + "\nDescribe it.<|im_end|>\n<|im_start|>assistant\n" = 23. Image: gemma3 always 16,
# qwen 96x64 px -> (96/16)*(64/16) = 24. Audio: 750 per started 30 s window.
PAIRS = [
    ("llm", "mmproj-vision", ("image",), True, False, [[TEXT, 6], [IMAGE, 16], [TEXT, 23]]),
    ("llm", "mmproj-audio", ("audio",), False, True, [[TEXT, 6], [AUDIO, 750], [TEXT, 23]]),
    (
        "llm",
        "mmproj-omni",
        ("image", "audio"),
        True,
        True,
        [[TEXT, 6], [IMAGE, 16], [TEXT, 2], [AUDIO, 750], [TEXT, 23]],
    ),
    ("llm-qwen2vl", "mmproj-qwen2vl", ("image",), True, False, [[TEXT, 6], [IMAGE, 24], [TEXT, 23]]),
    ("llm-qwen3vl", "mmproj-qwen3vl", ("image",), True, False, [[TEXT, 6], [IMAGE, 24], [TEXT, 23]]),
]


@pytest.mark.parametrize("llm, mmproj, media, vision, audio, chunks", PAIRS, ids=[p[1] for p in PAIRS])
def test_pair_loads_and_generates(models, llm, mmproj, media, vision, audio, chunks) -> None:
    out = probe(models[llm], models[mmproj], media)
    assert (out["vision"], out["audio"]) == (vision, audio)
    assert out["chunks"] == chunks
    assert len(out["ids"]) == 12 and out["control"] == []
    assert out["text"].isascii() and out["text"].isprintable()


def test_text_models_and_template(models) -> None:
    with_template = probe(models["llm"])
    without = probe(models["llm-notemplate"])
    assert with_template["n_vocab"] == without["n_vocab"] == 304
    assert with_template["has_template"] and not without["has_template"]
    assert with_template["ids"] == without["ids"]  # same weights, only the template differs
    assert with_template["text"].isascii() and with_template["text"].isprintable()


def test_generation_is_reproducible_across_processes(models) -> None:
    first = probe(models["llm"], models["mmproj-omni"], ("image", "audio"))
    second = probe(models["llm"], models["mmproj-omni"], ("image", "audio"))
    assert first["ids"] == second["ids"] and first["text"] == second["text"]


def test_key_types_read_back_with_gguf_package(models) -> None:
    """Cross-check the hand-written container with gguf-py's independent reader.

    Integer keys must be UINT32 and flags BOOL: libmtmd ABORTs on other types.
    """
    gguf = pytest.importorskip("gguf")
    T = gguf.GGUFValueType
    for stem, path in models.items():
        reader = gguf.GGUFReader(path)
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            main = field.types[0]
            assert main not in (T.INT32, T.UINT64, T.INT64, T.FLOAT64), f"{stem}: {key} is {main.name}"
            if key.startswith("clip.has_") or key == "clip.use_gelu" or key.endswith("_token"):
                assert main == T.BOOL, f"{stem}: {key}"
        pos = [t for t in reader.tensors if "position_embd" in t.name]
        assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in pos), stem
