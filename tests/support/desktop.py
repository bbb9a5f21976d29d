"""A real desktop for the capture tests: an X server (Xvfb) with a known image drawn on its root
window, and xclip serving the clipboard. Nothing is faked: mss reads the X server's framebuffer
with XGetImage and the clipboard goes through the X selection protocol, as on a user's desktop.

Where the system parts are missing the tests skip with one line naming the packages.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest

X_PACKAGES = "xvfb xclip (apt-get install -y xvfb xclip)"


def need_x() -> None:
    missing = [tool for tool in ("Xvfb", "xclip") if shutil.which(tool) is None]
    if missing or ctypes.util.find_library("X11") is None:
        pytest.skip(f"no {', '.join(missing) or 'libX11'}: install {X_PACKAGES} to run the screen and clipboard tests")


@contextlib.contextmanager
def xvfb(width: int = 320, height: int = 200) -> Iterator[str]:
    """A fresh X server; its display name (":N"), chosen by the server itself (-displayfd)."""
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24", "-noreset", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def draw_on_root(display: str, rgb: np.ndarray) -> None:
    """Put `rgb` (h, w, 3) at the root window's top-left corner with XPutImage (Xlib, 24-bit TrueColor)."""
    x11 = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11"))
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    for name in ("XDefaultVisual", "XDefaultGC", "XCreateImage"):
        getattr(x11, name).restype = ctypes.c_void_p
    x11.XDefaultVisual.argtypes = x11.XDefaultGC.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XRootWindow.restype = ctypes.c_ulong
    x11.XRootWindow.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XCreateImage.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_int,
    ]
    x11.XPutImage.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
    ]
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open display {display}")
    try:
        height, width = rgb.shape[:2]
        bgrx = np.zeros((height, width, 4), np.uint8)
        bgrx[..., 0], bgrx[..., 1], bgrx[..., 2] = rgb[..., 2], rgb[..., 1], rgb[..., 0]
        data = ctypes.create_string_buffer(bgrx.tobytes(), len(bgrx.tobytes()))
        zpixmap = 2
        image = x11.XCreateImage(dpy, x11.XDefaultVisual(dpy, 0), 24, zpixmap, 0, data, width, height, 32, 0)
        x11.XPutImage(dpy, x11.XRootWindow(dpy, 0), x11.XDefaultGC(dpy, 0), image, 0, 0, 0, 0, width, height)
        x11.XSync(dpy, 0)  # the image struct is left to the process: XDestroyImage would free Python's buffer
    finally:
        x11.XCloseDisplay(dpy)


def copy_to_clipboard(display: str, data: bytes, mime: str) -> None:
    """xclip takes the CLIPBOARD selection and serves `data` as `mime` until the X server ends."""
    subprocess.run(
        ["xclip", "-selection", "clipboard", "-t", mime, "-i"],
        input=data,
        check=True,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
