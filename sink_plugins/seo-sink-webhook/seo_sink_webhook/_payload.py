"""The JSON document a webhook receives: a summary of the event, the body only when asked."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from seo_core.sdk import Binding

HEADERS = ("Subject", "From", "To", "Date", "Message-ID")
"""The message headers a summary carries (those the message has)."""


def summary(event: Any, binding: Binding, *, include_body: bool) -> dict[str, Any]:
    """What the webhook is told about ``event``: who, what, which message; no body by default.

    Only the fields the event has are present. With ``include_body`` the whole message is added
    as ``message`` (text) when it is valid UTF-8, else as ``message_base64``.
    """
    document: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "source": event.source,
        "event": event.name,
        "binding": {"id": binding.id, "name": binding.display_name},
    }
    for name in ("message_id", "mail_from", "recipient", "step", "detail", "refused"):
        value = getattr(event, name, None)
        if value is not None:
            document[name] = value
    for name in ("recipients", "newsgroups"):
        values = getattr(event, name, None)
        if values is not None:
            document[name] = list(values)
    status = getattr(event, "status", None)
    if status is not None:
        document["status"] = status.value
        reason = getattr(event, "status_reason", None)
        if reason is not None:
            document["status_reason"] = reason
    message = getattr(event, "message", None)
    if isinstance(message, EmailMessage):
        document["headers"] = _headers(message)
        if include_body:
            document.update(_body(event, message))
    return document


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _headers(message: EmailMessage) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in HEADERS:
        try:
            value = message.get(name)
        except Exception:  # a malformed header must not cost the whole notification
            continue
        if value is not None:
            found[name] = str(value)
    return found


def _body(event: Any, message: EmailMessage) -> dict[str, str]:
    raw = getattr(event, "raw", None)
    data = raw if isinstance(raw, bytes) else message.as_bytes(policy=message.policy)
    try:
        return {"message": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"message_base64": base64.b64encode(data).decode("ascii")}
