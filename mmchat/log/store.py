"""The conversation log: every `ask` and `chat` turn in SQLite (MMCHAT_HOME/logs.db), as llm's logs.db.

A turn keeps its conversation id, the model, the messages that are new since the
conversation's previous turn (`prefix` says how many messages of that one it repeats, and
`resumed` from which of its messages on it goes on when the oldest turns left the context
window: append.py), the answer, usage, timings and the time. A write appends one row,
whatever the conversation's length. A media part is kept as its reference (an absolute path
or a URL) and the sha256 of the bytes mmchat read, never the bytes (media.py): `--continue`
reads the file again and refuses it if it changed.

Several processes may write at once: WAL mode, a busy timeout, one IMMEDIATE transaction per
turn. The schema version is `PRAGMA user_version`; MIGRATIONS[n] takes a database from
version n to n+1. A damaged file is moved aside (logs.db.damaged-TIME) with one warning and
a new log begins: the log never stops an answer or a later run.

    store = LogStore.open()                     # MMCHAT_HOME/logs.db
    store.log_turn(cid, model, messages, completion, digests=runner.media_digests(messages))
    conversation = store.load_conversation(store.latest())
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from .. import messages as msgs
from ..errors import InputError
from .append import Written, overlap, rebuild, shares_a_turn
from .db import MIGRATIONS, SCHEMA_VERSION, LogFile  # noqa: F401  (the schema, for tests and tools)
from .media import MediaRecord, as_written_now, media_records, stored_messages

if TYPE_CHECKING:
    from ..results import ChatCompletion

log = logging.getLogger("mmchat.log")

LOG_NAME = "logs.db"
OFF_MARKER = "logs-off"  # `mmchat logs --off` writes it, `--on` removes it (as llm does)


@dataclasses.dataclass(frozen=True)
class LoggedConversation:
    """A conversation as the log has it: what to send again, and how to check its media first."""

    id: str
    conversation: msgs.Conversation  # the last turn's conversation and its answer, parsed, ready to send
    media: list[MediaRecord]  # every media part of it, in order
    model: str
    source: dict[str, Any]  # {"model": ..., "mmproj": ...} as the user gave them
    turns: int

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation as OpenAI's message dicts (the REPL's history, `/save`)."""
        return self.conversation.as_dicts()


@dataclasses.dataclass(frozen=True)
class _Turn:
    """One answered request, as log_turn writes it."""

    cid: str
    model: str
    conversation: msgs.Conversation
    completion: ChatCompletion
    digests: dict[str, str | None]
    source: dict[str, Any]
    now: str


def new_conversation_id() -> str:
    return uuid.uuid4().hex[:16]


def log_path(home: Path | None = None) -> Path:
    return (home or config.user_dir()) / LOG_NAME


def switched_off(home: Path | None = None) -> bool:
    """`mmchat logs --off` was run, or config.toml says `log = false` (top level)."""
    home = home or config.user_dir()
    return (home / OFF_MARKER).exists() or _config_log(home) is False


def _config_log(home: Path) -> bool | None:
    value = config.read_config(home).get("log")  # a broken file is reported where defaults are read
    return value if isinstance(value, bool) else None


