"""The ``edgevos`` logger on a console: the form of its lines and the handler that the command
line installs (and a spawned export process, at the level its parent logs at).

Library modules only log, to ``logging.getLogger(__name__)`` under ``edgevos``; messages go to
stderr, results to stdout.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, TextIO

#: the logger every edgevos module logs under
LOGGER = "edgevos"


class ConsoleFormat(logging.Formatter):
    """The message as it is; a level word before warnings, errors and debug messages."""

    def __init__(self):
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"


def log_level(verbose: int = 0, quiet: bool = False) -> int:
    """The ``edgevos`` logger's level for ``-v`` (count) and ``-q``: INFO by default."""
    if quiet:
        return logging.WARNING
    return logging.DEBUG if verbose else logging.INFO


def effective_level() -> int:
    """The level the ``edgevos`` logger lets through now (what a spawned process should log at)."""
    return logging.getLogger(LOGGER).getEffectiveLevel()


def start_console_log(level: int, stream: Optional[TextIO] = None) -> logging.Handler:
    """Send the ``edgevos`` logger's messages at ``level`` and above to ``stream`` (stderr).

    Returns:
        The handler, for :func:`stop_console_log`.
    """
    logger = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(ConsoleFormat())
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def stop_console_log(handler: logging.Handler) -> None:
    """Undo :func:`start_console_log`."""
    logger = logging.getLogger(LOGGER)
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
