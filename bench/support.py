"""What the benchmarks borrow from the test suite, in one place.

The tiny GGUF models, generated media and the stand-in servers are the tests' own (each is built
from facts about the real thing, cited where it is defined); a benchmark imports them from here,
never from a test module, so a move inside tests/ is one edit in this file.
"""

from __future__ import annotations

from tests.support import gguf_models
from tests.support.desktop import copy_to_clipboard, draw_on_root, xvfb
from tests.support.documents import text_pdf
from tests.support.gguf_models import CHAT_TEMPLATE, write_all
from tests.support.helpers import Trickle, free_port, llama_cpp_server, local_server, stop, wait_until_up
from tests.support.mediafiles import noise_png
from tests.support.real_vision import write_gemma3_so400m_mmproj
from tests.support.soundserver import sound_missing, sound_server, tone
from tests.support.stubserver import Reply, Stub, echo, serve
from tests.support.videofiles import slide, slides_video

__all__ = [
    "CHAT_TEMPLATE",
    "Reply",
    "Stub",
    "Trickle",
    "copy_to_clipboard",
    "draw_on_root",
    "echo",
    "free_port",
    "gguf_models",
    "llama_cpp_server",
    "local_server",
    "noise_png",
    "serve",
    "slide",
    "slides_video",
    "sound_missing",
    "sound_server",
    "text_pdf",
    "tone",
    "stop",
    "wait_until_up",
    "write_all",
    "write_gemma3_so400m_mmproj",
    "xvfb",
]
