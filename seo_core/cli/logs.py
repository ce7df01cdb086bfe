"""Logging set-up for the command line: the only place seo configures structlog.

Logs go to standard error, so that ``--json`` output on standard output stays clean: readable
lines on a terminal, one JSON object per line otherwise (or as ``--log-format`` says).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "console", "json")


_CURRENT: list[tuple[str, str]] = []


def current_logging() -> tuple[str, str] | None:
    """The (level, format) last configured, for a child process to log the same way."""
    return _CURRENT[-1] if _CURRENT else None


def configure_logging(
    level: str = "warning", fmt: str = "auto", process: str | None = None
) -> None:
    """Send structlog output to stderr at ``level`` in format ``fmt``.

    ``process`` names a helper process (``delivery``) in each of its lines: it shares stderr
    with the server, and both log the same kinds of events (a reload of the bindings, say).
    """
    _CURRENT[:] = [(level, fmt)]
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process is not None:
        processors.append(_Tag(process))
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # One write per line (PrintLogger writes the line and its newline apart): the server
        # and its delivery process share stderr, and their lines must not run into each other.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class _Tag:
    """A structlog processor that puts ``process=NAME`` in every event."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("process", self.name)
        return event
