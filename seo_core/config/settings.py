"""The settings of a ``[sources."TYPE/N"]`` table: which keys each source type takes, and checks.

A source reads its settings from :class:`~seo_core.config.model.SourceSettings` without checking
them again: every key is present (defaults filled in), of its type, in range, and every path is
absolute, made so against the config file's folder. A server started from
``/etc/seo/seo.toml`` must find ``var/spool`` in the same place whatever folder it was started in.
"""

from __future__ import annotations

import functools
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from seo_core.catalog import SourceName


class SettingError(ValueError):
    """A setting's value is wrong; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class _Context:
    folder: Path
    source: SourceName


@dataclass(frozen=True, slots=True)
class _Key:
    read: Callable[[object, _Context], Any]
    default: Callable[[_Context, Mapping[str, Any]], Any] | None
    """``None``: the key is required. Otherwise called with the settings read so far."""


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:2525"`` -> ``("127.0.0.1", 2525)``; IPv6 is written ``"[::1]:2525"``.

    Sources call it to bind; the loader calls it to refuse a bad address before anything runs.
    """
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise SettingError(f"expected HOST:PORT (IPv6 as [::1]:2525), got {text!r}")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise SettingError(f"an IPv6 host is written in brackets, as [::1]:2525; got {text!r}")
        host = host[1:-1]
    elif ":" in host:
        raise SettingError(f"write an IPv6 host in brackets, as [{host}]:{port}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingError(f"port {port!r} is not a number from 1 to 65535")
    return host, int(port)


@functools.cache
def default_hostname() -> str:
    """This machine's fully qualified name; asked once per process (it may query DNS)."""
    return socket.getfqdn()


def _listen(value: object, _ctx: _Context) -> str:
    text = _text(value, _ctx)
    parse_listen(text)
    return text


def _text(value: object, _ctx: _Context) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingError("must be a non-empty string")
    return value


def _texts(value: object, ctx: _Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SettingError("must be a list of strings")
    try:
        return tuple(_text(item, ctx) for item in value)
    except SettingError:
        raise SettingError("must be a list of non-empty strings") from None


def _path(value: object, ctx: _Context) -> Path:
    return absolute(_text(value, ctx), ctx.folder)


def absolute(path: str | Path, folder: Path) -> Path:
    """``path`` made absolute against ``folder`` (``~`` expanded), without resolving links."""
    expanded = Path(path).expanduser()
    return Path(os.path.normpath(expanded if expanded.is_absolute() else folder / expanded))


def _positive_int(value: object, _ctx: _Context) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SettingError("must be a whole number > 0")
    return value


def _positive_number(value: object, _ctx: _Context) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SettingError("must be a number > 0")
    return float(value)


def _schedule(value: object, ctx: _Context) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise SettingError("must be a list of seconds, such as [1, 5, 30, 120, 600]")
    try:
        return tuple(_positive_number(item, ctx) for item in value)
    except SettingError:
        raise SettingError("must be a list of numbers of seconds > 0") from None


def _one_of(*choices: str) -> Callable[[object, _Context], str]:
    def check(value: object, _ctx: _Context) -> str:
        if value not in choices:
            raise SettingError(f"must be one of {', '.join(map(repr, choices))}")
        return str(value)

    return check


def _hostname(_ctx: _Context, _read: Mapping[str, Any]) -> str:
    return default_hostname()


def _in_folder(pattern: str) -> Callable[[_Context, Mapping[str, Any]], Path]:
    def default(ctx: _Context, _read: Mapping[str, Any]) -> Path:
        return absolute(pattern.format(n=ctx.source.instance), ctx.folder)

    return default


def _const(value: Any) -> Callable[[_Context, Mapping[str, Any]], Any]:
    return lambda _ctx, _read: value


SOURCE_KEYS: dict[str, dict[str, _Key]] = {
    "smtp": {
        "listen": _Key(_listen, None),
        "hostname": _Key(_text, _hostname),
        "local_domains": _Key(_texts, lambda _ctx, read: (read["hostname"],)),
        "spool": _Key(_path, _in_folder("var/spool/smtp-{n}")),
        "max_message_size": _Key(_positive_int, _const(10_485_760)),
        "max_recipients": _Key(_positive_int, _const(100)),
        "max_connections": _Key(_positive_int, _const(100)),
        "retry_schedule": _Key(_schedule, _const((1.0, 5.0, 30.0, 120.0, 600.0))),
        "shutdown_timeout": _Key(_positive_number, _const(30.0)),
        "delivery": _Key(_one_of("process", "inline"), _const("process")),
        "delivery_priority": _Key(_one_of("idle", "low", "normal"), _const("idle")),
    },
    "nntp": {
        "listen": _Key(_listen, None),
        "hostname": _Key(_text, _hostname),
        "store": _Key(_path, _in_folder("var/news/nntp-{n}")),
        "groups": _Key(_texts, _const(())),
        "moderated": _Key(_texts, _const(())),
        "max_article_size": _Key(_positive_int, _const(1_048_576)),
    },
}
"""Every key of each source type, in the order they are read (a default may use an earlier
key: ``local_domains`` defaults to ``hostname``)."""


def read_settings(
    source: SourceName,
    table: Mapping[str, object],
    folder: Path,
    *,
    require_listen: bool,
    report: Callable[[str, str], None],
) -> Mapping[str, Any]:
    """Check ``table`` against the keys of ``source``'s type; ``report(key, reason)`` each fault.

    Returns the settings with defaults filled in. ``listen`` may be left out when
    ``require_listen`` is false: the metabase does not need it, only a running server does.
    """
    keys = SOURCE_KEYS[source.type]
    ctx = _Context(folder, source)
    read: dict[str, Any] = {}
    for key, spec in keys.items():
        if key in table:
            try:
                read[key] = spec.read(table[key], ctx)
            except SettingError as exc:
                report(key, f"{key}: {exc}")
        elif spec.default is not None:
            if key != "local_domains" or "hostname" in read:
                read[key] = spec.default(ctx, read)
        elif require_listen or key != "listen":
            report(key, f"{key}: required key is missing")
    if "moderated" in read and "groups" in read:
        carried = {group.strip() for group in read["groups"]}
        stray = [repr(group) for group in read["moderated"] if group.strip() not in carried]
        if stray:
            verb = "is" if len(stray) == 1 else "are"
            report("moderated", f"moderated: {', '.join(stray)} {verb} not in groups")
    return MappingProxyType(read)
