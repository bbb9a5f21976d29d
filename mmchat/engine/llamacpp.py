"""The llama.cpp backend, on llama-cpp-python's low-level API and libmtmd.

This package is the only place that imports `llama_cpp`. The engine keeps what it computed:
the KV cache holds the last prompt and answer, and encoded media embeddings are cached by
content hash, so a request whose prompt extends the previous one evaluates only the new
tokens and never encodes an image twice (the REPL's follow-ups, Runner.chat in a loop).
With a `StateStore` (engine/kvstate.py), `save_state` keeps the sequence's KV state, and a
prompt that a saved state covers further than the live KV cache restores it instead of
evaluating that prefix again (a new process continuing a conversation, alternating ones).

This module loads and answers; evaluating a prompt is engine/sequence.py, generating the answer
engine/generating.py, saved states engine/restoring.py.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..config import DEFAULT_EMBEDDING_CACHE_BYTES, DEFAULT_MMPROJ_OFFLOAD, DEFAULT_N_CTX
from ..errors import ContextOverflow, UnsupportedMedia
from ..media import Audio, Image
from ..models import pairs
from ..options import GenerationOptions
from . import _lib, devices, loading
from ._lib import llama, mtmd
from .base import (
    MEDIA_MARKER,
    Capabilities,
    Event,
    MediaCost,
    Plan,
    Progress,
    Stats,
    Timings,
    Turn,
    Usage,
)
from .embeddings import DiskMediaCache, EmbeddingCache, open_disk_cache
from .encodemeter import EncodeMeter
from .encoder import MediaEncoder, Stopped
from .generating import Generator
from .grammar import grammar_for
from .kvcache import MediaItem, PromptItem, n_tokens
from .kvstate import StateStore, state_identity
from .placement import plan
from .restoring import SavedStates
from .sequence import Evicted, KVSequence
from .template import chat_renderer, template_messages


class LlamaCppEngine:
    """A text model, optionally with its multimodal projector, loaded once.

    `media_cache` is the directory of the disk cache of encoded media (None: none), capped at
    `media_cache_bytes`; `media_memory_bytes` caps the encoded media kept in memory for the
    latest prompt (at least one chunk is always kept). Notices go to the
    `mmchat.engine` logger.
    """

    def __init__(
        self,
        model: str | Path,
        mmproj: str | Path | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_gpu_layers: int | None = None,
        threads: int | None = None,
        chat_template: str | None = None,
        image_max_tokens: int | None = None,
        mmproj_offload: bool = DEFAULT_MMPROJ_OFFLOAD,
        verbose: bool = False,
        progress: Progress | None = None,
        media_cache: Path | None = None,
        media_cache_bytes: int = 0,
        media_memory_bytes: int = DEFAULT_EMBEDDING_CACHE_BYTES,
        draft: int = 0,
        draft_min: int = 2,
        states: StateStore | None = None,
    ):
        _lib.init(verbose)
        self._lock = threading.RLock()  # one thread at a time in the model, the projector and the caches
        self._meter = EncodeMeter()
        self.model_path = Path(model)
        self.mmproj_path = Path(mmproj) if mmproj else None
        self.threads = threads or devices.physical_cores()
        self.mmproj_offload = mmproj_offload  # the projector on the GPU, independent of the layers (as llama.cpp)
        self._model = self._ctx = self._mtmd = None
        self._audio_rate: float | None = None  # tokens per second of sound, learned on first use
        try:
            pairs.check_files(self.model_path, self.mmproj_path)  # before llama.cpp reads a byte of either
            kv = self._load(n_ctx, n_gpu_layers, image_max_tokens)
        except BaseException:
            self.close()
            raise
        self._vocab = llama.llama_model_get_vocab(self._model)
        self._setup_template(chat_template)
        self.stats = Stats()
        disk = self._disk_cache(media_cache, media_cache_bytes, image_max_tokens)
        self._embeddings = EmbeddingCache(media_memory_bytes, disk=disk)
        n_embd = llama.llama_model_n_embd_inp(self._model)
        self._encoder = MediaEncoder(self._mtmd, n_embd, self._embeddings, self.stats, self._meter)
        self._seq = KVSequence(self._ctx, self._mtmd, self.n_batch, self._encoder, self.stats, progress)
        self._generator = Generator(self._seq, self._vocab, self._lock, self.n_ctx, self._extra_stop, draft, draft_min)
        self._identity = state_identity(
            (self.model_path, self.mmproj_path),
            (*kv, image_max_tokens, mtmd.mtmd_context_params_default().image_min_tokens, str(self.placement)),
        )
        self._saved = SavedStates(states, self._identity, self.stats)

    def _load(self, n_ctx: int, n_gpu_layers: int | None, image_max_tokens: int | None) -> tuple:
        """The model, its context and the projector into llama.cpp; the settings that shape the KV cells."""
        gpu = devices.has_gpu()
        self.n_gpu_layers = (999 if gpu else 0) if n_gpu_layers is None else n_gpu_layers
        self._model = loading.load_model(self.model_path, self.n_gpu_layers)
        self._ctx, self.n_ctx, self.n_batch, kv = loading.new_context(self._model, self.model_path, n_ctx, self.threads)
        self._marker = f"<__media_{secrets.token_hex(8)}__>"  # user text can never forge it
        self.placement = plan(
            gpu=gpu,
            n_gpu_layers=self.n_gpu_layers,
            mmproj_offload=self.mmproj_offload,
            n_layer=llama.llama_model_n_layer(self._model),
            projector=self.mmproj_path is not None,
        )
        if self.mmproj_path is not None:
            self._mtmd, backend = loading.load_projector(
                self.mmproj_path,
                self._model,
                self.model_path.name,
                offload=self.mmproj_offload,
                threads=self.threads,
                marker=self._marker,
                image_max_tokens=image_max_tokens,
                meter=self._meter,
            )
            if backend:  # what libmtmd says it used: the truth over the plan
                self.placement = dataclasses.replace(self.placement, projector=backend)
        return kv

    def _disk_cache(
        self, directory: Path | None, max_bytes: int, image_max_tokens: int | None
    ) -> DiskMediaCache | None:
        """The projector's output kept for later runs, under the settings that shape it."""
        if directory is None or self.mmproj_path is None:
            return None
        settings = (
            image_max_tokens,
            self.placement.projector_device == "GPU",
            llama.llama_model_n_embd_inp(self._model),
        )
        return open_disk_cache(directory, self.mmproj_path, settings, max_bytes)

    @property
    def states(self) -> StateStore | None:
        """Where `save_state` keeps KV states and a prompt looks for one to restore (None: nowhere)."""
        return self._saved.store

    @states.setter
    def states(self, store: StateStore | None) -> None:
        self._saved.store = store

    def _setup_template(self, chat_template: str | None) -> None:
        """--chat-template, else the GGUF's own; each Jinja text or a llama.cpp built-in name."""
        self._bos = _lib.token_text(self._vocab, llama.llama_vocab_bos(self._vocab))
        self._eos = _lib.token_text(self._vocab, llama.llama_vocab_eos(self._vocab))
        raw = llama.llama_model_chat_template(self._model, None) if chat_template is None else None
        self._render, self._extra_stop = chat_renderer(
            chat_template,
            raw.decode("utf-8", errors="replace") if raw else None,
            names=_lib.builtin_templates(),
            apply_builtin=_lib.apply_builtin_template,
            model_name=self.model_path.name,
        )

    # -- interface -------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        vision = bool(self._mtmd) and mtmd.mtmd_support_vision(self._mtmd)
        audio = bool(self._mtmd) and mtmd.mtmd_support_audio(self._mtmd)
        rate = mtmd.mtmd_get_audio_sample_rate(self._mtmd) if audio else None
        pairs = vision and mtmd.mtmd_decode_use_mrope(self._mtmd)  # Qwen-VL's temporal patches of 2 frames
        return Capabilities(
            vision=vision,
            audio=audio,
            audio_sample_rate=rate,
            n_ctx=self.n_ctx,
            model_name=self.model_path.name,
            frame_pairs=bool(pairs),
            audio_tokens=self._audio_tokens if audio else None,
        )

    def _audio_tokens(self, seconds: float) -> int:
        """At least what `seconds` of sound cost, at the projector's rate (learned once, on first use)."""
        if self._audio_rate is None:
            with self._lock:
                self._audio_rate = _lib.audio_tokens_per_second(self._mtmd, self._marker)
        return int(seconds * self._audio_rate)

    def render(self, turns: Sequence[Turn]) -> str:
        """The prompt text exactly as the model gets it (media as the engine's marker)."""
        text = self._render(template_messages(turns, self._marker), bos_token=self._bos, eos_token=self._eos)
        if self._bos and llama.llama_vocab_get_add_bos(self._vocab) and text.startswith(self._bos):
            text = text[len(self._bos) :]  # tokenizing adds BOS itself; never two
        return text

    @property
    def marker(self) -> str:
        return self._marker

    def prompt(self, turns: Sequence[Turn]) -> str:
        return self.render(turns).replace(self._marker, MEDIA_MARKER)

    def tokenize(self, turns: Sequence[Turn], reuse: bool = True) -> list[PromptItem]:
        """Render and tokenize: text token ids and media chunks, in prompt order."""
        prompt = self.render(turns)
        media = [s for t in turns for s in t.segments if not isinstance(s, str)]
        with self._lock:
            return self.tokenize_prompt(prompt, media, reuse)

    def tokenize_prompt(self, prompt: str, media: Sequence[Image | Audio], reuse: bool = True) -> list[PromptItem]:
        if not media:
            return list(_lib.tokenize_text(self._vocab, prompt))
        if self._mtmd is None:
            raise UnsupportedMedia(f"{self.model_path.name} has no multimodal projector: give one with --mmproj")
        return _lib.tokenize_media(
            self._mtmd,
            prompt,
            media,
            self.capabilities().audio_sample_rate,
            cached=self._embeddings.has_media if reuse else (lambda d: False),
        )

    def count_tokens(self, turns: Sequence[Turn]) -> int:
        """The prompt's exact size in tokens (media chunks by their token count)."""
        return n_tokens(self.tokenize(turns))

    def stream(self, turns: Sequence[Turn], options: GenerationOptions) -> Iterator[Event]:
        t_start = time.perf_counter()
        grammar = grammar_for(options)  # a schema that cannot be a grammar fails before any work
        items = self.tokenize(turns)
        usage = Usage(prompt_tokens=n_tokens(items))
        usage.image_tokens = sum(i.n_tokens for i in items if isinstance(i, MediaItem) and i.kind == "image")
        usage.audio_tokens = sum(i.n_tokens for i in items if isinstance(i, MediaItem) and i.kind == "audio")
        if usage.prompt_tokens >= self.n_ctx:
            raise ContextOverflow(
                f"the prompt is {usage.prompt_tokens} tokens but the context holds {self.n_ctx}: "
                "shorten it, use fewer or smaller media (video: --max-frames, --start/--end, --no-video-audio), "
                "or raise --ctx-size"
            )
        timings = Timings(media_decode=0.0, ran_on=self.placement)
        with self._lock:  # waits for a background encode of these media, then finds them cached
            try:
                self._seq.evaluate(items, usage, timings, self._restore)
            except Evicted:  # cached embeddings went while evaluating: tokenize with pixels again
                self._seq.evaluate(items := self.tokenize(turns, reuse=False), usage, timings, self._restore)
            self._embeddings.settle(items)
            self.stats.embeddings_in_memory = len(self._embeddings)
        yield from self._generator.run(options, grammar, usage, timings, t_start)

    def prepare(
        self,
        media: Sequence[Image | Audio],
        report: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_plan: Plan | None = None,
    ) -> bool:
        """Encode media ahead of the turn that will hold them, from any thread (the REPL does it
        while the user types); both caches keep the result. False when `should_stop` ended it."""
        if not media or self._mtmd is None:
            if on_plan is not None:
                on_plan([MediaCost(0) for _ in media])
            return True
        with self._lock:
            items = self.tokenize_prompt(self._marker * len(media), media)
            if on_plan is not None:
                on_plan(_lib.media_costs(media, items, self._embeddings.has))
            try:
                for item in items:
                    if isinstance(item, MediaItem) and self._encoder.lookup(item) is None:
                        self._encoder.encode(item, report, should_stop)
            except Stopped:
                return False
            finally:
                self.stats.embeddings_in_memory = len(self._embeddings)
        return True

    def costs(self, media: Sequence[Image | Audio]) -> list[MediaCost]:
        """Tokens per medium, as libmtmd counts them, and whether the caches keep its encoding."""
        if not media or self._mtmd is None:
            return [MediaCost(0) for _ in media]
        with self._lock:
            return _lib.media_costs(media, self.tokenize_prompt(self._marker * len(media), media), self._embeddings.has)

    def holds(self, medium: Image | Audio) -> bool:
        """An image whose embeddings are kept (memory or disk) is tokenized as a placeholder, without pixels."""
        return isinstance(medium, Image) and not medium.merge_key and self._embeddings.has_media(medium.digest())

    # -- saved states ----------------------------------------------------------------

    def save_state(self, *, disk: bool = True) -> bool:
        """Keep the sequence as it stands (the last prompt and its answer) for a later request or
        process to restore (engine/restoring.py); False when nothing was kept."""
        return self._saved.save(self._seq, self._lock, disk=disk)

    def _restore(self, items: list[PromptItem], keep: int) -> int:
        return self._saved.restore(self._seq, items, keep)

    def close(self) -> None:
        if getattr(self, "_seq", None) is not None:
            self._seq.clear()
        if getattr(self, "_embeddings", None) is not None and self._embeddings.disk is not None:
            self._embeddings.disk.close()
        if self._mtmd:
            mtmd.mtmd_free(self._mtmd)
            self._mtmd = None
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
