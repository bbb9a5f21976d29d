"""Read a GGUF file's metadata header without llama.cpp, for clear errors before loading.

llama.cpp answers a wrong file with a NULL and a log line; reading the header first lets
mmchat say "this is an mmproj, not a text model" or "this is not a GGUF file at all".
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY_KEEP = 64  # long arrays (vocabularies) are skipped, not kept


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
        items = [_value(f, etype) for _ in range(count)]
        return items if count <= _MAX_ARRAY_KEEP else None
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_metadata(path: str | Path, keys: set[str] | None = None) -> dict[str, Any]:
    """The key/value header of a GGUF file (only `keys`, when given). Raises ModelLoadError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ModelLoadError(f"{path} is not a GGUF file: give a .gguf model from llama.cpp or Hugging Face")
            version = _read(f, "<I")
            if version < 2:
                raise ModelLoadError(f"{path} is GGUF version {version}, too old for llama.cpp: convert it again")
            _read(f, "<Q")  # tensor count
            n_kv = _read(f, "<Q")
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key = _string(f)
                value = _value(f, _read(f, "<I"))
                if keys is None or key in keys:
                    meta[key] = value
                    if keys is not None and len(meta) == len(keys):
                        break
            return meta
    except (EOFError, ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} is a damaged or truncated GGUF file ({e or 'ends early'}): download it again") from None
    except IsADirectoryError:
        raise ModelLoadError(f"{path} is a directory, not a GGUF file") from None
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {path}") from None
    except PermissionError:
        raise ModelLoadError(f"cannot read {path}: permission denied") from None


def architecture(path: str | Path) -> str | None:
    return read_metadata(path, {"general.architecture"}).get("general.architecture")
