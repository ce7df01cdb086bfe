"""The one exception hierarchy of seo.

Every error that seo raises on purpose derives from :class:`SeoError`, so a caller (the CLI,
a server, a sink author's test) can catch the whole family in one place. Each class carries the
object at fault as attributes, not just text, so callers can report it their own way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date, datetime, time
from pathlib import Path

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def literal(value: object) -> str:
    """``value`` written the way an administrator writes it: a TOML literal.

    ``true``, ``1.5``, ``[1, 2]``, ``{ add = 'x' }``; a string is a single-quoted TOML literal
    string (``'var/mail'``, what a shell user types too) unless it holds a quote or a control
    character, then a basic string with escapes. Never Python's ``True`` or ``None``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if "'" not in value and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            return f"'{value}'"
        return '"' + "".join(_escape(c) for c in value) + '"'
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{_key(str(k))} = {literal(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    return repr(value)


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else literal(name)


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char


class SeoError(Exception):
    """Root of every error seo raises deliberately."""


class ValidationError(SeoError, ValueError):
    """A value offered for a binding, a property or a command is not acceptable.

    ``field`` names what was being set (``"Priority"``, ``"DisplayName"``, ``"--sink-prop"``)
    and ``value`` is what was offered, so the message can say both; the message shows the value
    as a TOML literal (:func:`literal`), the syntax of the config file and the command line.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(
            f"{field}: {reason}" if value is None else f"{field} {literal(value)}: {reason}"
        )


class RuleError(ValidationError):
    """A ``Rule`` source property cannot be parsed or names a keyword its event does not know."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__("Rule", rule, reason)
        self.rule = rule


class UnknownEventError(ValidationError):
    """An event name is not in the catalogue of its source type."""


class UnknownSourceError(ValidationError):
    """A source name is malformed or its source type is unknown."""


class NotFoundError(SeoError, LookupError):
    """A binding (or another named object) does not exist."""

    def __init__(self, what: str, name: str) -> None:
        self.what = what
        self.name = name
        super().__init__(f"no {what} {name}")


class ConflictError(SeoError):
    """A change would break a uniqueness rule, such as a duplicate DisplayName or binding ID."""


class MetabaseError(SeoError):
    """The metabase file cannot be opened, read or written."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"metabase {self.path}: {reason}")


class UnmadeMetabaseError(MetabaseError):
    """A command that only reads found no metabase to read: the file is missing, empty, or a
    SQLite database with no tables. It is left as it was; a command that writes makes it.
    (Another application's database, with tables of its own, is refused by every command.)"""


class SchemaTooNewError(MetabaseError):
    """The metabase was written by a newer seo whose schema this version does not know."""


class SinkError(SeoError):
    """Base for problems with a sink: not installed, ambiguous, failed to load, bad properties."""


class SinkNotFoundError(SinkError, LookupError):
    """No installed sink answers to a SinkClass."""

    def __init__(self, sink_class: str) -> None:
        self.sink_class = sink_class
        super().__init__(
            f"SinkClass {sink_class!r}: no installed sink has this name or CLSID "
            "(see `seo sinks list`)"
        )


class AmbiguousSinkError(SinkError):
    """Two distributions advertise the same sink name; the binding must qualify it."""

    def __init__(self, name: str, distributions: tuple[str, ...]) -> None:
        self.name = name
        self.distributions = distributions
        choices = ", ".join(f"{dist}:{name}" for dist in distributions)
        super().__init__(
            f"SinkClass {name!r} is advertised by {len(distributions)} distributions "
            f"({', '.join(distributions)}); name one of: {choices}"
        )


class SinkLoadError(SinkError):
    """A sink's entry point could not be imported or does not fit the hook specifications."""

    def __init__(self, sink_class: str, reason: str) -> None:
        self.sink_class = sink_class
        self.reason = reason
        super().__init__(f"sink {sink_class!r} is unavailable: {reason}")


class SinkPropertyError(ValidationError):
    """A sink refused the SinkProperties of a binding when it was written."""


class ConfigError(SeoError):
    """A config file is malformed; ``location`` names the file, line and key at fault."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")


class ConfigFileError(ConfigError):
    """Every problem found in one config file; the metabase was left as it was.

    ``problems`` holds one :class:`ConfigError` per problem, in file order. The message is one
    line per problem, so the CLI prints each on its own ``seo: error:`` line.
    """

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        if not problems:
            raise ValueError("ConfigFileError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        self.location = first.location
        self.reason = first.reason
        SeoError.__init__(self, "\n".join(str(problem) for problem in self.problems))


class EnvReferenceError(SeoError, LookupError):
    """A property written as ``{ env = "NAME" }`` names a variable the environment lacks.

    Raised when the property is resolved (as the sink is called), not when the binding is
    written: the administrator's shell and the server's environment are often not the same.
    """

    def __init__(self, variable: str, property_name: str) -> None:
        self.variable = variable
        self.property_name = property_name
        super().__init__(
            f"property {property_name!r} refers to environment variable {variable}, "
            "which is not set"
        )


class SourceStartError(SeoError):
    """A source could not start: its address is taken or not this machine's, its spool folder
    is not usable or is in use by another server, its disk is full."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot start {source}: {reason}")
