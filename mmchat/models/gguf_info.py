"""Read a GGUF file's metadata header without llama.cpp, for clear errors before loading.

llama.cpp answers a wrong file with a NULL and a log line; reading the header first lets
mmchat say "this is an mmproj, not a text model" or "this is not a GGUF file at all".
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY_KEEP = 64  # long arrays (vocabularies) are skipped, not kept
_DEFAULT_ALIGNMENT = 32
# ggml type id -> (elements per block, bytes per block), as ggml.c's type_traits has them (the gguf
# package's GGML_QUANT_SIZES, which a test compares, plus Q2_0); a type not here is not size-checked
GGML_BLOCKS = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
    42: (64, 18),
}


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int) -> Any:
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        etype, count = _read(f, "<I"), _read(f, "<Q")
        if etype in _SCALARS and count > _MAX_ARRAY_KEEP:
            f.seek(struct.calcsize(_SCALARS[etype]) * count, 1)
            return None
        if etype == _STRING and count > _MAX_ARRAY_KEEP:  # a vocabulary: skipped string by string
            for _ in range(count):
                f.seek(_read(f, "<Q"), 1)
            return None
        items = [_value(f, etype) for _ in range(count)]
        return items if count <= _MAX_ARRAY_KEEP else None
    raise ValueError(f"unknown GGUF value type {vtype}")


@dataclass(frozen=True)
class Tensor:
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length (numpy's last axis)
    ggml_type: int
    offset: int  # from the start of the data section

    @property
    def nbytes(self) -> int | None:
        """Bytes of data, or None for a ggml type this module does not know."""
        if self.ggml_type not in GGML_BLOCKS:
            return None
        per_block, block_bytes = GGML_BLOCKS[self.ggml_type]
        return math.prod(self.ne) // per_block * block_bytes


@dataclass(frozen=True)
class Header:
    """Metadata and tensor table of one GGUF file, and how long the file is against how long it must be."""

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, Tensor] = field(default_factory=dict)
    data_start: int = 0
    file_size: int = 0

    @property
    def needed_size(self) -> int:
        """The bytes the tensor table says the file holds (tensors of unknown types counted from their offset)."""
        ends = [t.offset + (t.nbytes or 0) for t in self.tensors.values()]
        return self.data_start + max(ends, default=0)


def _open_gguf(f: BinaryIO, path: Path) -> tuple[int, int]:
    """Check the magic and version; (tensor count, key count)."""
    if f.read(4) != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file: give a .gguf model from llama.cpp or Hugging Face")
    version = _read(f, "<I")
    if version < 2:
        raise ModelLoadError(f"{path} is GGUF version {version}, too old for llama.cpp: convert it again")
    return _read(f, "<Q"), _read(f, "<Q")


def _tensor_info(f: BinaryIO) -> tuple[str, Tensor]:
    name = _string(f)
    n_dims = _read(f, "<I")
    if n_dims > 8:
        raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
    ne = tuple(_read(f, "<Q") for _ in range(n_dims))
    return name, Tensor(ne, _read(f, "<I"), _read(f, "<Q"))


def read_header(path: str | Path) -> Header:
    """All metadata (long arrays left out) and the tensor table. Raises ModelLoadError."""
    path = Path(path)

    def read(f: BinaryIO) -> Header:
        n_tensors, n_kv = _open_gguf(f, path)
        meta = {_string(f): _value(f, _read(f, "<I")) for _ in range(n_kv)}
        tensors = dict(_tensor_info(f) for _ in range(n_tensors))
        alignment = meta.get("general.alignment")
        alignment = alignment if isinstance(alignment, int) and alignment > 0 else _DEFAULT_ALIGNMENT
        start = -(-f.tell() // alignment) * alignment
        return Header(path, meta, tensors, start, path.stat().st_size)

    return _guarded(path, read)


def read_metadata(path: str | Path, keys: set[str] | None = None) -> dict[str, Any]:
    """The key/value header of a GGUF file (only `keys`, when given). Raises ModelLoadError."""
    path = Path(path)

    def read(f: BinaryIO) -> dict[str, Any]:
        _, n_kv = _open_gguf(f, path)
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = _string(f)
            value = _value(f, _read(f, "<I"))
            if keys is None or key in keys:
                meta[key] = value
                if keys is not None and len(meta) == len(keys):
                    break
        return meta

    return _guarded(path, read)


def _guarded(path: Path, read):
    """`read(open file)`, with every way a file can fail to be a GGUF file as one ModelLoadError."""
    try:
        with open(path, "rb") as f:
            return read(f)
    except (EOFError, ValueError, UnicodeDecodeError, MemoryError, OverflowError) as e:  # lengths past the end
        raise ModelLoadError(
            f"{path} is a damaged or truncated GGUF file ({e or 'ends early'}): download it again"
        ) from None
    except IsADirectoryError:
        raise ModelLoadError(f"{path} is a directory, not a GGUF file") from None
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {path}") from None
    except PermissionError:
        raise ModelLoadError(f"cannot read {path}: permission denied") from None


def architecture(path: str | Path) -> str | None:
    return read_metadata(path, {"general.architecture"}).get("general.architecture")
