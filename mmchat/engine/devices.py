"""What this llama.cpp build can run on: ggml's devices, the GPU a projector gets, the threads to use."""

from __future__ import annotations

import ctypes
import functools
import os

import llama_cpp as llama


def has_gpu() -> bool:
    return bool(llama.llama_supports_gpu_offload())


def physical_cores() -> int:
    """Threads default to physical cores: hyper-threads slow llama.cpp's matmuls down."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # macOS, Windows
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in allowed:
        path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        try:
            with open(path) as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


_GGML_DEV_GPU, _GGML_DEV_IGPU = 1, 2  # enum ggml_backend_dev_type (ggml-backend.h)


@functools.cache
def _ggml():
    """libggml itself, for its device list: the bindings lack it (None when it cannot be opened)."""
    import pathlib

    libdir = pathlib.Path(llama.__file__).parent / "lib"
    names = sorted(libdir.glob("libggml.so*")) + sorted(libdir.glob("libggml.dylib")) + sorted(libdir.glob("ggml.dll"))
    if not names:
        return None
    try:
        ggml = ctypes.CDLL(str(names[0]))
        ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
        ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
        ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
        ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
        for fn in (ggml.ggml_backend_dev_name, ggml.ggml_backend_dev_description):
            fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return ggml


def backend_devices() -> list[str]:
    """ggml's devices (CPU, CUDA0, Metal...), read from libggml itself."""
    ggml = _ggml()
    if ggml is None:
        return []
    out = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        out.append(
            f"{ggml.ggml_backend_dev_name(dev).decode()} ({ggml.ggml_backend_dev_description(dev).decode().strip()})"
        )
    return out


def projector_gpu() -> str | None:
    """The device a projector asked onto the GPU gets: the first GPU, else integrated GPU, as
    mtmd/clip.cpp picks it (ggml_backend_init_by_type); None on a CPU-only build."""
    ggml = _ggml()
    if ggml is None:
        return "GPU" if has_gpu() else None
    dev = ggml.ggml_backend_dev_by_type(_GGML_DEV_GPU) or ggml.ggml_backend_dev_by_type(_GGML_DEV_IGPU)
    return ggml.ggml_backend_dev_name(dev).decode() if dev else None
