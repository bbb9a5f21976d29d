"""A text model and its projector checked against each other from their GGUF headers, before
llama.cpp sees either file.

libmtmd compares the widths itself, but only after building the projector's graph, and it
trusts much else: a projector file cut short is read as if whole (clip.cpp never checks its
reads), a Qwen-VL projector on a plain-RoPE model answers without a word, and several other
mismatches end the process in a GGML_ASSERT that Python cannot catch. Every rule here is read
off llama.cpp's own sources (tools/mtmd/clip.cpp `clip_n_mmproj_embd` and its tensor names,
mtmd.cpp's n_embd check and rope types, src/llama-model.cpp `llama_model_rope_type`); a
projector type not listed is left to llama.cpp's own checks.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelLoadError
from . import gguf_info
from .gguf_info import Header

# projector type -> (the tensor whose shape gives its output width, which ne index)
_WIDTH = {
    **dict.fromkeys(("mlp", "pixtral", "lightonocr", "lfm2", "kimivl", "paddleocr", "kimik25"), ("mm.2.weight", 1)),
    "mlp_norm": ("mm.3.bias", 0),
    **dict.fromkeys(
        ("qwen2vl_merger", "qwen2.5vl_merger", "qwen3vl_merger", "exaone4_5", "youtuvl", "ling3vl"), ("mm.2.bias", 0)
    ),
    **dict.fromkeys(("gemma3", "gemma3nv"), ("mm.input_projection.weight", 0)),
    **dict.fromkeys(("gemma4v", "gemma4uv"), ("mm.input_projection.weight", 1)),
    **dict.fromkeys(("idefics3", "llama4"), ("mm.model.fc.weight", 1)),
    "internvl": ("mm.model.mlp.3.weight", 1),
    **dict.fromkeys(("glm4v", "glm5v"), ("mm.down.weight", 1)),
    "qwen2a": ("mm.a.fc.weight", 1),
    **dict.fromkeys(("ultravox", "voxtral"), ("mm.a.mlp.2.weight", 1)),
}
# Qwen-VL projectors and the text architectures their converters pair them with (conversion/qwenvl.py, qwen3vl.py)
_FAMILY = {
    **dict.fromkeys(("qwen2vl_merger", "qwen2.5vl_merger"), ("Qwen2-VL / Qwen2.5-VL", {"qwen2vl"})),
    "qwen3vl_merger": ("Qwen3-VL / Qwen3.5", {"qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe"}),
}
# projectors trained with M-RoPE decoder positions: on a plain-RoPE model libmtmd lays their tokens out flat
_MROPE_PROJECTORS = {"qwen2vl_merger", "qwen2.5vl_merger", "qwen3vl_merger", "glm4v", "paddleocr"}
_MROPE_ARCHS = {"qwen2vl", "paddleocr", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen4exp", "qwen3tts"}
_MROPE_IF_SECTIONS = {"glm4", "glm4moe", "hunyuan_vl", "bailingmoe3"}  # M-RoPE when rope sections 0 and 1 are set
_DEEPSTACK_ARCHS = {"qwen3vl", "qwen3vlmoe"}  # n_embd_inp = n_embd * (1 + n_deepstack_layers)


def check_files(model: Path, mmproj: Path | None) -> None:
    """Raise ModelLoadError (exit 2) for a file llama.cpp would misread or a pair it would misuse."""
    text = gguf_info.read_header(model)
    arch = text.metadata.get("general.architecture")
    if arch == "clip":
        raise ModelLoadError(
            f"{model} is a multimodal projector (mmproj), not a text model: "
            "pass it with --mmproj and give the text model with --model"
        )
    check_complete(text)
    if mmproj is None:
        return
    proj = gguf_info.read_header(mmproj)
    if proj.metadata.get("general.architecture") != "clip":
        raise ModelLoadError(
            f"{mmproj} is not a multimodal projector (its architecture is {proj.metadata.get('general.architecture')!r}): "
            "--mmproj takes the mmproj-*.gguf file that belongs to the model"
        )
    check_complete(proj)
    check_pair(text, proj)


def check_complete(header: Header) -> None:
    """A file shorter than its own tensor table (a cut-off download) is refused, never half-read."""
    need = header.needed_size
    if header.file_size < need:
        raise ModelLoadError(
            f"{header.path} is truncated: its tensor table needs {need} bytes but the file has {header.file_size}: "
            "download it again (`mmchat pull --verify NAME` checks a pulled model)"
        )


def check_pair(text: Header, proj: Header) -> None:
    arch = str(text.metadata.get("general.architecture"))
    name, proj_name = text.path.name, proj.path.name
    width = text_width(text)
    for modality, ptype in projector_types(proj).items():
        out = output_width(proj, ptype)
        if width and out and out != width:
            raise ModelLoadError(
                f"{proj_name} ({modality} projector {ptype}) outputs embeddings of width {out} but {name} takes "
                f"width {width}: this mmproj belongs to a model of width {out}; give the mmproj made for {name}"
            )
        family = _FAMILY.get(ptype)
        if family and arch not in family[1]:
            raise ModelLoadError(
                f"{proj_name} is a {ptype} projector for {family[0]} models (architecture {', '.join(sorted(family[1]))}) "
                f"but {name} is a {arch} model: give the mmproj made for {name}"
            )
        if ptype in _MROPE_PROJECTORS and not uses_mrope(text):
            raise ModelLoadError(
                f"{proj_name} is a {ptype} projector, which needs a text model with M-RoPE positions, but {name} "
                f"({arch}) uses plain RoPE: give the mmproj made for {name}"
            )


def text_width(text: Header) -> int | None:
    """What llama_model_n_embd_inp returns: the width of the embeddings the model takes in."""
    arch = text.metadata.get("general.architecture")
    n_embd = text.metadata.get(f"{arch}.embedding_length")
    if not isinstance(n_embd, int):
        return None
    deepstack = text.metadata.get(f"{arch}.n_deepstack_layers", 0) if arch in _DEEPSTACK_ARCHS else 0
    return n_embd * (1 + (deepstack if isinstance(deepstack, int) else 0))


def uses_mrope(text: Header) -> bool:
    """llama_model_rope_type() is M-RoPE or IMRoPE for this model."""
    arch = text.metadata.get("general.architecture")
    if arch in _MROPE_ARCHS:
        return True
    sections = text.metadata.get(f"{arch}.rope.dimension_sections")
    return (
        arch in _MROPE_IF_SECTIONS
        and isinstance(sections, list)
        and len(sections) > 1
        and sections[0] > 0 < sections[1]
    )


def projector_types(proj: Header) -> dict[str, str]:
    """{modality: projector type}, as clip.cpp reads them: the global key wins for every modality."""
    meta = proj.metadata
    types = {}
    for modality in ("vision", "audio"):
        if meta.get(f"clip.has_{modality}_encoder") is True:
            ptype = meta.get("clip.projector_type") or meta.get(f"clip.{modality}.projector_type")
            if ptype == "qwen2.5o":  # Qwen2.5-Omni: one name for two encoders
                ptype = "qwen2.5vl_merger" if modality == "vision" else "qwen2a"
            if isinstance(ptype, str):
                types[modality] = ptype
    return types


def output_width(proj: Header, ptype: str) -> int | None:
    """clip_n_mmproj_embd() from the tensor table, or None for a type or layout not known here."""
    if ptype not in _WIDTH:
        return None
    name, axis = _WIDTH[ptype]
    tensor = proj.tensors.get(name)
    if tensor is None or len(tensor.ne) <= axis:
        return None
    width = tensor.ne[axis]
    if ptype == "qwen3vl_merger":  # main path + one per vision layer with a deepstack merger
        width *= 1 + sum(1 for t in proj.tensors if t.startswith("v.deepstack.") and t.endswith(".fc1.weight"))
    return width
