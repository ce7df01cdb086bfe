"""The ``policy`` sink class: refusals decided by a binding's rule and properties."""

from __future__ import annotations

import email.policy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser

from seo_core.sdk import (
    Binding,
    CommandEvent,
    MessageEvent,
    MessageStatus,
    PostEvent,
    Prop,
    PropertyBag,
    PropertyValue,
    Schema,
    SinkPropertyError,
    hookimpl,
)

DEFAULT_CODE = 550
DEFAULT_TEXT = "5.7.1 Refused by policy"
DEFAULT_NEWS_TEXT = "Refused by policy"
"""What a news client is told when ``text`` is not set: the SMTP enhanced status code of
:data:`DEFAULT_TEXT` means nothing in NNTP."""

STATUSES = ("abort", "badmail")

_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")

_WRITE_POLICY = email.policy.SMTP.clone(refold_source="none", max_line_length=0)
"""How a message without its bytes is measured: written out as the SMTP source writes it."""
_HEADER_PARSER = BytesParser(policy=email.policy.SMTP)


@dataclass(frozen=True, slots=True)
class Settings:
    """The SinkProperties of one binding, checked, with their defaults."""

    code: int = DEFAULT_CODE
    text: str | None = None
    drop: bool = False
    max_recipients: int | None = None
    max_size: int | None = None
    header_pattern: tuple[tuple[str, str], ...] = ()
    status: str = "badmail"
    reason: str | None = None


