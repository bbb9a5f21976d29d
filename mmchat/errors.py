"""Errors that reach the user as one line on stderr and an exit code.

MmchatError                 1  runtime failure
├── InputError              2  bad usage or bad input (a file, a URL, a message)
│   ├── SourceError         2  a URL or path could not be read
│   ├── MediaError          2  bytes could not be decoded as the media they claim to be
│   ├── UnsupportedMedia    2  the model cannot take this kind of media
│   ├── MediaRefused        2  the media policy (mmchat.inputs.policy) does not allow this part
│   ├── ContextOverflow     2  the prompt does not fit the context window
│   ├── ModelNotFound       2  no model by that name or path
│   ├── ModelLoadError      2  the file is not a model llama.cpp can load (or not this kind)
│   └── ServerRefused       2  a model server refused the request (HTTP 4xx): its own message
├── GenerationError         1  llama.cpp failed while evaluating or generating
│   └── PixelsReleased      1  an image kept without its pixels must be encoded again (the Runner decodes it again)
├── LogError                1  the conversation log (logs.db) could not be read or written
├── NetworkError            1  the network is unreachable
├── DiskFull                1  no space left to write a file (the old one is left as it was)
├── CorruptDownload         1  a pulled file is not the file the Hub lists (its hash differs)
├── RegistryMismatch        1  `mmchat models --check`: an entry's files are not on the Hub as written
├── ServerError             1  a model server could not be reached, timed out or kept failing
└── MissingTool             1  a system tool or library mmchat needs is not installed (xclip, PortAudio)
"""

from __future__ import annotations

import enum
import errno


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INTERRUPTED = 130


class MmchatError(Exception):
    """Base class: the message is one line that says what failed and what to do."""

    exit_code: ExitCode = ExitCode.FAILURE


class InputError(MmchatError):
    exit_code = ExitCode.USAGE


class SourceError(InputError):
    """A path or URL could not be read into bytes."""


class MediaError(InputError):
    """Bytes that could not be decoded as an image, audio or video."""


class UnsupportedMedia(InputError):
    """The model (its mmproj) does not take this kind of media."""


class MediaRefused(InputError):
    """A Runner's MediaPolicy does not allow this part (a path, a host, an address, a size)."""


class ContextOverflow(InputError):
    """The prompt is longer than the model's context window."""


class ModelNotFound(InputError):
    """No model by that name, path or repository."""


class ModelLoadError(InputError):
    """llama.cpp could not load the model or projector file the user named."""


class ServerRefused(InputError):
    """An OpenAI-compatible server answered 4xx: the request itself is wrong for it."""


class GenerationError(MmchatError):
    """llama.cpp failed on input it had accepted (out of memory, a backend error)."""


class PixelsReleased(GenerationError):
    """An image kept without its pixels (its encoding was held) must be encoded again: its encoding
    left every cache. The Runner reads and decodes it again and retries; only a caller of the engine
    itself sees this."""


class LogError(MmchatError):
    """logs.db could not be opened, read or written (an answer is never lost to it: see log/store.py)."""


class NetworkError(MmchatError):
    """A download failed because the network is unreachable."""


class DiskFull(MmchatError):
    """A write failed for want of space (ENOSPC, or a quota); nothing half-written is left."""


def disk_full(error: BaseException, path: object, after: str = "free some space and try again") -> DiskFull | None:
    """The DiskFull that an OSError means, naming `path`, or None when it is another failure."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left on the device to write {path}: {after}")
    return None


class CorruptDownload(MmchatError):
    """A downloaded file's sha256 (or git blob id) is not the one the Hub lists for it."""


class RegistryMismatch(MmchatError):
    """models.toml names a quant, projector or size that the Hub's listing of the repository does not have."""


def one_line(error: BaseException | str) -> str:
    """How every failure reaches the user, in every command and in the REPL."""
    lines = str(error).strip().splitlines()
    return f"mmchat: error: {lines[0] if lines else type(error).__name__}"


class ServerError(MmchatError):
    """An OpenAI-compatible server was unreachable, too slow, or failed (5xx, 429) after retries."""


class MissingTool(MmchatError):
    """A system part the clipboard, the screen or the microphone needs is missing: the message names its package."""
