"""The conversation log (logs.db): what `ask` and `chat` log, `--continue` across processes, `mmchat logs`,
switching it off, and a log that is locked, damaged or killed mid-write never costing an answer.

Fast cases run the CLI in-process on the FakeEngine; the last ones run `mmchat` as a user
does, on the tiny generated models.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmchat import log as logs
from mmchat.testing import FakeEngine
from tests.support.helpers import (
    completion,
    invoke,
    mmchat_env,
    model_args,
    run_mmchat,
    write_turns,
)
from tests.support.mediafiles import noise_png


@pytest.fixture
def png(tmp_path):
    return noise_png(tmp_path / "photo.png", size=(40, 30))


def logged(*args: str) -> list[dict]:
    result, _ = invoke("logs", "--json", "-n", "0", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result) -> str:
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mmchat: error: "), result.stderr
    return result.stderr


# -- ask, --continue, --cid ------------------------------------------------------------


def test_continue_in_a_new_command_sends_the_earlier_turn_with_its_image(png, isolated_user_dir):
    first, _ = invoke("ask", "what is it", "-i", str(png))
    assert first.exit_code == 0, first.output
    second, fake = invoke("ask", "--continue", "and the colours")
    assert second.exit_code == 0, second.output
    assert second.stdout == "and the colours\n"  # stdout is still the answer alone
    roles = [t.role for t in fake.calls[0][0]]
    assert roles == ["user", "assistant", "user"]
    assert type(fake.calls[0][0][0].segments[0]).__name__ == "Image"  # the image went with the history
    assert fake.calls[0][0][1].segments == (first.stdout.rstrip("\n"),)
    [conversation] = logged()
    assert [t["answer"] for t in conversation["turns"]] == [first.stdout.rstrip("\n"), "and the colours"]
    part = conversation["turns"][0]["messages"][0]["content"][0]
    assert part["image_url"]["url"] == str(png.resolve()) and part["source"] == "path"
    assert part["sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
    assert conversation["turns"][1]["messages"] == [{"role": "user", "content": "and the colours"}]  # not repeated


def test_a_relative_path_is_logged_absolute_so_continue_works_from_elsewhere(png, tmp_path, monkeypatch):
    monkeypatch.chdir(png.parent)
    assert invoke("ask", "what", "-i", png.name)[0].exit_code == 0
    monkeypatch.chdir(tmp_path.parent)
    again, fake = invoke("ask", "--continue", "more")
    assert again.exit_code == 0, again.output
    assert type(fake.calls[0][0][0].segments[0]).__name__ == "Image"


def test_cid_continues_the_conversation_named_by_a_prefix_of_its_id(png):
    invoke("ask", "first conversation")
    invoke("ask", "second conversation")
    older = logged()[-1]["id"]
    result, fake = invoke("ask", "--cid", older[:6], "go on")
    assert result.exit_code == 0, result.output
    assert fake.calls[0][0][0].segments == ("first conversation",)
    assert [len(c["turns"]) for c in logged()] == [2, 1]  # newest first: the continued one moved up
    for name in ("abc", "abcd"):  # an id that begins another is still itself
        logs.LogStore.open().log_turn(name, "m", [{"role": "user", "content": name}], completion(name))
    assert invoke("ask", "--cid", "abc", "go on")[1].calls[0][0][0].segments == ("abc",)
    missing, _ = invoke("ask", "--cid", "zzzz", "go on")
    assert missing.exit_code == 2 and "no logged conversation matches --cid zzzz" in one_error_line(missing)


def test_continue_with_nothing_logged_says_so_and_creates_nothing(isolated_user_dir):
    for flags in (["--continue"], ["--cid", "3f9a"]):
        result, fake = invoke("ask", *flags, "hello", "--no-log")
        assert result.exit_code == 2 and fake.calls == []
        assert "no logged conversation to continue" in one_error_line(result)
    assert list(isolated_user_dir.iterdir()) == []


def test_a_replaced_or_removed_image_refuses_to_continue_naming_it(png):
    assert invoke("ask", "what is it", "-i", str(png))[0].exit_code == 0
    noise_png(png, seed=9, size=(40, 30))  # same name, other bytes
    changed, fake = invoke("ask", "--continue", "and now")
    assert changed.exit_code == 2 and fake.calls == []
    assert f"{png.resolve()} changed since conversation" in one_error_line(changed)
    png.unlink()
    gone, _ = invoke("ask", "--continue", "and now")
    assert gone.exit_code == 2 and f"{png.resolve()} is gone" in one_error_line(gone)
    chat, _ = invoke("chat", "--continue", input="and now\n")
    assert chat.exit_code == 2 and "is gone" in one_error_line(chat)


def test_inline_media_are_logged_as_a_hash_and_cannot_be_continued(png, isolated_user_dir):
    data = base64.b64encode(png.read_bytes()).decode()
    assert invoke("ask", "what", "-i", f"data:image/png;base64,{data}")[0].exit_code == 0
    part = logged()[0]["turns"][0]["messages"][0]["content"][0]
    assert part == {
        "type": "image_url",
        "image_url": {"url": "(data: URL)"},
        "source": "inline",
        "sha256": hashlib.sha256(png.read_bytes()).hexdigest(),
    }
    db = (isolated_user_dir / "logs.db").read_bytes() + (isolated_user_dir / "logs.db-wal").read_bytes()
    assert data[:200].encode() not in db  # never the bytes
    result, _ = invoke("ask", "--continue", "more")
    assert result.exit_code == 2 and "holds an image given inline (data: URL)" in one_error_line(result)


def test_a_new_system_prompt_replaces_the_continued_ones():
    invoke("ask", "hi", "--system", "be brief")
    _, fake = invoke("ask", "--continue", "more", "--system", "be long")
    assert [(t.role, t.segments) for t in fake.calls[0][0]][:1] == [("system", ("be long",))]
    assert [t.role for t in fake.calls[0][0]] == ["system", "user", "assistant", "user"]


def test_logs_query_finds_conversations_by_their_questions_and_answers():
    invoke("ask", "where does the red fox sleep")
    invoke("ask", "how deep do whales dive", engine=FakeEngine(reply="about a kilometre, like a fox"))
    invoke("ask", "what is a heron")
    asked = [c["turns"][0]["messages"][-1]["content"] for c in logged("--query", "fox")]
    assert asked == ["how deep do whales dive", "where does the red fox sleep"]  # the answer matched too, newest first
    shown, _ = invoke("logs", "-q", "heron")
    assert shown.exit_code == 0 and "> what is a heron" in shown.stdout and "fox" not in shown.stdout
    none, _ = invoke("logs", "--query", "zebra")
    assert none.exit_code == 0 and none.stdout == "" and "no logged conversations contain 'zebra'" in none.stderr


def test_logs_path_says_where_the_log_is_before_and_after_a_turn(isolated_user_dir):
    before, _ = invoke("logs", "--path")
    assert before.exit_code == 0 and before.stdout == f"{isolated_user_dir / 'logs.db'}\n"
    assert not (isolated_user_dir / "logs.db").exists()  # printing where it goes creates nothing
    invoke("ask", "hi")
    after, _ = invoke("logs", "--path")
    assert after.stdout == before.stdout and (isolated_user_dir / "logs.db").is_file()


# -- the REPL --------------------------------------------------------------------------


def test_chat_logs_its_turns_as_one_conversation_and_clear_starts_another():
    result, _ = invoke("chat", input="hello\nagain\n/clear\nfresh start\n")
    assert result.exit_code == 0, result.output
    newest, oldest = logged()
    assert [t["answer"] for t in oldest["turns"]] == ["hello", "again"]
    assert [t["answer"] for t in newest["turns"]] == ["fresh start"]


def test_chat_continue_opens_the_repl_on_the_last_conversation(png):
    invoke("ask", "what is it", "-i", str(png))
    quiet, _ = invoke("ask", "--continue", "--quiet", "--no-log", "more")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    result, fake = invoke("chat", "--continue", input="more please\n")
    assert result.exit_code == 0, result.output
    assert "continuing conversation" in result.stderr
    assert [t.role for t in fake.calls[0][0]] == ["user", "assistant", "user"]
    [conversation] = logged()
    assert [t["answer"] for t in conversation["turns"]][1:] == ["more please"]


# -- switching it off ------------------------------------------------------------------


def test_no_log_leaves_no_trace(png, isolated_user_dir):
    assert invoke("ask", "secret", "-i", str(png), "--no-log")[0].exit_code == 0
    assert invoke("chat", "--no-log", input="secret too\n")[0].exit_code == 0
    assert not any(p.name.startswith("logs.db") for p in isolated_user_dir.iterdir())


@pytest.mark.parametrize("how", ["logs --off", "log = false", "[defaults]\nlog = false"])
def test_logging_switched_off_logs_nothing_unless_log_is_given(how, isolated_user_dir):
    if how == "logs --off":
        off, _ = invoke("logs", "--off")
        assert off.exit_code == 0 and "logging is off" in off.stderr
    else:
        (isolated_user_dir / "config.toml").write_text(how + "\n")
    assert _invoke_as_main("ask", "not logged").exit_code == 0
    assert _invoke_as_main("chat", input="not logged either\n").exit_code == 0
    assert not (isolated_user_dir / "logs.db").exists()
    assert _invoke_as_main("ask", "logged anyway", "--log").exit_code == 0
    assert [c["turns"][0]["answer"] for c in logged()] == ["logged anyway"]


def _invoke_as_main(*args: str, input: str | None = None):
    """As `main()` runs the app: config.toml's [defaults] as the default_map of ask and chat."""
    from typer.testing import CliRunner

    from mmchat import config
    from mmchat.cli import app
    from mmchat.env import Environment, use

    defaults = config.load_user_defaults()
    env = Environment(
        engine=FakeEngine(), stdin_isatty=input is None, stdout_isatty=False, stderr_isatty=False, environ={}
    )
    with use(env):
        return CliRunner().invoke(
            app, list(args), input=input, default_map={"ask": defaults, "chat": defaults} if defaults else None
        )


