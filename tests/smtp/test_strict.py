"""Strict protocol handling, each case with the exact bytes a client sends."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import struct
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from seo_core.metabase import BindingSpec, Metabase
from seo_core.sdk import CommandEvent, MessageEvent, hookimpl
from seo_core.testing import RunningSmtp, running_smtp
from tests.smtp.conftest import delivered, registry_with

ARRIVED: list[MessageEvent] = []


class Arrivals:
    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent) -> None:
        ARRIVED.append(event)


class Dialogue:
    """A raw SMTP client: sends bytes exactly as given, reads replies line by line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        """One complete reply (all lines of a multi-line one), without the final CRLF."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return b"\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture(autouse=True)
def _clear() -> None:
    ARRIVED.clear()


@pytest.fixture
def arrivals_bound(metabase: Metabase) -> str:
    return metabase.add_binding(
        BindingSpec(
            source="smtp/1",
            event="OnArrival",
            sink_class="test-arrivals",
            display_name="Arrivals",
            max_firings=1000,
        )
    ).id


@pytest.fixture
def server(
    metabase_path: Path, metabase: Metabase, bound_store: str, arrivals_bound: str, tmp_path: Path
) -> Any:
    with running_smtp(
        metabase_path,
        registry_with(**{"test-arrivals": Arrivals}),
        spool=tmp_path / "spool",
        local_domains=("example.com", "bücher.example"),
        settings={"max_message_size": 100_000},
    ) as smtp:
        yield smtp


def open_transaction(port: int, recipient: bytes = b"<bob@example.com>") -> Dialogue:
    talk = Dialogue(port)
    assert talk.command(b"EHLO client.test").startswith(b"250")
    assert talk.command(b"MAIL FROM:<a@example.net>").startswith(b"250")
    assert talk.command(b"RCPT TO:" + recipient).startswith(b"250")
    assert talk.command(b"DATA").startswith(b"354")
    return talk


class TestSmuggling:
    def test_a_bare_lf_in_the_data_is_refused_with_no_event(self, server: RunningSmtp) -> None:
        talk = open_transaction(server.port)
        talk.send(b"Subject: x\r\n\r\nline one\nline two\r\n.\r\n")
        assert talk.reply().startswith(b"554 5.6.0")
        assert talk.command(b"NOOP").startswith(b"250")
        talk.close()
        server.wait_idle()
        assert ARRIVED == []

    def test_a_bare_cr_in_the_data_is_refused(self, server: RunningSmtp) -> None:
        talk = open_transaction(server.port)
        talk.send(b"Subject: x\r\n\r\nline one\rline two\r\n.\r\n")
        assert talk.reply().startswith(b"554 5.6.0")
        talk.close()
        server.wait_idle()
        assert ARRIVED == []

    def test_lf_dot_crlf_never_ends_a_message_nor_hides_a_second_one(
        self, server: RunningSmtp, mailboxes: Path
    ) -> None:
        talk = open_transaction(server.port)
        talk.send(
            b"Subject: first\r\n\r\nbody\n.\r\n"
            b"MAIL FROM:<evil@attacker.example>\r\n"
            b"RCPT TO:<victim@example.com>\r\n"
            b"DATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
        )
        assert talk.reply().startswith(b"554 5.6.0")
        talk.close()
        server.wait_idle()
        assert ARRIVED == []
        assert delivered(mailboxes, "victim@example.com") == []
        assert delivered(mailboxes, "bob@example.com") == []


class TestCommandLines:
    def test_a_command_ending_in_a_bare_lf_is_refused_and_not_run(
        self, server: RunningSmtp, mailboxes: Path
    ) -> None:
        """RFC 5321, 2.3.8: lines end with CRLF. A bare LF must not split a pipelined batch into
        commands a CRLF-reading peer (a filter in front, a log reader) would not see."""
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        talk.send(b"MAIL FROM:<evil@attacker.example>\nRCPT TO:<victim@example.com>\r\nDATA\r\n")
        bare = b"500 5.5.2 Syntax error: a line must end with CRLF, not a bare LF"
        assert talk.reply() == bare
        assert talk.reply().startswith(b"503 ")  # RCPT: no MAIL was accepted
        assert talk.reply().startswith(b"503 ")  # DATA: nor any recipient
        assert talk.command(b"NOOP") == b"250 2.0.0 OK"  # the session goes on
        talk.send(b"NOOP\n")
        assert talk.reply() == bare
        talk.close()
        server.wait_idle()
        assert ARRIVED == []
        assert delivered(mailboxes, "victim@example.com") == []


class TestSize:
    def test_a_declared_size_over_the_limit_gets_552_at_mail(self, server: RunningSmtp) -> None:
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        assert talk.command(b"MAIL FROM:<a@example.com> SIZE=100001") == (
            b"552 5.3.4 Message size exceeds the fixed maximum message size"
        )
        assert talk.command(b"MAIL FROM:<a@example.com> SIZE=99999").startswith(b"250")
        talk.close()

    def test_a_body_over_the_limit_gets_one_552_and_the_next_transaction_works(
        self, server: RunningSmtp, metabase: Metabase, arrivals_bound: str, mailboxes: Path
    ) -> None:
        talk = open_transaction(server.port)
        tracemalloc.start()
        try:
            line = b"y" * 998 + b"\r\n"
            for _ in range(20):  # 20 MB, against a 100 kB limit
                talk.send(line * 1000)
            talk.send(b".\r\n")
            assert talk.reply() == b"552 5.3.4 Too much mail data"
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 5_000_000
        assert talk.command(b"MAIL FROM:<a@example.net>").startswith(b"250")
        assert talk.command(b"RCPT TO:<bob@example.com>").startswith(b"250")
        assert talk.command(b"DATA").startswith(b"354")
        talk.send(b"Subject: small\r\n\r\nok\r\n.\r\n")
        assert talk.reply().startswith(b"250")
        talk.close()
        server.wait_idle()
        assert [e.message["Subject"] for e in ARRIVED] == ["small"]
        assert metabase.binding(arrivals_bound).fire_count == 1
        assert len(delivered(mailboxes, "bob@example.com")) == 1

    def test_a_command_line_over_512_octets_gets_500_with_its_enhanced_code(
        self, server: RunningSmtp
    ) -> None:
        """RFC 5321, 4.5.3.1.4; the reply comes before the line is a command, so the code is
        not the previous command's (EHLO, whose replies have none)."""
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        assert talk.command(b"MAIL FROM:<" + b"a" * 2000 + b"@example.net>") == (
            b"500 5.5.2 Command line too long"
        )
        assert talk.command(b"NOOP") == b"250 2.0.0 OK"  # the session goes on
        talk.close()

    def test_a_data_line_over_1000_octets_refuses_the_message_with_its_enhanced_code(
        self, server: RunningSmtp, mailboxes: Path
    ) -> None:
        talk = open_transaction(server.port)
        talk.send(b"Subject: long\r\n\r\n" + b"z" * 1200 + b"\r\n.\r\n")
        assert talk.reply() == (
            b"500 5.5.2 Line too long (RFC 5321, 4.5.3.1.6: at most 1000 octets)"
        )
        assert talk.command(b"NOOP") == b"250 2.0.0 OK"
        talk.close()
        server.wait_idle()
        assert ARRIVED == []
        assert delivered(mailboxes, "bob@example.com") == []


