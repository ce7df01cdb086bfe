"""Every event's hook, called through the real dispatcher with the context the kit builds.

One sink per hook does what DESIGN.md section 5 says a sink of that event may do, and the test
checks the context carries it back. The protocol and transport events are also fired by the real
sources in tests/smtp and tests/nntp; the outbound relay events (OnTransportRouter, OnSessionStart
.. OnSessionEnd, DnsResolver) have no source firing them yet, so this is where their sink API is
pinned.
"""

from __future__ import annotations

import dataclasses

import pytest

from seo_core.catalog import SOURCE_TYPES, hook_names
from seo_core.events import contexts
from seo_core.pytest_plugin import EventFactory, SinkRunner, context_class
from seo_core.sdk import (
    Binding,
    CategorizeEvent,
    CommandEvent,
    DeliveryEvent,
    DnsEvent,
    MessageEvent,
    MessageStatus,
    OutboundCommandEvent,
    PostEvent,
    PropertyBag,
    Reply,
    ResponseEvent,
    RouterEvent,
    SizeEvent,
    TrackEvent,
    Verdict,
    hookimpl,
)


@pytest.mark.parametrize("hook", sorted(hook_names()))
def test_the_kit_builds_the_context_the_hookspec_names(seo_event: EventFactory, hook: str) -> None:
    kind, event_type = hook_names()[hook]
    event = seo_event(hook)
    assert type(event) is context_class(kind.name, event_type)
    assert (event.source, event.name) == (f"{kind.name}/1", event_type.name)


def test_every_context_class_serves_some_event() -> None:
    used = {context_class(k.name, e) for k in SOURCE_TYPES.values() for e in k.events}
    defined = {
        cls
        for cls in vars(contexts).values()
        if isinstance(cls, type)
        and issubclass(cls, contexts.EventContext)
        and dataclasses.is_dataclass(cls)
    }
    assert defined - used == {contexts.EventContext}


# -- SMTP protocol events ------------------------------------------------------------------


class Gatekeeper:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        if event.command == "EHLO":
            event.ehlo_keywords.append("XSEO")
        elif event.argument.endswith("@spam.example>"):
            event.reply(550, "5.7.1 not from there")
            event.drop_session()


