"""Where the library's diagnostics meet the terminal: one handler on the `mmchat` logger.

Library code logs to `logging.getLogger("mmchat.<package>")`: a warning is `log.warning`, a notice
(what the user is told as it happens: a model pulled, a medium read again) `log.info`, what only
`-v` shows `log.debug`. The library installs no handler, so a Python user who configures logging
sees mmchat's records there (and, with nothing configured, Python's last-resort handler still
prints warnings). The CLI installs this one: `mmchat: …` lines on the current environment's stderr
(so tests that swap the streams see them), `-q` keeps warnings only, `-v` adds debug, and the
console honours NO_COLOR and a stderr that is not a terminal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ..env import current

LOGGER = "mmchat"


class StderrHandler(logging.Handler):
    """`mmchat: warning: …` for warnings and errors, `mmchat: …` for the rest, on current().stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                message = f"warning: {message}"
            current().notice(message)
        except Exception:  # a diagnostic never breaks the command that logs it
            self.handleError(record)


def install(*, quiet: bool = False, verbose: bool = False) -> logging.Logger:
    """The CLI's handler on the `mmchat` logger (once, however often a command calls it), at the
    level `-q`/`-v` ask for; records stop there instead of reaching the root logger's handlers."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def silenced(name: str = LOGGER) -> Iterator[None]:
    """Nothing from `name` and the loggers below it meanwhile (they take its level): for a command
    that reads what another command reports."""
    logger = logging.getLogger(name)
    was = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(was)