@pytest.mark.parametrize(
    ("before", "line"),
    [
        ([], b"EHLO evil\rX-Injected: yes"),
        ([b"EHLO client.test"], b'MAIL FROM:<"a\rX-Injected: yes"@example.net>'),
        ([b"EHLO client.test", b"MAIL FROM:<a@example.net>"], b'RCPT TO:<"b\rob"@example.com>'),
        ([b"EHLO client.test"], b"MAIL FROM:<a@example.net>\x00"),
        ([], b"EH\rLO client.test"),
    ],
    ids=["cr-in-ehlo", "cr-in-mail", "cr-in-rcpt", "nul-in-mail", "cr-in-verb"],
)
def test_a_control_character_in_a_command_is_a_syntax_error(
    server: RunningSmtp, before: list[bytes], line: bytes
) -> None:
    """A CR inside a command line would end up inside Received: or Return-Path: as a line
    break, and inject a header (RFC 5321, 2.3.8: CR and LF only together)."""
    talk = Dialogue(server.port)
    for command in before:
        assert talk.command(command).startswith(b"250")
    reply = talk.command(line)
    assert reply.startswith((b"501 5.5.2 ", b"500 5.5.2 ")), reply
    assert b"\r" not in reply
    assert talk.command(b"NOOP") == b"250 2.0.0 OK"  # the session goes on
    talk.close()


