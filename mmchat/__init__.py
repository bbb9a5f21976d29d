"""mmchat: chat with local multimodal GGUF models (images, audio, text) on llama.cpp.

    from mmchat import Runner, image_part
    runner = Runner(model="model.gguf", mmproj="mmproj.gguf")
    reply = runner.chat([{"role": "user", "content": [image_part("photo.jpg"), text_part("What is this?")]}])
    print(reply.choices[0].message.content)

Names are imported on first use, so `import mmchat` (and `mmchat --help`) stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Runner": "runner",
    "Which": "models.which",
    "Architecture": "models.which",
    "MultimodalArchitecture": "models.which",
    "VisionArchitecture": "models.which",
    "ChatCompletionRequest": "request",
    "ChatCompletionChunk": "results",
    "ChatCompletion": "results",
    "CompletionStream": "results",
    "GenerationOptions": "options",
    "LoadOptions": "options",
    "MediaOptions": "options",
    "RemoteOptions": "options",
    "MediaPolicy": "inputs.policy",
    "SamplingOptions": "options",  # the old name of GenerationOptions
    "MmchatError": "errors",
    "InputError": "errors",
    "SourceError": "errors",
    "MediaError": "errors",
    "UnsupportedMedia": "errors",
    "MediaRefused": "errors",
    "ContextOverflow": "errors",
    "ModelNotFound": "errors",
    "ModelLoadError": "errors",
    "GenerationError": "errors",
    "PixelsReleased": "errors",
    "LogError": "errors",
    "NetworkError": "errors",
    "ServerError": "errors",
    "ServerRefused": "errors",
    "DiskFull": "errors",
    "CorruptDownload": "errors",
    "MissingTool": "errors",
    "RegistryMismatch": "errors",
    "ExitCode": "errors",
    "text_part": "messages",
    "image_part": "messages",
    "audio_part": "messages",
    "video_part": "messages",
    "input_audio_part": "messages",
    "user_message": "messages",
    "system_message": "messages",
    "assistant_message": "messages",
    "image_from_pil": "parts",
    "image_from_bytes": "parts",
    "audio_from_array": "parts",
}

__all__ = [  # kept by hand, sorted; tests/test_api.py checks it against _EXPORTS
    "Architecture",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "CompletionStream",
    "ContextOverflow",
    "CorruptDownload",
    "DiskFull",
    "ExitCode",
    "GenerationError",
    "GenerationOptions",
    "InputError",
    "LoadOptions",
    "LogError",
    "MediaError",
    "MediaOptions",
    "MediaPolicy",
    "MediaRefused",
    "MissingTool",
    "MmchatError",
    "ModelLoadError",
    "ModelNotFound",
    "MultimodalArchitecture",
    "NetworkError",
    "PixelsReleased",
    "RegistryMismatch",
    "RemoteOptions",
    "Runner",
    "SamplingOptions",
    "ServerError",
    "ServerRefused",
    "SourceError",
    "UnsupportedMedia",
    "VisionArchitecture",
    "Which",
    "assistant_message",
    "audio_from_array",
    "audio_part",
    "image_from_bytes",
    "image_from_pil",
    "image_part",
    "input_audio_part",
    "system_message",
    "text_part",
    "user_message",
    "video_part",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmchat' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
