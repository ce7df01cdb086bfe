"""The transport pipeline: event order, edits, status, categorizing, retries and badmail."""

from __future__ import annotations

import json
import smtplib
import time
from pathlib import Path
from typing import Any

import pytest

from seo_core.metabase import BindingSpec, Metabase
from seo_core.sdk import (
    CategorizeEvent,
    DeliveryEvent,
    MessageEvent,
    MessageStatus,
    SizeEvent,
    TrackEvent,
    hookimpl,
)
from seo_core.sources.smtp.spool import Spool
from seo_core.testing import running_smtp
from tests.conftest import without_trace
from tests.smtp.conftest import Store, delivered, registry_with

TRAIL: list[str] = []
BODY = b"Subject: hello\r\nFrom: a@example.net\r\n\r\nline one\r\nline two\r\n"


class Trail:
    """Writes down each transport event it sees."""

    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent) -> None:
        TRAIL.append("OnArrival")

    @hookimpl
    def smtp_on_pre_categorize(self, event: MessageEvent) -> None:
        TRAIL.append("OnPreCategorize")

    @hookimpl
    def smtp_on_categorize(self, event: CategorizeEvent) -> None:
        TRAIL.append(f"OnCategorize {event.recipient}")

    @hookimpl
    def smtp_on_post_categorize(self, event: MessageEvent) -> None:
        TRAIL.append(f"OnPostCategorize {','.join(event.recipients)}")

    @hookimpl
    def smtp_msg_track_log(self, event: TrackEvent) -> None:
        TRAIL.append(f"MsgTrackLog {event.step} {event.recipient or ''}".rstrip())


TRACKED: list[TrackEvent] = []


class Tracker:
    """Keeps each MsgTrackLog event whole."""

    @hookimpl
    def smtp_msg_track_log(self, event: TrackEvent) -> None:
        TRACKED.append(event)


class Reader:
    """Only looks: reads the parsed message, as a log or a webhook sink does."""

    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent) -> None:
        TRAIL.append(str(event.message.get("Subject", "")))


class Tag:
    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent, sink_properties: Any) -> None:
        event.message["X-Seo-Tagged"] = str(sink_properties.get("value", "yes"))


class Status:
    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent, sink_properties: Any) -> None:
        event.set_status(MessageStatus(sink_properties["status"]), "policy says so")


class Alias:
    @hookimpl
    def smtp_on_categorize(self, event: CategorizeEvent, sink_properties: Any) -> None:
        table = sink_properties.get("table", {})
        assert isinstance(table, dict)
        if event.recipient in table:
            event.rewrite(*table[event.recipient])
        elif event.recipient.startswith("nobody@"):
            event.mark_unknown()


class Failing:
    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent) -> None:
        event.fail("disk on fire")


class Raising:
    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent) -> None:
        raise OSError("disk on fire")


class FailsOnce(Store):
    """A store that is down at its first try, and up from then on."""

    tries = 0

    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent, sink_properties: Any) -> None:
        FailsOnce.tries += 1
        if FailsOnce.tries == 1:
            event.fail("store down")
        else:
            super().smtp_store_driver(event, sink_properties)


class AllowBig:
    @hookimpl
    def smtp_max_msg_size(self, event: SizeEvent) -> None:
        if event.size <= 2 * event.limit:
            event.allow()


SINKS = {
    "test-trail": Trail,
    "test-tag": Tag,
    "test-status": Status,
    "test-alias": Alias,
    "test-failing": Failing,
    "test-allow-big": AllowBig,
    "test-fails-once": FailsOnce,
    "test-raising": Raising,
    "test-tracker": Tracker,
    "test-reader": Reader,
}


@pytest.fixture(autouse=True)
def _clear() -> None:
    TRAIL.clear()
    TRACKED.clear()
    FailsOnce.tries = 0


def bind(metabase: Metabase, event: str, sink: str, **fields: Any) -> None:
    metabase.add_binding(
        BindingSpec(
            source="smtp/1", event=event, sink_class=sink, display_name=f"{event} {sink}", **fields
        )
    )


def send(
    port: int, recipients: list[str], body: bytes = BODY, *, smtputf8: bool = False
) -> dict[str, Any]:
    options = ["SMTPUTF8"] if smtputf8 else []
    with smtplib.SMTP("127.0.0.1", port) as client:
        refused = client.sendmail("a@example.net", recipients, body, mail_options=options)
        return refused  # type: ignore[return-value]


