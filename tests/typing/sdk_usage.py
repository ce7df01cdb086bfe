"""Sinks and sink tests written the way authors write them, for ``mypy --strict`` (nox -s typing).

Nothing here runs: pytest does not collect this file. A type error here means that a change to
``seo_core.sdk`` or to the test kit broke code that third-party authors have already written
(the idea of structlog's ``tests/typing``). ``assert_type`` pins what authors rely on.
"""

from __future__ import annotations

import types
from email.message import EmailMessage
from typing import Any, assert_type

from seo_core.dispatcher import DispatchResult
from seo_core.errors import SinkPropertyError
from seo_core.pytest_plugin import (
    EventFactory,
    LogEvents,
    NntpServerFactory,
    SinkRun,
    SinkRunner,
    SmtpServerFactory,
)
from seo_core.sdk import (
    Binding,
    CategorizeEvent,
    CommandEvent,
    DeliveryEvent,
    DnsEvent,
    EventContext,
    MessageEvent,
    MessageStatus,
    OutboundCommandEvent,
    PostEvent,
    Prop,
    PropertyBag,
    PropertyValue,
    Reply,
    ResponseEvent,
    RouterEvent,
    Schema,
    SessionInfo,
    SizeEvent,
    TrackEvent,
    Verdict,
    hookimpl,
)


class Tagger:
    """A class sink with every optional declaration."""

    clsid = "{6f1c2b2e-8f7d-4a53-9d1e-0c6a4b7e2f10}"
    cacheable = False
    properties_schema = Schema(
        {
            "Tag": Prop(str, default="yes", help="the value of X-Tag"),
            "Limit": Prop((int, float), required=True),
            "Mode": Prop(str, choices=("add", "replace")),
            "Folder": Prop(str, path=True),
        },
        allow_unknown=False,
    )

    @staticmethod
    def validate_properties(properties: PropertyBag) -> None:
        limit = properties.get("Limit")
        if isinstance(limit, int | float) and limit < 0:
            raise SinkPropertyError("SinkProperties.Limit", limit, "must not be negative")

    @hookimpl
    def smtp_on_arrival(
        self,
        event: MessageEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict:
        tag: PropertyValue | None = sink_properties.get("Tag")
        event.message["X-Tag"] = str(tag)
        event.message["X-Binding"] = f"{binding.id} {binding.display_name} {binding.fire_count}"
        event.recipients.append("audit@example.com")
        assert_type(source_properties.get("Rule"), PropertyValue | None)
        assert_type(event.session, SessionInfo | None)
        if event.status is MessageStatus.DELIVER and event.raw is not None:
            event.badmail("too big" if len(event.raw) > 10 else "odd")
            return Verdict.SKIP_REMAINING
        return Verdict.CONTINUE

    @hookimpl
    async def smtp_store_driver(self, event: DeliveryEvent) -> None:
        event.delivered(f"memory:{event.recipient}")
        event.fail("full", permanent=True)


class Protocol:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        if event.command == "EHLO":
            event.ehlo_keywords.append("XSEO")
        if event.session.authenticated_as is None and event.session.tls:
            event.reply(530, "5.7.0 authenticate first")
            event.drop_session()
        event.session.data["seen"] = True

    @hookimpl
    def smtp_on_server_response(self, event: ResponseEvent) -> Verdict | None:
        reply: Reply = event.response
        event.reply(reply.code, reply.text.upper())
        return None


class Transport:
    @hookimpl
    def smtp_on_pre_categorize(self, event: MessageEvent) -> None:
        event.abort()

    @hookimpl
    def smtp_on_categorize(self, event: CategorizeEvent) -> None:
        event.rewrite(event.recipient, "copy@example.com")
        event.mark_unknown()

    @hookimpl
    def smtp_on_post_categorize(self, event: MessageEvent) -> None:
        event.set_status(MessageStatus.BADMAIL, "why")

    @hookimpl
    def smtp_on_transport_router(self, event: RouterEvent) -> None:
        if event.domain.endswith(".example"):
            event.deliver_locally()
        else:
            event.relay_to("relay.example.org", 587)

    @hookimpl
    def smtp_max_msg_size(self, event: SizeEvent) -> None:
        if event.size < 2 * event.limit:
            event.allow()

    @hookimpl
    def smtp_msg_track_log(self, event: TrackEvent) -> None:
        print(event.step, event.recipient, event.detail)

    @hookimpl
    def smtp_on_session_start(self, event: OutboundCommandEvent) -> None:
        event.set_command("HELO", "relay.example.org")
        event.stop()

    @hookimpl
    def smtp_dns_resolver(self, event: DnsEvent) -> None:
        event.hosts.append(("mx." + event.domain, 25))


# A module sink: plain functions, any subset of the arguments.
@hookimpl
def nntp_on_post(event: PostEvent, sink_properties: PropertyBag) -> None:
    if sink_properties.get("ReadOnly") is True:
        event.refuse("read only")
    event.newsgroups.remove("local.announce")
    assert_type(event.message, EmailMessage)


def a_sink_authors_tests(
    seo_event: EventFactory,
    seo_run_sink: SinkRunner,
    seo_smtp_server: SmtpServerFactory,
    seo_nntp_server: NntpServerFactory,
    seo_logs: LogEvents,
) -> None:
    """The fixtures, with the types an author's annotated test sees."""
    arrival = seo_event("OnArrival", mail_from="a@example.org", message=b"Subject: x\r\n\r\n")
    assert_type(arrival, MessageEvent)
    assert_type(seo_event("smtp_store_driver"), DeliveryEvent)
    assert_type(seo_event("OnInboundCommand", command="EHLO"), CommandEvent)
    assert_type(seo_event("OnSessionEnd"), OutboundCommandEvent)
    assert_type(seo_event("OnPostEarly", source="nntp/2"), PostEvent)
    assert_type(seo_event("onarrival"), EventContext)

    run = seo_run_sink(Tagger, arrival, sink_properties={"Limit": 1}, rule="mail from=*")
    assert_type(run, SinkRun[MessageEvent])
    assert_type(run.event.message, EmailMessage)
    assert_type(run.verdict, Verdict)
    assert_type(run.error, str | None)
    assert_type(run.binding, Binding)
    assert_type(run.result, DispatchResult)
    seo_run_sink(types.ModuleType("sink"), seo_event("OnPost"), priority="PRIO_HIGH")
    seo_run_sink("tagger", seo_event("OnArrival"), binding_properties={"Timeout": 2})

    with seo_smtp_server(
        [{"event": "OnArrival", "sink": "tagger", "sink_properties": {"Limit": 1}}],
        sinks={"tagger": Tagger},
        local_domains=["example.com"],
        settings={"max_message_size": 1000},
    ) as smtp:
        assert_type(smtp.port, int)
        refused = smtp.send(b"Subject: x\r\n\r\n", recipients=["b@example.com"])
        assert_type(refused, dict[str, tuple[int, bytes]])
        smtp.wait_idle(timeout=5)
    news = seo_nntp_server(groups=["local.test"])
    assert_type(news.post("Newsgroups: local.test\r\n\r\nhi\r\n"), str)
    assert_type(seo_logs[0]["event"], Any)