class PolicySink:
    """Refuses what its binding's rule selects, as the properties say.

    OnInboundCommand: answers the command with ``code`` and ``text`` (and drops the session when
    ``drop``), or with ``max_recipients`` only the RCPT commands past that count in the session.
    OnArrival: sets the message's status to ``status`` with ``reason``, for every message or,
    with ``max_size`` and ``header_pattern``, for those they select. OnPostEarly and OnPost:
    refuses the article with ``text``.

    The sink acts on every notification it gets; which commands, messages and articles reach it
    is the job of the binding's Rule.
    """

    properties_schema = Schema(
        {
            "code": Prop(int, default=DEFAULT_CODE, help="SMTP reply code, 400 to 599"),
            # No default here: without ``text``, the reply's text follows its code (4.7.1 for a
            # 4xx) and news gets one without SMTP codes, which no one fixed default could say.
            "text": Prop(str, help="reply text; for news, the refusal"),
            "drop": Prop(bool, default=False, help="close the SMTP session after the reply"),
            "max_recipients": Prop(
                int, help="refuse only the RCPT commands past this many in the session"
            ),
            "max_size": Prop(int, help="OnArrival: select messages of more bytes than this"),
            "header_pattern": Prop(
                dict, help="OnArrival: header name -> pattern (* is a wildcard) to select"
            ),
            "status": Prop(
                str,
                default="badmail",
                choices=STATUSES,
                help="OnArrival: what becomes of a selected message",
            ),
            "reason": Prop(str, help="OnArrival: the reason recorded with the status"),
        }
    )

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        """Refuse values the schema's types let through but the sink cannot use."""
        settings(PropertyBag(properties))

    @hookimpl
    def smtp_on_inbound_command(
        self, event: CommandEvent, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        policy = settings(sink_properties)
        if policy.max_recipients is not None:
            if event.command.upper() != "RCPT":
                return
            # One count per binding: two policy bindings with different limits do not mix.
            key = f"seo_sink_policy.recipients.{binding.id}"
            count = int(event.session.data.get(key, 0)) + 1
            event.session.data[key] = count
            if count <= policy.max_recipients:
                return
        event.reply(
            policy.code, policy.text if policy.text is not None else default_text(policy.code)
        )
        if policy.drop:
            event.drop_session()

    @hookimpl
    def smtp_on_arrival(
        self, event: MessageEvent, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        policy = settings(sink_properties)
        why: list[str] = []
        if policy.max_size is not None:
            size = message_size(event)
            if size <= policy.max_size:
                return
            why.append(f"{size} bytes is over max_size {policy.max_size}")
        if policy.header_pattern:
            headers = _headers_of(event)
            for name, pattern in policy.header_pattern:
                if not any(glob_match(pattern, value) for value in header_values(headers, name)):
                    return
                why.append(f"{name} matches {pattern!r}")
        if policy.reason is not None:
            reason = policy.reason
        else:
            detail = "; ".join(why) or "selected by the binding's rule"
            reason = f"refused by policy {binding.display_name or binding.id}: {detail}"
        event.set_status(MessageStatus(policy.status), reason)

    @hookimpl
    def nntp_on_post_early(self, event: PostEvent, sink_properties: PropertyBag) -> None:
        _refuse_post(event, sink_properties)

    @hookimpl
    def nntp_on_post(self, event: PostEvent, sink_properties: PropertyBag) -> None:
        _refuse_post(event, sink_properties)


def default_text(code: int) -> str:
    """:data:`DEFAULT_TEXT`, its enhanced status code in the reply code's class (RFC 3463:
    ``4.7.1`` for a 4xx reply, so that a temporary refusal does not claim to be permanent)."""
    return f"{code // 100}{DEFAULT_TEXT[1:]}"


def _refuse_post(event: PostEvent, sink_properties: PropertyBag) -> None:
    text = settings(sink_properties).text
    event.refuse(text if text is not None else DEFAULT_NEWS_TEXT)


def message_size(event: MessageEvent) -> int:
    """The message's size in bytes, as it stands: its bytes while no sink has read the parsed
    message, else the parsed message (which a sink may have changed) written out."""
    if event.message_used or event.raw is None:
        return len(event.message.as_bytes(policy=_WRITE_POLICY))
    return len(event.raw)


def _headers_of(event: MessageEvent) -> Message:
    """The message's headers, without making the source write an unread message out again."""
    if not event.message_used and event.raw is not None:
        return _HEADER_PARSER.parsebytes(event.raw, headersonly=True)
    return event.message


def header_values(message: Message, name: str) -> list[str]:
    """Every value of header ``name``: unfolded, encoded words decoded where they parse."""
    values = []
    for field, raw in message.raw_items():
        if field.casefold() != name.casefold():
            continue
        try:
            value = str(message.policy.header_fetch_parse(field, raw))
        except Exception:  # a header the parser chokes on is still matched as written
            value = str(raw)
        values.append(_FOLD.sub("", value))
    return values


def glob_match(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` as a whole, in any case; only ``*`` is special."""
    parts = [re.escape(part) for part in pattern.casefold().split("*")]
    return re.fullmatch(".*".join(parts), value.casefold(), flags=re.DOTALL) is not None


def settings(bag: PropertyBag) -> Settings:
    """Check the SinkProperties; :class:`SinkPropertyError` names the property at fault."""
    code = _int(bag, "code", DEFAULT_CODE)
    if code is None or not 400 <= code <= 599:
        raise SinkPropertyError("SinkProperties.code", code, "must be a reply code from 400 to 599")
    text = bag.get("text")
    if isinstance(text, str) and (not text.strip() or _CONTROL.search(text)):
        raise SinkPropertyError("SinkProperties.text", text, "must be one line of text, not empty")
    drop = bag.get("drop", False)
    if not isinstance(drop, bool):
        raise SinkPropertyError("SinkProperties.drop", drop, "must be a boolean")
    max_recipients = _int(bag, "max_recipients", None)
    if max_recipients is not None and max_recipients < 0:
        raise SinkPropertyError(
            "SinkProperties.max_recipients", max_recipients, "must be 0 or more"
        )
    max_size = _int(bag, "max_size", None)
    if max_size is not None and max_size < 0:
        raise SinkPropertyError("SinkProperties.max_size", max_size, "must be 0 or more")
    status = bag.get("status", "badmail")
    if not isinstance(status, str) or status not in STATUSES:
        raise SinkPropertyError("SinkProperties.status", status, "must be 'abort' or 'badmail'")
    reason = bag.get("reason")
    if isinstance(reason, str) and _CONTROL.search(reason):
        raise SinkPropertyError("SinkProperties.reason", reason, "must be one line of text")
    return Settings(
        code=code,
        text=text if isinstance(text, str) else None,
        drop=drop,
        max_recipients=max_recipients,
        max_size=max_size,
        header_pattern=_patterns(bag),
        status=status,
        # A string property may be an environment reference ({ env = "NAME" }) when the
        # binding is written; the dispatcher hands the sink its value.
        reason=reason if isinstance(reason, str) else None,
    )


def _int(bag: PropertyBag, name: str, default: int | None) -> int | None:
    value = bag.get(name, default)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise SinkPropertyError(f"SinkProperties.{name}", value, "must be an integer")


def _patterns(bag: PropertyBag) -> tuple[tuple[str, str], ...]:
    table = bag.get("header_pattern")
    if table is None:
        return ()
    if not isinstance(table, dict):
        raise SinkPropertyError(
            "SinkProperties.header_pattern", table, "must be a table of header name -> pattern"
        )
    patterns = []
    for name, pattern in table.items():
        if not _FIELD_NAME.fullmatch(name):
            raise SinkPropertyError(
                "SinkProperties.header_pattern",
                name,
                "is not a header name (printable ASCII without spaces or ':')",
            )
        if not isinstance(pattern, str):
            raise SinkPropertyError(
                f"SinkProperties.header_pattern.{name}", pattern, "must be a string pattern"
            )
        patterns.append((name, pattern))
    return tuple(patterns)