class TestAddresses:
    @pytest.mark.parametrize(
        ("mail", "rcpt", "recipient"),
        [
            (
                b"MAIL FROM:<a@example.net>",
                b'RCPT TO:<"odd user"@example.com>',
                '"odd user"@example.com',
            ),
            (
                b"MAIL FROM:<a@example.net>",
                b"RCPT TO:<@relay.example.net:user1@example.com>",
                "user1@example.com",
            ),
            (
                b"MAIL FROM:<a@example.net> BODY=8BITMIME SIZE=100",
                b"RCPT TO:<bob@example.com>",
                "bob@example.com",
            ),
            (b"mail from:<a@example.net>", b"rcpt to:<bob@example.com>", "bob@example.com"),
            (
                b"MAIL FROM:<j\xc3\xbcrgen@example.net> SMTPUTF8",
                b"RCPT TO:<z\xc3\xbcrich@example.com>",
                "zürich@example.com",
            ),
            (
                b"MAIL FROM:<a@example.net>",
                b"RCPT TO:<x@xn--bcher-kva.example>",
                "x@xn--bcher-kva.example",
            ),
            (
                b"MAIL FROM:<a@example.net> SMTPUTF8",
                b"RCPT TO:<x@B\xc3\x9cCHER.example>",
                "x@BÜCHER.example",
            ),
        ],
        ids=[
            "quoted-local-part",
            "source-route",
            "esmtp-params",
            "lower-case-verbs",
            "smtputf8",
            "idn-a-label",
            "idn-u-label",
        ],
    )
    def test_accepted_and_delivered(
        self, server: RunningSmtp, mailboxes: Path, mail: bytes, rcpt: bytes, recipient: str
    ) -> None:
        talk = Dialogue(server.port)
        assert talk.command(b"EHLO client.test").startswith(b"250")
        assert talk.command(mail).startswith(b"250"), mail
        assert talk.command(rcpt).startswith(b"250"), rcpt
        assert talk.command(b"DATA").startswith(b"354")
        talk.send(b"Subject: x\r\n\r\nhello\r\n.\r\n")
        assert talk.reply().startswith(b"250")
        talk.close()
        server.wait_idle()
        assert len(delivered(mailboxes, recipient)) == 1
        (event,) = ARRIVED
        assert event.recipients == [recipient]

    @pytest.mark.parametrize("name", [b"postmaster", b"Postmaster", b"POSTMASTER"])
    def test_postmaster_without_a_domain_is_the_first_local_domains(
        self, server: RunningSmtp, mailboxes: Path, name: bytes
    ) -> None:
        """RFC 5321, 4.1.1.3 and 4.5.1: every server takes mail for <Postmaster>."""
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        assert talk.command(b"MAIL FROM:<>").startswith(b"250")
        assert talk.command(b"RCPT TO:<" + name + b">") == b"250 2.1.5 OK"
        assert talk.command(b"DATA").startswith(b"354")
        talk.send(b"Subject: x\r\n\r\nhello\r\n.\r\n")
        assert talk.reply().startswith(b"250")
        talk.close()
        server.wait_idle()
        assert len(delivered(mailboxes, "postmaster@example.com")) == 1
        (event,) = ARRIVED
        assert event.recipients == ["postmaster@example.com"]

    def test_any_other_name_without_a_domain_is_a_syntax_error(self, server: RunningSmtp) -> None:
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        talk.command(b"MAIL FROM:<a@example.net>")
        assert talk.command(b"RCPT TO:<bob>") == (
            b"553 5.1.3 Bad recipient address syntax: a domain is needed (<name@domain>)"
        )
        assert talk.command(b"RCPT TO:<bob@example.com>") == b"250 2.1.5 OK"
        talk.close()

    @pytest.mark.parametrize("rcpt", [b'RCPT TO:<""@example.com>', b"RCPT TO:<@example.com>"])
    def test_an_empty_local_part_is_refused_at_rcpt(self, server: RunningSmtp, rcpt: bytes) -> None:
        """No mailbox has an empty name: refused while the client can still tell its sender,
        not accepted and then kept in badmail."""
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        talk.command(b"MAIL FROM:<a@example.net>")
        reply = talk.command(rcpt)
        assert reply.startswith(b"553 5.1.3 "), reply
        assert talk.command(b"RCPT TO:<bob@example.com>") == b"250 2.1.5 OK"
        talk.close()

    @pytest.mark.parametrize(
        "command",
        [
            b'MAIL FROM:<a"',
            b"MAIL FROM:<a",
            b"MAIL FROM:<a@x.example",
            b"MAIL FROM:<a@x.example SIZE=9",
        ],
    )
    def test_an_address_without_its_closing_bracket_is_a_syntax_error(
        self, server: RunningSmtp, command: bytes
    ) -> None:
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        assert talk.command(command) == b"553 5.1.3 Error: malformed address"
        assert talk.command(b"MAIL FROM:<a@example.net>").startswith(b"250")
        assert talk.command(b"RCPT TO:<bob@example.com") == b"553 5.1.3 Error: malformed address"
        assert talk.command(b"RCPT TO:<bob@example.com>") == b"250 2.1.5 OK"
        talk.close()

    def test_utf8_addresses_without_smtputf8_are_refused_with_553(
        self, server: RunningSmtp
    ) -> None:
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        refused = b"553 5.6.7 Non-ASCII addresses need MAIL FROM with SMTPUTF8 (RFC 6531)"
        assert talk.command(b"MAIL FROM:<j\xc3\xbcrgen@example.net>") == refused
        assert talk.command(b"MAIL FROM:<j\xc3\xbcrgen@example.net> SIZE=10") == refused
        assert talk.command(b"MAIL FROM:<a@example.net>").startswith(b"250")
        assert talk.command(b"RCPT TO:<z\xc3\xbcrich@example.com>") == refused
        assert talk.command(b"RCPT TO:<bob@example.com>").startswith(b"250")
        assert talk.command(b"RSET").startswith(b"250")
        assert talk.command(b"MAIL FROM:<j\xc3\xbcrgen@example.net> smtputf8").startswith(b"250")
        assert talk.command(b"RCPT TO:<z\xc3\xbcrich@example.com>").startswith(b"250")
        talk.close()

    def test_invalid_utf8_in_a_command_is_a_syntax_error_and_the_session_goes_on(
        self, server: RunningSmtp
    ) -> None:
        talk = Dialogue(server.port)
        talk.command(b"EHLO client.test")
        assert talk.command(b"MAIL FROM:<\xff\xfe@example.net>").startswith(b"500 5.5.2")
        assert talk.command(b"NOOP").startswith(b"250")
        assert talk.command(b"MAIL FROM:<a@example.net>").startswith(b"250")
        talk.close()


