"""Reading a config file: TOML syntax, known keys, sources, and every binding, all checked.

Nothing is written while a file is read, and a file with any problem is refused as a whole: a
half-applied configuration is worse than none, because nobody wrote it. So every check that can
run without the metabase runs here, and every problem found is reported in one go, each with the
file, the line, the binding by its name and the key at fault.
"""

from __future__ import annotations

import ipaddress
import operator
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Protocol

from seo_core.catalog import parse_source
from seo_core.config.locate import Locator, Problems, unknown_key
from seo_core.config.model import Config, SourceSettings, origin_for
from seo_core.config.settings import SOURCE_KEYS, absolute, parse_listen, read_settings
from seo_core.errors import (
    ConfigError,
    ConfigFileError,
    SeoError,
    ValidationError,
    literal,
)
from seo_core.events.schema import Schema
from seo_core.guids import parse_guid
from seo_core.metabase import Binding, BindingSpec, validate_spec
from seo_core.metabase.validation import escaped
from seo_core.properties import PropertyValue
from seo_core.registry import SinkRegistry

TOP_KEYS = ("metabase", "sources", "bindings")

BINDING_KEYS = (
    "source",
    "event",
    "name",
    "sink",
    "rule",
    "priority",
    "max_firings",
    "enabled",
    "id",
    "expires",
    "sink_properties",
    "source_properties",
    "binding_properties",
)
"""Every key a ``[[bindings]]`` table may hold (DESIGN.md section 8)."""

_STRING_KEYS = ("source", "event", "name", "sink", "rule", "id")
_BAG_KEYS = {
    "binding_properties": "binding",
    "sink_properties": "sink",
    "source_properties": "source",
}

# What a ValidationError's field is called in a config file: the key, and the property in it.
_FIELD_KEYS = (
    ("SinkProperties", "sink_properties"),
    ("SourceProperties", "source_properties"),
    ("EventBindingProperties", "binding_properties"),
    ("binding ID", "id"),
    ("ID", "id"),
    ("DisplayName", "name"),
    ("SinkClass", "sink"),
    ("MaxFirings", "max_firings"),
    ("Expiration", "expires"),
    ("Priority", "priority"),
    ("Rule", "rule"),
    ("source", "source"),
    ("event", "event"),
)

_TOML_POSITION = re.compile(
    r"^(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$"
)


class _Report(Protocol):
    """How a binding's checks report a fault: the key (and property) at fault, and why."""

    def __call__(self, key: str | None, reason: str, prop: str | None = None) -> None: ...


def load_config(path: str | os.PathLike[str], *, require_listen: bool = True) -> Config:
    """Read and check the config file at ``path``; raise :class:`ConfigFileError` if it is wrong.

    Every binding is validated as the metabase would (GUIDs, events, priorities, rules, property
    values); whether its sink is installed is checked by :func:`check_config`, which needs a
    registry. ``require_listen=False`` accepts sources without ``listen``: ``seo config apply``
    does not run them, and an exported file has no listen address to give.
    """
    file = Path(os.path.abspath(path))
    text = _read(file)
    locator = Locator(text)
    problems = Problems(file)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(file, str(exc), len(locator.lines)) from None
    for key in document:
        if key not in TOP_KEYS:
            problems.add(locator.table(key), "", unknown_key(key, TOP_KEYS))
    metabase = _metabase(document, file, locator, problems)
    sources = _sources(document.get("sources", {}), file, locator, problems, require_listen)
    bindings = _bindings(document.get("bindings", []), file, locator, problems)
    problems.check()
    return Config(file, metabase, sources, bindings, locator)


def check_config(config: Config, registry: SinkRegistry) -> Config:
    """Check every binding's sink; return ``config`` with its sinks' path properties absolute.

    Refuses bindings whose sink is missing, ambiguous, does not handle the event, or refuses
    its SinkProperties, raising :class:`ConfigFileError` listing each one. A SinkProperty the
    sink declares as a path (``Prop(path=True)``) and the file gives as a relative path is made
    absolute against the file's folder: only the sink knows which of its properties are paths.
    """
    problems = Problems(config.path)
    specs: list[BindingSpec] = []
    for index, spec in enumerate(config.bindings):
        try:
            info = registry.check_binding(validate_spec(spec))
        except SeoError as exc:
            _report(problems, config.locator, index, binding_context(spec, index), exc, {})
            specs.append(spec)
            continue
        specs.append(_absolute_paths(spec, info.target, config.path.parent))
    problems.check()
    return replace(config, bindings=specs)


def _absolute_paths(spec: BindingSpec, sink: object, folder: Path) -> BindingSpec:
    properties = absolute_path_properties(spec.sink_properties, sink, folder)
    return replace(spec, sink_properties=properties)


