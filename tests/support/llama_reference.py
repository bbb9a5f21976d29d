"""llama.cpp's own file-based multimodal path, as llama-mtmd-cli uses it: the reference.

Run as a script (in a subprocess, so a native abort cannot take pytest down):
    python tests/support/llama_reference.py MODEL MMPROJ PROMPT N_TOKENS FILE...
PROMPT holds one `<__media__>` per FILE. Prints the greedy token ids as JSON. Nothing of
mmchat is imported: files are opened by libmtmd (`mtmd_helper_bitmap_init_from_file`),
chunks evaluated by `mtmd_helper_eval_chunks`, tokens picked by argmax over the logits.
"""

from __future__ import annotations

import ctypes
import json
import sys

import llama_cpp as llama
import numpy as np
from llama_cpp import mtmd_cpp as mtmd


@llama.llama_log_callback
def _quiet(level, text, user_data):
    pass


def greedy_ids(model_path: str, mmproj_path: str, prompt: str, n_tokens: int, files: list[str]) -> list[int]:
    llama.llama_log_set(_quiet, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(_quiet, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(_quiet, ctypes.c_void_p(0))
    llama.llama_backend_init()
    mparams = llama.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = llama.llama_model_load_from_file(model_path.encode(), mparams)
    cparams = llama.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 4096, 2048, 512
    cparams.n_threads = cparams.n_threads_batch = 2
    ctx = llama.llama_init_from_model(model, cparams)
    vparams = mtmd.mtmd_context_params_default()
    vparams.use_gpu, vparams.n_threads, vparams.print_timings = False, 2, False
    mctx = mtmd.mtmd_init_from_file(mmproj_path.encode(), model, vparams)
    bitmaps = [mtmd.mtmd_helper_bitmap_init_from_file(mctx, f.encode(), False) for f in files]
    assert all(bitmaps), "libmtmd could not open a file"
    chunks = mtmd.mtmd_input_chunks_init()
    data = prompt.encode()
    text = mtmd.mtmd_input_text(text=data, text_len=len(data), add_special=True, parse_special=True)
    arr = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
    assert mtmd.mtmd_tokenize(mctx, chunks, ctypes.byref(text), arr, len(bitmaps)) == 0
    n_past = llama.llama_pos(0)
    assert mtmd.mtmd_helper_eval_chunks(mctx, ctx, chunks, 0, 0, 2048, True, ctypes.byref(n_past)) == 0
    vocab = llama.llama_model_get_vocab(model)
    n_vocab = llama.llama_vocab_n_tokens(vocab)
    ids: list[int] = []
    for _ in range(n_tokens):
        logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        token = int(np.argmax(logits))
        if llama.llama_vocab_is_eog(vocab, token):
            break
        ids.append(token)
        one = (llama.llama_token * 1)(token)
        assert llama.llama_decode(ctx, llama.llama_batch_get_one(one, 1)) == 0
    return ids


if __name__ == "__main__":
    model, mmproj, prompt, n = sys.argv[1:5]
    print(json.dumps(greedy_ids(model, mmproj, prompt, int(n), sys.argv[5:])))