def test_smtp_on_inbound_command(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    mail = seo_run_sink(
        Gatekeeper, seo_event("OnInboundCommand", command="MAIL", argument="FROM:<x@spam.example>")
    )
    assert mail.event.response == Reply(550, "5.7.1 not from there")
    assert mail.event.drop
    ehlo = seo_run_sink(Gatekeeper, seo_event("OnInboundCommand", command="EHLO"), rule="EHLO")
    assert ehlo.event.ehlo_keywords == ["XSEO"]


class Rewriter:
    @hookimpl
    def smtp_on_server_response(self, event: ResponseEvent) -> None:
        if event.response.code == 250:
            event.reply(250, f"{event.response.text} (checked)")


def test_smtp_on_server_response(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    run = seo_run_sink(Rewriter, seo_event("OnServerResponse", command="DATA"), rule="DATA")
    assert run.event.response == Reply(250, "OK (checked)")


class SizeGate:
    @hookimpl
    def smtp_max_msg_size(self, event: SizeEvent, sink_properties: PropertyBag) -> None:
        limit = sink_properties.get("Up to")
        if isinstance(limit, int) and event.size <= limit:
            event.allow()


def test_smtp_max_msg_size(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    event = seo_event("MaxMsgSize", size=2000, limit=1000)
    run = seo_run_sink(SizeGate, event, sink_properties={"Up to": 4000})
    assert run.event.allowed


# -- SMTP transport events -----------------------------------------------------------------


class Arrivals:
    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent, binding: Binding) -> Verdict:
        event.message["X-Seen-By"] = binding.display_name or binding.id
        event.recipients.remove("drop@example.com")
        return Verdict.SKIP_REMAINING


def test_smtp_on_arrival(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    event = seo_event("OnArrival", recipients=["keep@example.com", "drop@example.com"])
    run = seo_run_sink(Arrivals, event, name="Arrivals")
    assert run.event.message["X-Seen-By"] == "Arrivals"
    assert run.event.recipients == ["keep@example.com"]
    assert run.verdict is Verdict.SKIP_REMAINING


class Submissions:
    @hookimpl
    def smtp_on_transport_submission(self, event: MessageEvent) -> None:
        event.abort("duplicate")


def test_smtp_on_transport_submission_is_on_arrival(
    seo_event: EventFactory, seo_run_sink: SinkRunner
) -> None:
    run = seo_run_sink(Submissions, seo_event("OnTransportSubmission"))
    assert run.event.name == "OnArrival"
    assert run.binding.event == "OnArrival"
    assert (run.event.status, run.event.status_reason) == (MessageStatus.ABORT, "duplicate")


class Inspector:
    @hookimpl
    def smtp_on_pre_categorize(self, event: MessageEvent) -> None:
        if "spam" in str(event.message["Subject"]).lower():
            event.badmail("looks like spam")


def test_smtp_on_pre_categorize(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    event = seo_event("OnPreCategorize", message=b"Subject: SPAM offer\r\n\r\nbuy\r\n")
    run = seo_run_sink(Inspector, event)
    assert (run.event.status, run.event.status_reason) == (MessageStatus.BADMAIL, "looks like spam")


class Aliases:
    @hookimpl
    def smtp_on_categorize(self, event: CategorizeEvent, sink_properties: PropertyBag) -> None:
        members = sink_properties.get(event.recipient)
        if isinstance(members, list):
            event.rewrite(*(str(m) for m in members))
        elif event.recipient.startswith("nobody@"):
            event.mark_unknown()


def test_smtp_on_categorize(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    team = {"team@example.com": ["ann@example.com", "bob@example.com"]}
    run = seo_run_sink(
        Aliases, seo_event("OnCategorize", recipient="team@example.com"), sink_properties=team
    )
    assert run.event.resolved == ["ann@example.com", "bob@example.com"]
    unknown = seo_run_sink(Aliases, seo_event("OnCategorize", recipient="nobody@example.com"))
    assert unknown.event.unknown


class Dedupe:
    @hookimpl
    def smtp_on_post_categorize(self, event: MessageEvent) -> None:
        event.recipients[:] = sorted(set(event.recipients))


def test_smtp_on_post_categorize(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    event = seo_event("OnPostCategorize", recipients=["b@example.com", "a@example.com"] * 2)
    assert seo_run_sink(Dedupe, event).event.recipients == ["a@example.com", "b@example.com"]


class Store:
    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent) -> None:
        if event.recipient.startswith("full@"):
            event.fail("mailbox full", permanent=True)
        else:
            event.delivered(f"memory:{event.recipient}")


def test_smtp_store_driver(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    ok = seo_run_sink(Store, seo_event("StoreDriver", recipient="ann@example.com"))
    assert ok.event.stored_at == "memory:ann@example.com"
    full = seo_run_sink(Store, seo_event("StoreDriver", recipient="full@example.com"))
    assert (full.event.failure, full.event.permanent_failure) == ("mailbox full", True)


def test_smtp_store_driver_rules_see_the_one_recipient(
    seo_event: EventFactory, seo_run_sink: SinkRunner
) -> None:
    """As in the SMTP source, a ``rcpt to`` rule of a per-recipient event sees that one only."""
    both = ["ann@example.com", "bob@example.com"]
    event = seo_event("StoreDriver", recipients=both, recipient="bob@example.com")
    assert not seo_run_sink(Store, event, rule="rcpt to=ann@*").notified
    assert seo_run_sink(Store, event, rule="rcpt to=bob@*").notified


class Tracker:
    steps: list[tuple[str, str | None]]

    def __init__(self) -> None:
        self.steps = []

    @hookimpl
    def smtp_msg_track_log(self, event: TrackEvent) -> None:
        self.steps.append((event.step, event.recipient))


def test_smtp_msg_track_log(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    tracker = Tracker()
    event = seo_event("MsgTrackLog", step="delivered", recipient="ann@example.com")
    run = seo_run_sink(tracker, event)
    assert run.notified
    assert tracker.steps == [("delivered", "ann@example.com")]


# -- outbound relay (no source fires these yet) --------------------------------------------


class Router:
    @hookimpl
    def smtp_on_transport_router(self, event: RouterEvent, sink_properties: PropertyBag) -> None:
        smarthost = sink_properties.get("Smarthost")
        if event.domain == "example.com":
            event.deliver_locally()
        elif isinstance(smarthost, str):
            event.relay_to(smarthost, 587)


def test_smtp_on_transport_router(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    remote = seo_event("OnTransportRouter", recipients=["x@example.net"])
    run = seo_run_sink(Router, remote, sink_properties={"Smarthost": "relay.example.org"})
    assert (run.event.route, run.event.local) == (("relay.example.org", 587), False)
    local = seo_run_sink(Router, seo_event("OnTransportRouter", domain="example.com"))
    assert (local.event.route, local.event.local) == (None, True)


class Outbound:
    @hookimpl
    def smtp_on_session_start(self, event: OutboundCommandEvent) -> None:
        event.set_command("HELO", "relay.example.org")

    @hookimpl
    def smtp_on_message_start(self, event: OutboundCommandEvent) -> None:
        event.set_command("MAIL", f"{event.argument} SMTPUTF8")

    @hookimpl
    def smtp_on_per_recipient(self, event: OutboundCommandEvent) -> None:
        if event.recipient == "blocked@example.net":
            event.stop()

    @hookimpl
    def smtp_on_before_data(self, event: OutboundCommandEvent) -> None:
        event.set_command("BDAT", "0 LAST")

    @hookimpl
    def smtp_on_session_end(self, event: OutboundCommandEvent) -> None:
        event.set_command("QUIT")


@pytest.mark.parametrize(
    ("event_name", "fields", "expected"),
    [
        ("OnSessionStart", {}, ("HELO", "relay.example.org", False)),
        ("OnMessageStart", {"argument": "FROM:<a@b>"}, ("MAIL", "FROM:<a@b> SMTPUTF8", False)),
        ("OnPerRecipient", {"recipient": "blocked@example.net"}, ("RCPT", "", True)),
        ("OnBeforeData", {}, ("BDAT", "0 LAST", False)),
        ("OnSessionEnd", {"argument": "now"}, ("QUIT", "", False)),
    ],
    ids=[
        "smtp_on_session_start",
        "smtp_on_message_start",
        "smtp_on_per_recipient",
        "smtp_on_before_data",
        "smtp_on_session_end",
    ],
)  # fmt: skip
def test_outbound_command_events(
    seo_event: EventFactory,
    seo_run_sink: SinkRunner,
    event_name: str,
    fields: dict[str, str],
    expected: tuple[str, str, bool],
) -> None:
    event = seo_event(event_name, remote=("mx.example.net", 25), **fields)
    assert isinstance(event, OutboundCommandEvent)
    run = seo_run_sink(Outbound, event, rule=event.command)
    assert (run.event.command, run.event.argument, run.event.stopped) == expected


class Resolver:
    @hookimpl
    def smtp_dns_resolver(self, event: DnsEvent, sink_properties: PropertyBag) -> None:
        hosts = sink_properties.get(event.domain)
        if isinstance(hosts, list):
            event.hosts.extend((str(host), 25) for host in hosts)


def test_smtp_dns_resolver(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    hosts = {"example.net": ["mx1.example.net", "mx2.example.net"]}
    run = seo_run_sink(Resolver, seo_event("DnsResolver"), sink_properties=hosts)
    assert run.event.hosts == [("mx1.example.net", 25), ("mx2.example.net", 25)]


# -- NNTP events ---------------------------------------------------------------------------


class Moderator:
    @hookimpl
    def nntp_on_post_early(self, event: PostEvent) -> None:
        if event.message["From"] is None or "@" not in str(event.message["From"]):
            event.refuse("who are you?")
        event.newsgroups[:] = [g for g in event.newsgroups if g != "local.announce"]

    @hookimpl
    def nntp_on_post(self, event: PostEvent) -> None:
        if "buy now" in str(event.message.get_payload()).lower():
            event.refuse("no advertising")

    @hookimpl
    def nntp_on_post_final(self, event: PostEvent) -> None:
        event.message["X-Archived"] = "yes"  # observe only: changes are ignored by the source


def test_nntp_on_post_early(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    event = seo_event("OnPostEarly", newsgroups=["local.test", "local.announce"])
    run = seo_run_sink(Moderator, event, rule="newsgroups=local.announce")
    assert run.event.newsgroups == ["local.test"]
    assert run.event.refused is None


def test_nntp_on_post(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    article = b"From: a@example.org\r\nNewsgroups: local.test\r\nSubject: x\r\n\r\nBuy now!\r\n"
    run = seo_run_sink(Moderator, seo_event("OnPost", message=article))
    assert run.event.refused == "no advertising"


def test_nntp_on_post_final(seo_event: EventFactory, seo_run_sink: SinkRunner) -> None:
    run = seo_run_sink(Moderator, seo_event("OnPostFinal"))
    assert run.notified
    assert not run.failed
