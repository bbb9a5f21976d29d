"""The llama.cpp backend, on llama-cpp-python's low-level API and libmtmd.

This package is the only place that imports `llama_cpp`. The engine keeps what it computed:
the KV cache holds the last prompt and answer, and encoded media embeddings are cached by
content hash, so a request whose prompt extends the previous one evaluates only the new
tokens and never encodes an image twice (the REPL's follow-ups, Runner.chat in a loop).
"""

from __future__ import annotations

import ctypes
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import gguf_info
from ..config import DEFAULT_N_BATCH, DEFAULT_N_CTX, DEFAULT_N_UBATCH
from ..errors import ContextOverflow, GenerationError, InputError, ModelLoadError, UnsupportedMedia
from ..media import Audio, Image
from . import _lib
from ._lib import llama, mtmd
from .base import Capabilities, Event, Finished, SamplingOptions, Timings, Turn, Usage
from .kvcache import EmbeddingCache, MediaItem, PromptItem, common_prefix
from .template import PLAIN_STOP, PLAIN_TEMPLATE, jinja_renderer, template_messages
from .textstream import TextStream


_NO_CALLBACK = ctypes.cast(None, mtmd.mtmd_helper_post_decode_callback)


class EngineStats:
    """Counters that show what the caches saved (tests and `/stats` read them)."""

    def __init__(self) -> None:
        self.media_encodes = 0
        self.prompt_tokens_evaluated = 0
        self.prompt_tokens_reused = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class LlamaCppEngine:
    """A text model, optionally with its multimodal projector, loaded once."""

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
        verbose: bool = False,
        notice=None,
    ):
        t0 = time.perf_counter()
        _lib.init(verbose)
        self._notice = notice or (lambda msg: None)
        self.model_path = Path(model)
        self.mmproj_path = Path(mmproj) if mmproj else None
        self.threads = threads or _lib.physical_cores()
        gpu = _lib.has_gpu()
        self.n_gpu_layers = (999 if gpu else 0) if n_gpu_layers is None else n_gpu_layers
        self._model = self._ctx = self._mtmd = None
        self._sampler = None
        try:
            self._load_model()
            self._load_context(n_ctx)
            self._marker = f"<__media_{secrets.token_hex(8)}__>"  # user text can never forge it
            if self.mmproj_path is not None:
                self._load_mmproj(image_max_tokens)
        except BaseException:
            self.close()
            raise
        self._vocab = llama.llama_model_get_vocab(self._model)
        self._setup_template(chat_template)
        self._cache: list[PromptItem] = []  # what the KV cache holds, in order
        self._embeddings = EmbeddingCache()
        self.stats = EngineStats()
        self.load_time = time.perf_counter() - t0

    # -- loading ---------------------------------------------------------------------

    def _load_model(self) -> None:
        arch = gguf_info.architecture(self.model_path)
        if arch == "clip":
            raise ModelLoadError(
                f"{self.model_path} is a multimodal projector (mmproj), not a text model: "
                "pass it with --mmproj and give the text model with --model"
            )
        params = llama.llama_model_default_params()
        params.n_gpu_layers = self.n_gpu_layers
        self._model = llama.llama_model_load_from_file(str(self.model_path).encode(), params)
        if not self._model:
            raise ModelLoadError(
                f"llama.cpp could not load {self.model_path} ({_lib.last_error() or f'architecture {arch!r}'}): "
                "check that it is a complete GGUF text model; run with -v for llama.cpp's log"
            )

    def _load_context(self, n_ctx: int) -> None:
        n_ctx_train = llama.llama_model_n_ctx_train(self._model)
        params = llama.llama_context_default_params()
        params.n_ctx = min(n_ctx, n_ctx_train) if n_ctx_train > 0 else n_ctx
        params.n_batch = DEFAULT_N_BATCH
        params.n_ubatch = DEFAULT_N_UBATCH
        params.n_threads = params.n_threads_batch = self.threads
        params.no_perf = True
        self._ctx = llama.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise GenerationError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens for {self.model_path} "
                "(out of memory?): try a smaller --ctx-size"
            )
        self.n_ctx = llama.llama_n_ctx(self._ctx)
        self.n_batch = params.n_batch

    def _load_mmproj(self, image_max_tokens: int | None) -> None:
        arch = gguf_info.architecture(self.mmproj_path)
        if arch != "clip":
            raise ModelLoadError(
                f"{self.mmproj_path} is not a multimodal projector (its architecture is {arch!r}): "
                "--mmproj takes the mmproj-*.gguf file that belongs to the model"
            )
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = self.n_gpu_layers > 0
        params.n_threads = self.threads
        params.print_timings = False
        params.media_marker = self._marker.encode()
        if image_max_tokens:
            params.image_max_tokens = image_max_tokens
        self._mtmd = mtmd.mtmd_init_from_file(str(self.mmproj_path).encode(), self._model, params)
        if not self._mtmd:
            raise ModelLoadError(
                f"llama.cpp could not load the projector {self.mmproj_path} with {self.model_path.name} "
                f"({_lib.last_error() or 'see -v'}): check that the mmproj belongs to this model"
            )

    def _setup_template(self, chat_template: str | None) -> None:
        self._bos = _lib.token_text(self._vocab, llama.llama_vocab_bos(self._vocab))
        self._eos = _lib.token_text(self._vocab, llama.llama_vocab_eos(self._vocab))
        self._extra_stop: tuple[str, ...] = ()
        if chat_template and chat_template in _lib.builtin_templates():
            self._builtin = chat_template.encode()
            self._render = None
            return
        self._builtin = None
        source = chat_template
        if source is None:
            raw = llama.llama_model_chat_template(self._model, None)
            source = raw.decode("utf-8", errors="replace") if raw else None
        if source is None:
            self._notice(f"{self.model_path.name} has no chat template: using a plain 'User:/Assistant:' format (set one with --chat-template)")
            source, self._extra_stop = PLAIN_TEMPLATE, PLAIN_STOP
        try:
            self._render = jinja_renderer(source)
        except Exception as e:  # a template that does not compile is the user's input
            raise InputError(f"the chat template does not compile ({e}): give a Jinja file or a built-in name") from None

    # -- interface -------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        vision = bool(self._mtmd) and mtmd.mtmd_support_vision(self._mtmd)
        audio = bool(self._mtmd) and mtmd.mtmd_support_audio(self._mtmd)
        rate = mtmd.mtmd_get_audio_sample_rate(self._mtmd) if audio else None
        return Capabilities(vision=vision, audio=audio, audio_sample_rate=rate, n_ctx=self.n_ctx, model_name=self.model_path.name)

    def render(self, turns: Sequence[Turn]) -> str:
        """The prompt text exactly as the model gets it (media as the engine's marker)."""
        messages = template_messages(turns, self._marker)
        if self._builtin is not None:
            text = _lib.apply_builtin_template(self._builtin, messages)
        else:
            try:
                text = self._render(messages, bos_token=self._bos, eos_token=self._eos)
            except Exception as e:
                raise InputError(f"the chat template failed on these messages: {e}") from None
        if self._bos and llama.llama_vocab_get_add_bos(self._vocab) and text.startswith(self._bos):
            text = text[len(self._bos):]  # tokenizing adds BOS itself; never two
        return text

    @property
    def marker(self) -> str:
        return self._marker

    def tokenize(self, turns: Sequence[Turn]) -> list[PromptItem]:
        """Render and tokenize: text token ids and media chunks, in prompt order."""
        prompt = self.render(turns)
        media = [s for t in turns for s in t.segments if not isinstance(s, str)]
        return self.tokenize_prompt(prompt, media)

    def tokenize_prompt(self, prompt: str, media: Sequence[Image | Audio]) -> list[PromptItem]:
        if not media:
            return list(_lib.tokenize_text(self._vocab, prompt))
        if self._mtmd is None:
            raise UnsupportedMedia(f"{self.model_path.name} has no multimodal projector: give one with --mmproj")
        return _lib.tokenize_media(self._mtmd, prompt, media, self.capabilities().audio_sample_rate)

    def stream(self, turns: Sequence[Turn], options: SamplingOptions) -> Iterator[Event]:
        t_start = time.perf_counter()
        items = self.tokenize(turns)
        usage = Usage(prompt_tokens=sum(i.n_tokens if isinstance(i, MediaItem) else 1 for i in items))
        usage.image_tokens = sum(i.n_tokens for i in items if isinstance(i, MediaItem) and i.kind == "image")
        usage.audio_tokens = sum(i.n_tokens for i in items if isinstance(i, MediaItem) and i.kind == "audio")
        if usage.prompt_tokens >= self.n_ctx:
            raise ContextOverflow(
                f"the prompt is {usage.prompt_tokens} tokens but the context holds {self.n_ctx}: "
                "shorten it, use fewer or smaller media, or raise --ctx-size"
            )
        timings = Timings(media_decode=0.0)
        self._evaluate(items, usage, timings)
        yield from self._generate(options, usage, timings, t_start)

    # -- evaluation ------------------------------------------------------------------

    def _evaluate(self, items: list[PromptItem], usage: Usage, timings: Timings) -> None:
        keep = common_prefix(self._cache, items)
        if keep == len(items):  # the whole prompt is cached: re-evaluate the last piece for its logits
            keep -= 1
        self._truncate(keep)
        usage.cached_tokens = sum(i.n_tokens if isinstance(i, MediaItem) else 1 for i in items[:keep])
        self.stats.prompt_tokens_reused += usage.cached_tokens
        t0 = time.perf_counter()
        pending: list[int] = []
        for n, item in enumerate(items[keep:], start=keep):
            if isinstance(item, MediaItem):
                self._decode_text(pending, logits_last=False)
                pending = []
                timings.media_encode += self._decode_media(item)
            else:
                pending.append(item)
        self._decode_text(pending, logits_last=True)
        timings.prompt = time.perf_counter() - t0 - timings.media_encode
        self.stats.prompt_tokens_evaluated += usage.prompt_tokens - usage.cached_tokens
        if not pending:  # a prompt that ends in media (no template does) has no logits yet
            raise GenerationError("the prompt ends with a media chunk; add text after it")

    def _truncate(self, keep: int) -> None:
        pos = sum(_n_pos(i) for i in self._cache[:keep])
        mem = llama.llama_get_memory(self._ctx)
        if not llama.llama_memory_seq_rm(mem, 0, pos, -1):
            llama.llama_memory_clear(mem, True)
            keep, pos = 0, 0
        del self._cache[keep:]
        self._n_past = pos

    def _decode_text(self, tokens: list[int], *, logits_last: bool) -> None:
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            last = logits_last and start + len(part) == len(tokens)
            rc = _lib.decode_tokens(self._ctx, part, self._n_past, logits_last=last)
            if rc != 0:
                self._fail(f"llama.cpp failed to evaluate the prompt (code {rc})")
            self._n_past += len(part)
            self._cache.extend(part)

    def _decode_media(self, item: MediaItem) -> float:
        t0 = time.perf_counter()
        embd = self._embeddings.get(item.key)
        if embd is None:
            if mtmd.mtmd_encode_chunk(self._mtmd, item.chunk) != 0:
                self._fail(f"llama.cpp failed to encode {item.kind} ({_lib.last_error() or 'see -v'})")
            n_embd = llama.llama_model_n_embd_inp(self._model)
            out = mtmd.mtmd_get_output_embd(self._mtmd)
            embd = np.ctypeslib.as_array(out, shape=(item.n_tokens * n_embd,)).copy()
            self._embeddings.put(item.key, embd)
            self.stats.media_encodes += 1
        new_n_past = llama.llama_pos(self._n_past)
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd, self._ctx, item.chunk, embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            self._n_past, 0, self.n_batch, ctypes.byref(new_n_past), _NO_CALLBACK, None,
        )
        if rc != 0:
            self._fail(f"llama.cpp failed to decode {item.kind} embeddings (code {rc})")
        self._n_past = new_n_past.value
        self._cache.append(item.detached())
        return time.perf_counter() - t0

    def _fail(self, message: str) -> None:
        self._truncate(0)  # the KV state is unknown now: start clean next time
        raise GenerationError(message)

    # -- generation ------------------------------------------------------------------

    def _generate(self, options: SamplingOptions, usage: Usage, timings: Timings, t_start: float) -> Iterator[Event]:
        sampler = _lib.make_sampler(self._vocab, options)
        text = TextStream(tuple(options.stop) + self._extra_stop)
        finish = "length"
        t0 = time.perf_counter()
        try:
            for _ in range(options.max_tokens):
                if self._n_past >= self.n_ctx:
                    break
                token = llama.llama_sampler_sample(sampler, self._ctx, -1)
                if llama.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                usage.completion_tokens += 1
                delta = text.feed(_lib.token_bytes(self._vocab, token))
                if delta:
                    if not timings.first_token:
                        timings.first_token = time.perf_counter() - t_start
                    yield delta
                if text.stopped:
                    finish = "stop"
                    break
                if _lib.decode_tokens(self._ctx, [token], self._n_past, logits_last=True) != 0:
                    self._fail("llama.cpp failed while generating (code != 0)")
                self._n_past += 1
                self._cache.append(token)
            tail = text.flush()
            if tail:
                yield tail
        finally:
            llama.llama_sampler_free(sampler)
            timings.generation = time.perf_counter() - t0
        yield Finished(finish_reason=finish, usage=usage, timings=timings)

    def reset(self) -> None:
        """Forget the KV cache (the embedding cache stays: it is keyed by content)."""
        self._truncate(0)

    def close(self) -> None:
        if getattr(self, "_cache", None) is not None:
            self._cache.clear()
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


def _n_pos(item: PromptItem) -> int:
    return item.n_pos if isinstance(item, MediaItem) else 1