def test_events_fire_in_pipeline_order(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path
) -> None:
    for event in (
        "OnArrival",
        "OnPreCategorize",
        "OnCategorize",
        "OnPostCategorize",
        "MsgTrackLog",
    ):
        bind(metabase, event, "test-trail")
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        send(smtp.port, ["bob@example.com", "carol@example.com"])
        smtp.wait_idle()
    assert TRAIL == [
        "MsgTrackLog received",
        "OnArrival",
        "OnPreCategorize",
        "OnCategorize bob@example.com",
        "OnCategorize carol@example.com",
        "OnPostCategorize bob@example.com,carol@example.com",
        "MsgTrackLog categorized",
        "MsgTrackLog delivered bob@example.com",
        "MsgTrackLog delivered carol@example.com",
    ]


def test_an_arrival_sink_adds_a_header_and_the_rest_stays_byte_for_byte(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path, mailboxes: Path
) -> None:
    bind(metabase, "OnArrival", "test-tag", sink_properties={"value": "tagged"})
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        send(smtp.port, ["bob@example.com"])
        smtp.wait_idle()
    (stored,) = delivered(mailboxes, "bob@example.com")
    assert without_trace(stored) == BODY.replace(
        b"\r\n\r\n", b"\r\nX-Seo-Tagged: tagged\r\n\r\n", 1
    )


def nested(levels: int) -> bytes:
    """A message whose multipart parts nest ``levels`` deep."""
    parts = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (n, n + 1)
        for n in range(levels)
    )
    head = b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    return head + parts + b"\xe9nd\r\n"


@pytest.mark.parametrize("levels", [300, 1500], ids=["too-deep-to-write", "too-deep-to-parse"])
def test_a_sink_tags_a_message_nested_too_deep_to_parse_and_its_body_stays_as_sent(
    metabase: Metabase,
    metabase_path: Path,
    bound_store: str,
    tmp_path: Path,
    mailboxes: Path,
    levels: int,
) -> None:
    """The email package recurses once per level: such a message is read as its headers, so a
    header sink still works on it, and it is delivered, not stuck in the queue."""
    bind(metabase, "OnArrival", "test-tag", sink_properties={"value": "tagged"})
    body = nested(levels)
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.sendmail("a@example.net", ["bob@example.com"], body)
        smtp.wait_idle()
    (stored,) = delivered(mailboxes, "bob@example.com")
    assert without_trace(stored) == body.replace(
        b"\r\n\r\n", b"\r\nX-Seo-Tagged: tagged\r\n\r\n", 1
    )


class Breaks:
    """A buggy sink: it puts something that is not an address among the recipients."""

    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent) -> None:
        event.recipients.append(None)  # type: ignore[arg-type]


def test_a_message_that_fails_outside_the_sinks_at_every_try_goes_to_badmail(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path, mailboxes: Path
) -> None:
    """Retried on the schedule (the fault might pass), then kept aside with the error: every
    accepted message ends delivered, aborted or in badmail, not retried for ever."""
    bind(metabase, "OnArrival", "test-breaks")
    spool = tmp_path / "spool"
    registry = registry_with(**SINKS, **{"test-breaks": Breaks})
    settings = {"retry_schedule": [0.05, 0.05]}
    with running_smtp(metabase_path, registry, spool=spool, settings=settings) as smtp:
        send(smtp.port, ["bob@example.com"])
        deadline = time.monotonic() + 20
        while not list((spool / "badmail").glob("*.json")):
            assert time.monotonic() < deadline, "the message never went to badmail"
            time.sleep(0.05)
        smtp.wait_idle()
    assert Spool(spool).pending() == []
    assert delivered(mailboxes, "bob@example.com") == []
    (envelope,) = [json.loads(p.read_text()) for p in (spool / "badmail").glob("*.json")]
    assert envelope["reason"].startswith("delivery failed 3 times outside the sinks: ")
    assert "AttributeError" in envelope["reason"]


@pytest.mark.parametrize("status", ["abort", "badmail"], ids=["abort", "badmail"])
def test_status_abort_discards_and_badmail_keeps_aside(
    metabase: Metabase,
    metabase_path: Path,
    bound_store: str,
    tmp_path: Path,
    mailboxes: Path,
    status: str,
) -> None:
    bind(metabase, "OnArrival", "test-status", sink_properties={"status": status})
    spool = tmp_path / "spool"
    with running_smtp(metabase_path, registry_with(**SINKS), spool=spool) as smtp:
        send(smtp.port, ["bob@example.com"])
        smtp.wait_idle()
    assert delivered(mailboxes, "bob@example.com") == []
    assert Spool(spool).pending() == []
    kept = sorted((spool / "badmail").iterdir())
    if status == "abort":
        assert kept == []
    else:
        eml, meta = kept
        assert without_trace(eml.read_bytes()) == BODY
        assert json.loads(meta.read_text())["reason"] == "policy says so"
        assert meta.read_text().count("\n") == 1  # one JSON line, ended: `cat` shows it whole