def test_logs_on_again_after_off():
    invoke("logs", "--off")
    on, _ = invoke("logs", "--on")
    assert on.exit_code == 0 and "logging is on" in on.stderr
    invoke("ask", "logged")
    assert len(logged()) == 1


# -- mmchat logs -----------------------------------------------------------------------


def test_logs_lists_newest_first_filters_and_shows_one(png):
    invoke("ask", "about the cat", "-i", str(png))
    invoke("ask", "--continue", "and its colour")
    invoke("ask", "about the dog")
    listing, _ = invoke("logs")
    assert listing.exit_code == 0
    text = listing.stdout
    assert text.index("about the dog") < text.index("about the cat") < text.index("and its colour")
    assert f"image: {png.resolve()} (sha256 " in text
    assert [c["turns"][0]["answer"] for c in logged("-q", "CAT")] == [f"{_fake_image(png)} about the cat"]
    assert len(logged("-n", "1")) == 1
    cid = logged("-q", "cat")[0]["id"]
    shown, _ = invoke("logs", "--cid", cid[:5])
    assert "and its colour" in shown.stdout and "about the dog" not in shown.stdout


def _fake_image(png: Path) -> str:
    result, _ = invoke("ask", "x", "-i", str(png), "--no-log")
    return result.stdout.split("] ")[0] + "]"


