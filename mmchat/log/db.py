"""The conversation log's SQLite file: its schema and migrations, one connection that a process's
threads share, IMMEDIATE transactions, and a damaged file moved aside (logs.db.damaged-TIME) with
one warning so that a new log begins. What a turn is and how it is read back is store.py's.

The schema version is `PRAGMA user_version`; MIGRATIONS[n] takes a database from version n to n+1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LogError

log = logging.getLogger("mmchat.log")

BUSY_TIMEOUT_S = 5.0

_V1 = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, model TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    created TEXT NOT NULL,
    model TEXT NOT NULL,
    source TEXT NOT NULL,       -- JSON: the model and projector as given, to load them again
    prefix INTEGER NOT NULL,    -- messages repeated from the previous turn's conversation (its answer included)
    messages TEXT NOT NULL,     -- JSON: the messages after those, media as reference + sha256
    prompt TEXT NOT NULL,       -- the last user text, for listing and search
    answer TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    usage TEXT NOT NULL,        -- JSON, as --json prints it
    timings TEXT NOT NULL,      -- JSON, as --json prints it
    UNIQUE (conversation_id, seq)
);
CREATE TABLE media (
    turn_id INTEGER NOT NULL REFERENCES turns(id),
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,          -- an absolute path or URL, or '(stdin)' and '(data: URL)' for inline bytes
    source TEXT NOT NULL,       -- path, url, stdin or inline
    sha256 TEXT,
    PRIMARY KEY (turn_id, position)
);
CREATE INDEX media_ref ON media(ref);
"""


def _statements(script: str) -> Callable[[sqlite3.Connection], None]:
    """A migration step of plain statements, run one by one inside the migration's transaction
    (executescript would commit it first, and two processes could then both create the tables)."""

    def step(db: sqlite3.Connection) -> None:
        for sql in script.split(";"):
            if sql.strip():
                db.execute(sql)

    return step


# v2: a turn whose conversation left its oldest turns behind (the REPL's window) goes on from message `resumed`
_V2 = "ALTER TABLE turns ADD COLUMN resumed INTEGER"
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_statements(_V1), _statements(_V2)]
SCHEMA_VERSION = len(MIGRATIONS)


class LogFile:
    """logs.db, opened (and created or migrated) on first use; the connection is shared by threads."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, shared by the threads of a process (batch workers)

    def _transaction(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def run(db: sqlite3.Connection) -> Any:
            db.execute("BEGIN IMMEDIATE")  # the write lock now: two writers queue instead of failing to upgrade
            try:
                result = work(db)
            except BaseException:
                db.rollback()
                raise
            db.commit()
            return result

        return self._guarded(run)

    def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        return self._guarded(work)

    def _guarded(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work`; a damaged file is moved aside once and `work` runs on a new log."""
        for attempt in (1, 2):
            try:
                with self._lock:
                    return work(self._connection())
            except sqlite3.DatabaseError as e:
                if attempt == 2 or not _damaged(e):
                    raise LogError(_describe(e, self.path)) from None
                self._quarantine(e)
            except OSError as e:
                raise LogError(f"cannot open the conversation log {self.path} ({e.strerror or e})") from None
        raise AssertionError("unreachable")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA foreign_keys=ON")
                _migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _quarantine(self, error: sqlite3.DatabaseError) -> None:
        self.close()
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        log.warning(
            f"the conversation log {self.path} was damaged ({error}): moved it to {aside.name}; a new log begins"
        )

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION, once, whoever gets there first."""
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated meanwhile
        if version > SCHEMA_VERSION:
            raise LogError(
                f"the conversation log {db_name(db)} is from a newer mmchat (schema {version}, this one "
                f"knows {SCHEMA_VERSION}): upgrade mmchat, or move the file away"
            )
        for step in MIGRATIONS[version:]:
            step(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.rollback()
        raise
    db.commit()


def db_name(db: sqlite3.Connection) -> str:
    return db.execute("PRAGMA database_list").fetchone()[2]


def _damaged(error: sqlite3.DatabaseError) -> bool:
    return getattr(error, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or (
        "malformed" in str(error) or "not a database" in str(error)
    )


def _describe(error: sqlite3.DatabaseError, path: Path) -> str:
    name = getattr(error, "sqlite_errorname", "")
    if name.startswith("SQLITE_BUSY") or "locked" in str(error):
        return f"the conversation log {path} is busy (another mmchat holds it): try again"
    return f"the conversation log {path} failed ({error})"
