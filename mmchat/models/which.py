"""`Which`: models named the way mistral.rs's Python API names them, resolved to GGUF files.

Code written from mistral.rs's guides says `Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct",
arch=MultimodalArchitecture.Qwen3VL)` with `in_situ_quant="4"`: the id of the original safetensors
model and a bit width to quantize it to. mmchat runs llama.cpp, so the registry (models.toml's
`original`) maps the id to its GGUF repository and the bit width picks one of its files: "4" takes
the repository's 4-bit file (Q4_K_M, else Q4_0, ...: ggml-org's Gemma 4 E2B has Q4_0 and no
Q4_K_M). The GGUF's own metadata decides what runs; `arch` is only checked against it.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..errors import InputError, ModelNotFound
from . import hubfiles, pulls, registry
from .gguf_info import architecture, read_metadata
from .hubfiles import Want

log = logging.getLogger("mmchat.models")


class Architecture(enum.Enum):
    """Text-model families, as mistral.rs's `Architecture` names them."""

    Mistral = "mistral"
    Gemma = "gemma"
    Mixtral = "mixtral"
    Llama = "llama"
    Phi2 = "phi2"
    Phi3 = "phi3"
    Qwen2 = "qwen2"
    Gemma2 = "gemma2"
    Starcoder2 = "starcoder2"
    Phi3_5MoE = "phi3.5moe"
    DeepseekV2 = "deepseekv2"
    DeepseekV3 = "deepseekv3"
    Qwen3 = "qwen3"
    GLM4 = "glm4"
    GLM4Moe = "glm4moe"
    Qwen3Moe = "qwen3moe"
    SmolLm3 = "smollm3"
    GraniteMoeHybrid = "granitemoehybrid"
    GptOss = "gptoss"
    Qwen3Next = "qwen3next"


class MultimodalArchitecture(enum.Enum):
    """Multimodal families, as mistral.rs's `MultimodalArchitecture` names them."""

    Phi3V = "phi3v"
    Idefics2 = "idefics2"
    LLaVANext = "llava-next"
    LLaVA = "llava"
    VLlama = "vllama"
    Qwen2VL = "qwen2vl"
    Idefics3 = "idefics3"
    MiniCpmO = "minicpmo"
    Phi4MM = "phi4mm"
    Qwen2_5VL = "qwen2_5vl"
    Gemma3 = "gemma3"
    Mistral3 = "mistral3"
    Llama4 = "llama4"
    Gemma3n = "Gemma3n"
    Qwen3VL = "Qwen3VL"
    Qwen3VLMoE = "Qwen3VLMoE"
    Qwen3_5 = "Qwen3_5"
    Qwen3_5Moe = "Qwen3_5Moe"
    Voxtral = "Voxtral"
    Gemma4 = "Gemma4"


VisionArchitecture = MultimodalArchitecture  # mistral.rs's older name, used with Which.VisionPlain

