"""OnInboundCommand and OnServerResponse, seen from a real SMTP client."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seo_core.metabase import BindingSpec, Metabase
from seo_core.sdk import CommandEvent, ResponseEvent, hookimpl
from seo_core.testing import RunningSmtp, running_smtp
from tests.smtp.conftest import delivered, registry_with

SEEN: list[tuple[str, str]] = []


class Seen:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        SEEN.append((event.command, event.argument))


class Refuse:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent, sink_properties: Any) -> None:
        event.reply(int(str(sink_properties["code"])), str(sink_properties["text"]))


class Accept:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        event.reply(250, "2.1.5 accepted by policy")


class Verb:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        if event.command == "XSEO":
            event.reply(250, f"seo says hello to {event.session.ehlo_name}")


class Keywords:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        event.ehlo_keywords.append("XSEO-DEMO")


class Drop:
    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        event.reply(421, "4.7.0 go away")
        event.drop_session()


class Rewrite:
    @hookimpl
    def smtp_on_server_response(self, event: ResponseEvent) -> None:
        if event.response.code == 220:
            event.reply(220, "mx.test rewritten greeting")
        elif event.command == "DATA" and event.response.code == 250:
            event.reply(250, "2.0.0 thanks, " + event.response.text)


SINKS = {
    "test-seen": Seen,
    "test-refuse": Refuse,
    "test-accept": Accept,
    "test-verb": Verb,
    "test-keywords": Keywords,
    "test-drop": Drop,
    "test-rewrite": Rewrite,
}


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


@pytest.fixture
def serve(metabase_path: Path, metabase: Metabase, bound_store: str, tmp_path: Path) -> Any:
    """Bind what a test asks for, then run the server."""

    def start(*bindings: tuple[str, str, str, dict[str, Any]]) -> Iterator[RunningSmtp]:
        for n, (event, sink, rule, props) in enumerate(bindings):
            metabase.add_binding(
                BindingSpec(
                    source="smtp/1",
                    event=event,
                    sink_class=sink,
                    display_name=f"b{n}",
                    source_properties={"Rule": rule} if rule else {},
                    sink_properties=props,
                )
            )
        return running_smtp(metabase_path, registry_with(**SINKS), spool=tmp_path / "spool")

    return start


def test_every_command_fires_in_order_and_auth_secrets_never_do(serve: Any) -> None:
    with (
        serve(("OnInboundCommand", "test-seen", "", {})) as smtp,
        smtplib.SMTP("127.0.0.1", smtp.port, local_hostname="client.test") as client,
    ):
        client.ehlo()
        client.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")
        client.sendmail("a@example.net", ["bob@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert SEEN == [
        ("EHLO", "client.test"),
        ("AUTH", "PLAIN"),
        ("MAIL", "FROM:<a@example.net> size=18"),
        ("RCPT", "TO:<bob@example.com>"),
        ("DATA", ""),
        ("QUIT", ""),
    ]


def test_credentials_sent_after_a_refused_auth_are_neither_events_nor_echoed(
    serve: Any,
) -> None:
    """A client that sends AUTH LOGIN's lines without waiting for the prompt, here where AUTH
    is refused (no TLS): the lines are secrets, not commands."""
    with serve(("OnInboundCommand", "test-seen", "", {})) as smtp:
        sock = socket.create_connection(("127.0.0.1", smtp.port), timeout=10)
        lines = sock.makefile("rb")
        lines.readline()
        sock.sendall(b"EHLO client.test\r\nAUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0UEFTUzI\r\nNOOP\r\n")
        while lines.readline()[3:4] == b"-":
            pass  # the EHLO reply
        replies = [lines.readline() for _ in range(4)]
        sock.close()
    assert replies[0].startswith(b"538 5.7.11 ")
    assert replies[1:3] == [b"500 5.5.2 Error: command not recognized\r\n"] * 2
    assert replies[3] == b"250 2.0.0 OK\r\n"
    assert SEEN == [("EHLO", "client.test"), ("AUTH", "LOGIN"), ("NOOP", "")]


def test_a_rule_selects_the_commands(serve: Any) -> None:
    with (
        serve(("OnInboundCommand", "test-seen", "EHLO;RCPT", {})) as smtp,
        smtplib.SMTP("127.0.0.1", smtp.port, local_hostname="client.test") as client,
    ):
        client.sendmail("a@example.net", ["bob@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert [command for command, _ in SEEN] == ["EHLO", "RCPT"]


def test_a_sink_refuses_a_sender_chosen_by_rule(serve: Any, mailboxes: Path) -> None:
    refuse = (
        "OnInboundCommand",
        "test-refuse",
        "mail from=*@spam.example",
        {"code": 550, "text": "5.7.1 no mail from spam.example"},
    )
    with serve(refuse) as smtp, smtplib.SMTP("127.0.0.1", smtp.port) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail("x@spam.example", ["bob@example.com"], b"Subject: x\r\n\r\nhi\r\n")
        assert (caught.value.smtp_code, caught.value.smtp_error) == (
            550,
            b"5.7.1 no mail from spam.example",
        )
        client.rset()
        assert client.sendmail("x@good.example", ["bob@example.com"], b"S: x\r\n\r\nok\r\n") == {}
        smtp.wait_idle()
    assert len(delivered(mailboxes, "bob@example.com")) == 1


def test_a_non_local_recipient_is_refused_unless_a_sink_accepts_it(serve: Any) -> None:
    with serve() as smtp, smtplib.SMTP("127.0.0.1", smtp.port) as client:
        client.ehlo()
        client.mail("a@example.net")
        code, text = client.rcpt("someone@elsewhere.example")
        assert (code, text) == (550, b"5.7.1 Relaying denied: elsewhere.example is not local here")
    with (
        serve(("OnInboundCommand", "test-accept", "rcpt to=*@partner.example", {})) as smtp,
        smtplib.SMTP("127.0.0.1", smtp.port) as client,
    ):
        client.ehlo()
        client.mail("a@example.net")
        assert client.rcpt("x@partner.example") == (250, b"2.1.5 accepted by policy")
        assert client.rcpt("x@elsewhere.example")[0] == 550


def test_a_sink_implements_a_new_verb_and_adds_an_ehlo_keyword(serve: Any) -> None:
    with (
        serve(
            ("OnInboundCommand", "test-verb", "", {}),
            ("OnInboundCommand", "test-keywords", "EHLO", {}),
        ) as smtp,
        smtplib.SMTP("127.0.0.1", smtp.port, local_hostname="client.test") as client,
    ):
        client.ehlo()
        assert client.has_extn("xseo-demo")
        assert client.docmd("XSEO") == (250, b"2.0.0 seo says hello to client.test")
        assert client.docmd("XNOPE")[0] == 500


def test_a_sink_drops_the_session(serve: Any) -> None:
    with serve(("OnInboundCommand", "test-drop", "MAIL", {})) as smtp:
        client = smtplib.SMTP("127.0.0.1", smtp.port)
        client.ehlo()
        assert client.docmd("MAIL", "FROM:<a@example.net>") == (421, b"4.7.0 go away")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
        client.close()


def test_server_responses_can_be_rewritten(serve: Any) -> None:
    with serve(("OnServerResponse", "test-rewrite", "", {})) as smtp:
        client = smtplib.SMTP()
        code, text = client.connect("127.0.0.1", smtp.port)
        assert (code, text) == (220, b"mx.test rewritten greeting")
        client.ehlo()
        client.mail("a@example.net")
        client.rcpt("bob@example.com")
        code, text = client.data(b"Subject: x\r\n\r\nhi\r\n")
        assert code == 250
        assert text.startswith(b"2.0.0 thanks, 2.0.0 OK queued as ")
        client.quit()