def _reset_mid_data(port: int) -> None:
    talk = open_transaction(port)
    talk.send(b"Subject: cut\r\n\r\nthe connection is reset in the middle of th")
    talk.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    talk.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_clients_resetting_mid_data(server: RunningSmtp, caplog: pytest.LogCaptureFixture) -> None:
    """500 resets, 20 at a time: no message events, one session end each, nothing leaks."""
    caplog.set_level(logging.WARNING)

    async def tasks() -> int:
        return len(asyncio.all_tasks())

    _reset_mid_data(server.port)  # warm up lazily created resources
    server.wait_idle()
    gc.collect()
    fds, task_count = _open_fds(), server.server.call(tasks())
    tracemalloc.start()
    try:
        with capture_logs() as logs, ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda _: _reset_mid_data(server.port), range(500)))
            deadline_talk = Dialogue(server.port)  # the server still answers
            assert deadline_talk.command(b"NOOP").startswith(b"250")
            deadline_talk.close()
            server.wait_idle()
            while len([e for e in logs if e["event"] == "smtp_session_end"]) < 501:
                server.server.call(asyncio.sleep(0.01))
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ARRIVED == []
    ends = [e for e in logs if e["event"] == "smtp_session_end"]
    assert len(ends) == 501
    assert len({e["session"] for e in ends}) == 501
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not [r for r in caplog.records if r.exc_info]
    assert server.server.call(tasks()) <= task_count
    assert _open_fds() <= fds + 2
    assert current < 2_000_000


