"""Property-based tests: whatever arrives, nothing escapes but an MmchatError, and no signal.

Sources take any string as a URL and any bytes; kind detection any bytes; the decoders
mutated real files (truncated, bit-flipped, spliced with another format's header), in a
child process (tests/support/fuzzing.py) so a crash is a failing example, not a dead pytest; message
validation takes arbitrary JSON, the REPL's parser arbitrary lines. Bounded in CI; set
MMCHAT_FUZZ_EXAMPLES=N for N examples per test.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import socket
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import PIL.Image
import pytest
import soundfile
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mmchat import MediaPolicy
from mmchat import messages as msgs
from mmchat.chat.commands import ALIASES, COMMANDS, parse
from mmchat.errors import InputError, MmchatError
from mmchat.inputs.part import locate, media_parts
from mmchat.inputs.resolver import MediaResolver
from mmchat.inputs.sniff import detect_kind
from mmchat.inputs.sources import read_source
from mmchat.testing import FakeEngine
from tests.support.fuzzing import Worker, examples
from tests.support.videofiles import audio_only_m4a, write_video

pytestmark = (
    pytest.mark.model
)  # decoders run in a child process, and the property runs take the better part of a minute

# --- sources -------------------------------------------------------------------------------


@contextlib.contextmanager
def offline(directory: Path) -> Iterator[None]:
    """No name resolves and no connection is made; relative paths land in `directory`."""

    def no_network(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "no network in tests")

    with (
        contextlib.chdir(directory),
        mock.patch.object(socket, "getaddrinfo", side_effect=socket.gaierror("offline")),
        mock.patch.object(socket, "create_connection", side_effect=no_network),
    ):
        yield


def _harmless(text: str) -> bool:
    """Not a device or a kernel file, which may block or never end."""
    try:
        path = locate(text).path
        if path is None:
            return True
        resolved = str(path.resolve())
    except (MmchatError, OSError, RuntimeError):
        return True
    return not resolved.startswith(("/dev", "/proc", "/sys"))


URLS = st.one_of(
    st.text(),
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from(["http://", "https://", "file://", "data:", "data:image/png;base64,", "ftp://", "-", "~/"]),
        st.text(),
    ),
)


@settings(max_examples=examples(800))
@given(url=URLS, piped=st.binary(max_size=64))
def test_any_string_as_a_url(tmp_path_factory, url, piped):
    assume(_harmless(url))
    try:
        MediaPolicy(local_files=[tmp_path_factory.getbasetemp()], remote_urls=["example.com", "10.0.0.0/8"]).admit(
            locate(url)
        )
    except MmchatError:
        pass
    with offline(tmp_path_factory.getbasetemp()):
        try:
            source = read_source(url, stdin=io.BytesIO(piped), max_bytes=4096, timeout=0.5, deadline=2.0)
        except MmchatError:
            return
    assert source.data and len(source.data) <= 4096


@settings(max_examples=examples(200))
@given(data=st.binary(min_size=1, max_size=2048), mime=st.sampled_from(["", "image/png", "audio/wav", "x/y;a=b"]))
def test_any_bytes_in_a_data_url_come_back_whole(data, mime):
    source = read_source(f"data:{mime};base64,{base64.b64encode(data).decode()}")
    assert source.data == data
    assert source.kind == detect_kind(data)[0]


@settings(max_examples=examples(300))
@given(data=st.binary(max_size=8192))
def test_any_bytes_on_stdin(data):
    try:
        source = read_source("-", stdin=io.BytesIO(data), max_bytes=4096)
    except MmchatError:
        assert not data or len(data) > 4096
        return
    assert source.data == data and source.label == "stdin"


@settings(max_examples=examples(1500))
@given(data=st.binary(max_size=4096))
def test_kind_detection_takes_any_bytes(data):
    kind, mime = detect_kind(data)
    assert kind in (None, "image", "audio", "video")
    assert (mime is None) == (kind is None) or mime is not None


# --- decoders, on mutated real files, in a child process -----------------------------------


def _seeds() -> dict[str, bytes]:
    """Small real files of every format the decoders read."""
    out: dict[str, bytes] = {}
    pixels = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"):
        buf = io.BytesIO()
        PIL.Image.fromarray(pixels).save(buf, fmt)
        out[fmt.lower()] = buf.getvalue()
    frames = [PIL.Image.fromarray(np.roll(pixels, i, axis=1)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    out["animated.gif"] = buf.getvalue()
    sound = (0.3 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440)).astype(np.float32)
    for fmt, subtype in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")):
        buf = io.BytesIO()
        soundfile.write(buf, sound, 8000, format=fmt, subtype=subtype)
        out[fmt.lower()] = buf.getvalue()
    out["m4a"] = audio_only_m4a()
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    out = _seeds()
    mp4 = write_video(tmp_path_factory.mktemp("seeds") / "clip.mp4", seconds=1.0, fps=4, size=(32, 24), tone_from=0.0)
    out["mp4"] = mp4.read_bytes()
    return out


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


SEED_NAMES = ["png", "jpeg", "gif", "webp", "bmp", "tiff", "animated.gif", "wav", "flac", "ogg", "mp3", "m4a", "mp4"]
KIND_OF = {name: "image" for name in SEED_NAMES[:7]} | {
    "wav": "audio",
    "flac": "audio",
    "ogg": "audio",
    "mp3": "audio",
    "m4a": "audio",
    "mp4": "video",
}

MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
        st.tuples(st.just("splice"), st.floats(0, 1), st.sampled_from(SEED_NAMES), st.integers(4, 256)),
        st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, ops: list[tuple], seeds: dict[str, bytes]) -> bytes:
    buf = bytearray(data)
    for op in ops:
        at = min(len(buf), int(op[1] * len(buf)))
        if op[0] == "truncate":
            del buf[at:]
        elif op[0] == "flip" and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << op[2]
        elif op[0] == "splice":  # another file's head in the middle: a lying header, a mixed container
            buf[at:at] = seeds[op[2]][: op[3]]
        elif op[0] == "overwrite":
            buf[at : at + len(op[2])] = op[2]
    return bytes(buf)


@settings(max_examples=examples(4000))
@given(name=st.sampled_from(SEED_NAMES), ops=MUTATIONS, other=st.sampled_from(["image", "audio", "video", None]))
def test_decoders_on_mutated_files(seeds, worker, name, ops, other):
    data = mutate(seeds[name], ops, seeds)
    kind = other or KIND_OF[name]  # its own decoder, or another kind's (a file passed with the wrong flag)
    outcome, detail = worker.run(kind, data)
    assert outcome in ("ok", "mmchat"), f"{kind} decoder on mutated {name}: {outcome}\n{detail}"
    if outcome == "mmchat":
        assert "\n" not in detail.strip() and detail.strip(), detail


def test_the_worker_reports_a_crash_as_a_signal(worker):
    """The harness itself: a decoder that kills its process is a failing example, not a dead pytest."""
    outcome, detail = worker.run("crash", b"")
    assert (outcome, detail) == ("signal", "SIGSEGV")
    assert worker.run("image", seeds_png())[0] == "ok"  # and the next example gets a fresh child


def seeds_png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (4, 4)).save(buf, "PNG")
    return buf.getvalue()


# --- messages and the REPL's parser --------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
PART = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"type": st.sampled_from([*msgs.PART_TYPES, "image", "nope"])},
        optional={
            "text": JSON,
            "image_url": JSON,
            "audio_url": JSON,
            "video_url": JSON,
            "input_audio": st.fixed_dictionaries({}, optional={"data": JSON, "format": JSON}),
        },
    ),
)
MESSAGES = st.one_of(
    JSON,
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from([*msgs.ROLES, "tool", ""])}, optional={"content": st.one_of(JSON, st.lists(PART))}
        )
    ),
)


@settings(max_examples=examples(800))
@given(messages=MESSAGES)
def test_message_validation_takes_any_json(messages):
    try:
        checked = msgs.validate_messages(messages)
    except InputError:
        return
    assert msgs.validate_messages(list(checked)) == checked  # canonical: validating a copy changes nothing
    refs = media_parts(checked)
    try:
        MediaResolver(FakeEngine(audio=False).capabilities()).check(checked)
    except MmchatError:
        assert any(r.kind == "audio" for r in refs)


LINES = st.one_of(
    st.text(),
    st.builds(lambda name, rest: f"{name} {rest}", st.sampled_from([*COMMANDS, *ALIASES]), st.text()),
    st.builds(lambda name, rest: f"{name}{rest}", st.sampled_from([*COMMANDS, *ALIASES]), st.text()),
)


@settings(max_examples=examples(1500))
@given(line=LINES, is_file=st.booleans())
def test_the_repl_parser_takes_any_line(line, is_file):
    try:
        parse(line, is_file=lambda token: is_file)
    except InputError as e:
        assert str(e).strip() and "\n" not in str(e).strip()
