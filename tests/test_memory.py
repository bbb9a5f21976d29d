"""What stays in memory under load: a conversation keeps the media it can use again (a follow-up
neither decodes nor encodes them), and nothing else; a batch keeps nothing of a request it has
answered, and against a server no more than the requests in flight.

Memory is asserted as a user would notice it, by what is still alive or kept, never by RSS
(bench/memory.py measures that): every decoded image a request was given is watched with a
weak reference, and when the next request starts, no image outside it may still be alive.
"""

from __future__ import annotations

import gc
import hashlib
import json
import threading
import weakref
from pathlib import Path

import pytest

from mmchat import Runner, image_part, text_part
from mmchat.media import Image
from mmchat.testing import FakeEngine
from tests.support.helpers import GREEDY, THREADS, invoke
from tests.support.helpers import invoke_real as mmchat
from tests.support.mediafiles import noise_png
from tests.support.stubserver import Stub, serve


class Watcher:
    """Weak references to the decoded images requests were given; at each new request, how many
    images of other requests are still alive (the most at once), after a garbage collection."""

    def __init__(self):
        self.refs: list[weakref.ref] = []
        self.stray: list[int] = []  # per request: alive images it was not given
        self._lock = threading.Lock()

    def request(self, turns) -> None:
        mine = [s for t in turns for s in t.segments if isinstance(s, Image)]
        gc.collect()
        with self._lock:
            alive = {id(o) for o in (r() for r in self.refs) if o is not None}
            self.stray.append(len(alive - {id(m) for m in mine}))
            self.refs += [weakref.ref(m) for m in mine]


@pytest.fixture(autouse=True)
def older_objects_set_aside():
    """The Watcher's gc.collect() scans only what the test makes: what the suite made before (every
    module imported so far) is frozen, so a collection costs milliseconds, not a tenth of a second.
    An image the test makes is still found alive by any reference, old objects' included."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


class WatchedFake(FakeEngine):
    """The fake engine, watched; it keeps no turns of its own (FakeEngine records every call)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.watcher = Watcher()

    def stream(self, turns, options):
        self.watcher.request(turns)
        yield from super().stream(turns, options)
        self.calls.clear()


@pytest.fixture
def photos(tmp_path):
    return [str(noise_png(tmp_path / f"p{i}.png", seed=i, size=(40, 30))) for i in range(12)]


def test_a_batch_keeps_no_decoded_media_of_the_requests_it_has_answered(photos):
    fake = WatchedFake()
    result, _ = invoke("batch", "Describe.", *photos, engine=fake)
    assert result.exit_code == 0, result.output
    assert fake.watcher.stray == [0] * len(photos)  # the old cache held every earlier photo: 0, 1, 2, ... 11


def test_a_batch_against_a_server_keeps_no_more_than_the_requests_in_flight(photos, monkeypatch):
    from mmchat.engine.remote import RemoteEngine

    watcher, real = Watcher(), RemoteEngine.stream

    def stream(self, turns, options):
        watcher.request(turns)
        yield from real(self, turns, options)

    monkeypatch.setattr(RemoteEngine, "stream", stream)
    with serve(Stub()) as stub:
        result = mmchat("batch", "Describe.", *photos, "--base-url", stub.url, "--concurrency", "3", "--log")
    assert result.exit_code == 0, result.output
    assert len(watcher.stray) == len(photos) and max(watcher.stray) <= 2  # the two other requests in flight
    shown, _ = invoke("logs", "--json", "-n", "0")  # each answer logged with its own photo's sha256, though
    logged = {
        p["image_url"]["url"]: p["sha256"]  # requests settled the cache while others were in flight
        for c in json.loads(shown.stdout)
        for p in c["turns"][0]["messages"][0]["content"]
        if p["type"] != "text"
    }
    assert logged == {str(Path(p).resolve()): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in photos}