def test_a_connection_over_max_connections_is_told_421_and_a_later_one_is_served(
    metabase_path: Path, metabase: Metabase, bound_store: str, tmp_path: Path
) -> None:
    """Each session may hold a message in memory: the limit bounds the listener's memory."""
    with running_smtp(
        metabase_path,
        registry_with(),
        spool=tmp_path / "spool",
        settings={"max_connections": 3},
    ) as smtp:
        held = [Dialogue(smtp.port) for _ in range(3)]
        with socket.create_connection(("127.0.0.1", smtp.port), timeout=10) as extra:
            assert extra.makefile("rb").readline() == (
                b"421 4.7.0 Too many connections; try again later\r\n"
            )
            assert extra.recv(1) == b""  # closed
        for talk in held:
            assert talk.command(b"NOOP") == b"250 2.0.0 OK"
        held.pop().close()

        async def sessions() -> int:
            return len(smtp.source.sessions)

        while smtp.server.call(sessions()) > 2:  # the server sees the close
            smtp.server.call(asyncio.sleep(0.01))
        again = Dialogue(smtp.port)
        assert again.command(b"NOOP") == b"250 2.0.0 OK"
        for talk in [*held, again]:
            talk.close()


class AcceptRecipients:
    """OnInboundCommand: answers every RCPT with 250, as a sink that allows relaying would."""

    @hookimpl
    def smtp_on_inbound_command(self, event: CommandEvent) -> None:
        if event.command == "RCPT":
            event.reply(250, "2.1.5 accepted by policy")


NULL_RECIPIENT = b"501 5.1.3 Bad recipient address syntax: <> is not a mailbox"


@pytest.mark.parametrize("accepting_sink", [False, True], ids=["local-only", "sink-accepts-rcpt"])
def test_the_null_path_is_no_recipient_whatever_a_sink_says(
    metabase_path: Path,
    metabase: Metabase,
    bound_store: str,
    arrivals_bound: str,
    mailboxes: Path,
    tmp_path: Path,
    accepting_sink: bool,
) -> None:
    """``<>`` is a reverse-path only (RFC 5321, 4.1.1.3): RCPT TO:<> is a syntax error, not a
    relaying question, and no message event ever sees it."""
    if accepting_sink:
        metabase.add_binding(
            BindingSpec("smtp/1", "OnInboundCommand", "test-accept", display_name="Relay")
        )
    registry = registry_with(**{"test-arrivals": Arrivals, "test-accept": AcceptRecipients})
    with running_smtp(metabase_path, registry, spool=tmp_path / "spool") as smtp:
        talk = Dialogue(smtp.port)
        talk.command(b"EHLO client.test")
        assert talk.command(b"MAIL FROM:<a@example.net>").startswith(b"250")
        assert talk.command(b"RCPT TO:<>") == NULL_RECIPIENT
        assert talk.command(b"RCPT TO: <>") == NULL_RECIPIENT
        assert talk.command(b"DATA") == b"503 5.5.1 Error: need RCPT command"
        assert talk.command(b"RCPT TO:<bob@example.com>").startswith(b"250")
        assert talk.command(b"DATA").startswith(b"354")
        talk.send(b"Subject: x\r\n\r\nhello\r\n.\r\n")
        assert talk.reply().startswith(b"250")
        talk.close()
        smtp.wait_idle()
    assert [event.recipients for event in ARRIVED] == [["bob@example.com"]]
    assert len(delivered(mailboxes, "bob@example.com")) == 1


def test_help_lists_only_the_commands_ehlo_offers(server: RunningSmtp) -> None:
    """AUTH needs TLS here, so EHLO does not offer it, and neither does HELP."""
    talk = Dialogue(server.port)
    assert b"AUTH" not in talk.command(b"EHLO client.test")
    supported = b"Supported commands: DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY"
    assert talk.command(b"HELP") == b"250 2.0.0 " + supported
    assert talk.command(b"HELP AUTH") == b"501 5.5.4 " + supported
    assert talk.command(b"HELP RCPT") == (
        b"250 2.0.0 Syntax: RCPT TO: <address> [SP <mail-parameters>]"
    )
    talk.close()