class LogStore(LogFile):
    """logs.db, opened (and created or migrated) on first use: turns in, conversations out."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._written: Written | None = None  # the conversation this store's last turn left, to compare the next with

    @classmethod
    def open(cls, home: Path | None = None) -> LogStore:
        return cls(log_path(home))

    # -- writing ---------------------------------------------------------------------

    def log_turn(
        self,
        conversation_id: str,
        model: str,
        messages: msgs.Conversation | Sequence[Any],
        completion: ChatCompletion,
        *,
        digests: dict[str, str | None] | None = None,
        source: dict[str, Any] | None = None,
    ) -> int:
        """Record one answered request as the next turn of `conversation_id`; its row id.

        `messages`: parsed (as the Runner's `on_completion` gives them), or OpenAI dicts, parsed here.
        `digests` (url -> sha256, `Runner.media_digests`) are of the bytes the runner read. Only
        what is new since the conversation's previous turn is converted and written."""
        conversation, digests = msgs.parse_conversation(messages), digests or {}
        turn = _Turn(conversation_id, model, conversation, completion, digests, source or {}, _now())
        known = self._written if self._written is not None and self._written.cid == conversation_id else None
        self._written = None  # unknown until this write has committed
        row, seq = self._transaction(lambda db: self._append(db, turn, known))
        answer = completion.content
        if known is not None and known.seq == seq - 1:
            self._written = known.after(conversation_id, seq, conversation, digests, answer)
        else:
            self._written = Written.first(conversation_id, seq, conversation, digests, answer)
        return row

    def _append(self, db: sqlite3.Connection, turn: _Turn, known: Written | None) -> tuple[int, int]:
        """The turn's rows, only what is new since the conversation's previous turn: its row id and seq."""
        cid, messages, digests = turn.cid, turn.conversation, turn.digests
        last = db.execute("SELECT max(seq) FROM turns WHERE conversation_id = ?", (cid,)).fetchone()
        seq = last[0] or 0
        if known is not None and known.seq == seq:  # this process wrote the last turn: compare in memory
            found = known.overlap(messages, digests)
            tail = stored_messages(messages[found.new :], digests) if found.new < len(messages) else []
        else:  # another process wrote since, or this store has not: the conversation from the log, once
            stored = stored_messages(messages, digests)
            found = overlap(self._full(db, cid)[0], stored)
            tail = stored[found.new :]
        db.execute(
            "INSERT INTO conversations VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET updated = ?, "
            "model = excluded.model",
            (cid, turn.model, turn.now, turn.now, turn.now),
        )
        out = turn.completion.to_dict()
        row = db.execute(
            "INSERT INTO turns (conversation_id, seq, created, model, source, prefix, resumed, messages, prompt, "
            "answer, finish_reason, usage, timings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                seq + 1,
                turn.now,
                turn.model,
                _dumps(turn.source),
                found.prefix,
                found.resumed,
                _dumps(tail),
                prompt_of(tail),
                turn.completion.content,
                turn.completion.finish_reason,
                _dumps(out["usage"]),
                _dumps(out["timings"]),
            ),
        ).lastrowid
        records = media_records(tail)
        db.executemany("INSERT INTO media VALUES (?, ?, ?, ?, ?, ?)", [(row, i, *m.row) for i, m in enumerate(records)])
        return row, seq + 1

    # -- reading ---------------------------------------------------------------------

    def latest(self) -> str | None:
        """The conversation of the newest turn."""
        row = self._read(lambda db: db.execute("SELECT conversation_id FROM turns ORDER BY id DESC LIMIT 1").fetchone())
        return row[0] if row else None

    def resolve(self, cid: str) -> str:
        """A conversation id, or a unique beginning of one (as git takes commit ids)."""
        pattern = cid.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._read(
            lambda db: (
                db.execute("SELECT id FROM conversations WHERE id = ?", (cid,)).fetchall()
                or db.execute("SELECT id FROM conversations WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (pattern,)).fetchall()
            )
        )
        if len(rows) != 1:
            what = "no" if not rows else "more than one"
            raise InputError(f"{what} logged conversation matches --cid {cid}: `mmchat logs` lists them")
        return rows[0][0]

    def load_conversation(self, cid: str) -> LoggedConversation:
        """The whole conversation after its last turn, media as references to check and read again."""
        cid = self.resolve(cid)

        def load(db: sqlite3.Connection) -> LoggedConversation:
            full, turns = self._full(db, cid)
            full = as_written_now(full)
            model, source = db.execute(
                "SELECT model, source FROM turns WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1", (cid,)
            ).fetchone()
            conversation = msgs.parse_conversation(full)  # once: --continue sends it as it is
            return LoggedConversation(
                cid, conversation, media_records(full, conversation), model, json.loads(source), turns
            )

        return self._read(load)

    def conversations(
        self, limit: int | None = None, query: str | None = None, cid: str | None = None
    ) -> list[dict[str, Any]]:
        """Conversations, newest first, each with its turns (oldest first) as `mmchat logs --json` prints them."""
        where, args = "", []
        if cid is not None:
            where, args = "WHERE c.id = ?", [self.resolve(cid)]
        elif query:
            where = "WHERE c.id IN (SELECT conversation_id FROM turns WHERE instr(lower(messages), ?) OR instr(lower(answer), ?))"
            args = [query.lower()] * 2

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                f"SELECT c.id, c.model, c.created, c.updated FROM conversations c {where} "
                "ORDER BY (SELECT max(id) FROM turns WHERE conversation_id = c.id) DESC LIMIT ?",
                [*args, -1 if limit is None else limit],
            ).fetchall()
            return [
                {"id": r[0], "model": r[1], "created": r[2], "updated": r[3], "turns": self._turns(db, r[0])}
                for r in rows
            ]

        return self._read(read)

    @staticmethod
    def _turns(db: sqlite3.Connection, cid: str) -> list[dict[str, Any]]:
        cur = db.execute(
            "SELECT seq, created, model, prefix, resumed, messages, answer, finish_reason, usage, timings "
            "FROM turns WHERE conversation_id = ? ORDER BY seq",
            (cid,),
        )
        return [
            {
                "seq": r[0],
                "created": r[1],
                "model": r[2],
                "prefix": r[3],
                "resumed": r[4],
                "messages": json.loads(r[5]),
                "answer": r[6],
                "finish_reason": r[7],
                "usage": json.loads(r[8]),
                "timings": json.loads(r[9]),
            }
            for r in cur
        ]

    @staticmethod
    def _full(db: sqlite3.Connection, cid: str) -> tuple[list[dict[str, Any]], int]:
        """The stored conversation after the last turn (its answer included), and the number of turns."""
        full: list[dict[str, Any]] = []
        seq = 0
        for seq, prefix, resumed, tail, answer in db.execute(
            "SELECT seq, prefix, resumed, messages, answer FROM turns WHERE conversation_id = ? ORDER BY seq", (cid,)
        ):
            full = rebuild(full, prefix, resumed, [*json.loads(tail), msgs.assistant_message(answer)])
        return full, seq


