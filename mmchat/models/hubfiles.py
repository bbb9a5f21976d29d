"""Which files of a GGUF repository (or folder) are the chat model and its projector: the one place.

The registry (pulls, the cache), `Which` (mistral.rs names) and `mmchat models --check` all choose
files with these rules, so what runs is what was checked. They follow llama.cpp's `-hf` download
(common/download.cpp in the vendored llama.cpp: find_best_model, gguf_filename_is_model,
get_gguf_split_info), with three differences a user of a registry needs:

- A quant is matched as a whole token of the file name (`Q4_K` is not `Q4_K_M`, `Q4_XS` is not
  `IQ4_XS`), case-insensitively: ggml-org's Gemma 4 E2B repo has named the same file
  `gemma-4-e2b-it-Q8_0.gguf` and `gemma-4-E2B-it-Q8_0.gguf` at different revisions.
- When the registry's own quant is missing, the nearest one along QUANT_ORDER is taken (llama.cpp
  tries Q4_K_M, then Q8_0, then the first file listed, which on ggml-org/gemma-4-E2B-it-GGUF would
  be a 9 GB BF16 or an MTP drafter); a quant the user named never falls back.
- The projector is chosen by a per-model preference where the model's makers state one, else
  F16 > BF16 > Q8_0 (llama.cpp takes the one nearest the model's bit width).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# When the registry's quant is not in a repository, the first of these it has is taken. Quality
# first among the 4-bit files (llama.cpp's -hf default is Q4_K_M), then more bits, then 16-bit.
QUANT_ORDER = ("Q4_K_M", "Q4_0", "Q4_K_S", "Q5_K_M", "Q5_0", "Q6_K", "Q8_0", "F16", "BF16")

# Projector precision, best first, when nothing is known about the model: a projector is small
# next to the model and quantizing it costs more than quantizing the model does.
PROJECTOR_ORDER = ("F16", "BF16", "Q8_0")

# Where a model's makers say which projector to use. Gemma 4's audio encoder (a USM conformer)
# degrades below BF16: llama.cpp PR #21421 ("mtmd: add Gemma 4 audio conformer encoder support"):
# "It is recommended to use BF16 mmproj. Other quantizations are known to have degraded performance."
# Matched against the model file's name and the repository's.
PROJECTOR_PREFERENCES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"gemma-?4", re.IGNORECASE), ("BF16", "F16", "Q8_0")),
)

# Files that are GGUFs but not the chat model. llama.cpp's gguf_filename_is_model() skips names
# containing mmproj, imatrix, mtp-, eagle3-, dflash- and dspark- (speculative-decoding drafters:
# ggml-org/gemma-4-E2B-it-GGUF publishes mtp-gemma-4-E2B-it-Q4_0.gguf and -Q8_0.gguf next to the
# model); "draft" covers the drafters other repos publish as *-draft-*.gguf.
_NOT_MODEL_CASED = ("mtp-", "eagle3-", "dflash-", "dspark-")  # as llama.cpp compares: case-sensitive
_NOT_MODEL = re.compile(r"mmproj|imatrix|draft", re.IGNORECASE)

# A quant as it appears in a file name: Q4_K_M, IQ4_XS, Q8_0, F16, BF16, F32 (not part of a longer word).
_QUANT = re.compile(r"(?<![a-z0-9])(i?q\d+(?:_[a-z0-9]+)*|bf16|f16|f32)(?![a-z0-9])", re.IGNORECASE)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)

# Size of each quant relative to the others: GB of Llama-3-8B at that quant, from llama.cpp's
# tools/quantize/quantize.cpp QUANT_OPTIONS (bits-per-weight rows converted at 8.03 B parameters).
_SIZE_AT_8B = {
    "IQ1_S": 1.57,
    "IQ1_M": 1.76,
    "IQ2_XXS": 2.07,
    "IQ2_XS": 2.32,
    "IQ2_S": 2.51,
    "IQ2_M": 2.71,
    "Q2_K": 2.96,
    "Q2_K_S": 2.96,
    "IQ3_XXS": 3.07,
    "IQ3_XS": 3.31,
    "Q3_K_S": 3.41,
    "IQ3_S": 3.45,
    "IQ3_M": 3.67,
    "Q3_K_M": 3.74,
    "Q3_K_L": 4.03,
    "IQ4_XS": 4.27,
    "Q4_0": 4.34,
    "Q4_K_S": 4.37,
    "IQ4_NL": 4.52,
    "Q4_K_M": 4.58,
    "Q4_1": 4.78,
    "Q5_0": 5.21,
    "Q5_K_S": 5.21,
    "Q5_K_M": 5.33,
    "Q5_1": 5.65,
    "Q6_K": 6.14,
    "Q8_0": 7.96,
    "F16": 16.06,
    "BF16": 16.06,
    "F32": 32.12,
}


@dataclass(frozen=True)
class Want:
    """The quant a caller wants. `quants`: acceptable ones, best first. `named`: the user asked for
    it (missing is an error); otherwise it is the registry's choice, which falls back."""

    quants: tuple[str, ...]
    named: bool = True
    label: str = ""  # how messages name it; default: the first quant

    @property
    def text(self) -> str:
        return self.label or self.quants[0]