def test_logs_with_nothing_logged_is_a_notice_and_creates_nothing(isolated_user_dir):
    result, _ = invoke("logs")
    assert result.exit_code == 0 and result.stdout == "" and "no logged conversations" in result.stderr
    assert not (isolated_user_dir / "logs.db").exists()


# -- a log that fails never costs an answer ---------------------------------------------


def test_an_unwritable_log_is_one_warning_and_the_answer_still_prints(isolated_user_dir):
    (isolated_user_dir / "logs.db").mkdir()  # sqlite cannot open a directory
    result, _ = invoke("ask", "hello there", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["choices"][0]["message"]["content"] == "hello there"
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mmchat: warning: this answer was not logged")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_log_is_moved_aside_and_the_next_run_logs_again(damage, isolated_user_dir):
    db = isolated_user_dir / "logs.db"
    if damage == "garbage":
        db.write_bytes(b"this is not sqlite at all" * 100)
    else:
        for i in range(30):
            invoke("ask", f"question {i} " + "padding " * 200)
        _checkpoint(db)
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size // 2)
    result, _ = invoke("ask", "still answered")
    assert result.exit_code == 0 and result.stdout == "still answered\n"
    assert "was damaged" in result.stderr and "a new log begins" in result.stderr
    assert any(p.name.startswith("logs.db.damaged-") for p in isolated_user_dir.iterdir())
    after, _ = invoke("ask", "logged again")
    assert after.exit_code == 0 and after.stderr == ""
    assert [c["turns"][0]["answer"] for c in logged()][:2] == ["logged again", "still answered"]


def _checkpoint(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_log_from_a_newer_mmchat_is_left_alone_with_a_warning(isolated_user_dir):
    invoke("ask", "old")
    with sqlite3.connect(isolated_user_dir / "logs.db") as conn:
        conn.execute(f"PRAGMA user_version = {logs.SCHEMA_VERSION + 1}")
    result, _ = invoke("ask", "new")
    assert result.exit_code == 0 and result.stdout == "new\n"
    assert "from a newer mmchat" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.model
def test_a_writer_killed_mid_write_leaves_a_log_the_next_run_uses(isolated_user_dir):
    """SIGKILL while turns are being written in a loop: every committed turn survives, the half one is gone."""
    code = (
        "import sys, itertools; from tests.support.helpers import completion; from mmchat.log import LogStore\n"
        "s = LogStore.open()\n"
        "for i in itertools.count():\n"
        "    s.log_turn('killed', 'm', [{'role': 'user', 'content': 'x' * 200000}], completion(str(i)))\n"
        "    print(i, flush=True)\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        env=mmchat_env(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    for _ in range(5):
        writer.stdout.readline()
    time.sleep(0.05)  # somewhere inside a later write
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with sqlite3.connect(isolated_user_dir / "logs.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    result, _ = invoke("ask", "after the crash")
    assert result.exit_code == 0 and result.stderr == ""
    killed = logged("--cid", "killed")[0]["turns"]
    assert len(killed) >= 5 and [t["answer"] for t in killed] == [str(i) for i in range(len(killed))]


@pytest.mark.model
def test_processes_writing_at_once_all_land(isolated_user_dir):
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(write_turns, [(f"writer{w}", 25) for w in range(4)])
    by_id = {c["id"]: c for c in logged()}
    for w in range(4):
        assert [t["answer"] for t in by_id[f"writer{w}"]["turns"]] == [f"writer{w}-{i}" for i in range(25)]


# -- the real path: two processes on the tiny models --------------------------------------


def test_two_processes_one_conversation_on_the_tiny_models(models, tmp_path):
    png = noise_png(tmp_path / "photo.png", seed=3)
    args = [*model_args(models), "--json"]
    first = run_mmchat("ask", "What is it?", "--image", str(png), *args)
    assert first.returncode == 0, first.stderr
    second = run_mmchat("ask", "--continue", "And the colours?", *args[4:])  # the model comes from the log
    assert second.returncode == 0, second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["usage"]["prompt_tokens_details"]["encoded_media"] == 1
    assert two["usage"]["prompt_tokens_details"]["encoded_media"] == 0  # the disk cache had it
    assert two["usage"]["prompt_tokens"] > one["usage"]["prompt_tokens"] + one["usage"]["completion_tokens"]
    listed = json.loads(run_mmchat("logs", "--json").stdout)
    assert len(listed) == 1
    turns = listed[0]["turns"]
    assert [t["answer"] for t in turns] == [
        one["choices"][0]["message"]["content"],
        two["choices"][0]["message"]["content"],
    ]
    assert turns[1]["usage"] == two["usage"] and turns[1]["timings"] == two["timings"]
    noise_png(png, seed=4)
    refused = run_mmchat("ask", "--continue", "And now?", *args[4:])
    assert refused.returncode == 2 and refused.stdout == b""
    assert refused.stderr.decode().strip().endswith("put the original back, or start a new conversation")


# -- a turn appends: its write does not grow with the conversation ---------------------------


def _rows(cid: str) -> list[tuple]:
    with sqlite3.connect(logs.log_path()) as conn:
        return conn.execute(
            "SELECT seq, prefix, resumed, messages, answer FROM turns WHERE conversation_id = ? ORDER BY seq", (cid,)
        ).fetchall()


def test_a_turn_appends_only_its_new_message_and_continue_loads_the_whole_conversation(png):
    store, messages, sha = logs.LogStore.open(), [], hashlib.sha256(png.read_bytes()).hexdigest()
    for i in range(40):
        parts = [{"type": "image_url", "image_url": {"url": str(png)}}] if i % 10 == 0 else []
        messages.append({"role": "user", "content": [*parts, {"type": "text", "text": f"question {i}"}]})
        if i == 39:
            before, statements = _rows("long"), []
            store._connection().set_trace_callback(statements.append)
        store.log_turn("long", "m", messages, completion(f"answer {i}"), digests={str(png): sha})
        messages.append({"role": "assistant", "content": f"answer {i}"})
    rows = _rows("long")
    assert rows[:39] == before  # the last write left every earlier row as it was
    assert not [s for s in statements if s.lstrip().startswith("SELECT") and "messages" in s]  # nor read them back
    assert [(seq, prefix, resumed) for seq, prefix, resumed, _, _ in rows] == [(i + 1, 2 * i, None) for i in range(40)]
    assert all(len(json.loads(r[3])) == 1 for r in rows)  # each row holds its own question, not the conversation
    loaded = logs.LogStore.open().load_conversation("long")  # as --continue in a new process
    assert [logs.prompt_of([m]) or m["content"] for m in loaded.messages] == [
        logs.prompt_of([m]) or m["content"] for m in messages
    ]
    assert len(loaded.media) == 4 and {m.sha256 for m in loaded.media} == {sha}


def test_a_repl_window_that_moved_on_is_logged_as_a_resumed_turn_and_continued_as_sent():
    from mmchat.testing import FakeEngine

    fake = FakeEngine(n_ctx=40)  # a word is a token: a few turns fit, then the oldest leave the window
    script = "".join(f"question number {i} with a few more words\n" for i in range(10))
    result, _ = invoke("chat", "--system", "be brief", input=script, engine=fake)
    assert result.exit_code == 0 and "context full" in result.stderr
    cid = logged()[0]["id"]
    rows = _rows(cid)
    assert len(rows) == 10 and any(r[2] is not None for r in rows)
    assert [len(json.loads(r[3])) for r in rows] == [2] + [1] * 9  # the system prompt, then one question a turn
    sent = [(t.role, t.segments[0]) for t in fake.calls[-1][0]]
    loaded = logs.LogStore.open().load_conversation(cid)
    assert [(m["role"], m["content"]) for m in loaded.messages] == [*sent, ("assistant", rows[-1][4])]
    again, fake2 = invoke("chat", "--continue", input="one more\n")
    assert again.exit_code == 0 and [(t.role, t.segments[0]) for t in fake2.calls[0][0]][:-1] == [
        *sent,
        ("assistant", rows[-1][4]),
    ]


def test_turns_written_by_another_process_meanwhile_are_read_back_not_overwritten():
    mine, other = logs.LogStore.open(), logs.LogStore.open()
    one = [{"role": "user", "content": "one"}]
    mine.log_turn("shared", "m", one, completion("1"))
    two = [*one, {"role": "assistant", "content": "1"}, {"role": "user", "content": "two"}]
    other.log_turn("shared", "m", two, completion("2"))
    three = [*two, {"role": "assistant", "content": "2"}, {"role": "user", "content": "three"}]
    mine.log_turn("shared", "m", three, completion("3"))
    assert [(r[1], json.loads(r[3])) for r in _rows("shared")][2] == (4, [{"role": "user", "content": "three"}])
    assert [m["content"] for m in logs.LogStore.open().load_conversation("shared").messages] == [
        "one",
        "1",
        "two",
        "2",
        "three",
        "3",
    ]


def test_a_file_changed_under_the_same_name_is_logged_again_with_its_new_sha256(png):
    store, url = logs.LogStore.open(), str(png)
    first = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "a"}]}
    ]
    store.log_turn("edited", "m", first, completion("A"), digests={url: "1" * 64})
    second = [*first, {"role": "assistant", "content": "A"}, {"role": "user", "content": "b"}]
    store.log_turn("edited", "m", second, completion("B"), digests={url: "2" * 64})
    assert [(r[1], len(json.loads(r[3]))) for r in _rows("edited")] == [(0, 1), (0, 3)]
    assert [m.sha256 for m in store.load_conversation("edited").media] == ["2" * 64]


