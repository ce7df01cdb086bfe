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
from email import errors
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from seo_core.events.contexts import (
    MESSAGE_POLICY,
    CategorizeEvent,
    DeliveryEvent,
    MessageEvent,
    MessageStatus,
    TrackEvent,
    body_not_parsed,
    parse_message,
)
from seo_core.rules import EventFacts
from seo_core.sources.smtp.flush import flush_paths
from seo_core.sources.smtp.handler import domain_of
from seo_core.sources.smtp.spool import Envelope

E = TypeVar("E", bound=MessageEvent)

if TYPE_CHECKING:
    from seo_core.sources.smtp.delivery import Delivery

log = structlog.get_logger("seo.smtp")

CRASH_LIMIT = 3
"""Times delivery may end abruptly with a message in hand before the message goes to badmail."""


def mailbox_key(address: str) -> str:
    """What makes two addresses one mailbox: the local part in any case, the canonical domain.

    ``bob@example.com`` and ``BOB@EXAMPLE.COM`` reach the same mailbox, so a message listing
    both is delivered there once. Lower case, not case folding: folding makes ``straße`` and
    ``strasse`` one, and mailbox stores (the Maildir sink's folders) keep them apart; taking
    them for one would leave a recipient without the message.
    """
    local = address.rpartition("@")[0]
    return f"{local.lower()}@{domain_of(address)}" if local else address.lower()


def unique_recipients(recipients: list[str]) -> list[str]:
    """``recipients`` without repeats of one mailbox, in their first order."""
    seen: set[str] = set()
    unique = []
    for recipient in recipients:
        key = mailbox_key(recipient)
        if key not in seen:
            seen.add(key)
            unique.append(recipient)
    return unique