def test_the_repl_keeps_the_media_of_the_turns_in_its_window_and_lets_go_of_older_ones(photos):
    fake = WatchedFake(n_ctx=48)  # a word or a medium is a token: about three turns fit
    script = "".join(f"/attach {p}\nDescribe this photo for me.\n" for p in photos)
    result, _ = invoke("chat", input=script, engine=fake)
    assert result.exit_code == 0, result.output
    assert "context full" in result.stderr  # the oldest turns did leave the window
    assert len(fake.watcher.stray) >= len(photos) and max(fake.watcher.stray) == 0


# -- on the tiny models -------------------------------------------------------------------


def user(*parts):
    return {"role": "user", "content": list(parts)}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_a_follow_up_decodes_and_encodes_nothing_and_media_that_left_go_to_disk(models, tmp_path, monkeypatch):
    """The REPL's and the API's case on the real engine: both images of a conversation stay decoded
    and encoded for its follow-ups; a new conversation lets them go from memory, and an image that
    comes back is decoded again but found in the disk cache, not encoded again."""
    import mmchat.media.image as image_module

    decoded, real = [], image_module.decode_image
    monkeypatch.setattr(image_module, "decode_image", lambda data, **k: decoded.append(k["label"]) or real(data, **k))
    a, b = (str(noise_png(tmp_path / f"{n}.png", seed=s)) for n, s in (("a", 1), ("b", 2)))
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        convo = [user(image_part(a), text_part("What is it?"))]
        convo += [assistant(r.chat(convo, **GREEDY).content), user(image_part(b), text_part("And this one?"))]
        convo += [assistant(r.chat(convo, **GREEDY).content), user(text_part("Which is brighter?"))]
        stats = r.engine.stats
        assert len(decoded) == 2 and stats.media_encodes == 2
        follow_up = r.chat(convo, **GREEDY)
        assert len(decoded) == 2 and stats.media_encodes == 2 and follow_up.usage.encoded_media == 0
        # both kept, as stand-ins: the engine holds their encoding, so their pixels went
        assert r.inputs.kept() == (2, 0) and r.stats.embeddings_in_memory == 2

        r.chat([user(image_part(b), text_part("Only this one."))], **GREEDY)  # a new conversation
        assert len(decoded) == 2 and r.inputs.kept() == (1, 0) and r.stats.embeddings_in_memory == 1  # b alone

        again = r.chat([user(image_part(a), text_part("Back to the first."))], **GREEDY)
        assert len(decoded) == 3 and stats.media_encodes == 2 and stats.media_disk_hits == 1
        assert again.usage.encoded_media == 0


def test_an_image_let_go_whose_encoding_left_every_cache_is_decoded_again(models, tmp_path, monkeypatch):
    """A kept stand-in is only as good as the encoding behind it: when that is gone (here memory
    holds one image's embeddings and there is no disk cache), the runner reads the image again
    and the answer is the one a fresh engine gives."""
    import mmchat.media.image as image_module
    from mmchat.engine.llamacpp import LlamaCppEngine

    decoded, real = [], image_module.decode_image
    monkeypatch.setattr(image_module, "decode_image", lambda data, **k: decoded.append(k["label"]) or real(data, **k))
    a, b = (str(noise_png(tmp_path / f"{n}.png", seed=s)) for n, s in (("a", 1), ("b", 2)))
    both = [user(image_part(b), image_part(a), text_part("Both?"))]
    one = LlamaCppEngine(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS, media_memory_bytes=1)
    with Runner(engine=one) as r:  # no disk cache, and b's embeddings will push a's out of memory
        r.chat([user(image_part(a), text_part("A?"))], **GREEDY)
        assert r.inputs.kept() == (1, 0)  # a, without its pixels
        answer = r.chat(both, **GREEDY).content
        assert decoded.count(a) == 2 and decoded.count(b) == 1
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS, cache=False) as fresh:
        assert fresh.chat(both, **GREEDY).content == answer