# What llama.cpp writes into the GGUFs of each family: the text model's general.architecture
# (Architecture) and the projector's clip.*projector_type (MultimodalArchitecture), from
# llama.cpp's convert_hf_to_gguf.py and tools/mtmd/clip-impl.h. A family missing here is not checked.
_TEXT_ARCHS: dict[Architecture, tuple[str, ...]] = {
    Architecture.Mistral: ("llama", "mistral"),
    Architecture.Gemma: ("gemma",),
    Architecture.Mixtral: ("llama",),
    Architecture.Llama: ("llama",),
    Architecture.Phi2: ("phi2",),
    Architecture.Phi3: ("phi3",),
    Architecture.Qwen2: ("qwen2",),
    Architecture.Gemma2: ("gemma2",),
    Architecture.Starcoder2: ("starcoder2",),
    Architecture.Phi3_5MoE: ("phimoe",),
    Architecture.DeepseekV2: ("deepseek2",),
    Architecture.DeepseekV3: ("deepseek2",),
    Architecture.Qwen3: ("qwen3",),
    Architecture.GLM4: ("glm4",),
    Architecture.GLM4Moe: ("glm4moe",),
    Architecture.Qwen3Moe: ("qwen3moe",),
    Architecture.SmolLm3: ("smollm3",),
    Architecture.GraniteMoeHybrid: ("granitehybrid",),
    Architecture.GptOss: ("gpt-oss",),
    Architecture.Qwen3Next: ("qwen3next",),
}
_PROJECTORS: dict[str, tuple[MultimodalArchitecture, ...]] = {
    "qwen2vl_merger": (MultimodalArchitecture.Qwen2VL,),
    "qwen2.5vl_merger": (MultimodalArchitecture.Qwen2_5VL,),
    "qwen3vl_merger": (MultimodalArchitecture.Qwen3VL, MultimodalArchitecture.Qwen3VLMoE),
    "gemma3": (MultimodalArchitecture.Gemma3,),
    "gemma3nv": (MultimodalArchitecture.Gemma3n,),
    "gemma3na": (MultimodalArchitecture.Gemma3n,),
    "gemma4v": (MultimodalArchitecture.Gemma4,),
    "gemma4a": (MultimodalArchitecture.Gemma4,),
    "gemma4uv": (MultimodalArchitecture.Gemma4,),
    "gemma4ua": (MultimodalArchitecture.Gemma4,),
    "phi4": (MultimodalArchitecture.Phi4MM,),
    "idefics3": (MultimodalArchitecture.Idefics3,),
    "pixtral": (MultimodalArchitecture.Mistral3,),
    "llama4": (MultimodalArchitecture.Llama4,),
    "voxtral": (MultimodalArchitecture.Voxtral,),
    "resampler": (MultimodalArchitecture.MiniCpmO,),
    "mlp": (MultimodalArchitecture.LLaVA, MultimodalArchitecture.LLaVANext),
}
_PROJECTOR_KEYS = {"clip.projector_type", "clip.vision.projector_type", "clip.audio.projector_type"}


class Which:
    """Which model to run, in mistral.rs's words. Fields mmchat has no use for are not accepted."""

    @dataclass(frozen=True)
    class Plain:
        model_id: str
        arch: Architecture | None = None

    @dataclass(frozen=True)
    class MultimodalPlain:
        model_id: str
        arch: MultimodalArchitecture | None = None

    @dataclass(frozen=True)
    class VisionPlain:
        model_id: str
        arch: MultimodalArchitecture

    @dataclass(frozen=True)
    class GGUF:
        quantized_model_id: str  # a GGUF repository, or a local folder
        quantized_filename: str | list[str]  # a split model's parts: the first one is loaded
        tok_model_id: str | None = None  # unused: a GGUF carries its own tokenizer and template


#: a model named as mistral.rs's `Which` does: one of its variants
WhichModel = Union[Which.Plain, Which.MultimodalPlain, Which.VisionPlain, Which.GGUF]

# -- in_situ_quant -> a GGUF quantization --------------------------------------------------------