class Content:
    """The message of one pipeline run: its bytes, until a sink reads the parsed message.

    Each event gets the bytes (``raw``) while no sink has read the message, and the one parsed
    message once some sink has (it may have changed it); only then is it written back to bytes.
    """

    __slots__ = ("message", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.message: EmailMessage | None = None

    def for_event(self) -> dict[str, Any]:
        return {"raw": self.raw} if self.message is None else {"message": self.message}

    def absorb(self, event: MessageEvent) -> None:
        if self.message is None and event.message_used:
            self.message = event.message

    def data(self) -> bytes:
        """The message to deliver: the bytes received, with what sinks changed.

        Writing a parsed message back normalizes some bodies (the email package rebuilds odd
        multipart structures), so when the sinks left the body as it was, the body delivered
        is the one received, byte for byte, under the header block as the sinks left it.
        """
        if self.message is None:
            return self.raw
        written = self.message.as_bytes(policy=MESSAGE_POLICY)
        untouched = parse_message(self.raw)
        untouched_bytes = untouched.as_bytes(policy=MESSAGE_POLICY)
        if written == untouched_bytes:
            # Sinks read the message (a log, a webhook) but changed nothing: what they saw
            # written back would normalize odd header forms (``From:a@x``), so deliver the
            # bytes received.
            return self.raw
        if body_not_parsed(self.message):
            head = written.partition(b"\r\n\r\n")[0]
            return head + b"\r\n\r\n" + self.raw.partition(b"\r\n\r\n")[2]
        if untouched_bytes == self.raw or not _plain_header_block(untouched):
            return written
        head, separator, body = written.partition(b"\r\n\r\n")
        _, _, untouched_body = untouched_bytes.partition(b"\r\n\r\n")
        if body != untouched_body:
            return written
        _, _, raw_body = self.raw.partition(b"\r\n\r\n")
        return head + (separator or b"\r\n\r\n") + raw_body


def _plain_header_block(message: EmailMessage) -> bool:
    """True when the received header block ends at the first blank line, as the parser read it.

    Only then can the received body be told apart by that blank line and put back as it was.
    """
    return bool(message.keys()) and not any(
        isinstance(defect, errors.MissingHeaderBodySeparatorDefect) for defect in message.defects
    )


class Pipeline:
    """Runs accepted messages of one source through the transport events."""

    def __init__(self, source: Delivery) -> None:
        self.source = source
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._delivering: set[asyncio.Future[None]] = set()
        self._in_flight: dict[str, asyncio.Future[None]] = {}
        """Each message's delivery under way, which goes on when its worker is cancelled."""
        self._suspects: list[str] = []
        self._troubles: dict[str, int] = {}
        """Errors outside the sinks per message, for how long to wait before the next try."""
        self.stopping = False
        """Set when delivery stops: workers finish the message in hand and take no other."""
        self._suspects_done = asyncio.Event()
        self.working = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enqueue(self, message_id: str) -> None:
        if message_id not in self._queued:
            self._queued.add(message_id)
            self.idle.clear()
            self.queue.put_nowait(message_id)

    def resume(self) -> int:
        """Queue every message an earlier run left in the spool; returns how many.

        A message that was in hand each of the last :data:`CRASH_LIMIT` times the delivery
        process ended without finishing it (a sink that crashes the interpreter on it, say)
        goes to badmail instead, so that one message cannot stop all delivery.
        """
        spool = self.source.spool
        pending = spool.pending()
        for message_id in pending:
            if spool.crashes(message_id):
                self._suspects.append(message_id)
            else:
                self.enqueue(message_id)
        if not self._suspects:
            self._suspects_done.set()
        return len(pending)

    async def run_suspects(self) -> None:
        """Take the messages that were in hand when delivery died, each alone, before others.

        Alone, so that if one of them kills delivery again, the count goes against it only; at
        :data:`CRASH_LIMIT` it goes to badmail rather than be tried again.
        """
        spool = self.source.spool
        try:
            while self._suspects and not self.stopping:
                message_id = self._suspects.pop(0)
                if spool.crashes(message_id) >= CRASH_LIMIT:
                    self._quarantine(message_id)
                    continue
                await self._take(message_id)
        finally:
            self._suspects_done.set()

    def _quarantine(self, message_id: str) -> None:
        crashes = self.source.spool.crashes(message_id)
        self._set_aside(
            message_id,
            f"delivery ended abruptly {crashes} times while this message was in hand (a sink "
            "may crash on it); kept aside so that other mail goes on",
        )

    def _set_aside(self, message_id: str, reason: str, error: Exception | None = None) -> None:
        """Move a message that cannot go on to badmail, with ``reason``, from the worker."""
        spool = self.source.spool
        envelope, data = spool.load(message_id)
        envelope.reason = reason
        path = spool.to_badmail(envelope, data)
        log.error(
            "smtp_message_badmail",
            source=self.source.name,
            message_id=message_id,
            reason=reason,
            path=str(path),
            exc_info=error or False,
        )

    async def run(self) -> None:
        """Process queued messages until cancelled."""
        await self._suspects_done.wait()
        while True:
            message_id = await self.queue.get()
            if self.stopping:
                return  # what is not in hand stays in the spool
            self._queued.discard(message_id)
            if message_id in self._active:
                continue  # another worker has it in hand
            await self._take(message_id)

    async def _take(self, message_id: str) -> None:
        self._active.add(message_id)
        self.working += 1
        spool = self.source.spool
        try:
            spool.mark(message_id, "started")  # if the process dies now, the next one knows
            await self.process(message_id)
        except Exception as exc:  # a full disk, or a bug: the queue must go on
            self._try_again_later(message_id, exc)
        finally:
            delivery = self._in_flight.get(message_id)
            if delivery is None or delivery.done():
                self._let_go(message_id)
            else:
                # The worker was cancelled (stopping) while its delivery goes on: the message
                # is in hand until the delivery ends. Should the process be ended before that,
                # the next run must know, and look for a copy already stored.
                delivery.add_done_callback(lambda _: self._let_go(message_id))

    def _let_go(self, message_id: str) -> None:
        self._in_flight.pop(message_id, None)
        self.source.spool.mark(message_id, "ended")
        self._active.discard(message_id)
        self.working -= 1
        if self.queue.empty() and not self.working and not self._suspects:
            self.idle.set()

    def _try_again_later(self, message_id: str, exc: Exception) -> None:
        """After an error outside the sinks (say the spool's disk is full), the message stays
        queued and is taken again later, on the retry schedule, for as long as it fails."""
        if self.stopping or not self.source.spool.holds(message_id):
            retry_in = None  # finished, or left for the next start
        else:
            schedule = self.source.settings.retry_schedule
            troubles = self._troubles.get(message_id, 0)
            if troubles >= len(schedule) and not isinstance(exc, OSError):
                # Not the disk, which comes back, but a fault that came back at every try.
                self._give_up(message_id, exc, troubles + 1)
                return
            self._troubles[message_id] = troubles + 1
            retry_in = schedule[min(troubles, len(schedule) - 1)]
            self._retries[message_id] = asyncio.get_running_loop().call_later(
                retry_in, self.enqueue, message_id
            )
        log.error(
            "smtp_pipeline_error",
            source=self.source.name,
            message_id=message_id,
            error=f"{type(exc).__name__}: {exc}",
            retry_in=retry_in,
            exc_info=not isinstance(exc, OSError),  # a bug needs its traceback, a disk does not
        )

    def _give_up(self, message_id: str, exc: Exception, tries: int) -> None:
        """Keep a message aside that fails outside the sinks at every try, with the error."""
        self._troubles.pop(message_id, None)
        reason = f"delivery failed {tries} times outside the sinks: {type(exc).__name__}: {exc}"
        self._set_aside(message_id, reason, exc)

    @property
    def busy(self) -> bool:
        return self.working > 0

    @property
    def retrying(self) -> bool:
        """Whether some message waits for a retry (due on the schedule, or after an error)."""
        return bool(self._retries)

    def cancel_retries(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()

    async def deliveries_done(self) -> None:
        """Wait for the deliveries in hand: once begun, a delivery is never cut short."""
        while self._delivering:
            await asyncio.gather(*self._delivering, return_exceptions=True)

    async def process(self, message_id: str) -> None:
        """Take one message as far as it can go now."""
        self._retries.pop(message_id, None)
        spool = self.source.spool
        try:
            envelope, raw = spool.load(message_id)
        except KeyError:
            return  # finished meanwhile
        if envelope.categorized is not None:
            # A retry: the transport events ran before it was deferred; only delivery is left.
            if envelope.processed:
                raw = await asyncio.get_running_loop().run_in_executor(
                    None, spool.load_processed, message_id
                )
            await self._start_delivery(
                envelope, Content(raw), envelope.categorized, dict(envelope.failed)
            )
            return
        content = Content(raw)
        dispatcher = self.source.dispatcher
        if envelope.attempts == 0 and not envelope.delivered:
            await self._track(envelope, content, "received")
        recipients = list(envelope.recipients)
        for event_name in ("OnArrival", "OnPreCategorize"):
            event = self._event(MessageEvent, event_name, envelope, content, recipients)
            await dispatcher.notify(event, self._facts(envelope, recipients))
            content.absorb(event)
            recipients = list(event.recipients)
            if await self._stopped(envelope, event, content):
                return
        resolved, failed = await self._categorize(envelope, content, recipients)
        event = self._event(MessageEvent, "OnPostCategorize", envelope, content, resolved)
        await dispatcher.notify(event, self._facts(envelope, resolved))
        content.absorb(event)
        resolved = unique_recipients(event.recipients)
        if await self._stopped(envelope, event, content):
            return
        await self._track(envelope, content, "categorized", recipients=resolved)
        for recipient, reason in failed.items():  # unknown to OnCategorize: tracked as failed
            await self._track(envelope, content, "failed", recipient, reason)
        failed.update(envelope.failed)
        await self._start_delivery(envelope, content, resolved, failed)

    async def _start_delivery(
        self, envelope: Envelope, content: Content, recipients: list[str], failed: dict[str, str]
    ) -> None:
        # Stopping may cancel this worker: not between storing a copy and recording it, or the
        # next run would store it again. The delivery goes on, and stopping waits for it.
        delivery = asyncio.ensure_future(self._deliver(envelope, content, recipients, failed))
        self._delivering.add(delivery)
        delivery.add_done_callback(self._delivering.discard)
        self._in_flight[envelope.id] = delivery
        await asyncio.shield(delivery)

    def _event(
        self,
        kind: type[E],
        name: str,
        envelope: Envelope,
        content: Content,
        recipients: list[str],
        **extra: Any,
    ) -> E:
        return kind(
            source=self.source.name,
            name=name,
            message_id=envelope.id,
            mail_from=envelope.mail_from,
            recipients=recipients,
            **content.for_event(),
            **extra,
        )

    async def _categorize(
        self, envelope: Envelope, content: Content, recipients: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """OnCategorize per recipient: each may be kept, rewritten (expanded) or unknown."""
        resolved: list[str] = []
        failed: dict[str, str] = {}
        dispatcher = self.source.dispatcher
        if not dispatcher.wants("OnCategorize"):
            return unique_recipients(recipients), failed
        for recipient in recipients:
            event = self._event(
                CategorizeEvent,
                "OnCategorize",
                envelope,
                content,
                list(recipients),
                recipient=recipient,
            )
            await dispatcher.notify(event, self._facts(envelope, [recipient]))
            content.absorb(event)
            if event.unknown:
                failed[recipient] = "550 5.1.1 unknown recipient"
                continue
            resolved.extend(event.resolved if event.resolved is not None else [recipient])
        return unique_recipients(resolved), failed

    async def _deliver(
        self,
        envelope: Envelope,
        content: Content,
        recipients: list[str],
        failed: dict[str, str],
    ) -> None:
        """StoreDriver for each local recipient not yet delivered; retry or finish."""
        local = set(self.source.settings.local_domains)
        dispatcher = self.source.dispatcher
        data = content.data()
        retry: dict[str, str] = {}
        resumed = self.source.spool.crashes(envelope.id) > 0
        done = {mailbox_key(r) for r in [*envelope.delivered, *failed]}
        pending = [r for r in recipients if mailbox_key(r) not in done]
        for position, recipient in enumerate(pending, 1):
            if domain_of(recipient) not in local:
                reason = "550 5.7.1 not a local domain and relaying is not supported"
                failed[recipient] = reason
                await self._track(envelope, content, "failed", recipient, reason)
                continue
            event = DeliveryEvent(
                source=self.source.name,
                name="StoreDriver",
                message_id=envelope.id,
                mail_from=envelope.mail_from,
                recipients=list(recipients),
                raw=data,
                recipient=recipient,
                source_flushes=True,
                resumed=resumed,
            )
            result = await dispatcher.notify(event, self._facts(envelope, [recipient]))
            if event.stored_at is not None and event.failure is None and event.unflushed:
                try:
                    await self._flush(event.unflushed)
                except OSError as exc:
                    event.fail(f"stored at {event.stored_at} but could not flush it: {exc}")
            if event.stored_at is not None and event.failure is None:
                envelope.delivered.append(recipient)
                if position < len(pending):
                    # More deliveries follow: record this one first, so that a crash in
                    # between never delivers it twice. After the last one, finishing the
                    # message is the record.
                    await self._save(envelope)
                await self._track(envelope, content, "delivered", recipient, event.stored_at)
                continue
            reason = event.failure or (
                f"StoreDriver sink {result.error}"
                if result.error is not None
                else "no StoreDriver sink stored it"
            )
            if event.permanent_failure:
                failed[recipient] = reason
            else:
                retry[recipient] = reason
            await self._track(envelope, content, "failed", recipient, reason)
        envelope.failed = failed
        if retry:
            await self._schedule_retry(envelope, data, content.raw, recipients, retry)
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
            await self._finish(envelope.id)
            log.info(
                "smtp_message_done",
                source=self.source.name,
                message_id=envelope.id,
                delivered=len(envelope.delivered),
                failed=len(failed),
            )

    async def _schedule_retry(
        self,
        envelope: Envelope,
        data: bytes,
        received: bytes,
        recipients: list[str],
        retry: dict[str, str],
    ) -> None:
        """Defer the message for the recipients in ``retry``, or set it aside at the end of the
        schedule. ``data`` is the message as the sinks left it, ``received`` as it came."""
        schedule = self.source.settings.retry_schedule
        if envelope.attempts >= len(schedule):
            envelope.failed.update(retry)
            envelope.reason = "; ".join(f"{r}: {why}" for r, why in envelope.failed.items())
            await self._badmail(envelope, data)
            return
        if envelope.categorized is None:
            # The first deferral: what the transport events made of the message is kept, and
            # the retries start at StoreDriver (see Envelope.categorized).
            if data is not received and data != received:
                await asyncio.get_running_loop().run_in_executor(
                    None, self.source.spool.keep_processed, envelope.id, data
                )
                envelope.processed = True
            envelope.categorized = list(recipients)
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

    async def _stopped(self, envelope: Envelope, event: MessageEvent, content: Content) -> bool:
        """Act on ABORT or BADMAIL set by a sink; True when the message's journey ends here."""
        if event.status is MessageStatus.DELIVER:
            return False
        if event.status is MessageStatus.ABORT:
            await self._finish(envelope.id)
            log.info(
                "smtp_message_aborted",
                source=self.source.name,
                message_id=envelope.id,
                event_type=event.name,
                reason=event.status_reason,
            )
            await self._track(
                envelope, content, "aborted", detail=event.status_reason, status=event.status
            )
            return True
        envelope.reason = event.status_reason or f"set to badmail by an {event.name} sink"
        await self._badmail(envelope, content.data())
        return True

    async def _badmail(self, envelope: Envelope, data: bytes) -> None:
        path = await asyncio.get_running_loop().run_in_executor(
            None, self.source.spool.to_badmail, envelope, data
        )
        self._troubles.pop(envelope.id, None)
        log.warning(
            "smtp_message_badmail",
            source=self.source.name,
            message_id=envelope.id,
            reason=envelope.reason,
            path=str(path),
        )
        await self._track(
            envelope, Content(data), "badmail", detail=envelope.reason, status=MessageStatus.BADMAIL
        )

    async def _finish(self, message_id: str) -> None:
        self._troubles.pop(message_id, None)
        finishes = self.source.finishes
        if finishes is None:
            self.source.spool.finish(message_id)
        else:
            await finishes.commit(message_id)

    async def _flush(self, paths: list[str]) -> None:
        flushes = self.source.flushes
        if flushes is None:
            await asyncio.get_running_loop().run_in_executor(None, flush_paths, [paths])
        else:
            await flushes.commit(paths)

    async def _save(self, envelope: Envelope) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.source.spool.update, envelope)

    async def _track(
        self,
        envelope: Envelope,
        content: Content,
        step: str,
        recipient: str | None = None,
        detail: str | None = None,
        *,
        recipients: list[str] | None = None,
        status: MessageStatus = MessageStatus.DELIVER,
    ) -> None:
        """MsgTrackLog for one step; ``recipients`` is the envelope's unless given (the resolved
        ones from ``categorized`` on), ``status`` what the message's journey came to."""
        dispatcher = self.source.dispatcher
        if not dispatcher.wants("MsgTrackLog"):
            return
        event = self._event(
            TrackEvent,
            "MsgTrackLog",
            envelope,
            content,
            list(envelope.recipients if recipients is None else recipients),
            step=step,
            recipient=recipient,
            detail=detail,
            status=status,
        )
        await dispatcher.notify(event, self._facts(envelope, envelope.recipients))

    @staticmethod
    def _facts(envelope: Envelope, recipients: list[str]) -> EventFacts:
        return EventFacts(
            ehlo=envelope.ehlo, mail_from=envelope.mail_from, rcpt_to=tuple(recipients)
        )
