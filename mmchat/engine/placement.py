"""Where a model's parts run: the text model's layers on the GPU or the CPU, the projector's backend.

llama.cpp decides from what was asked (--gpu-layers, --mmproj-offload) and the devices its build
has. `plan` repeats its rules, so `mmchat doctor` (no model loaded) and `--json` (after a load)
say the same thing; a loaded engine corrects the projector with what libmtmd logged it used.
Pure: no llama_cpp here.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Placement:
    """`gpu_layers` of `layers` (the repeating blocks plus the output layer) on the GPU; the
    projector on `projector` ("CPU" or the GPU backend's name, e.g. "CUDA0"; None: no projector)."""

    gpu_layers: int | None  # None: "all", when the model's size is not known (doctor)
    layers: int | None
    projector: str | None

    @property
    def text_model(self) -> str:
        if self.gpu_layers == 0:
            return "CPU"
        if self.layers is not None and self.gpu_layers is not None and self.gpu_layers < self.layers:
            return "GPU+CPU"
        return "GPU"

    @property
    def projector_device(self) -> str | None:
        """ "GPU" or "CPU" (None: no projector), whatever the backend is called."""
        if self.projector is None:
            return None
        return "CPU" if self.projector == "CPU" else "GPU"

    def describe_text_model(self) -> str:
        if self.gpu_layers == 0:
            return "CPU"
        if self.gpu_layers is None or self.layers is None:
            return f"GPU ({'all' if self.gpu_layers is None else self.gpu_layers} layers)"
        return f"{self.text_model} ({self.gpu_layers} of {self.layers} layers on the GPU)"

    def describe_projector(self) -> str:
        if self.projector is None:
            return "none loaded"
        return "CPU" if self.projector == "CPU" else f"GPU ({self.projector})"

    def as_dict(self) -> dict[str, Any]:
        """What `--json` prints under timings.ran_on."""
        return {
            "text_model": self.text_model,
            "gpu_layers": self.gpu_layers,
            "layers": self.layers,
            "projector": self.projector_device,
            "projector_backend": self.projector,
        }


def plan(
    *,
    gpu: bool,
    n_gpu_layers: int | None,
    mmproj_offload: bool,
    n_layer: int | None = None,
    projector: bool = True,
    gpu_name: str = "GPU",
) -> Placement:
    """Where llama.cpp puts the parts. Text model (llama-model.cpp, load_tensors):
    `act_gpu_layers = devices.empty() ? 0 : min(n_gpu_layers, n_layer + 1)`; mmchat's default
    (None) is every layer when there is a GPU. Projector (mtmd/clip.cpp, clip_ctx): the first GPU
    (or integrated GPU) backend when `use_gpu` and the build has one, else the CPU."""
    layers = None if n_layer is None else n_layer + 1
    if not gpu:
        offloaded: int | None = 0
    elif n_gpu_layers is None:
        offloaded = layers
    else:
        offloaded = n_gpu_layers if layers is None else min(n_gpu_layers, layers)
    where = None if not projector else (gpu_name if gpu and mmproj_offload else "CPU")
    return Placement(offloaded, layers, where)