def test_a_log_of_the_first_schema_is_migrated_and_its_turns_still_load(isolated_user_dir):
    with sqlite3.connect(isolated_user_dir / "logs.db") as conn:
        logs.MIGRATIONS[0](conn)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO conversations VALUES ('old', 'm', 't', 't')")
        conn.execute(
            "INSERT INTO turns (conversation_id, seq, created, model, source, prefix, messages, prompt, answer, "
            "finish_reason, usage, timings) VALUES ('old', 1, 't', 'm', '{}', 0, ?, 'hi', 'hello', 'stop', "
            "'{}', '{}')",
            (json.dumps([{"role": "user", "content": "hi"}]),),
        )
    result, fake = invoke("ask", "--cid", "old", "and then")
    assert result.exit_code == 0, result.output
    assert [t.segments[0] for t in fake.calls[0][0]] == ["hi", "hello", "and then"]
    assert [(r[1], r[2]) for r in _rows("old")] == [(0, None), (2, None)]


def test_overlap_finds_what_repeats_and_what_is_new():
    import dataclasses

    from mmchat.log.append import overlap

    before = ["s", "u1", "a1", "u2", "a2"]
    cases = {
        ("s", "u1", "a1", "u2", "a2", "u3"): (5, None, 5),  # the next question
        ("s", "u2", "a2", "u3"): (1, 3, 3),  # the oldest turn left the window
        ("s", "u1", "x"): (2, None, 2),  # /undo, then another question
        ("t", "u1", "a1", "u2", "a2", "u3"): (0, None, 0),  # a new system prompt: all of it again
        ("s", "u2", "x", "u3"): (1, None, 1),
    }  # a message seen before, but not the rest after it
    for after, expected in cases.items():
        assert dataclasses.astuple(overlap(before, list(after))) == expected, after
