"""The transport pipeline: what happens to an accepted message, one event after another.

For each message in the spool, in this order: OnArrival, OnPreCategorize, OnCategorize once per
recipient, OnPostCategorize, then StoreDriver once per local recipient; MsgTrackLog at each step.
A sink may set the status at any transport step: ABORT discards the message, BADMAIL keeps it
aside with the reason. Each delivery is recorded in the spool before the next one, so a message
is never delivered twice to one mailbox and a crash resumes where it stopped. A failed delivery is
retried on the source's retry schedule, then the message goes to badmail with the reasons.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from typing import TYPE_CHECKING

import structlog

from seo_core.events.contexts import (
    CategorizeEvent,
    DeliveryEvent,
    MessageEvent,
    MessageStatus,
    TrackEvent,
)
from seo_core.rules import EventFacts
from seo_core.sources.smtp.handler import domain_of
from seo_core.sources.smtp.spool import Envelope

if TYPE_CHECKING:
    from seo_core.sources.smtp.service import SmtpSource

log = structlog.get_logger("seo.smtp")

PARSE_POLICY = email.policy.SMTP.clone(refold_source="none", max_line_length=0)
"""How spooled bytes become an editable message: headers a sink does not touch keep their
original folding when the message is written back."""


def parse_message(content: bytes) -> EmailMessage:
    message = email.message_from_bytes(content, policy=PARSE_POLICY)
    assert isinstance(message, EmailMessage)
    return message


def serialize(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=PARSE_POLICY)


class Pipeline:
    """Runs accepted messages of one source through the transport events."""

    def __init__(self, source: SmtpSource) -> None:
        self.source = source
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self.busy = False
        self.idle = asyncio.Event()
        self.idle.set()

    def enqueue(self, message_id: str) -> None:
        if message_id not in self._queued:
            self._queued.add(message_id)
            self.idle.clear()
            self.queue.put_nowait(message_id)

    def resume(self) -> int:
        """Queue every message an earlier run left in the spool; returns how many."""
        pending = self.source.spool.pending()
        for message_id in pending:
            self.enqueue(message_id)
        return len(pending)

    async def run(self) -> None:
        """Process queued messages until cancelled."""
        while True:
            message_id = await self.queue.get()
            self._queued.discard(message_id)
            self.busy = True
            try:
                await self.process(message_id)
            except Exception as exc:  # a bug here must not stop the queue
                log.exception(
                    "smtp_pipeline_error",
                    source=self.source.name,
                    message_id=message_id,
                    error=str(exc),
                )
            finally:
                self.busy = False
                if self.queue.empty():
                    self.idle.set()

    def cancel_retries(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()

    async def process(self, message_id: str) -> None:
        """Take one message as far as it can go now."""
        self._retries.pop(message_id, None)
        spool = self.source.spool
        try:
            envelope, content = spool.load(message_id)
        except FileNotFoundError:
            return
        message = parse_message(content)
        dispatcher = self.source.dispatcher
        name = self.source.name

        def context(event: str, recipients: list[str]) -> MessageEvent:
            return MessageEvent(
                source=name,
                name=event,
                message_id=envelope.id,
                message=message,
                mail_from=envelope.mail_from,
                recipients=recipients,
            )

        first_attempt = envelope.attempts == 0 and not envelope.delivered
        if first_attempt:
            await self._track(envelope, message, "received")
        recipients = list(envelope.recipients)
        edited = False
        for event_name in ("OnArrival", "OnPreCategorize"):
            event = context(event_name, recipients)
            result = await dispatcher.notify(event, self._facts(envelope, recipients))
            edited = edited or result.notified > 0
            recipients = list(event.recipients)
            if await self._stopped(envelope, event, content, message, edited):
                return
        resolved, failed = await self._categorize(envelope, message, recipients)
        event = context("OnPostCategorize", resolved)
        result = await dispatcher.notify(event, self._facts(envelope, resolved))
        edited = edited or result.notified > 0
        resolved = list(dict.fromkeys(event.recipients))
        if await self._stopped(envelope, event, content, message, edited):
            return
        await self._track(envelope, message, "categorized")
        failed.update(envelope.failed)
        data = serialize(message) if edited else content
        await self._deliver(envelope, message, data, resolved, failed)

    async def _categorize(
        self, envelope: Envelope, message: EmailMessage, recipients: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """OnCategorize per recipient: each may be kept, rewritten (expanded) or unknown."""
        resolved: list[str] = []
        failed: dict[str, str] = {}
        dispatcher = self.source.dispatcher
        for recipient in recipients:
            event = CategorizeEvent(
                source=self.source.name,
                name="OnCategorize",
                message_id=envelope.id,
                message=message,
                mail_from=envelope.mail_from,
                recipients=list(recipients),
                recipient=recipient,
            )
            await dispatcher.notify(event, self._facts(envelope, [recipient]))
            if event.unknown:
                failed[recipient] = "550 5.1.1 unknown recipient"
                continue
            resolved.extend(event.resolved if event.resolved is not None else [recipient])
        return list(dict.fromkeys(resolved)), failed

    async def _deliver(
        self,
        envelope: Envelope,
        message: EmailMessage,
        data: bytes,
        recipients: list[str],
        failed: dict[str, str],
    ) -> None:
        """StoreDriver for each local recipient not yet delivered; retry or finish."""
        local = set(self.source.settings.local_domains)
        dispatcher = self.source.dispatcher
        retry: dict[str, str] = {}
        for recipient in recipients:
            if recipient in envelope.delivered or recipient in failed:
                continue
            if domain_of(recipient) not in local:
                failed[recipient] = "550 5.7.1 not a local domain and relaying is not supported"
                continue
            event = DeliveryEvent(
                source=self.source.name,
                name="StoreDriver",
                message_id=envelope.id,
                message=message,
                mail_from=envelope.mail_from,
                recipients=list(recipients),
                recipient=recipient,
                raw=data,
            )
            result = await dispatcher.notify(event, self._facts(envelope, [recipient]))
            if event.stored_at is not None and event.failure is None:
                envelope.delivered.append(recipient)
                await self._save(envelope)
                await self._track(envelope, message, "delivered", recipient, event.stored_at)
                continue
            reason = event.failure or (
                f"{result.failed + result.timed_out} StoreDriver sink(s) failed"
                if result.failed or result.timed_out
                else "no StoreDriver sink stored it"
            )
            if event.permanent_failure:
                failed[recipient] = reason
            else:
                retry[recipient] = reason
            await self._track(envelope, message, "failed", recipient, reason)
        envelope.failed = failed
        if retry:
            await self._schedule_retry(envelope, data, retry)
        elif failed and not envelope.delivered:
            envelope.reason = "; ".join(f"{r}: {why}" for r, why in failed.items())
            await self._badmail(envelope, data)
        else:
            if failed:
                log.warning(
                    "smtp_partly_delivered",
                    source=self.source.name,
                    message_id=envelope.id,
                    failed=failed,
                )
            await asyncio.get_running_loop().run_in_executor(
                None, self.source.spool.finish, envelope.id
            )
            log.info(
                "smtp_message_done",
                source=self.source.name,
                message_id=envelope.id,
                delivered=len(envelope.delivered),
                failed=len(failed),
            )

    async def _schedule_retry(self, envelope: Envelope, data: bytes, retry: dict[str, str]) -> None:
        schedule = self.source.settings.retry_schedule
        if envelope.attempts >= len(schedule):
            envelope.failed.update(retry)
            envelope.reason = "; ".join(f"{r}: {why}" for r, why in envelope.failed.items())
            await self._badmail(envelope, data)
            return
        delay = schedule[envelope.attempts]
        envelope.attempts += 1
        await self._save(envelope)
        log.warning(
            "smtp_delivery_deferred",
            source=self.source.name,
            message_id=envelope.id,
            attempt=envelope.attempts,
            retry_in=delay,
            reasons=retry,
        )
        loop = asyncio.get_running_loop()
        self._retries[envelope.id] = loop.call_later(delay, self.enqueue, envelope.id)

    async def _stopped(
        self,
        envelope: Envelope,
        event: MessageEvent,
        content: bytes,
        message: EmailMessage,
        edited: bool,
    ) -> bool:
        """Act on ABORT or BADMAIL set by a sink; True when the message's journey ends here."""
        if event.status is MessageStatus.DELIVER:
            return False
        if event.status is MessageStatus.ABORT:
            await asyncio.get_running_loop().run_in_executor(
                None, self.source.spool.finish, envelope.id
            )
            log.info(
                "smtp_message_aborted",
                source=self.source.name,
                message_id=envelope.id,
                event_type=event.name,
                reason=event.status_reason,
            )
            await self._track(envelope, message, "aborted", detail=event.status_reason)
            return True
        envelope.reason = event.status_reason or f"set to badmail by an {event.name} sink"
        await self._badmail(envelope, serialize(message) if edited else content)
        return True

    async def _badmail(self, envelope: Envelope, data: bytes) -> None:
        path = await asyncio.get_running_loop().run_in_executor(
            None, self.source.spool.to_badmail, envelope, data
        )
        log.warning(
            "smtp_message_badmail",
            source=self.source.name,
            message_id=envelope.id,
            reason=envelope.reason,
            path=str(path),
        )
        message = parse_message(data)
        await self._track(envelope, message, "badmail", detail=envelope.reason)

    async def _save(self, envelope: Envelope) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.source.spool.update, envelope)

    async def _track(
        self,
        envelope: Envelope,
        message: EmailMessage,
        step: str,
        recipient: str | None = None,
        detail: str | None = None,
    ) -> None:
        dispatcher = self.source.dispatcher
        if not dispatcher.wants("MsgTrackLog"):
            return
        event = TrackEvent(
            source=self.source.name,
            name="MsgTrackLog",
            message_id=envelope.id,
            message=message,
            mail_from=envelope.mail_from,
            recipients=list(envelope.recipients),
            step=step,
            recipient=recipient,
            detail=detail,
        )
        await dispatcher.notify(event, self._facts(envelope, envelope.recipients))

    @staticmethod
    def _facts(envelope: Envelope, recipients: list[str]) -> EventFacts:
        return EventFacts(
            ehlo=envelope.ehlo, mail_from=envelope.mail_from, rcpt_to=tuple(recipients)
        )
