"""Where in a config file a table or key is written, and how a problem there is reported.

``tomllib`` gives line numbers only for syntax errors; a value that parses but is wrong (an
unknown key, a bad priority) has no position. An administrator still needs the line, so this
module scans the raw text for the table headers and keys a message names. It is a best effort
(a header-like line inside a multi-line string can fool it); when it finds nothing, the message
names the file without a line rather than a wrong one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from seo_core.errors import ConfigError, ConfigFileError

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_Header = tuple[int, bool, tuple[str, ...]]
_Ends = Callable[[bool, tuple[str, ...]], bool]
"""Decides whether a header (array or not, its key path) ends the table being searched."""


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _read_key(text: str, pos: int) -> tuple[tuple[str, ...], int] | None:
    """Read a dotted TOML key at ``pos``; return its parts and the position after it."""
    parts: list[str] = []
    while True:
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] in "\"'":
            quote = text[pos]
            end = pos + 1
            while end < len(text) and text[end] != quote:
                end += 2 if quote == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE.match(text, pos)
            if match is None:
                return None
            parts.append(match.group())
            pos = match.end()
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return tuple(parts), pos


def _header(line: str) -> tuple[bool, tuple[str, ...]] | None:
    """``[a."b"]`` -> ``(False, ("a", "b"))``; ``[[bindings]]`` -> ``(True, ("bindings",))``."""
    text = line.strip()
    array = text.startswith("[[")
    start = 2 if array else 1
    if not text.startswith("["):
        return None
    found = _read_key(text, start)
    if found is None:
        return None
    parts, pos = found
    close = "]]" if array else "]"
    if not text.startswith(close, pos):
        return None
    rest = text[pos + len(close) :].strip()
    if rest and not rest.startswith("#"):
        return None
    return array, parts


def _leading_key(line: str) -> tuple[str, ...] | None:
    """The key of a ``key = value`` line, or ``None``."""
    found = _read_key(line, 0)
    if found is None:
        return None
    parts, pos = found
    return parts if line.startswith("=", pos) else None


class Locator:
    """Line numbers (1-based) of the tables and keys of one config file's text."""

    def __init__(self, text: str = "") -> None:
        self.lines = text.splitlines()
        self._headers: list[_Header] = []
        for number, line in enumerate(self.lines, start=1):
            found = _header(line)
            if found is not None:
                self._headers.append((number, *found))

    def top(self, key: str) -> int | None:
        """The line of a top-level ``key = ...`` (before the first table header)."""
        end = self._headers[0][0] if self._headers else len(self.lines) + 1
        return self._key_line(0, end, key)

    def table(self, key: str) -> int | None:
        """The line of a top-level key, or of the first table header under it."""
        line = self.top(key)
        if line is None:
            line = next((n for n, _array, path in self._headers if path[:1] == (key,)), None)
        return line

    def binding(self, index: int, key: str | None = None, prop: str | None = None) -> int | None:
        """The line of the ``index``-th ``[[bindings]]`` table, or of a key (and property) in it.

        Falls back to the table's header line when the key is not found there.
        """
        starts = [n for n, array, path in self._headers if array and path == ("bindings",)]
        if index >= len(starts):
            return self.top("bindings")
        start = starts[index]
        end = self._end(start, lambda array, path: array or path[:1] != ("bindings",))
        return self._inside(start, end, ("bindings",), key, prop)

    def source(self, name: str, key: str | None = None) -> int | None:
        """The line of ``[sources."NAME"]`` (or of ``"NAME" = ...`` under ``[sources]``)."""
        for start, array, path in self._headers:
            if not array and path == ("sources", name):
                end = self._end(start, lambda _array, path: path[:2] != ("sources", name))
                return self._inside(start, end, ("sources", name), key, None)
        for start, array, path in self._headers:
            if not array and path == ("sources",):
                end = self._end(start, lambda _array, path: path[:1] != ("sources",))
                return self._key_line(start, end, name) or start
        return self.top("sources")

    def _end(self, start: int, ends: _Ends) -> int:
        for number, array, path in self._headers:
            if number > start and ends(array, path):
                return number
        return len(self.lines) + 1

    def _inside(
        self, start: int, end: int, table: tuple[str, ...], key: str | None, prop: str | None
    ) -> int:
        if key is None:
            return start
        line = self._key_line(start, end, key)
        if line is None:
            line = next(
                (
                    number
                    for number, _array, path in self._headers
                    if start < number < end and path == (*table, key)
                ),
                None,
            )
        if line is None:
            return start
        if prop is not None:
            return self._prop_line(line, end, prop) or line
        return line

    def _key_line(self, start: int, end: int, key: str) -> int | None:
        for number in range(start + 1, min(end, len(self.lines) + 1)):
            parts = _leading_key(self.lines[number - 1])
            if parts and parts[0] == key:
                return number
        return None

    def _prop_line(self, start: int, end: int, prop: str) -> int | None:
        name = re.escape(prop)
        # Property names match case-insensitively, so the file may spell them either way.
        pattern = re.compile(rf"""(?:^|[{{,.])\s*(?:"{name}"|'{name}'|{name})\s*=""", re.IGNORECASE)
        for number in range(start, min(end, len(self.lines) + 1)):
            if pattern.search(self.lines[number - 1]):
                return number
        return None


class Problems:
    """Collects the problems of one file, so that one run reports all of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._items: list[tuple[int, ConfigError]] = []

    def add(self, line: int | None, context: str, reason: str) -> None:
        """Record ``reason`` about ``context`` (``binding "Tag mail"``) at ``line``."""
        location = f"{self.path}:{line}" if line else str(self.path)
        error = ConfigError(location, f"{context}: {reason}" if context else reason)
        self._items.append((line or 0, error))

    def check(self) -> None:
        """Raise :class:`ConfigFileError` with every problem recorded, in file order."""
        if self._items:
            ordered = sorted(self._items, key=lambda item: item[0])
            raise ConfigFileError([error for _, error in ordered])


def unknown_key(key: str, known: Iterable[str]) -> str:
    """``sink_propertes: unknown key (did you mean 'sink_properties'?)``."""
    choices = list(known)
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    if close:
        return f"{key}: unknown key (did you mean {close[0]!r}?)"
    return f"{key}: unknown key; known keys: {', '.join(choices)}"
