"""A GGUF text model, its context and its projector loaded into llama.cpp, each failure one clear
error naming the file; llamacpp.py holds what is done with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import DEFAULT_N_BATCH, DEFAULT_N_UBATCH
from ..errors import GenerationError, ModelLoadError
from ..models import gguf_info
from . import _lib
from ._lib import llama, mtmd
from .encodemeter import EncodeMeter


def load_model(path: Path, n_gpu_layers: int) -> Any:
    params = llama.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    model = llama.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        arch = gguf_info.architecture(path)  # only the message needs it
        raise ModelLoadError(
            f"llama.cpp could not load {path} ({_lib.last_error() or f'architecture {arch!r}'}): "
            "check that it is a complete GGUF text model; run with -v for llama.cpp's log"
        )
    return model


def new_context(model: Any, path: Path, n_ctx: int, threads: int) -> tuple[Any, int, int, tuple]:
    """The context, its size (at most what the model was trained on), its batch size and the settings
    that shape its KV cells (a saved KV state is valid only under the same: engine/kvstate.py)."""
    n_ctx_train = llama.llama_model_n_ctx_train(model)
    params = llama.llama_context_default_params()
    params.n_ctx = min(n_ctx, n_ctx_train) if n_ctx_train > 0 else n_ctx
    params.n_batch = DEFAULT_N_BATCH
    params.n_ubatch = DEFAULT_N_UBATCH
    params.n_threads = params.n_threads_batch = threads
    params.no_perf = True
    # libllama's default, pinned: with a full-size sliding-window cache, restoring a saved state and then
    # cutting it back (seq_rm) is valid on Gemma's sliding window; without it seq_rm says true where it is not
    params.swa_full = True
    ctx = llama.llama_init_from_model(model, params)
    if not ctx:
        raise GenerationError(
            f"llama.cpp could not create a context of {params.n_ctx} tokens for {path} "
            "(out of memory?): try a smaller --ctx-size"
        )
    kv = (params.type_k, params.type_v, params.flash_attn_type, params.swa_full, llama.llama_n_ctx(ctx))
    return ctx, llama.llama_n_ctx(ctx), params.n_batch, kv


def load_projector(
    path: Path,
    model: Any,
    model_name: str,
    *,
    offload: bool,
    threads: int,
    marker: str,
    image_max_tokens: int | None,
    meter: EncodeMeter,
) -> tuple[Any, str | None]:
    """libmtmd's context for the projector, and the backend it says it runs on (None: not said)."""
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = offload  # llama.cpp's --no-mmproj-offload sets this false
    params.n_threads = threads
    params.print_timings = False
    params.media_marker = marker.encode()
    if image_max_tokens:
        params.image_max_tokens = image_max_tokens
    params.cb_eval = meter.callback
    ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
    meter.warmed_up(_lib.last_graph_nodes())
    backend = _lib.last_projector_backend()
    if not ctx:
        raise ModelLoadError(
            f"llama.cpp could not load the projector {path} with {model_name} "
            f"({_lib.last_error() or 'see -v'}): check that the mmproj belongs to this model"
        )
    return ctx, backend
