"""The conversation log: every answered turn in an SQLite file (`mmchat logs`, `--continue`).

- store.py: what a turn is and how a conversation is read back (`LogStore`, `TurnLogger`);
- db.py: the SQLite file itself (schema, migrations, one shared connection, a damaged file moved aside);
- media.py: media parts as the log keeps them (a reference and a sha256, never the bytes);
- append.py: a turn written as what it adds to the conversation before it.
"""

from __future__ import annotations

from .db import MIGRATIONS, SCHEMA_VERSION
from .store import (
    LOG_NAME,
    OFF_MARKER,
    LoggedConversation,
    LogStore,
    TurnLogger,
    log_path,
    new_conversation_id,
    prompt_of,
    switched_off,
)

__all__ = [
    "LOG_NAME",
    "MIGRATIONS",
    "OFF_MARKER",
    "SCHEMA_VERSION",
    "LogStore",
    "LoggedConversation",
    "TurnLogger",
    "log_path",
    "new_conversation_id",
    "prompt_of",
    "switched_off",
]
