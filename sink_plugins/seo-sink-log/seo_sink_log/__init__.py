"""The ``log`` sink: one JSON audit line per event it is bound to.

It handles every SMTP and NNTP event. A line holds what identifies the event (time, source,
event, binding, message id, envelope, command verb, reply, newsgroups) and never a message body,
nor the argument of an AUTH command: a log must not leak what a client proved itself with.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from seo_core.sdk import Binding, Prop, PropertyBag, Schema, hookimpl

FIELDS = (
    "time",
    "source",
    "event",
    "binding",
    "sink",
    "message_id",
    "mail_from",
    "recipients",
    "recipient",
    "command",
    "argument",
    "reply",
    "peer",
    "status",
    "step",
    "newsgroups",
    "subject",
    "size",
)
"""Every field a line can hold; ``Fields`` picks some."""

DEFAULT_FIELDS = (
    "time",
    "source",
    "event",
    "binding",
    "message_id",
    "mail_from",
    "recipients",
    "recipient",
    "command",
    "reply",
    "status",
    "step",
    "newsgroups",
)

_WRITE_LOCK = threading.Lock()


def _field(name: str, event: Any, binding: Binding) -> Any:
    """The value of one field for this event, or ``None`` when the event has no such thing."""
    if name == "time":
        return datetime.now(UTC).isoformat(timespec="milliseconds")
    if name == "event":
        return event.name
    if name == "binding":
        return binding.display_name or binding.id
    if name == "sink":
        return binding.sink_class
    if name == "argument":
        command = str(getattr(event, "command", "")).upper()
        return None if command == "AUTH" else getattr(event, "argument", None)
    if name == "reply":
        reply = getattr(event, "response", None)
        return None if reply is None else f"{reply.code} {reply.text}"
    if name == "peer":
        session = getattr(event, "session", None)
        peer = getattr(session, "peer", None)
        return None if peer is None else f"{peer[0]}:{peer[1]}"
    if name == "status":
        status = getattr(event, "status", None)
        return None if status is None else status.value
    if name == "subject":
        message = getattr(event, "message", None)
        return None if message is None else message.get("Subject")
    if name == "recipients":
        recipients = getattr(event, "recipients", None)
        return None if recipients is None else list(recipients)
    if name == "newsgroups":
        groups = getattr(event, "newsgroups", None)
        return None if groups is None else list(groups)
    return getattr(event, name, None)


class LogSink:
    """Writes one JSON line per notification, then lets the next sink run."""

    properties_schema = Schema(
        {
            "File": Prop(str, path=True, help="file to append lines to; default: standard output"),
            "Fields": Prop(
                list, help="fields to write, in order; default: " + ", ".join(DEFAULT_FIELDS)
            ),
        }
    )

    @staticmethod
    def validate_properties(properties: PropertyBag) -> None:
        """Refuse a ``Fields`` list naming a field this sink does not know."""
        fields = properties.get("Fields")
        if fields is None:
            return
        assert isinstance(fields, list)
        unknown = [str(f) for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(
                f"Fields: unknown field {', '.join(unknown)}; known: {', '.join(FIELDS)}"
            )

    def write(self, event: Any, sink_properties: PropertyBag, binding: Binding) -> None:
        wanted = sink_properties.get("Fields") or DEFAULT_FIELDS
        assert isinstance(wanted, list | tuple)
        record = {}
        for name in wanted:
            value = _field(str(name), event, binding)
            if value is not None:
                record[str(name)] = value
        line = json.dumps(record, ensure_ascii=False) + "\n"
        target = sink_properties.get("File")
        with _WRITE_LOCK:
            if isinstance(target, str) and target:
                folder = os.path.dirname(target)
                if folder:
                    os.makedirs(folder, mode=0o750, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            else:
                sys.stdout.write(line)
                sys.stdout.flush()

    @hookimpl
    def smtp_on_inbound_command(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_server_response(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_arrival(self, event: Any, sink_properties: PropertyBag, binding: Binding) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_pre_categorize(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_categorize(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_post_categorize(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_transport_router(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_store_driver(self, event: Any, sink_properties: PropertyBag, binding: Binding) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_max_msg_size(self, event: Any, sink_properties: PropertyBag, binding: Binding) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_msg_track_log(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_session_start(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_message_start(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_per_recipient(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_before_data(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_on_session_end(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def smtp_dns_resolver(self, event: Any, sink_properties: PropertyBag, binding: Binding) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def nntp_on_post_early(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def nntp_on_post(self, event: Any, sink_properties: PropertyBag, binding: Binding) -> None:
        self.write(event, sink_properties, binding)

    @hookimpl
    def nntp_on_post_final(
        self, event: Any, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        self.write(event, sink_properties, binding)
