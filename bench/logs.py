"""What the conversation log costs a turn: writing the next turn at growing conversation lengths
(about 2 KB a turn), loading the conversation for --continue, and checking a 5 MiB medium's sha256.

A turn appends one row: the store compares the request with the conversation it wrote last (in
memory) and converts only the new messages, so a write should cost the same at every length;
a load reads every turn once. No model is loaded.

    python -m bench.logs [TURNS ...]      (default: 1 10 100 1000)
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._table import median_seconds, report
from mmchat import log as logs
from mmchat.engine.base import Timings, Usage
from mmchat.log import media as logmedia
from mmchat.messages import Conversation, Message, parse_message
from mmchat.results import ChatCompletion, ChatMessage, Choice

TEXT = "a question of about one kilobyte " * 32
TIMED = 21  # turns written one after another at each length; the median counts


def _completion(text: str) -> ChatCompletion:
    return ChatCompletion("m", [Choice(ChatMessage(text), "stop")], Usage(300, 100), Timings())


def _turn(store: logs.LogStore, cid: str, messages: list[Message], i: int) -> None:
    """The next turn as the REPL and Runner.chat in a loop send it: the whole conversation, one message
    more, parsed, as the Runner's `on_completion` hands it to the log (the Runner parses a request once,
    at its entry; a Python caller giving dicts to `log_turn` has them parsed there, 4 µs a message)."""
    messages.append(parse_message({"role": "user", "content": f"{i} {TEXT}"}))
    store.log_turn(cid, "m", Conversation(messages), _completion(f"answer {i} {TEXT}"))
    messages.append(parse_message({"role": "assistant", "content": f"answer {i} {TEXT}"}))


def turn_write_ms(store: logs.LogStore, cid: str, turns: int) -> tuple[float, list[Message]]:
    """The median time of writing turn `turns` (and the few after it) of conversation `cid`, in ms."""
    messages: list[Message] = []
    for i in range(turns - 1):
        _turn(store, cid, messages, i)
    times = []
    for i in range(turns - 1, turns - 1 + TIMED):
        t0 = time.perf_counter()
        _turn(store, cid, messages, i)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), messages


def main(lengths: list[int]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as home:
        store = logs.LogStore.open(Path(home))
        for n in lengths:
            cid = f"c{n}"
            write, _ = turn_write_ms(store, cid, n)
            rows.append(
                {
                    "turns": n,
                    "log_one_turn_ms": write,
                    "load_conversation_ms": 1000 * median_seconds(lambda: store.load_conversation(cid)),
                    "log_mib": sum(p.stat().st_size for p in Path(home).glob(f"{logs.LOG_NAME}*")) / 2**20,
                }
            )
        for row in rows:
            row["write_vs_first"] = row["log_one_turn_ms"] / rows[0]["log_one_turn_ms"]
        photo = Path(home, "photo.bin")
        photo.write_bytes(b"\x89PNG" + bytes(5 * 2**20))
        record = [logmedia.MediaRecord("image", str(photo), "path", hashlib.sha256(photo.read_bytes()).hexdigest())]
        check = 1000 * median_seconds(lambda: logmedia.verify_media("c", record))
    report("logs", rows, {"sha256_check_of_5_MiB_ms": check})


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 10, 100, 1000])
