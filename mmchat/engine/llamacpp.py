"""The llama.cpp backend, on llama-cpp-python's low-level API and libmtmd.

This package is the only place that imports `llama_cpp`. The engine keeps what it computed:
the KV cache holds the last prompt and answer, and encoded media embeddings are cached by
content hash, so a request whose prompt extends the previous one evaluates only the new
tokens and never encodes an image twice (the REPL's follow-ups, Runner.chat in a loop).
With a `StateStore` (engine/kvstate.py), `save_state` keeps the sequence's KV state, and a
prompt that a saved state covers further than the live KV cache restores it instead of
evaluating that prefix again (a new process continuing a conversation, alternating ones).
"""

from __future__ import annotations

import ctypes
import dataclasses
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..config import DEFAULT_MMPROJ_OFFLOAD, DEFAULT_N_CTX
from ..errors import ContextOverflow, GenerationError, UnsupportedMedia
from ..media import Audio, Image
from ..models import pairs
from ..options import GenerationOptions
from . import _lib, loading
from ._lib import llama, mtmd
from .base import (
    MEDIA_MARKER,
    Capabilities,
    EngineStats,
    Event,
    Finished,
    MediaCost,
    Plan,
    Progress,
    Started,
    Timings,
    Turn,
    Usage,
)
from .drafts import GAP, PromptLookup
from .embeddings import EmbeddingCache, open_disk_cache
from .encodemeter import EncodeMeter
from .encoder import MediaEncoder, Stopped
from .grammar import grammar_for
from .kvcache import MediaItem, PromptItem, common_prefix
from .kvstate import StateStore, state_identity
from .placement import plan
from .restoring import SavedStates
from .template import chat_renderer, template_messages
from .textstream import TextStream

_NO_CALLBACK = ctypes.cast(None, mtmd.mtmd_helper_post_decode_callback)


class _Evicted(Exception):
    """A placeholder chunk's embeddings left the cache before it was evaluated."""


