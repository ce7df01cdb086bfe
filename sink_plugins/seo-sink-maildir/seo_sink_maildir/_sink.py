"""The ``maildir`` sink class: StoreDriver delivery into one Maildir per local recipient."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.policy import EmailPolicy
from pathlib import Path

from seo_core.sdk import DeliveryEvent, Prop, PropertyBag, PropertyValue, Schema, hookimpl
from seo_sink_maildir._folders import RecipientError, mailbox_path
from seo_sink_maildir._maildir import Delivery, NoSuchMailbox, unflushed

DEFAULT_MODE = 0o600
MAX_MODE = 0o777


class MaildirSink:
    """Stores the message for ``event.recipient`` in ``<root>/<domain>/<local part>/new/``.

    Success is ``event.delivered(path)``. A recipient that cannot have a mailbox, or whose
    mailbox is missing while ``create`` is false, is a permanent failure ("no such mailbox");
    a file-system error is a temporary one, so the server retries. Nothing is left in ``tmp/``
    or ``new/`` by a failed delivery.

    The disk work (folders, write, link) runs in a worker thread so that the server's
    event loop keeps serving other sessions meanwhile; if the binding's Timeout passes first,
    the delivery is abandoned and leaves nothing behind, unless it had already completed, and
    then the event says so.
    """

    properties_schema = Schema(
        {
            "root": Prop(
                str,
                required=True,
                path=True,
                help="folder holding the Maildir tree (in a config file: relative to the file)",
            ),
            "create": Prop(
                bool,
                default=True,
                help="create missing mailboxes; when false, mail to one is refused",
            ),
            "mode": Prop(int, default=DEFAULT_MODE, help="permission bits of message files"),
        }
    )

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        """Refuse an empty ``root`` and a ``mode`` that is not file permission bits."""
        bag = PropertyBag(properties)
        root = bag.get("root")
        if isinstance(root, str) and (not root.strip() or "\0" in root):
            raise ValueError("root: must name a folder")
        mode = bag.get("mode")
        if isinstance(mode, int) and not isinstance(mode, bool) and not 0 <= mode <= MAX_MODE:
            raise ValueError(
                f"mode: {mode} is not permission bits from 0 to 0o777; "
                "write it in octal, as in mode = 0o600"
            )

    @hookimpl
    async def smtp_store_driver(self, event: DeliveryEvent, sink_properties: PropertyBag) -> None:
        try:
            root, create, mode = _settings(sink_properties)
        except ValueError as exc:
            event.fail(f"maildir sink misconfigured: {exc}")
            return
        try:
            folder = mailbox_path(root, event.recipient)
        except RecipientError as exc:
            event.fail(f"no such mailbox: {exc}", permanent=True)
            return
        # Where the source offers it, it flushes the file with the deliveries of that moment.
        flush = not event.source_flushes
        delivery = Delivery(
            folder,
            message_bytes(event),
            mode=mode,
            create=create,
            flush=flush,
            key=event.key,
            look_first=event.resumed,  # a crash may have come after storing it
        )
        job = asyncio.get_running_loop().run_in_executor(None, delivery.run)
        job.add_done_callback(_consume)
        try:
            path = await asyncio.shield(job)
        except asyncio.CancelledError:
            # Timed out: the thread goes on, but will not publish from now on; if it already
            # has, the message is delivered and the event must say so.
            done = delivery.abandon()
            if done is not None:
                event.delivered(str(done), unflushed=[] if flush else unflushed(done))
            raise
        except NoSuchMailbox:
            event.fail("no such mailbox", permanent=True)
            return
        except OSError as exc:
            event.fail(f"cannot deliver to {folder}: {exc}")
            return
        event.delivered(str(path), unflushed=[] if flush else unflushed(path))


def message_bytes(event: DeliveryEvent) -> bytes:
    """What goes into the file: a ``Return-Path:`` line, then the message as received, with LF
    line ends (Maildir's).

    The ``Return-Path:`` line keeps the envelope sender (where bounces go), which the message
    itself need not name; the final delivery adds it (RFC 5321, 4.4). Then ``event.raw`` when
    the source provides it (the bytes the client sent, as long as no sink changed the message);
    otherwise ``event.message`` written back without refolding the headers it was parsed with
    and without touching the body, so an unedited message comes out as it went in.
    """
    data = event.raw if event.raw is not None else _serialize(event.message)
    return_path = f"Return-Path: <{event.mail_from}>\n".encode()
    return return_path + data.replace(b"\r\n", b"\n")


def _serialize(message: EmailMessage) -> bytes:
    policy = message.policy
    # refold_source="none" keeps parsed headers as they were folded; headers a sink added are
    # still folded to the policy's line length, so no line grows past what SMTP allows.
    if isinstance(policy, EmailPolicy):
        policy = policy.clone(linesep="\n", refold_source="none")
    else:
        policy = policy.clone(linesep="\n")
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(message)
    return buffer.getvalue()


def _settings(properties: PropertyBag) -> tuple[str, bool, int]:
    """The SinkProperties at call time; checked again, as a binding may be written unchecked."""
    MaildirSink.validate_properties(properties)
    root = properties.get("root")
    create = properties.get("create", True)
    mode = properties.get("mode", DEFAULT_MODE)
    if not isinstance(root, str):
        raise ValueError("root: is required and must be a string")
    if not isinstance(create, bool):
        raise ValueError("create: must be a boolean")
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise ValueError("mode: must be an integer")
    return root, create, mode


def _consume(job: asyncio.Future[Path]) -> None:
    """Read an abandoned job's outcome, so asyncio does not report it as never retrieved."""
    if not job.cancelled():
        job.exception()
