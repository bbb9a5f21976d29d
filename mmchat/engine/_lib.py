"""Thin helpers over llama-cpp-python's ctypes API: logging, tokens, batches, samplers."""

from __future__ import annotations

import collections
import ctypes
import functools
import os
import sys
from collections.abc import Callable, Sequence

import llama_cpp as llama
import numpy as np
from llama_cpp import mtmd_cpp as mtmd

from ..errors import InputError, MediaError, PixelsReleased
from ..media import Audio, Image
from ..options import GenerationOptions
from ..quiet import captured_stderr
from .base import MediaCost
from .devices import backend_devices, has_gpu, physical_cores, projector_gpu
from .kvcache import MediaItem, PromptItem

_GGML_LOG_ERROR, _GGML_LOG_CONT = 3, 5
_state = {"verbose": False, "initialised": False, "last_level": 0}
_errors: collections.deque[str] = collections.deque(maxlen=8)


@llama.llama_log_callback
def _log(level: int, text: bytes, user_data) -> None:
    """llama.cpp and libmtmd log here: kept quiet, errors remembered for our messages."""
    if level != _GGML_LOG_CONT:
        _state["last_level"] = level
    msg = text.decode("utf-8", errors="replace") if text else ""
    if "nodes = " in msg and "graph splits" in msg:  # the projector's warm-up graph: its size
        _state["graph_nodes"] = int(msg.rsplit("nodes = ", 1)[1].split()[0])
    if "CLIP using " in msg:  # mtmd/clip.cpp says which backend the projector got: "CPU", "CUDA0"...
        _state["clip_backend"] = msg.split("CLIP using ", 1)[1].rsplit(" backend", 1)[0].strip()
    if msg.strip() and (_state["last_level"] == _GGML_LOG_ERROR or "error:" in msg):
        _errors.append(msg.strip().splitlines()[0])
    if _state["verbose"]:
        sys.stderr.write(msg)
        sys.stderr.flush()