class LlamaCppEngine(SavedStates):
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
        mmproj_offload: bool = DEFAULT_MMPROJ_OFFLOAD,
        verbose: bool = False,
        notice=None,
        progress: Progress | None = None,
        media_cache: Path | None = None,
        media_cache_bytes: int = 0,
        draft: int = 0,
        draft_min: int = 2,
        states: StateStore | None = None,
    ):
        _lib.init(verbose)
        self._lock = threading.RLock()  # one thread at a time in the model, the projector and the caches
        self._notice = notice or (lambda msg: None)
        self._progress = progress
        self.draft, self.draft_min = draft, draft_min  # prompt-lookup drafting of greedy answers (drafts.py)
        self._meter = EncodeMeter()
        self.model_path = Path(model)
        self.mmproj_path = Path(mmproj) if mmproj else None
        self.threads = threads or _lib.physical_cores()
        gpu = _lib.has_gpu()
        self.n_gpu_layers = (999 if gpu else 0) if n_gpu_layers is None else n_gpu_layers
        self.mmproj_offload = mmproj_offload  # the projector on the GPU, independent of the layers (as llama.cpp)
        self._model = self._ctx = self._mtmd = None
        self._audio_rate: float | None = None  # tokens per second of sound, learned on first use
        try:
            pairs.check_files(self.model_path, self.mmproj_path)  # before llama.cpp reads a byte of either
            self._model = loading.load_model(self.model_path, self.n_gpu_layers)
            self._ctx, self.n_ctx, self.n_batch, kv = loading.new_context(
                self._model, self.model_path, n_ctx, self.threads
            )
            self._marker = f"<__media_{secrets.token_hex(8)}__>"  # user text can never forge it
            self.placement = plan(
                gpu=gpu,
                n_gpu_layers=self.n_gpu_layers,
                mmproj_offload=mmproj_offload,
                n_layer=llama.llama_model_n_layer(self._model),
                projector=self.mmproj_path is not None,
            )
            if self.mmproj_path is not None:
                self._mtmd, backend = loading.load_projector(
                    self.mmproj_path,
                    self._model,
                    self.model_path.name,
                    offload=mmproj_offload,
                    threads=self.threads,
                    marker=self._marker,
                    image_max_tokens=image_max_tokens,
                    meter=self._meter,
                )
                if backend:  # what libmtmd says it used: the truth over the plan
                    self.placement = dataclasses.replace(self.placement, projector=backend)
        except BaseException:
            self.close()
            raise
        self._vocab = llama.llama_model_get_vocab(self._model)
        self._n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        self._setup_template(chat_template)
        self._cache: list[PromptItem] = []  # what the KV cache holds, in order
        disk = None
        if media_cache is not None and self.mmproj_path is not None:  # the projector's output, kept for later runs
            settings = (
                image_max_tokens,
                self.placement.projector_device == "GPU",
                llama.llama_model_n_embd_inp(self._model),
            )
            disk = open_disk_cache(media_cache, self.mmproj_path, settings, media_cache_bytes, self._notice)
        self._embeddings = EmbeddingCache(disk=disk)
        self.stats = EngineStats()
        self._encoder = MediaEncoder(
            self._mtmd, llama.llama_model_n_embd_inp(self._model), self._embeddings, self.stats, self._meter
        )
        self.last_tokens: list[int] = []  # ids generated by the last request (tests compare them)
        self.states = states
        self._identity = state_identity(
            (self.model_path, self.mmproj_path),
            (*kv, image_max_tokens, mtmd.mtmd_context_params_default().image_min_tokens, str(self.placement)),
        )

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
            notice=self._notice,
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
        return sum(i.n_tokens if isinstance(i, MediaItem) else 1 for i in self.tokenize(turns))

    def stream(self, turns: Sequence[Turn], options: GenerationOptions) -> Iterator[Event]:
        t_start = time.perf_counter()
        grammar = grammar_for(options)  # a schema that cannot be a grammar fails before any work
        items = self.tokenize(turns)
        usage = Usage(prompt_tokens=sum(i.n_tokens if isinstance(i, MediaItem) else 1 for i in items))
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
                self._evaluate(items, usage, timings)
            except _Evicted:  # cached embeddings went while evaluating: tokenize with pixels again
                self._evaluate(items := self.tokenize(turns, reuse=False), usage, timings)
            self._embeddings.settle(items)
        yield from self._generate(options, grammar, usage, timings, t_start)

    def prepare(
        self, media: Sequence[Image | Audio], report=None, should_stop=None, on_plan: Plan | None = None
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
            for item in items:
                if isinstance(item, MediaItem) and self._encoder.lookup(item) is None:
                    try:
                        self._encoder.encode(item, report, should_stop)
                    except Stopped:
                        return False
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

    # -- evaluation ------------------------------------------------------------------

    def _evaluate(self, items: list[PromptItem], usage: Usage, timings: Timings) -> None:
        t0 = time.perf_counter()
        keep = self._restore(items, common_prefix(self._cache, items))
        if keep == len(items):  # the whole prompt is cached: re-evaluate the last piece for its logits
            keep -= 1
        self._truncate(keep)
        usage.cached_tokens = sum(i.n_tokens if isinstance(i, MediaItem) else 1 for i in items[:keep])
        self.stats.prompt_tokens_reused += usage.cached_tokens
        pending: list[int] = []
        to_encode = [i for i in items[keep:] if isinstance(i, MediaItem) and not self._embeddings.has(i.key)]
        for item in items[keep:]:
            if isinstance(item, MediaItem):
                self._decode_text(pending, logits_last=False)
                pending = []
                task = None
                if self._progress and item in to_encode:
                    task = f"encoding {item.kind} {to_encode.index(item) + 1} of {len(to_encode)}"
                    self._progress(task, 0, 1)
                report = (lambda f, task=task: self._progress(task, f, 1)) if task else None
                timings.media_encode += self._decode_media(item, report, usage)
                if task:
                    self._progress(task, 1, 1)
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

    def _decode_media(self, item: MediaItem, report, usage: Usage) -> float:
        t0 = time.perf_counter()
        embd = self._encoder.lookup(item)
        if embd is None and item.placeholder:
            raise _Evicted(item.key)
        if embd is None:
            try:
                embd = self._encoder.encode(item, report)
                usage.encoded_media += 1
            except Stopped:  # Ctrl-C: what is evaluated so far stays valid
                self._truncate(len(self._cache))
                raise KeyboardInterrupt from None
            except GenerationError as e:
                self._fail(str(e))
        new_n_past = llama.llama_pos(self._n_past)
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd,
            self._ctx,
            item.chunk,
            embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            self._n_past,
            0,
            self.n_batch,
            ctypes.byref(new_n_past),
            _NO_CALLBACK,
            None,
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

    def _generate(
        self, options: GenerationOptions, grammar: str | None, usage: Usage, timings: Timings, t_start: float
    ) -> Iterator[Event]:
        sampler = _lib.make_sampler(self._vocab, options, grammar)
        # greedy with nothing else in the chain: the largest logit, as llama.cpp's greedy sampler picks it
        # (the first of equals), without building a candidate list over the whole vocabulary per token
        plain_greedy = options.plain_greedy
        text = TextStream(tuple(options.stop) + self._extra_stop)
        finish = "length"
        self.last_tokens = []
        # greedy answers are drafted from the prompt (drafts.py): tokens the model has checked wait here,
        # with whether they are in the KV cache already (an accepted draft) or not (the model's next pick)
        lookup = self._lookup() if plain_greedy and self.draft else None
        ahead: list[tuple[int, bool]] = []
        t0 = time.perf_counter()
        try:
            yield Started(usage, timings)
            for emitted in range(options.max_tokens):
                with self._lock:
                    token, in_cache = ahead.pop(0) if ahead else (-1, False)
                    if not in_cache and self._n_past >= self.n_ctx:
                        break
                    if token < 0:
                        token = self._argmax() if plain_greedy else llama.llama_sampler_sample(sampler, self._ctx, -1)
                    if llama.llama_vocab_is_eog(self._vocab, token) and not options.ignore_eos:
                        finish = "stop"
                        break
                    usage.completion_tokens += 1
                    self.last_tokens.append(token)
                    delta = text.feed(_lib.token_bytes(self._vocab, token))
                if delta:
                    if not timings.first_token:
                        timings.first_token = time.perf_counter() - t_start
                    yield delta
                if text.stopped:
                    finish = "stop"
                    break
                if in_cache:
                    continue
                with self._lock:
                    if lookup is not None:
                        ahead = self._check_draft(token, lookup, options.max_tokens - emitted - 1, usage)
                        continue
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

    def _argmax(self, i: int = -1) -> int:
        logits = llama.llama_get_logits_ith(self._ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(logits, shape=(self._n_vocab,))))

    def _lookup(self) -> PromptLookup:
        """The prompt as the KV cache holds it, for drafting (a medium is a gap)."""
        tokens = (GAP if isinstance(i, MediaItem) else i for i in self._cache)
        return PromptLookup(tokens, length=self.draft, min_match=self.draft_min)

    def _check_draft(self, token: int, lookup: PromptLookup, room: int, usage: Usage) -> list[tuple[int, bool]]:
        """Evaluate `token` and a draft after it in one batch; what the model agrees with stays in the
        KV cache. The tokens that follow: the accepted draft (cached), then the model's own next pick."""
        lookup.extend([token])
        draft = lookup.propose(min(room, self.n_ctx - self._n_past - 1))
        if _lib.decode_tokens(self._ctx, [token, *draft], self._n_past, logits_last=True, logits_all=True) != 0:
            self._fail("llama.cpp failed while generating (code != 0)")
        picks = [self._argmax(i) for i in range(len(draft) + 1)]
        kept = next((i for i, (d, p) in enumerate(zip(draft, picks)) if d != p), len(draft))
        self._n_past += 1 + kept
        self._cache.extend([token, *draft[:kept]])
        if kept < len(draft):  # the rest of the draft leaves the KV cache
            llama.llama_memory_seq_rm(llama.llama_get_memory(self._ctx), 0, self._n_past, -1)
        lookup.extend(draft[:kept])
        usage.draft_accepted += kept
        usage.draft_rejected += len(draft) - kept
        return [(d, True) for d in draft[:kept]] + [(picks[kept], False)]

    def close(self) -> None:
        if getattr(self, "_cache", None) is not None:
            self._cache.clear()
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


def _n_pos(item: PromptItem) -> int:
    return item.n_pos if isinstance(item, MediaItem) else 1