def absolute_path_properties(
    properties: Mapping[str, PropertyValue], sink: object, folder: Path
) -> dict[str, PropertyValue]:
    """``properties`` with those ``sink`` declares as paths made absolute against ``folder``.

    A server may run in another folder than the file or the command that named the path, so
    the metabase only ever holds where the administrator meant.
    """
    schema = getattr(sink, "properties_schema", None)
    paths = (
        {name.casefold() for name in schema.path_properties()}
        if isinstance(schema, Schema)
        else set()
    )
    return {
        name: str(absolute(value, folder))
        if name.casefold() in paths and isinstance(value, str) and value
        else value
        for name, value in properties.items()
    }


def binding_context(spec: BindingSpec, index: int) -> str:
    """How a message names a binding: ``binding "Tag mail"``, or ``binding #2`` without a name."""
    if spec.display_name:
        return f"binding {_quote(spec.display_name)}"
    return f"binding #{index + 1}"


def _quote(text: str) -> str:
    """A name as a message quotes it: control characters escaped, so the message is one line."""
    return escaped(text)


def _read(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8")
    except OSError as exc:
        reason = f"cannot read the config file: {exc.strerror or exc}"
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start}); TOML files are UTF-8"
    raise ConfigFileError([ConfigError(str(file), reason)])


def _syntax_error(file: Path, message: str, last_line: int) -> ConfigFileError:
    match = _TOML_POSITION.match(message)
    if match is None:
        return ConfigFileError([ConfigError(str(file), f"invalid TOML: {message}")])
    line = match.group("line") or str(max(last_line, 1))
    column = f" (column {match.group('col')})" if match.group("col") else " (at the end)"
    reason = f"invalid TOML: {match.group('message')}{column}"
    return ConfigFileError([ConfigError(f"{file}:{line}", reason)])


def _metabase(
    document: Mapping[str, Any], file: Path, locator: Locator, problems: Problems
) -> Path | None:
    value = document.get("metabase")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(locator.top("metabase"), "", "metabase: must be a path (a string)")
        return None
    return absolute(value, file.parent)


def _sources(
    value: object, file: Path, locator: Locator, problems: Problems, require_listen: bool
) -> dict[str, SourceSettings]:
    if not isinstance(value, dict):
        problems.add(locator.table("sources"), "", 'sources: must be a table of [sources."smtp/1"]')
        return {}
    found: dict[str, SourceSettings] = {}
    written: dict[str, str] = {}
    for raw, table in value.items():
        context = f"sources.{_quote(raw)}"
        try:
            name = parse_source(raw)
        except ValidationError as exc:
            problems.add(locator.source(raw), context, f"{exc.reason}")
            continue
        if str(name) in written:
            problems.add(
                locator.source(raw),
                context,
                f"the same source as sources.{_quote(written[str(name)])}",
            )
            continue
        written[str(name)] = raw
        if not isinstance(table, dict):
            problems.add(locator.source(raw), context, "must be a table of settings")
            continue
        keys = SOURCE_KEYS[name.type]
        for key in table:
            if key not in keys:
                problems.add(locator.source(raw, key), context, unknown_key(key, keys))

        def report(key: str, reason: str, raw: str = raw, context: str = context) -> None:
            problems.add(locator.source(raw, key), context, reason)

        known = {k: v for k, v in table.items() if k in keys}
        settings = read_settings(
            name, known, file.parent, require_listen=require_listen, report=report
        )
        found[str(name)] = SourceSettings(str(name), name.type, settings)
    _refuse_shared_places(found, written, locator, problems)
    return found


def _refuse_shared_places(
    found: Mapping[str, SourceSettings],
    raws: Mapping[str, str],
    locator: Locator,
    problems: Problems,
) -> None:
    """Two sources may not share a spool folder (one server at a time holds a spool) nor a listen
    address (the second could not listen): said here, naming both, before anything is written,
    rather than by the second source failing to start once the metabase was changed."""
    seen: list[tuple[str, str, Any]] = []
    for name, source in found.items():
        for key in ("spool", "listen"):
            value = source.settings.get(key)
            if value is None:
                continue
            same = _same_socket if key == "listen" else operator.eq
            first = next((n for k, n, v in seen if k == key and same(v, value)), None)
            seen.append((key, name, value))
            if first is None:
                continue
            other = f"sources.{_quote(raws[first])}"
            line = locator.source(raws[first], key)
            where = f" (line {line})" if line else ""
            if key == "spool":
                reason = (
                    f"spool: {value} is also the spool of {other}{where}; "
                    "each source needs a folder of its own"
                )
            else:
                theirs = found[first].settings["listen"]
                reason = (
                    f"listen: {value} clashes with {other}, which listens on {theirs}{where}; "
                    "each source needs an address of its own"
                )
            problems.add(locator.source(raws[name], key), f"sources.{_quote(raws[name])}", reason)


