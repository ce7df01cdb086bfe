"""The webhook's SinkProperties: declared, checked when written, and read at call time."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from seo_core.sdk import Prop, PropertyBag, PropertyValue, Schema

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = 0.5
MAX_RETRIES = 10
MAX_RETRY_DELAY = 60.0

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_RESERVED_HEADERS = {"content-length", "host", "transfer-encoding", "connection"}

SCHEMA = Schema(
    {
        "url": Prop(str, required=True, help="the http:// or https:// URL the JSON is POSTed to"),
        "timeout": Prop(float, default=DEFAULT_TIMEOUT, help="seconds one attempt may take"),
        "retries": Prop(
            int,
            default=DEFAULT_RETRIES,
            help="attempts after the first, on a network error, a timeout, 429 or 5xx",
        ),
        "retry_delay": Prop(
            float,
            default=DEFAULT_RETRY_DELAY,
            help="seconds before the first retry, doubled before each next one",
        ),
        "include_body": Prop(bool, default=False, help="send the whole message too"),
        "token_env": Prop(
            str, help="environment variable whose value is sent as 'Authorization: Bearer'"
        ),
        "headers": Prop(dict, help="extra request headers, name -> value"),
    }
)


class SettingsError(ValueError):
    """A SinkProperty the webhook cannot work with; the message starts with its name."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The webhook's properties, checked, with their defaults filled in."""

    url: str
    timeout: float
    retries: int
    retry_delay: float
    include_body: bool
    token_env: str | None
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def read(cls, properties: Mapping[str, PropertyValue]) -> Settings:
        """Check ``properties`` (environment references resolved) and return the settings."""
        bag = PropertyBag(properties)
        url = bag.get("url")
        if not isinstance(url, str):
            raise SettingsError("url: is required and must be a string")
        check_url(url)
        timeout = _number(bag, "timeout", DEFAULT_TIMEOUT)
        if not timeout > 0:
            raise SettingsError(f"timeout: {timeout:g} is not a number of seconds > 0")
        retries = bag.get("retries", DEFAULT_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise SettingsError("retries: must be an integer")
        if not 0 <= retries <= MAX_RETRIES:
            raise SettingsError(f"retries: {retries} is not between 0 and {MAX_RETRIES}")
        delay = _number(bag, "retry_delay", DEFAULT_RETRY_DELAY)
        if not 0 <= delay <= MAX_RETRY_DELAY:
            raise SettingsError(f"retry_delay: {delay:g} is not between 0 and {MAX_RETRY_DELAY:g}")
        include_body = bag.get("include_body", False)
        if not isinstance(include_body, bool):
            raise SettingsError("include_body: must be true or false")
        token_env = bag.get("token_env")
        if token_env is not None and (
            not isinstance(token_env, str) or not _ENV_NAME.fullmatch(token_env)
        ):
            raise SettingsError(
                f"token_env: {token_env!r} is not an environment variable name "
                "(letters, digits and _, not starting with a digit)"
            )
        headers = _headers(bag.get("headers"), token=token_env is not None)
        return cls(url, timeout, retries, delay, include_body, token_env, headers)


def check_url(url: str) -> None:
    """Refuse anything but an absolute http(s) URL with a host and no credentials in it."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise SettingsError(f"url: {url!r} is not a URL (it is empty or holds white space)")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise SettingsError(f"url: {url!r} is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise SettingsError(f"url: {redact(url)} must start with http:// or https://")
    if not parts.hostname:
        raise SettingsError(f"url: {redact(url)} names no host")
    if parts.username is not None or parts.password is not None:
        raise SettingsError(
            "url: must not hold a user name or password (they would be stored in the "
            'metabase); use token_env, or write the whole url as { env = "NAME" }'
        )


def redact(url: str) -> str:
    """``https://host:port/…``: enough to say where, never a token in the path or query."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<malformed url>"
    if not host:
        return f"{parts.scheme}://"
    host = f"[{host}]" if ":" in host else host
    tail = "/…" if parts.path not in ("", "/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{tail}"


def _number(bag: PropertyBag, name: str, default: float) -> float:
    value = bag.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(f"{name}: must be a number of seconds")
    return float(value)


def _headers(value: PropertyValue | None, *, token: bool) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise SettingsError("headers: must be a table of header name -> value")
    checked: list[tuple[str, str]] = []
    for name, text in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise SettingsError(f"headers: {name!r} is not a header name")
        if name.lower() in _RESERVED_HEADERS:
            raise SettingsError(f"headers.{name}: is set by the HTTP client, not by a property")
        if token and name.lower() == "authorization":
            raise SettingsError(f"headers.{name}: token_env already sets Authorization")
        if not isinstance(text, str):
            raise SettingsError(f"headers.{name}: must be a string")
        if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in text):
            raise SettingsError(f"headers.{name}: must not hold line breaks or control characters")
        checked.append((name, text))
    return tuple(checked)
