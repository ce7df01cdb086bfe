"""The tutorial's sink, tested with seo's test kit (the ``seo_*`` fixtures come with seo-core)."""

# --8<-- [start:imports]
from __future__ import annotations

from email.message import EmailMessage

import pytest

from seo_core.errors import SinkPropertyError
from seo_core.pytest_plugin import EventFactory, LogEvents, SinkRunner, SmtpServerFactory
from seo_core.sdk import DeliveryEvent, MessageStatus, PropertyValue, Verdict, hookimpl

WORDS: dict[str, PropertyValue] = {"Words": ["lottery", "prize"]}
# --8<-- [end:imports]


# --8<-- [start:first-test]
def test_keeps_aside_a_message_with_a_listed_word(
    seo_event: EventFactory, seo_run_sink: SinkRunner
) -> None:
    event = seo_event("OnArrival", message=b"Subject: You won a PRIZE!\r\n\r\nClick.\r\n")
    run = seo_run_sink("wordfilter", event, sink_properties={"Words": ["lottery", "prize"]})
    assert run.event.status is MessageStatus.BADMAIL
    assert run.event.status_reason == "the subject contains 'prize'"
    assert run.verdict is Verdict.SKIP_REMAINING
    # --8<-- [end:first-test]


# --8<-- [start:more-tests]
def test_tags_the_messages_it_lets_through(
    seo_event: EventFactory, seo_run_sink: SinkRunner
) -> None:
    event = seo_event("OnArrival", message=b"Subject: Minutes\r\n\r\nHello.\r\n")
    run = seo_run_sink("wordfilter", event, sink_properties=WORDS)
    assert run.event.status is MessageStatus.DELIVER
    assert run.event.message["X-Wordfilter"] == "passed"
    assert run.verdict is Verdict.CONTINUE


def test_replaces_a_tag_the_client_forged(
    seo_event: EventFactory, seo_run_sink: SinkRunner
) -> None:
    forged = b"Subject: Lottery\r\nX-Wordfilter: passed\r\n\r\nYou won.\r\n"
    run = seo_run_sink("wordfilter", seo_event("OnArrival", message=forged), sink_properties=WORDS)
    assert run.event.status is MessageStatus.BADMAIL  # kept aside all the same
    clean = seo_event("OnArrival", message=b"Subject: Hi\r\nX-Wordfilter: x\r\n\r\nHi.\r\n")
    run = seo_run_sink("wordfilter", clean, sink_properties=WORDS)
    assert run.event.message.get_all("X-Wordfilter") == ["passed"]


@pytest.mark.parametrize(
    ("subject", "kept_aside"),
    [("Lottery results", True), ("lotteryresults", False), ("the prizes", False)],
    ids=["any-case", "inside-a-word", "plural"],
)
def test_matches_whole_words_in_any_case(
    seo_event: EventFactory, seo_run_sink: SinkRunner, subject: str, kept_aside: bool
) -> None:
    event = seo_event("OnArrival", message=f"Subject: {subject}\r\n\r\n.\r\n")
    run = seo_run_sink("wordfilter", event, sink_properties=WORDS)
    assert (run.event.status is MessageStatus.BADMAIL) is kept_aside


@pytest.mark.parametrize(
    "properties",
    [{}, {"Words": []}, {"Words": ["ok", ""]}, {"Words": "prize"}, {"Words": ["x"], "Hedaer": "y"}],
    ids=["missing", "empty", "empty-word", "not-a-list", "misspelt-name"],
)
def test_refuses_bad_properties_when_the_binding_is_written(
    seo_event: EventFactory, seo_run_sink: SinkRunner, properties: dict[str, PropertyValue]
) -> None:
    with pytest.raises(SinkPropertyError):
        seo_run_sink("wordfilter", seo_event("OnArrival"), sink_properties=properties)
    # --8<-- [end:more-tests]


# --8<-- [start:logs-test]
def test_logs_what_it_keeps_aside(
    seo_event: EventFactory, seo_run_sink: SinkRunner, seo_logs: LogEvents
) -> None:
    event = seo_event("OnArrival", message=b"Subject: lottery\r\n\r\n.\r\n")
    run = seo_run_sink("wordfilter", event, sink_properties=WORDS)
    (logged,) = [e for e in seo_logs if e["event"] == "message_kept_aside"]
    assert logged["binding_id"] == run.binding.id
    assert logged["word"] == "lottery"
    # --8<-- [end:logs-test]


# --8<-- [start:server-test]
def test_over_smtp(seo_smtp_server: SmtpServerFactory) -> None:
    delivered: list[EmailMessage] = []

    class Mailbox:
        """A StoreDriver sink of the test's own: keeps what would be delivered."""

        @hookimpl
        def smtp_store_driver(self, event: DeliveryEvent) -> None:
            delivered.append(event.message)
            event.delivered("memory")

    server = seo_smtp_server(
        [
            {
                "event": "OnArrival",
                "name": "Filter",
                "sink": "wordfilter",
                "sink_properties": WORDS,
            },
            {"event": "StoreDriver", "name": "Mailbox", "sink": "mailbox"},
        ],
        sinks={"mailbox": Mailbox},
    )
    server.send(b"Subject: Lottery\r\n\r\nYou won.\r\n")
    server.send(b"Subject: Lunch?\r\n\r\nAt noon.\r\n")
    assert [m["Subject"] for m in delivered] == ["Lunch?"]
    assert delivered[0]["X-Wordfilter"] == "passed"
    (kept_aside,) = (server.spool / "badmail").glob("*.eml")
    assert b"Subject: Lottery" in kept_aside.read_bytes()
    # --8<-- [end:server-test]