def wanted(quant: str | Want, *, named: bool = True) -> Want:
    return quant if isinstance(quant, Want) else Want((quant.upper(),), named=named)


# -- names -------------------------------------------------------------------------------------


def basename(path: str) -> str:
    return PurePosixPath(path).name


def is_gguf(path: str) -> bool:
    return path.lower().endswith(".gguf")


def is_projector(path: str) -> bool:
    return is_gguf(path) and "mmproj" in basename(path).lower()


def is_chat_model(path: str) -> bool:
    """A GGUF that is a model to chat with: not a projector, drafter or importance matrix."""
    name = basename(path)
    return is_gguf(path) and not _NOT_MODEL.search(name) and not any(k in name for k in _NOT_MODEL_CASED)


def split_of(path: str) -> tuple[int, int] | None:
    """(part, of) for a split GGUF (name-00001-of-00003.gguf), else None."""
    m = _SPLIT.search(path)
    return (int(m.group(1)), int(m.group(2))) if m else None


def quants_in(path: str) -> list[str]:
    """The quants a file's name carries, upper-case (usually one)."""
    stem = _SPLIT.sub("", basename(path))
    stem = stem[:-5] if is_gguf(stem) else stem
    return [m.group(1).upper() for m in _QUANT.finditer(stem)]


def quant_of(path: str) -> str | None:
    """The quant a file is in: the last one its name carries (Qwen3VL-2B-Instruct-Q4_K_M -> Q4_K_M)."""
    found = quants_in(path)
    return found[-1] if found else None


def relative_size(quant: str) -> float:
    """How big a file of this quant is next to others of the same model (GB of an 8B model)."""
    if quant in _SIZE_AT_8B:
        return _SIZE_AT_8B[quant]
    bits = re.search(r"\d+", quant)
    return int(bits.group()) * 8.03 / 8 if bits else 16.0


def by_nearness(quants: Iterable[str], to: str) -> list[str]:
    """`quants` nearest in size to `to` first (the smaller of two as near)."""
    target = relative_size(to.upper())
    return sorted(set(quants), key=lambda q: (abs(relative_size(q) - target), relative_size(q), q))


# -- models ------------------------------------------------------------------------------------


def model_files(paths: Iterable[str]) -> dict[str, list[str]]:
    """{quant: first files of the chat models in it}; a split model is listed by its first part."""
    found: dict[str, list[str]] = {}
    for path in paths:
        if not is_chat_model(path) or ((part := split_of(path)) and part[0] != 1):
            continue
        for quant in dict.fromkeys(quants_in(path)):
            found.setdefault(quant, []).append(path)
    return found