# A bit width stands for the GGUF files of that width, best first (the 4-bit ones in the order
# hubfiles.QUANT_ORDER gives them); mistral.rs's K-quant names ("Q4K") for the K-quants of it.
ISQ_TO_GGUF: dict[str, tuple[str, ...]] = {
    "2": ("Q2_K", "Q2_K_S", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS"),
    "3": ("Q3_K_M", "Q3_K_S", "Q3_K_L", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS"),
    "4": ("Q4_K_M", "Q4_0", "Q4_K_S", "Q4_1", "IQ4_XS", "IQ4_NL"),
    "5": ("Q5_K_M", "Q5_0", "Q5_K_S", "Q5_1"),
    "6": ("Q6_K",),
    "8": ("Q8_0",),
    "Q2K": ("Q2_K", "Q2_K_S"),
    "Q3K": ("Q3_K_M", "Q3_K_S", "Q3_K_L"),
    "Q4K": ("Q4_K_M", "Q4_K_S"),
    "Q5K": ("Q5_K_M", "Q5_K_S"),
    "Q6K": ("Q6_K",),
    "Q8K": ("Q8_0",),
}
_GGUF_QUANT = re.compile(r"i?q\d+(_[a-z0-9]+)*|bf16|f16|f32", re.IGNORECASE)


def gguf_quant(in_situ_quant: str | int | None) -> Want | None:
    """The GGUF files an in_situ_quant stands for: "4" -> a 4-bit file (Q4_K_M, else Q4_0, ...), a GGUF
    name as is. Either way it was named: a repository without it is an error, not a fallback."""
    if in_situ_quant is None:
        return None
    text = str(in_situ_quant).strip()
    if text.upper() in ISQ_TO_GGUF:
        quants = ISQ_TO_GGUF[text.upper()]
        label = (
            quants[0]
            if len(quants) == 1
            else f"{text}-bit"
            if text.isdigit()
            else f"{text.upper()} ({'/'.join(quants)})"
        )
        return Want(quants, named=True, label=label)
    if _GGUF_QUANT.fullmatch(text):
        return Want((text.upper(),), named=True)
    raise InputError(
        f"in_situ_quant={in_situ_quant!r} is not a GGUF quantization: mmchat runs llama.cpp's ready-made GGUF "
        f'files instead of quantizing safetensors; give "4" (a 4-bit file: Q4_K_M, else Q4_0, ...), "8" (Q8_0), '
        f"another bit width ({', '.join(k for k in ISQ_TO_GGUF if k.isdigit())}) or a GGUF name such as Q5_K_M"
    )


# -- resolving --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    model: Path
    mmproj: Path | None


def find_files(which: object, in_situ_quant: str | int | None = None, *, progress: bool = True) -> Found:
    """The GGUF files a `Which` names: from the Hugging Face cache, else downloaded (progress on stderr)."""
    quant = gguf_quant(in_situ_quant)
    if isinstance(which, Which.GGUF):
        if quant is not None:
            raise InputError("in_situ_quant= picks a file of a model_id; Which.GGUF names its file already: drop one")
        found = _named_file(which, progress=progress)
    elif isinstance(which, (Which.Plain, Which.MultimodalPlain, Which.VisionPlain)):
        found = _by_model_id(which.model_id, quant, in_situ_quant, progress=progress)
    else:
        raise InputError(
            f"which= is a Which.Plain, Which.MultimodalPlain, Which.VisionPlain or Which.GGUF, not {type(which).__name__}"
        )
    check_arch(which, found)
    return found


def _by_model_id(model_id: str, quant: Want | None, isq: object, *, progress: bool) -> Found:
    path = Path(model_id).expanduser()
    if path.is_file():
        return Found(path, hubfiles.projector_beside(path))
    if path.is_dir():
        return _in_folder(path, quant)
    known = registry.load_registry()  # once, so a broken user file warns once
    spec = _spec_for(model_id, known)
    try:
        got = registry.find_local(spec, quant=quant, known=known)
    except registry.NotDownloaded as e:
        if _offline() and quant is not None:
            cached = sorted(registry.cached_repo_files(e.entry.repo))
            if hubfiles.model_files(cached) and hubfiles.pick_model(cached, quant).path is None:
                raise _no_quant(
                    e.entry.repo,
                    quant,
                    isq,
                    hubfiles.available_quants(cached, near=quant.quants[0]),
                    " in the Hugging Face cache (HF_HUB_OFFLINE is set)",
                ) from None
        try:
            got = pulls.download_model(e.spec, quant=quant, progress=progress, known=known)
        except registry.QuantNotFound as missing:
            raise _no_quant(missing.repo, quant or hubfiles.wanted(missing.quant), isq, missing.quants, "") from None
    return Found(got.model, got.mmproj)


def _spec_for(model_id: str, known: registry.Registry) -> str:
    """The registry name or hf: form that holds the GGUFs of `model_id`."""
    entry = known.by_original(model_id) or known.get(model_id) or known.by_repo(model_id)
    if entry is not None:
        return entry.name
    if model_id.lower().endswith("gguf") and model_id.count("/") == 1:
        return registry.HF_PREFIX + model_id
    raise ModelNotFound(
        f"no GGUF repository is known for {model_id}: mmchat runs llama.cpp GGUF files; `mmchat models` lists the "
        f'models it knows, or name a GGUF repo (model_id="owner/name-GGUF", or Which.GGUF(quantized_model_id=..., '
        f'quantized_filename=...)), or add original = "{model_id}" to an entry in {registry.user_file()}'
    )


def _no_quant(repo: str, want: Want, isq: object, quants: list[str], where: str) -> ModelNotFound:
    have = f"it has {', '.join(quants)} (nearest in size first)" if quants else "it has no GGUF model file"
    return ModelNotFound(
        f"{repo} has no {want.text} GGUF{where} (in_situ_quant={isq!r}): {have}; give one of those as "
        f'in_situ_quant ("4" takes a 4-bit file, "8" Q8_0)'
    )


def _in_folder(folder: Path, want: Want | None) -> Found:
    names = sorted(p.name for p in folder.glob("*.gguf"))
    quants = hubfiles.available_quants(names, near=want.quants[0] if want else None)
    if want is None and len(quants) == 1:
        want = Want((quants[0],))
    model = hubfiles.pick_model(names, want).path if want else None
    if model is None:
        have = f"it has {', '.join(quants)}: pick one with in_situ_quant" if quants else "it holds no GGUF model file"
        raise ModelNotFound(f"no {want.text if want else 'single'} GGUF model in {folder}: {have}")
    mmproj = hubfiles.pick_projector(names, model)
    return Found(folder / model, folder / mmproj if mmproj else None)


def _named_file(which: Which.GGUF, *, progress: bool) -> Found:
    """Which.GGUF: that file of a local folder or of a repository (cached, else downloaded), and its projector."""
    names = [which.quantized_filename] if isinstance(which.quantized_filename, str) else list(which.quantized_filename)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InputError("quantized_filename= is a GGUF file name (or the list of a split model's parts)")
    folder = Path(which.quantized_model_id).expanduser()
    if folder.is_dir():
        model = folder / names[0]
        if not model.is_file():
            raise ModelNotFound(f"model file not found: {model}")
        return Found(model, hubfiles.projector_beside(model))
    from .download import fetch, hub_session

    repo = which.quantized_model_id
    with hub_session(repo, f"{repo}/{names[0]}", progress=progress):
        listing, hashes = _listing(repo)
        if names[0] not in listing:
            ggufs = [f for f in listing if f.lower().endswith(".gguf")]
            raise ModelNotFound(f"{repo} has no file {names[0]}: it has {', '.join(ggufs) or 'no GGUF files'}")
        paths = [fetch(repo, n, hashes.get(n)) for n in names]  # checked against the Hub's sha256, as pulls are
        mmproj = hubfiles.pick_projector(listing, names[0], repo)
        return Found(paths[0], fetch(repo, mmproj, hashes.get(mmproj)) if mmproj else None)


def _listing(repo: str) -> tuple[list[str] | dict[str, int | None], dict]:
    """A repository's file names and their hashes: from the cache when offline (no hashes), else from the Hub."""
    from .download import hub_files

    if _offline():
        cached = sorted(registry.cached_repo_files(repo))
        if not cached:
            raise ModelNotFound(
                f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: unset it to download"
            )
        return cached, {}
    return hub_files(repo)


def _offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it (the library, not mmchat, reads the environment)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


# -- the architecture the caller named, against the GGUF's own -----------------------------------


def check_arch(which: object, found: Found) -> None:
    """Warn, in one line, when `arch` names another family than the GGUF's metadata: the GGUF runs."""
    arch = getattr(which, "arch", None)
    if arch is None:
        return
    text = architecture(found.model)
    if isinstance(arch, Architecture):
        expected = _TEXT_ARCHS.get(arch)
        if expected and text not in expected:
            log.warning(f"arch={arch} but {found.model.name} is a {text} model: running what the GGUF says")
        return
    if not isinstance(arch, MultimodalArchitecture):
        raise InputError(
            f"arch= is a MultimodalArchitecture member (e.g. MultimodalArchitecture.Qwen3VL), not {arch!r}"
        )
    if found.mmproj is None:
        return
    meta = read_metadata(found.mmproj, _PROJECTOR_KEYS)
    projectors = sorted({str(meta[k]) for k in _PROJECTOR_KEYS if k in meta})
    families = {f for p in projectors for f in _PROJECTORS.get(p, ())}
    if families and arch not in families:
        named = " or ".join(sorted(f.name for f in families))
        log.warning(
            f"arch={arch} but the GGUF is {named} (projector {', '.join(projectors)}, text model {text}): "
            "running what the GGUF says"
        )