def _same_socket(one: str, other: str) -> bool:
    """Whether two listen addresses clash: the same host and port, or the same port and the
    wildcard of the other's family (a server on 0.0.0.0:25 takes 127.0.0.1:25 too)."""
    (host, port), (other_host, other_port) = parse_listen(one), parse_listen(other)
    if port != other_port:
        return False
    try:
        ip, other_ip = ipaddress.ip_address(host), ipaddress.ip_address(other_host)
    except ValueError:
        return host.lower().rstrip(".") == other_host.lower().rstrip(".")
    if ip == other_ip:
        return True
    return ip.version == other_ip.version and (ip.is_unspecified or other_ip.is_unspecified)


def _bindings(value: object, file: Path, locator: Locator, problems: Problems) -> list[BindingSpec]:
    if not isinstance(value, list):
        problems.add(locator.table("bindings"), "", "bindings: must be an array of [[bindings]]")
        return []
    specs: list[BindingSpec] = []
    seen: dict[tuple[str, str, str], int] = {}
    ids: dict[str, int] = {}
    for index, table in enumerate(value):
        spec = _binding(index, table, origin_for(file), locator, problems)
        if spec is not None:
            specs.append(spec)
        if not isinstance(table, dict):
            continue
        # Looked for in the table itself, not the checked spec: a binding with another fault
        # (a bad expires, an unknown sink property) still has its name and id, and a clash
        # between two of them is reported in the same run as that fault.
        context = _table_context(table, index)
        identity = _identity(table)
        if identity is not None:
            if identity in seen:
                first = seen[identity]
                first_line = locator.binding(first)
                where = f", line {first_line}" if first_line else ""
                problems.add(
                    locator.binding(index, "name"),
                    context,
                    f"name: {identity[0]} {identity[1]} {_quote(identity[2])} is declared "
                    f"twice (first as binding #{first + 1}{where})",
                )
            seen.setdefault(identity, index)
        binding_id = _guid(table.get("id"))
        if binding_id is not None:
            if binding_id in ids:
                problems.add(
                    locator.binding(index, "id"),
                    context,
                    f"id: {binding_id} is also the id of binding #{ids[binding_id] + 1}",
                )
            ids.setdefault(binding_id, index)
    return specs