def available_quants(paths: Iterable[str], near: str | None = None) -> list[str]:
    """The quants of a repository's chat models: nearest in size to `near` first, else smallest first."""
    quants = list(model_files(paths))
    if near is not None:
        return by_nearness(quants, near)
    return sorted(quants, key=lambda q: (relative_size(q), q))


@dataclass(frozen=True)
class ModelPick:
    path: str | None
    quant: str | None  # the quant taken
    fell_back: bool = False  # the wanted quant was missing; `quant` is the nearest along QUANT_ORDER


def pick_model(paths: Iterable[str], want: str | Want) -> ModelPick:
    """The chat model file for `want` among a repository's files (its first part when split)."""
    want = wanted(want)
    files = model_files(paths)
    for quant in want.quants:
        if quant.upper() in files:
            return ModelPick(_best(files[quant.upper()]), quant.upper())
    if want.named or not files:
        return ModelPick(None, None)
    order = [q for q in QUANT_ORDER if q in files] or by_nearness(files, want.quants[0])
    return ModelPick(_best(files[order[0]]), order[0], fell_back=True)


def _best(paths: list[str]) -> str:
    """Of several files of one quant: the one nearest the repository's root, then the shortest name."""
    return min(paths, key=lambda p: (p.count("/"), len(p), p))


def shards(model: str, paths: Iterable[str]) -> list[str]:
    """Every part of a split GGUF, in order, or just the file."""
    m = _SPLIT.search(model)
    if not m:
        return [model]
    stem = model[: m.start()]
    return sorted(p for p in paths if p.startswith(stem) and (s := split_of(p)) and s[1] == int(m.group(2)))


# -- projectors --------------------------------------------------------------------------------


def projector_order(*names: str) -> tuple[str, ...]:
    """The projector precisions to try, best first, for a model known by these names (file, repo)."""
    for pattern, order in PROJECTOR_PREFERENCES:
        if any(pattern.search(n) for n in names if n):
            return order
    return PROJECTOR_ORDER


def pick_projector(paths: Iterable[str], model: str | None = None, repo: str = "") -> str | None:
    """The projector for `model` among a repository's (or folder's) files: in the model's folder if
    one is there, by the model's projector preference, then more bits before fewer."""
    projectors = [p for p in paths if is_projector(p)]
    if model is not None:
        folder = str(PurePosixPath(model).parent)
        beside = [p for p in projectors if str(PurePosixPath(p).parent) == folder]
        projectors = beside or projectors
    if not projectors:
        return None
    order = projector_order(basename(model or ""), repo)

    def rank(path: str) -> tuple[int, float, int, str]:
        quant = quant_of(path)
        known = order.index(quant) if quant in order else len(order)
        return known, -relative_size(quant) if quant else 0.0, len(path), path

    return min(projectors, key=rank)


def projector_beside(model: Path) -> Path | None:
    """The projector in a local model file's folder, chosen by the same rules: of several
    quantizations of one projector the preferred one; none (a warning logged) when they are different
    projectors (a vision and an audio one), as no rule can tell which belongs to the model."""
    names = sorted(p.name for p in model.parent.glob("*.gguf") if is_projector(p.name))
    if len({_QUANT.sub("", name[:-5]).lower() for name in names}) > 1:
        logging.getLogger("mmchat.models").warning(
            f"{len(names)} different projectors beside {model.name} ({', '.join(names)}): "
            "loading it text-only; give one with --mmproj"
        )
        return None
    found = pick_projector(names, model.name)
    return model.parent / found if found else None


def total_size(files: Iterable[str], sizes: Mapping[str, int | None]) -> int | None:
    """Bytes of these files by a listing's sizes; None when any is unknown."""
    total = 0
    for f in files:
        size = sizes.get(f)
        if size is None:
            return None
        total += size
    return total