def test_categorize_expands_aliases_and_drops_unknown_recipients(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path, mailboxes: Path
) -> None:
    table = {"postmaster@example.com": ["alice@example.com", "bob@example.com"]}
    bind(metabase, "OnCategorize", "test-alias", sink_properties={"table": table})
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        send(smtp.port, ["postmaster@example.com", "bob@example.com", "nobody@example.com"])
        smtp.wait_idle()
    assert len(delivered(mailboxes, "alice@example.com")) == 1
    assert len(delivered(mailboxes, "bob@example.com")) == 1
    assert delivered(mailboxes, "nobody@example.com") == []
    assert delivered(mailboxes, "postmaster@example.com") == []


def test_a_failing_store_is_retried_then_the_message_goes_to_badmail(
    metabase: Metabase, metabase_path: Path, tmp_path: Path
) -> None:
    bind(metabase, "StoreDriver", "test-failing")
    bind(metabase, "MsgTrackLog", "test-trail")
    spool = tmp_path / "spool"
    with running_smtp(
        metabase_path,
        registry_with(**SINKS),
        spool=spool,
        settings={"retry_schedule": [0.01, 0.01]},
    ) as smtp:
        send(smtp.port, ["bob@example.com"])
        smtp.wait_idle()  # through the retries: until the message is done with
    (meta,) = (spool / "badmail").glob("*.json")
    envelope = json.loads(meta.read_text())
    assert envelope["attempts"] == 2
    assert envelope["reason"] == "bob@example.com: disk on fire"
    assert TRAIL.count("MsgTrackLog failed bob@example.com") == 3
    assert TRAIL[-1] == "MsgTrackLog badmail"


async def _next_retry(smtp: Any) -> None:
    """Wait until the pipeline has picked up the scheduled retry (no fixed sleep)."""
    import asyncio

    pipeline = smtp.source.pipeline
    while pipeline.idle.is_set() and pipeline.retrying:
        await asyncio.sleep(0.005)


def test_max_msg_size_lets_a_sink_allow_a_declared_size(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path, mailboxes: Path
) -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 15
    settings = {"max_message_size": 1000}
    with (
        running_smtp(
            metabase_path, registry_with(**SINKS), spool=tmp_path / "s1", settings=settings
        ) as smtp,
        smtplib.SMTP("127.0.0.1", smtp.port) as client,
    ):
        client.ehlo()
        assert client.mail("a@example.net", ["SIZE=1520"])[0] == 552
    bind(metabase, "MaxMsgSize", "test-allow-big")
    with running_smtp(
        metabase_path, registry_with(**SINKS), spool=tmp_path / "s2", settings=settings
    ) as smtp:
        assert send(smtp.port, ["bob@example.com"], big) == {}
        smtp.wait_idle()
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.ehlo()
            assert client.mail("a@example.net", ["SIZE=5000"])[0] == 552
    assert [without_trace(m) for m in delivered(mailboxes, "bob@example.com")] == [big]


def test_one_mailbox_named_twice_in_any_case_gets_the_message_once(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path, mailboxes: Path
) -> None:
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        send(
            smtp.port,
            ["bob@example.com", "BOB@Example.COM", "bob@example.com", "carol@example.com"],
        )
        smtp.wait_idle()
    assert len(delivered(mailboxes, "bob@example.com")) == 1
    assert delivered(mailboxes, "BOB@Example.COM") == []
    assert len(delivered(mailboxes, "carol@example.com")) == 1


@pytest.mark.parametrize(
    "pair", [("straße", "strasse"), ("\u017fam", "sam")], ids=["sharp-s", "long-s"]
)
def test_names_that_only_case_folding_makes_one_are_two_mailboxes(
    metabase: Metabase,
    metabase_path: Path,
    bound_store: str,
    tmp_path: Path,
    mailboxes: Path,
    pair: tuple[str, str],
) -> None:
    """Each recipient told 250 gets the message: none is taken for a repeat of another."""
    recipients = [f"{name}@example.com" for name in pair]
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        send(smtp.port, recipients, smtputf8=True)
        smtp.wait_idle()
    assert [len(delivered(mailboxes, r)) for r in recipients] == [1, 1]


