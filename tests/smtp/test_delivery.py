"""Mail in, mail delivered: the whole path through the real server."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import os
import smtplib
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from seo_core.dispatcher import Dispatcher
from seo_core.metabase import BindingSpec, Metabase
from seo_core.sdk import DeliveryEvent, hookimpl
from seo_core.sources.smtp import delivery_process
from seo_core.sources.smtp.delivery import Delivery
from seo_core.sources.smtp.handler import address_literal
from seo_core.sources.smtp.settings import SmtpSettings
from seo_core.sources.smtp.spool import Envelope, Spool, new_message_id
from seo_core.testing import RunningSmtp, running_smtp
from tests.conftest import without_trace
from tests.smtp.conftest import delivered, registry_with

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.com>\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"..a line that starts with a dot\r\n"
    b"bye\r\n"
)


def test_a_message_is_accepted_and_delivered(smtp: RunningSmtp, mailboxes: Path) -> None:
    with smtplib.SMTP("127.0.0.1", smtp.port) as client:
        refused = client.sendmail("alice@example.net", ["bob@example.com"], MESSAGE)
    assert refused == {}
    smtp.wait_idle()
    (stored,) = delivered(mailboxes, "bob@example.com")
    assert without_trace(stored) == MESSAGE


class LazyStore:
    """Writes each message to a file and, where the server offers it, leaves the flush to it."""

    seen: ClassVar[list[bool]] = []

    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent, sink_properties: Any) -> None:
        LazyStore.seen.append(event.source_flushes)
        folder = Path(str(sink_properties["root"]))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{event.message_id}.eml"
        path.write_bytes(event.raw or b"")
        event.delivered(str(path), unflushed=[str(path), str(folder)])


def bind_lazy_store(metabase: Metabase, root: Path) -> None:
    metabase.add_binding(
        BindingSpec(
            source="smtp/1",
            event="StoreDriver",
            sink_class="test-lazy-store",
            display_name="Lazy",
            sink_properties={"root": str(root)},
        )
    )


def test_files_a_sink_leaves_unflushed_are_flushed_before_the_delivery_counts(
    metabase_path: Path, metabase: Metabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    flushed: list[str] = []

    def fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    bind_lazy_store(metabase, tmp_path / "mail")
    LazyStore.seen.clear()
    registry = registry_with(**{"test-lazy-store": LazyStore})
    with running_smtp(metabase_path, registry, spool=tmp_path / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            for _ in range(5):
                client.sendmail("alice@example.net", ["bob@example.com"], MESSAGE)
        smtp.wait_idle()
    stored = sorted(str(p) for p in (tmp_path / "mail").glob("*.eml"))
    assert LazyStore.seen == [True] * 5
    assert len(stored) == 5
    assert sorted(p for p in flushed if p.endswith(".eml")) == stored
    assert str(tmp_path / "mail") in flushed
    assert Spool(tmp_path / "spool").pending() == []


def test_a_delivery_that_cannot_be_flushed_is_not_counted(
    metabase_path: Path, metabase: Metabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    mail = str(tmp_path / "mail")

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(mail):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    bind_lazy_store(metabase, tmp_path / "mail")
    registry = registry_with(**{"test-lazy-store": LazyStore})
    settings = {"retry_schedule": [3600]}
    with running_smtp(metabase_path, registry, spool=tmp_path / "spool", settings=settings) as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.sendmail("alice@example.net", ["bob@example.com"], MESSAGE)
        smtp.wait_idle(retries=False)  # its retry is an hour away
    (message_id,) = Spool(tmp_path / "spool").pending()
    envelope, _ = Spool(tmp_path / "spool").load(message_id)
    assert envelope.delivered == []
    assert envelope.attempts == 1  # deferred, to be retried


def test_each_message_gets_a_received_line_naming_client_server_queue_id_and_time(
    smtp: RunningSmtp, mailboxes: Path
) -> None:
    with smtplib.SMTP("127.0.0.1", smtp.port, local_hostname="client.test") as client:
        client.ehlo()
        client.mail("alice@example.net")
        client.rcpt("bob@example.com")
        code, reply = client.data(MESSAGE)
        client.helo("old.client.test")  # HELO: plain SMTP
        client.mail("alice@example.net")
        client.rcpt("carol@example.com")
        client.rcpt("dave@example.com")
        client.data(MESSAGE)
    assert code == 250
    queue_id = reply.decode().rpartition(" ")[2]
    smtp.wait_idle()

    (to_bob,) = delivered(mailboxes, "bob@example.com")
    head, _, when = to_bob.partition(b";\r\n\t")
    assert head == (
        b"Received: from client.test ([127.0.0.1])\r\n"
        b"\tby "
        + smtp.source.settings.hostname.encode()
        + b" (seo) with ESMTP id "
        + queue_id.encode()
        + b"\r\n\tfor <bob@example.com>"
    )
    stamp = email.utils.parsedate_to_datetime(when.split(b"\r\n", 1)[0].decode())
    assert abs(stamp.timestamp() - time.time()) < 60
    assert without_trace(to_bob) == MESSAGE

    (to_carol,) = delivered(mailboxes, "carol@example.com")
    first_lines = to_carol.split(b"\r\n")[:3]
    assert first_lines[0] == b"Received: from old.client.test ([127.0.0.1])"
    assert b" with SMTP id " in first_lines[1]
    assert b"for <" not in to_carol.split(MESSAGE[:10])[0]  # other recipients are not named


def test_a_smtputf8_transaction_is_received_with_utf8smtp(
    smtp: RunningSmtp, mailboxes: Path
) -> None:
    """RFC 6531, 3.7.3: the protocol a Received: line names for a message sent with SMTPUTF8."""
    with smtplib.SMTP("127.0.0.1", smtp.port, local_hostname="client.test") as client:
        client.ehlo()
        client.sendmail("jürgen@example.net", ["bob@example.com"], MESSAGE, ["SMTPUTF8"])
    smtp.wait_idle()
    (stored,) = delivered(mailboxes, "bob@example.com")
    assert b" (seo) with UTF8SMTP id " in stored.split(b"\r\n")[1]


@pytest.mark.parametrize(
    ("host", "literal"),
    [("127.0.0.1", "127.0.0.1"), ("::1", "IPv6:::1"), ("2001:db8::5", "IPv6:2001:db8::5")],
)
def test_an_ipv6_peer_is_written_as_an_ipv6_address_literal(host: str, literal: str) -> None:
    """RFC 5321, 4.1.3: ``[IPv6:::1]`` in the Received: line, as for any address literal."""
    assert address_literal(host) == literal


async def test_notices_past_the_queue_limit_wait_as_positions_and_every_message_is_delivered(
    metabase_path: Path,
    metabase: Metabase,
    bound_store: str,
    mailboxes: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mail accepted faster than it is delivered: the delivery process holds at most
    QUEUE_LIMIT messages in memory, the rest wait as journal positions, and all arrive."""
    monkeypatch.setattr(delivery_process, "QUEUE_LIMIT", 5)
    settings = SmtpSettings.from_mapping(
        "smtp/1",
        {"listen": "127.0.0.1:2525", "local_domains": ["example.com"], "spool": tmp_path / "spool"},
    )
    spool = Spool(settings.spool)
    spool.open_journal()
    dispatcher = Dispatcher("smtp/1", metabase, registry_with())
    delivery = Delivery(settings, dispatcher, spool)
    await delivery.start()
    accepted = [
        (
            Envelope(
                id=new_message_id(),
                mail_from="alice@example.net",
                recipients=[f"user{n}@example.com"],
                received_at=time.time(),
                size=len(MESSAGE),
            ),
            MESSAGE,
        )
        for n in range(40)
    ]
    notices = delivery_process.Notices("smtp/1", spool, delivery)
    feeder = asyncio.create_task(notices.feed())
    try:
        for location in spool.accept_group(accepted):
            notices.add(location.segment, location.record)
        assert notices.in_hand <= 5
        assert len(notices.waiting) >= 35
        most = 0
        while notices.waiting or not delivery.pipeline.idle.is_set():
            most = max(most, notices.in_hand)
            await asyncio.sleep(0.005)
    finally:
        feeder.cancel()
        await delivery.stop(asyncio.get_running_loop().time() + 10)
        spool.close()
        dispatcher.close()
    assert most <= 5
    for n in range(40):
        assert delivered(mailboxes, f"user{n}@example.com") == [MESSAGE]
    assert Spool(tmp_path / "spool").pending() == []