def init(verbose: bool = False) -> None:
    """Route llama.cpp's own log through `_log` (stderr only with -v); init the backend once."""
    _state["verbose"] = verbose
    if _state["initialised"]:
        return
    llama.llama_log_set(_log, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(_log, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(_log, ctypes.c_void_p(0))
    llama.llama_backend_init()
    _state["initialised"] = True


def last_graph_nodes() -> int:
    """Nodes of the last graph a projector reserved at warm-up (0 if none was logged)."""
    return int(_state.pop("graph_nodes", 0))


def last_projector_backend() -> str | None:
    """The backend libmtmd put the last projector on, as it logged it (None if it did not say)."""
    return _state.pop("clip_backend", None)


def last_error() -> str:
    """The most telling error line llama.cpp logged since the last call (then forgotten)."""
    lines = list(_errors)
    _errors.clear()
    for line in reversed(lines):
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return lines[-1] if lines else ""


# -- tokens ---------------------------------------------------------------------------


def token_bytes(vocab, token: int, special: bool = False) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = llama.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    return buf.raw[:n]


def token_text(vocab, token: int) -> str:
    if token < 0:
        return ""
    return token_bytes(vocab, token, special=True).decode("utf-8", errors="replace")


def tokenize_text(vocab, text: str, add_special: bool = True) -> list[int]:
    data = text.encode("utf-8")
    cap = len(data) + 16
    tokens = (llama.llama_token * cap)()
    n = llama.llama_tokenize(vocab, data, len(data), tokens, cap, add_special, True)
    if n < 0:
        cap = -n
        tokens = (llama.llama_token * cap)()
        n = llama.llama_tokenize(vocab, data, len(data), tokens, cap, add_special, True)
    return list(tokens[:n])


def _bitmap(item: Image | Audio, sample_rate: int | None, placeholder: bool = False):
    if isinstance(item, Image) and placeholder:  # its embeddings are cached: no pixels, no preprocessing
        bmp = mtmd.mtmd_bitmap_init(item.width, item.height, None)
    elif isinstance(item, Image):
        if item.released:  # its encoding was held when its pixels were let go, and is gone now
            raise PixelsReleased(
                f"{item.source or 'an image'} must be encoded again but its pixels were let go: "
                "send the request again through the Runner, which decodes it again"
            )
        pixels = np.ascontiguousarray(item.pixels, dtype=np.uint8)
        bmp = mtmd.mtmd_bitmap_init(item.width, item.height, pixels.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    else:
        if sample_rate and item.sample_rate != sample_rate:
            raise MediaError(
                f"{item.source or 'audio'} is at {item.sample_rate} Hz but the model takes {sample_rate} Hz"
            )
        samples = np.ascontiguousarray(item.samples, dtype=np.float32)
        bmp = mtmd.mtmd_bitmap_init_from_audio(len(samples), samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    if not bmp:
        raise MediaError(f"libmtmd refused {item.source or 'the media'} (empty or too large?)")
    mtmd.mtmd_bitmap_set_id(bmp, _media_id(item).encode())
    if getattr(item, "merge_key", None):
        mtmd.mtmd_bitmap_set_mergeable(bmp, True)
    return bmp


def _media_id(item: Image | Audio) -> str:
    return getattr(item, "merge_key", None) or item.digest()


def media_costs(
    media: Sequence[Image | Audio], items: Sequence[PromptItem], kept: Callable[[str], bool]
) -> list[MediaCost]:
    """One cost per medium from its tokenized chunks; the second frame of a merged pair costs nothing more."""
    chunks: dict[str, list[MediaItem]] = collections.defaultdict(list)
    for item in items:
        if isinstance(item, MediaItem):
            chunks[item.key.rpartition("#")[0]].append(item)
    out, seen = [], set()
    for m in media:
        mine = chunks.get(_media_id(m), [])
        cached = bool(mine) and all(kept(c.key) for c in mine)
        out.append(MediaCost(0 if _media_id(m) in seen else sum(c.n_tokens for c in mine), cached))
        seen.add(_media_id(m))
    return out


def tokenize_media(
    ctx,
    prompt: str,
    media: Sequence[Image | Audio],
    sample_rate: int | None,
    cached: Callable[[str], bool] = lambda digest: False,
) -> list[PromptItem]:
    """mtmd_tokenize on our own pixels/samples; media chunks become owned MediaItems.

    An image whose embeddings are `cached` goes in as a placeholder of the same size: libmtmd
    then counts its tokens and positions without resizing and normalising its pixels again.
    """
    bitmaps = []
    chunks = mtmd.mtmd_input_chunks_init()
    try:
        placeholders = {m.digest() for m in media if isinstance(m, Image) and not m.merge_key and cached(m.digest())}
        for m in media:
            bitmaps.append(_bitmap(m, sample_rate, placeholder=_media_id(m) in placeholders))
        arr = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
        data = prompt.encode("utf-8")
        text = mtmd.mtmd_input_text(text=data, text_len=len(data), add_special=True, parse_special=True)
        rc = mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(text), arr, len(bitmaps))
        if rc == 1:
            raise MediaError(f"{len(bitmaps)} media but a different number of markers in the prompt")
        if rc != 0:
            names = ", ".join(m.source or type(m).__name__.lower() for m in media)
            raise MediaError(f"libmtmd could not preprocess {names} (code {rc}): {last_error() or 'see -v'}")
        return _chunks_to_items(chunks, placeholders)
    finally:
        for b in bitmaps:
            mtmd.mtmd_bitmap_free(b)
        mtmd.mtmd_input_chunks_free(chunks)


def audio_tokens_per_second(ctx, marker: str) -> float:
    """What a second of sound costs this projector, from libmtmd's count for two silences (nothing is
    encoded): their difference, since whisper-style encoders pad every piece to a whole window."""
    rate = mtmd.mtmd_get_audio_sample_rate(ctx)
    try:
        short, long = (
            sum(i.n_tokens for i in tokenize_media(ctx, marker, [silence], rate) if not isinstance(i, int))
            for silence in (Audio(np.zeros(round(s * rate), np.float32), rate, "silence") for s in (1, 61))
        )
    except MediaError:  # the projector would not count silence: the prompt's own check still stands
        return 0.0
    return max(0.0, (long - short) / 60.0)


def _chunks_to_items(chunks, placeholders: set[str]) -> list[PromptItem]:
    items: list[PromptItem] = []
    seen: collections.Counter[str] = collections.Counter()
    for i in range(mtmd.mtmd_input_chunks_size(chunks)):
        chunk = mtmd.mtmd_input_chunks_get(chunks, i)
        ctype = mtmd.mtmd_input_chunk_get_type(chunk)
        if ctype == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            n = ctypes.c_size_t()
            toks = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
            items.extend(toks[: n.value])
            continue
        cid = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
        key = f"{cid}#{seen[cid]}"  # a long audio or a tiled image gives several chunks per id
        seen[cid] += 1
        kind = "image" if ctype == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE else "audio"
        item = MediaItem(
            key,
            kind,
            mtmd.mtmd_input_chunk_get_n_tokens(chunk),
            mtmd.mtmd_input_chunk_get_n_pos(chunk),
            placeholder=cid in placeholders,
        )
        items.append(item.own(mtmd.mtmd_input_chunk_copy(chunk), mtmd.mtmd_input_chunk_free))
    return items


def decode_tokens(ctx, tokens: Sequence[int], n_past: int, *, logits_last: bool, logits_all: bool = False) -> int:
    """Evaluate text tokens at positions n_past.. (as mtmd's helper does: one pos per token); with
    `logits_all`, every token's logits are kept (a draft is checked), the i-th at output i."""
    if not tokens:
        return 0
    batch = llama.llama_batch_ext_init(ctx)
    try:
        idx = -1
        for i, tok in enumerate(tokens):
            idx = llama.llama_batch_ext_add_token(batch, 0, tok)
            pos = llama.llama_pos(n_past + i)
            llama.llama_batch_ext_set_pos(batch, idx, ctypes.byref(pos))
            if logits_all:
                llama.llama_batch_ext_set_output_logits(batch, idx, True)
        if logits_last and not logits_all:
            llama.llama_batch_ext_set_output_logits(batch, idx, True)
        return llama.llama_process(ctx, llama.LLAMA_PROCESS_TYPE_DECODE, batch)
    finally:
        llama.llama_batch_ext_free(batch)


def seq_state(ctx) -> bytes:
    """Sequence 0's KV state as llama.cpp writes it (llama_state_seq_get_data): cells, positions, K and V."""
    size = llama.llama_state_seq_get_size(ctx, 0)
    buf = (ctypes.c_uint8 * size)()
    written = llama.llama_state_seq_get_data(ctx, buf, size, 0)
    return bytes(memoryview(buf)[:written])


def set_seq_state(ctx, data: bytes) -> bool:
    """Sequence 0 cleared, then `data` loaded into it; False (and sequence 0 empty) unless llama.cpp
    read exactly all of it (it checks shapes and types, not which model wrote it)."""
    mem = llama.llama_get_memory(ctx)
    llama.llama_memory_seq_rm(mem, 0, -1, -1)
    src = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    read = llama.llama_state_seq_set_data(ctx, src, len(data), 0)
    if read != len(data):
        llama.llama_memory_seq_rm(mem, 0, -1, -1)
        return False
    return True


# -- templates and sampling -----------------------------------------------------------


@functools.cache
def builtin_templates() -> tuple[str, ...]:
    n = llama.llama_chat_builtin_templates(None, 0)
    arr = (ctypes.c_char_p * n)()
    llama.llama_chat_builtin_templates(arr, n)
    return tuple(a.decode() for a in arr)


def apply_builtin_template(name: str, messages: list[dict[str, str]]) -> str:
    """The prompt llama.cpp's built-in format `name` makes of the messages (llama_chat_apply_template)."""
    encoded = [(m["role"].encode(), m["content"].encode()) for m in messages]
    chat = (llama.llama_chat_message * len(encoded))(*[llama.llama_chat_message(r, c) for r, c in encoded])
    size = 2 * sum(len(r) + len(c) for r, c in encoded) + 256
    buf = ctypes.create_string_buffer(size)
    n = llama.llama_chat_apply_template(name.encode(), chat, len(encoded), True, buf, size)
    if n > size:
        buf = ctypes.create_string_buffer(n)
        n = llama.llama_chat_apply_template(name.encode(), chat, len(encoded), True, buf, n)
    if n < 0:
        raise InputError(f"llama.cpp's built-in template {name!r} failed on these messages")
    return buf.raw[:n].decode("utf-8", errors="replace")


def make_sampler(vocab, o: GenerationOptions, gbnf: str | None = None):
    """llama.cpp's sampler chain in its usual order; temperature 0 means greedy. `gbnf` is the
    grammar the answer follows (--grammar, or --schema made a grammar: engine/grammar.py)."""
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    add = functools.partial(llama.llama_sampler_chain_add, chain)
    if gbnf:
        with captured_stderr() as said:  # the GBNF parser prints its complaint with fprintf
            grammar = llama.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not grammar:
            llama.llama_sampler_free(chain)
            reason = next((line.strip() for line in said() if line.strip()), "") or last_error() or "check its GBNF"
            raise InputError(f"the grammar does not parse: {reason}")
        add(grammar)
    if o.penalised:
        n_vocab = llama.llama_vocab_n_tokens(vocab)
        add(
            llama.llama_sampler_init_penalties(
                n_vocab, o.repeat_last_n, o.repeat_penalty, o.frequency_penalty, o.presence_penalty
            )
        )
    if o.temperature <= 0:
        add(llama.llama_sampler_init_greedy())
        return chain
    if o.top_k > 0:
        add(llama.llama_sampler_init_top_k(o.top_k))
    if o.top_p < 1.0:
        add(llama.llama_sampler_init_top_p(o.top_p, 1))
    if o.min_p > 0.0:
        add(llama.llama_sampler_init_min_p(o.min_p, 1))
    add(llama.llama_sampler_init_temp(o.temperature))
    seed = o.seed if o.seed >= 0 else int.from_bytes(os.urandom(4), "little")
    add(llama.llama_sampler_init_dist(seed))
    return chain


def backend_report() -> dict:
    """What this llama.cpp build can use, for `mmchat doctor`."""
    init(False)
    return {
        "devices": backend_devices(),
        "gpu_offload": has_gpu(),
        "projector_gpu": projector_gpu(),
        "system_info": llama.llama_print_system_info().decode(errors="replace").strip(),
        "threads": physical_cores(),
    }