def test_a_retry_runs_only_storedriver_with_the_message_as_the_sinks_left_it(
    metabase: Metabase, metabase_path: Path, tmp_path: Path, mailboxes: Path
) -> None:
    """The transport events run once per message, as in the original (a categorized message is
    not categorized again): a retry spends no audit line, webhook call or MaxFirings budget."""
    bind(metabase, "OnArrival", "test-tag", sink_properties={"value": "once"})
    bind(metabase, "OnPostCategorize", "test-trail")
    bind(metabase, "MsgTrackLog", "test-trail")
    bind(metabase, "StoreDriver", "test-fails-once", sink_properties={"root": str(mailboxes)})
    spool = tmp_path / "spool"
    settings = {"retry_schedule": [0.05, 0.05]}
    with running_smtp(
        metabase_path, registry_with(**SINKS), spool=spool, settings=settings
    ) as smtp:
        send(smtp.port, ["bob@example.com"])
        smtp.wait_idle(retries=False)
        (kept,) = (spool / "processed").iterdir()  # the tagged message, for the retry
        assert b"X-Seo-Tagged: once\r\n" in kept.read_bytes()
        smtp.server.call(_next_retry(smtp))
        smtp.wait_idle()
    assert FailsOnce.tries == 2
    assert TRAIL == [
        "MsgTrackLog received",
        "OnPostCategorize bob@example.com",
        "MsgTrackLog categorized",
        "MsgTrackLog failed bob@example.com",
        "MsgTrackLog delivered bob@example.com",
    ]
    (stored,) = delivered(mailboxes, "bob@example.com")
    assert without_trace(stored) == BODY.replace(b"\r\n\r\n", b"\r\nX-Seo-Tagged: once\r\n\r\n", 1)
    assert list((spool / "processed").iterdir()) == []
    assert Spool(spool).pending() == []


def test_the_badmail_reason_of_a_store_that_raises_names_the_sink_and_its_error(
    metabase: Metabase, metabase_path: Path, tmp_path: Path
) -> None:
    """What an administrator reads in badmail/ says why, not only that a sink failed."""
    bind(metabase, "StoreDriver", "test-raising")
    spool = tmp_path / "spool"
    settings = {"retry_schedule": [0.01]}
    with running_smtp(
        metabase_path, registry_with(**SINKS), spool=spool, settings=settings
    ) as smtp:
        send(smtp.port, ["bob@example.com"])
        smtp.wait_idle()
    (meta,) = (spool / "badmail").glob("*.json")
    envelope = json.loads(meta.read_text())
    reason = "StoreDriver sink test-raising: OSError: disk on fire"
    assert envelope["failed"] == {"bob@example.com": reason}
    assert envelope["reason"] == f"bob@example.com: {reason}"


def test_tracking_names_the_resolved_recipients_each_failed_one_and_the_outcome(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path
) -> None:
    """A recipient OnCategorize found unknown was told 250 at RCPT: the MsgTrackLog trail is
    where it shows (with its reason), and badmail and aborted steps carry that status."""
    table = {"postmaster@example.com": ["alice@example.com", "bob@example.com"]}
    bind(metabase, "OnCategorize", "test-alias", sink_properties={"table": table})
    bind(metabase, "MsgTrackLog", "test-tracker")
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        send(smtp.port, ["postmaster@example.com", "nobody@example.com"])
        smtp.wait_idle()
    steps = {(e.step, e.recipient): e for e in TRACKED}
    categorized = steps["categorized", None]
    assert categorized.recipients == ["alice@example.com", "bob@example.com"]
    assert steps["failed", "nobody@example.com"].detail == "550 5.1.1 unknown recipient"
    assert {r for step, r in steps if step == "delivered"} == {
        "alice@example.com",
        "bob@example.com",
    }


@pytest.mark.parametrize("status", ["abort", "badmail"])
def test_the_last_tracking_step_carries_the_status_the_message_got(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path, status: str
) -> None:
    bind(metabase, "OnArrival", "test-status", sink_properties={"status": status})
    bind(metabase, "MsgTrackLog", "test-tracker")
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        send(smtp.port, ["bob@example.com"])
        smtp.wait_idle()
    last = TRACKED[-1]
    assert (last.step, last.status, last.detail) == (
        {"abort": "aborted", "badmail": "badmail"}[status],
        MessageStatus(status),
        "policy says so",
    )


def test_a_sink_that_only_reads_the_message_leaves_its_bytes_as_received(
    metabase: Metabase, metabase_path: Path, bound_store: str, tmp_path: Path, mailboxes: Path
) -> None:
    """Header forms the email package writes back differently (no space after the colon, a
    tab, an empty value) reach the mailbox as sent when no sink changed anything."""
    odd = b"From:a@example.net\r\nSubject:\tweird\r\nX-Empty:\r\n\r\nbody\r\n"
    bind(metabase, "OnArrival", "test-reader")
    with running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.sendmail("a@example.net", ["bob@example.com"], odd)
        smtp.wait_idle()
    assert TRAIL == ["weird"]
    (stored,) = delivered(mailboxes, "bob@example.com")
    assert without_trace(stored) == odd