def prompt_of(messages: Sequence[dict[str, Any]]) -> str:
    """The text of the last user message: what a listing shows of a turn."""
    for message in reversed(messages):
        if message["role"] == "user":
            content = message["content"]
            return content if isinstance(content, str) else " ".join(p["text"] for p in content if p["type"] == "text")
    return ""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class TurnLogger:
    """The Runner's `on_completion` hook for a command: every answer becomes a turn of one conversation.

    A request that repeats none of the conversation's messages (the REPL's /clear or /load)
    starts a new conversation. A failure to log is one warning; the answer is never touched."""

    def __init__(
        self,
        store: LogStore,
        *,
        continuing: LoggedConversation | None = None,
        each_apart: bool = False,
    ):
        self.store = store
        self._each_apart = each_apart  # `batch --log`: every request is a conversation of its own
        self.cid = continuing.id if continuing else new_conversation_id()
        self._previous: list[msgs.Message] = (
            list(continuing.conversation) if continuing else []
        )  # as last sent, answered

    def hook(
        self, source: dict[str, Any]
    ) -> Callable[[msgs.Conversation, ChatCompletion, dict[str, str | None]], None]:
        """The hook for one loaded model; `source` ({"model": ..., "mmproj": ...}) says how to load it again
        (a model given as a relative path is kept absolute, so --continue finds it from anywhere)."""
        source = {**source, **{k: _absolute(source.get(k)) for k in ("model", "mmproj")}}
        return lambda messages, completion, digests: self.log(source, messages, completion, digests)

    def log(
        self,
        source: dict[str, Any],
        messages: msgs.Conversation | Sequence[Any],
        completion: ChatCompletion,
        digests: dict[str, str | None],
    ) -> None:
        try:
            conversation = msgs.parse_conversation(messages)  # the Runner's: parsed already
            if self._each_apart or self._previous and not shares_a_turn(self._previous, conversation):
                self.cid = new_conversation_id()
            self.store.log_turn(self.cid, completion.model, conversation, completion, digests=digests, source=source)
            self._previous = [*conversation, msgs.parse_message(msgs.assistant_message(completion.content))]
        except Exception as e:  # noqa: BLE001  (a log that fails must not take the answer with it)
            log.debug("logging the answer failed", exc_info=True)
            log.warning(f"this answer was not logged: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def _absolute(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p.resolve()) if p.is_file() else path
