"""The ``headers`` sink class and the header edit it performs."""

from __future__ import annotations

import email.policy
import re
from collections.abc import Mapping, Sequence
from email.message import Message
from email.parser import BytesParser

from seo_core.sdk import (
    MessageEvent,
    Prop,
    PropertyBag,
    PropertyValue,
    Schema,
    SinkPropertyError,
    hookimpl,
)

_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
"""RFC 5322 field-name: printable US-ASCII except the colon."""

_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
"""Control characters, and every character ``str.splitlines`` breaks at: the generator splits
raw header values there, so one of them in a value would start a header line of its own."""

_FOLD_POLICY = email.policy.SMTP
"""New header lines are folded at 78 characters, with RFC 2047 encoded words for non-ASCII text,
whatever policy the message itself was parsed with."""


_HEADER_PARSER = BytesParser(policy=email.policy.SMTP)
"""Reads the header block of raw bytes the way the source's parser does (the raw values do not
depend on the policy's folding settings)."""


class HeadersSink:
    """OnArrival: removes, then sets, then adds header fields; nothing else is touched.

    Header lines the sink does not name stay as they were received, in their order, with their
    folding; a set header takes the place of the first line it replaces; added headers go at the
    end of the header block. The edits are made on the message's raw header list, so that the
    source, which writes headers it parsed back without refolding them, writes the message out
    as received plus exactly these lines.
    """

    properties_schema = Schema(
        {
            "add": Prop(dict, help="header name -> value: add, keeping existing ones"),
            "set": Prop(dict, help="header name -> value: replace every occurrence, or add"),
            "remove": Prop(list, help="header names: remove every occurrence"),
        }
    )

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        """Refuse bad header names and values, naming the property, before any mail comes."""
        _settings(PropertyBag(properties))

    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent, sink_properties: PropertyBag) -> None:
        remove, set_, add = _settings(sink_properties)
        if not event.message_used and event.raw is not None:
            # No sink has read the message yet, so the source still holds its bytes as
            # received. Look at a private copy of the header block first: when there is nothing
            # to change, leaving ``event.message`` unread keeps those bytes exactly.
            probe = _HEADER_PARSER.parsebytes(event.raw, headersonly=True)
            if not edit_headers(probe, remove=remove, set_=set_, add=add):
                return
        if edit_headers(event.message, remove=remove, set_=set_, add=add):
            # The bytes no longer describe the message; whoever writes it must serialize it.
            event.raw = None


def edit_headers(
    message: Message,
    *,
    remove: Sequence[str] = (),
    set_: Mapping[str, str] | None = None,
    add: Mapping[str, str] | None = None,
) -> bool:
    """Remove, then set, then add header fields of ``message``; True when anything changed.

    Names match case-insensitively; new lines are written with the name as given here. Values
    are folded and, where they are not ASCII, encoded as RFC 2047 words.
    """
    items = list(message.raw_items())
    dropped = {name.casefold() for name in remove}
    setting = {name.casefold(): name for name in set_ or {}}
    placed: set[str] = set()
    edited: list[tuple[str, str]] = []
    for name, value in items:
        key = name.casefold()
        if key in dropped:
            continue
        if key in setting:
            if key not in placed:
                placed.add(key)
                edited.append(_new_field(setting[key], (set_ or {})[setting[key]]))
            continue
        edited.append((name, value))
    for key, name in setting.items():
        if key not in placed:
            edited.append(_new_field(name, (set_ or {})[name]))
    edited.extend(_new_field(name, value) for name, value in (add or {}).items())
    if edited == items:
        return False
    # Rebuilt through the raw interface: header values parsed from the message stay the raw
    # text they were (a value assigned with ``message[name] = ...`` would be refolded).
    for name in {name.casefold(): name for name, _ in items}.values():
        del message[name]
    for field, raw in edited:
        message.set_raw(field, raw)
    return True


def _new_field(name: str, value: str) -> tuple[str, str]:
    """``(name, raw value)``: the value as the header line will be written, folded."""
    header = _FOLD_POLICY.header_factory(name, value)
    if header.defects:
        raise ValueError(f"{value!r} is not a valid {name} value ({header.defects[0]})")
    folded = header.fold(policy=_FOLD_POLICY)
    raw = folded[len(name) + 1 :].rstrip("\r\n")
    return name, raw.removeprefix(" ")


def _settings(bag: PropertyBag) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """``remove``, ``set`` and ``add``, checked; :class:`SinkPropertyError` names the culprit."""
    remove = _names(bag, "remove")
    set_ = _table(bag, "set")
    add = _table(bag, "add")
    if not (remove or set_ or add):
        raise SinkPropertyError(
            "SinkProperties", bag.to_dict(), "give at least one of add, set or remove"
        )
    return remove, set_, add


def _names(bag: PropertyBag, prop: str) -> list[str]:
    value = bag.get(prop)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SinkPropertyError(f"SinkProperties.{prop}", value, "must be a list of header names")
    for name in value:
        _check_name(prop, name)
    return [str(name) for name in value]


def _table(bag: PropertyBag, prop: str) -> dict[str, str]:
    value = bag.get(prop)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SinkPropertyError(
            f"SinkProperties.{prop}", value, "must be a table of header name -> value"
        )
    seen: dict[str, str] = {}
    table: dict[str, str] = {}
    for name, text in value.items():
        _check_name(prop, name)
        where = f"SinkProperties.{prop}.{name}"
        if not isinstance(text, str):
            raise SinkPropertyError(where, text, "must be a string (quote it)")
        if _FORBIDDEN.search(text):
            raise SinkPropertyError(
                where, text, "must not contain line breaks or control characters"
            )
        if prop == "set" and name.casefold() in seen:
            raise SinkPropertyError(
                where, text, f"names the same header as {seen[name.casefold()]!r}"
            )
        seen[name.casefold()] = name
        try:
            _new_field(name, text)
        except ValueError as exc:
            raise SinkPropertyError(where, text, str(exc)) from None
        table[name] = text
    return table


def _check_name(prop: str, name: object) -> None:
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise SinkPropertyError(
            f"SinkProperties.{prop}",
            name,
            "is not a header name (printable ASCII without spaces or ':')",
        )