def _identity(table: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(source, event, name) in canonical form, or ``None`` if the table does not give them
    (that fault is reported on its own)."""
    source, event, name = table.get("source"), table.get("event"), table.get("name")
    if not (isinstance(source, str) and isinstance(event, str) and isinstance(name, str)):
        return None
    if not name.strip():
        return None
    try:
        parsed = parse_source(source)
        return str(parsed), parsed.source_type.event(event).name, name
    except ValidationError:
        return None


def _guid(value: object) -> str | None:
    """The binding ID a table gives, canonical, or ``None`` if it gives no valid one."""
    if not isinstance(value, str):
        return None
    try:
        return parse_guid(value)
    except ValidationError:
        return None


def _binding(
    index: int, table: object, origin: str, locator: Locator, problems: Problems
) -> BindingSpec | None:
    """Check one ``[[bindings]]`` table; return its normalized spec, or ``None`` if wrong.

    A key that is unknown or of the wrong type is reported and left out, and the rest is still
    checked the way the metabase checks a binding, so one run reports as much as it can.
    """
    if not isinstance(table, dict):
        problems.add(locator.binding(index), f"binding #{index + 1}", "must be a table")
        return None
    context = _table_context(table, index)
    bad: set[str] = set()

    def report(key: str | None, reason: str, prop: str | None = None) -> None:
        problems.add(locator.binding(index, key, prop), context, reason)
        if key is not None:
            bad.add(key)

    for key in table:
        if key not in BINDING_KEYS:
            report(key, unknown_key(key, BINDING_KEYS))
    missing = [key for key in ("source", "event", "sink") if key not in table]
    for key in missing:
        report(None, f"{key}: required key is missing")
    if "name" not in table and "id" not in table:
        missing.append("name")
        report(None, "name: required key is missing (it names the binding across applies)")
    _check_types(table, report)
    if missing or bad & {"source", "event", "sink", "name", "id"}:
        return None
    spec = _spec({key: value for key, value in table.items() if key not in bad}, origin)
    try:
        binding = validate_spec(spec)
    except SeoError as exc:
        _report(problems, locator, index, context, exc, table)
        return None
    return None if bad else _normalized(binding, given_id=spec.id is not None)


def _table_context(table: Mapping[str, Any], index: int) -> str:
    """How a message names a binding table that may not have passed its checks."""
    name = table.get("name")
    return f"binding {_quote(name)}" if isinstance(name, str) and name else f"binding #{index + 1}"


def _check_types(table: Mapping[str, Any], report: _Report) -> None:
    for key in _STRING_KEYS:
        if key in table and not isinstance(table[key], str):
            report(key, f"{key}: must be a string, not {_kind(table[key])}")
    priority = table.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int | str)):
        report("priority", f"priority: must be an integer or a PRIO_* name, not {_kind(priority)}")
    max_firings = table.get("max_firings")
    if max_firings is not None and (
        isinstance(max_firings, bool) or not isinstance(max_firings, int)
    ):
        report("max_firings", f"max_firings: must be a whole number, not {_kind(max_firings)}")
    if "enabled" in table and not isinstance(table["enabled"], bool):
        report("enabled", f"enabled: must be true or false, not {_kind(table['enabled'])}")
    if "expires" in table:
        try:
            _expires(table["expires"])
        except ValueError as exc:
            report("expires", f"expires: {exc}")
    for key in _BAG_KEYS:
        if key in table and not isinstance(table[key], dict):
            report(key, f"{key}: must be a table, not {_kind(table[key])}")
    source_properties = table.get("source_properties")
    if isinstance(source_properties, dict):
        for key, prop in (("rule", "Rule"), ("priority", "Priority")):
            twice = [n for n in source_properties if n.casefold() == prop.casefold()]
            if key in table and twice:
                report(key, f"{key}: given twice, also as source_properties.{twice[0]}")


def _kind(value: object) -> str:
    """What a value of the wrong type is: itself when short (``true``, ``1.5``, ``"x"``), as the
    file wrote it, else its kind (``an array``, ``a table``)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return literal(value)


def _expires(value: object) -> datetime:
    """A TOML offset date-time, or an ISO 8601 string with a zone: an instant."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO 8601 time; write 2030-01-31T18:00:00+01:00"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"{value.isoformat()} has no time zone; add one, as in "
                f"{value.isoformat()}Z or {value.isoformat()}+01:00"
            )
        return value
    if isinstance(value, date | time):
        raise ValueError(f"{value.isoformat()} is not an instant; write a date, time and zone")
    raise ValueError(f"must be a date-time with a zone, not {_kind(value)}")


def _spec(table: Mapping[str, Any], origin: str) -> BindingSpec:
    source_properties: dict[str, PropertyValue] = dict(table.get("source_properties", {}))
    if "rule" in table:
        source_properties["Rule"] = table["rule"]
    if "priority" in table:
        source_properties["Priority"] = table["priority"]
    return BindingSpec(
        source=table["source"],
        event=table["event"],
        sink_class=table["sink"],
        display_name=table.get("name"),
        id=table.get("id"),
        enabled=table.get("enabled", True),
        max_firings=table.get("max_firings", 0),
        expiration=_expires(table["expires"]) if "expires" in table else None,
        binding_properties=table.get("binding_properties", {}),
        sink_properties=table.get("sink_properties", {}),
        source_properties=source_properties,
        origin=origin,
    )


def _normalized(binding: Binding, *, given_id: bool) -> BindingSpec:
    """The spec in the form the metabase stores (canonical names, priorities as numbers)."""
    return BindingSpec(
        source=binding.source,
        event=binding.event,
        sink_class=binding.sink_class,
        display_name=binding.display_name,
        id=binding.id if given_id else None,
        enabled=binding.enabled,
        max_firings=binding.max_firings,
        expiration=binding.expiration,
        binding_properties=binding.binding_properties.to_dict(),
        sink_properties=binding.sink_properties.to_dict(),
        source_properties=binding.source_properties.to_dict(),
        origin=binding.origin,
    )


def _report(
    problems: Problems,
    locator: Locator,
    index: int,
    context: str,
    exc: SeoError,
    table: Mapping[str, Any],
) -> None:
    """Report a refusal from the metabase's checks or the registry under the key at fault."""
    key, prop = "sink", None
    if isinstance(exc, ValidationError):
        key, prop = _field_key(exc.field)
        if key in ("rule", "priority") and key not in table and "source_properties" in table:
            key, prop = "source_properties", exc.field
    problems.add(locator.binding(index, key, prop), context, f"{key}: {exc}")


def _field_key(field: str) -> tuple[str, str | None]:
    """``SinkProperties.Fields[0]`` -> ``("sink_properties", "Fields")``."""
    for prefix, key in _FIELD_KEYS:
        if field.startswith(prefix):
            rest = re.match(r"\.([^.\[]+)", field[len(prefix) :])
            return key, rest.group(1) if rest else None
    return "sink", None
