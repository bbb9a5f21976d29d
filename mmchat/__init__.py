"""mmchat: chat with local multimodal GGUF models (images, audio, text) on llama.cpp.

    from mmchat import Runner, image_part, text_part
    runner = Runner(model="model.gguf", mmproj="mmproj.gguf")
    reply = runner.chat([{"role": "user", "content": [image_part("photo.jpg"), text_part("What is this?")]}])
    print(reply.choices[0].message.content)

Names are imported on first use, so `import mmchat` (and `mmchat --help`) stay fast: importing
them all costs about 90 ms (`python -X importtime -c "import mmchat.runner"`). Type checkers read
the same names from the `TYPE_CHECKING` imports below, so `from mmchat import Runner` is
`mmchat.runner.Runner` to mypy and pyright, not `Any`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public API, name -> the module that defines it: the one table. `__all__` is its names,
#: sorted; the lazy loader below reads it; the `TYPE_CHECKING` imports repeat it for type checkers
#: (which cannot run a loader), and tests/test_api_typing.py fails naming any name the two disagree on.
_EXPORTS: dict[str, str] = {
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
    "image_from_pil": "messages",
    "image_from_bytes": "messages",
    "audio_from_array": "messages",
    "parse_conversation": "messages",
    "Conversation": "messages",
    "Message": "messages",
    "TextPart": "messages",
    "MediaPart": "messages",
    "Local": "models.target",
    "Server": "models.target",
}

__all__ = sorted(_EXPORTS)  # pyright: ignore[reportUnsupportedDunderAll] (the TYPE_CHECKING imports are public)

if TYPE_CHECKING:
    from .errors import ContextOverflow as ContextOverflow
    from .errors import CorruptDownload as CorruptDownload
    from .errors import DiskFull as DiskFull
    from .errors import ExitCode as ExitCode
    from .errors import GenerationError as GenerationError
    from .errors import InputError as InputError
    from .errors import LogError as LogError
    from .errors import MediaError as MediaError
    from .errors import MediaRefused as MediaRefused
    from .errors import MissingTool as MissingTool
    from .errors import MmchatError as MmchatError
    from .errors import ModelLoadError as ModelLoadError
    from .errors import ModelNotFound as ModelNotFound
    from .errors import NetworkError as NetworkError
    from .errors import PixelsReleased as PixelsReleased
    from .errors import RegistryMismatch as RegistryMismatch
    from .errors import ServerError as ServerError
    from .errors import ServerRefused as ServerRefused
    from .errors import SourceError as SourceError
    from .errors import UnsupportedMedia as UnsupportedMedia
    from .inputs.policy import MediaPolicy as MediaPolicy
    from .messages import Conversation as Conversation
    from .messages import MediaPart as MediaPart
    from .messages import Message as Message
    from .messages import TextPart as TextPart
    from .messages import assistant_message as assistant_message
    from .messages import audio_from_array as audio_from_array
    from .messages import audio_part as audio_part
    from .messages import image_from_bytes as image_from_bytes
    from .messages import image_from_pil as image_from_pil
    from .messages import image_part as image_part
    from .messages import input_audio_part as input_audio_part
    from .messages import parse_conversation as parse_conversation
    from .messages import system_message as system_message
    from .messages import text_part as text_part
    from .messages import user_message as user_message
    from .messages import video_part as video_part
    from .models.target import Local as Local
    from .models.target import Server as Server
    from .models.which import Architecture as Architecture
    from .models.which import MultimodalArchitecture as MultimodalArchitecture
    from .models.which import VisionArchitecture as VisionArchitecture
    from .models.which import Which as Which
    from .options import GenerationOptions as GenerationOptions
    from .options import LoadOptions as LoadOptions
    from .options import MediaOptions as MediaOptions
    from .options import RemoteOptions as RemoteOptions
    from .options import SamplingOptions as SamplingOptions
    from .request import ChatCompletionRequest as ChatCompletionRequest
    from .results import ChatCompletion as ChatCompletion
    from .results import ChatCompletionChunk as ChatCompletionChunk
    from .results import CompletionStream as CompletionStream
    from .runner import Runner as Runner
else:

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'mmchat' has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
