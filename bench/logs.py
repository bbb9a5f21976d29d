"""What the conversation log costs a turn: one logged turn at growing conversation lengths (about
2 KB a turn), loading the conversation for --continue, and checking a 5 MiB medium's sha256.

A turn's write rebuilds the conversation from its turns to find what is new, so it grows with the
conversation's length: this shows by how much. No model is loaded.

    python bench/logs.py [TURNS ...]      (default: 1 10 100 500)
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from _table import median_seconds, report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmchat import logmedia, logs  # noqa: E402
from mmchat.engine.base import Timings, Usage  # noqa: E402
from mmchat.results import ChatCompletion, ChatMessage, Choice  # noqa: E402

TEXT = "a question of about one kilobyte " * 32


def _completion(text: str) -> ChatCompletion:
    return ChatCompletion("m", [Choice(ChatMessage(text), "stop")], Usage(300, 100), Timings())


def _conversation_of(store: logs.LogStore, cid: str, turns: int) -> list[dict]:
    """Log `turns` turns as the REPL sends them: the whole conversation each time, one message more."""
    messages: list[dict] = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"{i} {TEXT}"})
        store.log_turn(cid, "m", messages, _completion(f"answer {i} {TEXT}"))
        messages.append({"role": "assistant", "content": f"answer {i} {TEXT}"})
    return messages


def main(lengths: list[int]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as home:
        store = logs.LogStore.open(Path(home))
        for n in lengths:
            cid = f"c{n}"
            messages = _conversation_of(store, cid, n)
            extra = [*messages, {"role": "user", "content": TEXT}]
            rows.append({"turns": n, "log_one_turn_ms": 1000 * median_seconds(lambda: store.log_turn(cid, "m", extra, _completion("x"))),
                         "load_conversation_ms": 1000 * median_seconds(lambda: store.load_conversation(cid)),
                         "log_mib": sum(p.stat().st_size for p in Path(home).glob(f"{logs.LOG_NAME}*")) / 2**20})
        photo = Path(home, "photo.bin")
        photo.write_bytes(b"\x89PNG" + bytes(5 * 2**20))
        record = [logmedia.MediaRecord("image", str(photo), "path", hashlib.sha256(photo.read_bytes()).hexdigest())]
        check = 1000 * median_seconds(lambda: logmedia.verify_media("c", record))
    report("logs", rows, {"sha256_check_of_5_MiB_ms": check})


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 10, 100, 500])
