"""Options in one place: how a model loads, how media are prepared, how an answer is generated.

Each is a frozen dataclass whose fields carry their default (from `config`), their rule and
their help. Every entry point builds them the same way and so checks them the same way: the
command line (cli/params.py makes the flags from these fields), the REPL's /set, `Runner`
and `Runner.chat`, and request bodies. A new option is one field in the module of its kind
(generation.py, model.py, media.py), plus its use; fields.py is how a field is declared.

Light on purpose: `mmchat --help` imports this package, so no numpy and no llama_cpp here.
"""

from .fields import Label, Rule, check, option, python_label
from .generation import GenerationOptions, RequestOptions, parse_setting, settings, split_request
from .media import DisplayOptions, MediaOptions, VideoOptions
from .model import SERVER_KINDS, LoadOptions, RemoteOptions

SamplingOptions = GenerationOptions  # the name of the first release

__all__ = [
    "SERVER_KINDS",
    "DisplayOptions",
    "GenerationOptions",
    "Label",
    "LoadOptions",
    "MediaOptions",
    "RemoteOptions",
    "RequestOptions",
    "Rule",
    "SamplingOptions",
    "VideoOptions",
    "check",
    "option",
    "parse_setting",
    "python_label",
    "settings",
    "split_request",
]
