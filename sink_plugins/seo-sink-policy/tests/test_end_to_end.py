"""The policy sink bound to a running SMTP source, talked to with smtplib."""

from __future__ import annotations

import json
import smtplib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import DeliveryEvent, PropertyValue, hookimpl
from seo_core.testing import RunningSmtp, as_sent, running_nntp, running_smtp

MESSAGE = b"From: a@example.org\r\nSubject: hello\r\n\r\nHello.\r\n"
FLAGGED = b"From: a@example.org\r\nX-Spam-Flag: YES\r\nSubject:  spaced\r\n\r\nBuy now.\r\n"


class Store:
    """StoreDriver: writes the bytes it is handed to ``<root>/<recipient>/<n>.eml``."""

    lock = threading.Lock()

    @hookimpl
    def smtp_store_driver(self, event: DeliveryEvent, sink_properties: Any) -> None:
        folder = Path(str(sink_properties["root"])) / event.recipient
        folder.mkdir(parents=True, exist_ok=True)
        with Store.lock:
            path = folder / f"{len(list(folder.iterdir())) + 1}.eml"
            path.write_bytes(event.raw if event.raw is not None else event.message.as_bytes())
        event.delivered(str(path))


Serve = Callable[..., AbstractContextManager[RunningSmtp]]


@pytest.fixture
def mail(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def serve(tmp_path: Path, mail: Path, spool: Path) -> Serve:
    """``with serve(event, rule=None, **sink_properties) as smtp``: a source with one policy
    binding, and a StoreDriver binding keeping what is delivered under ``mail``."""

    @contextmanager
    def run(event: str, rule: str | None = None, **props: PropertyValue) -> Iterator[RunningSmtp]:
        metabase_path = tmp_path / "m.db"
        with Metabase.open(metabase_path) as metabase:
            metabase.add_binding(
                BindingSpec(
                    source="smtp/1",
                    event="StoreDriver",
                    sink_class="store",
                    display_name="Store",
                    sink_properties={"root": str(mail)},
                )
            )
            metabase.add_binding(
                BindingSpec(
                    source="smtp/1",
                    event=event,
                    sink_class="policy",
                    display_name="Policy",
                    sink_properties=props,
                    source_properties={} if rule is None else {"Rule": rule},
                )
            )
        installed = SinkRegistry.discover()
        registry = SinkRegistry(
            [*installed.sinks, *SinkRegistry.from_objects({"store": Store}).sinks]
        )
        with running_smtp(metabase_path, registry, spool=spool) as smtp:
            yield smtp

    return run


def delivered(mail: Path) -> dict[str, list[bytes]]:
    if not mail.exists():
        return {}
    return {
        box.name: [as_sent(p.read_bytes()) for p in sorted(box.iterdir())]
        for box in sorted(mail.iterdir())
    }


def test_a_blocked_sender_is_refused_and_others_get_through(serve: Serve, mail: Path) -> None:
    with serve("OnInboundCommand", rule="mail from=*@spam.example") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("x@spam.example", ["alice@example.com"], MESSAGE)
            assert (refused.value.smtp_code, refused.value.smtp_error) == (
                550,
                b"5.7.1 Refused by policy",
            )
            assert client.sendmail("a@example.org", ["alice@example.com"], MESSAGE) == {}
        smtp.wait_idle()
    assert delivered(mail) == {"alice@example.com": [MESSAGE]}


def test_a_helo_name_is_refused_and_the_session_dropped(serve: Serve, mail: Path) -> None:
    with serve(
        "OnInboundCommand",
        rule="EHLO=*.bad.example;HELO=*.bad.example",
        code=554,
        text="5.7.1 Go away",
        drop=True,
    ) as smtp:
        client = smtplib.SMTP("127.0.0.1", smtp.port, local_hostname="host.bad.example")
        try:
            assert client.ehlo() == (554, b"5.7.1 Go away")
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.helo()
        finally:
            client.close()
        with smtplib.SMTP("127.0.0.1", smtp.port, local_hostname="host.example.org") as good:
            assert good.sendmail("a@example.org", ["alice@example.com"], MESSAGE) == {}
        smtp.wait_idle()
    assert delivered(mail) == {"alice@example.com": [MESSAGE]}


def test_recipients_past_max_recipients_are_refused(serve: Serve, mail: Path) -> None:
    with serve(
        "OnInboundCommand",
        rule="RCPT",
        max_recipients=2,
        code=452,
        text="4.5.3 Too many recipients",
    ) as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            refused = client.sendmail(
                "a@example.org", ["r1@example.com", "r2@example.com", "r3@example.com"], MESSAGE
            )
            assert refused == {"r3@example.com": (452, b"4.5.3 Too many recipients")}
            # The count is per session: a second message in it gets no more recipients.
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("a@example.org", ["r4@example.com"], MESSAGE)
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            assert client.sendmail("a@example.org", ["r5@example.com"], MESSAGE) == {}
        smtp.wait_idle()
    assert delivered(mail) == {
        "r1@example.com": [MESSAGE],
        "r2@example.com": [MESSAGE],
        "r5@example.com": [MESSAGE],
    }


def test_flagged_messages_go_to_badmail_as_received_with_the_reason(
    serve: Serve, mail: Path, spool: Path
) -> None:
    with serve(
        "OnArrival", header_pattern={"X-Spam-Flag": "yes"}, reason="flagged as spam"
    ) as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.sendmail("a@example.org", ["alice@example.com"], FLAGGED)
            client.sendmail("a@example.org", ["alice@example.com"], MESSAGE)
        smtp.wait_idle()
    assert delivered(mail) == {"alice@example.com": [MESSAGE]}
    (kept,) = sorted((spool / "badmail").glob("*.eml"))
    assert as_sent(kept.read_bytes()) == FLAGGED  # the sink did not make the source rewrite it
    envelope = json.loads(kept.with_suffix(".json").read_text())
    assert envelope["reason"] == "flagged as spam"
    assert envelope["recipients"] == ["alice@example.com"]


def test_big_messages_are_discarded(serve: Serve, mail: Path, spool: Path) -> None:
    big = MESSAGE + b"x" * 990 + b"\r\n"
    with serve("OnArrival", max_size=1000, status="abort") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.sendmail("a@example.org", ["alice@example.com"], big)
            client.sendmail("a@example.org", ["bob@example.com"], MESSAGE)
        smtp.wait_idle()
    assert delivered(mail) == {"bob@example.com": [MESSAGE]}
    assert list((spool / "badmail").iterdir()) == []


# -- news ---------------------------------------------------------------------------------


def nntp_post(port: int, article: bytes) -> bytes:
    """POST one article (CRLF lines, no line starting with a dot); the server's reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        replies = sock.makefile("rb")
        assert replies.readline().startswith(b"200 ")
        sock.sendall(b"POST\r\n")
        assert replies.readline().startswith(b"340 ")
        sock.sendall(article + b".\r\n")
        reply = replies.readline().rstrip(b"\r\n")
        sock.sendall(b"QUIT\r\n")
        replies.readline()
        return reply


def article(groups: str) -> bytes:
    return (
        f"From: Alice <alice@example.com>\r\nNewsgroups: {groups}\r\nSubject: hi\r\n\r\n".encode()
        + b"Hello.\r\n"
    )


@pytest.mark.parametrize("event", ["OnPostEarly", "OnPost"])
def test_posts_to_a_moderated_group_are_refused_with_the_text(event: str, tmp_path: Path) -> None:
    metabase_path = tmp_path / "m.db"
    with Metabase.open(metabase_path) as metabase:
        metabase.add_binding(
            BindingSpec(
                source="nntp/1",
                event=event,
                sink_class="policy",
                display_name="Moderated",
                sink_properties={"text": "local.moderated is moderated"},
                source_properties={"Rule": "newsgroups=local.moderated"},
            )
        )
    with running_nntp(
        metabase_path,
        SinkRegistry.discover(),
        store=tmp_path / "news",
        groups=("local.test", "local.moderated"),
    ) as nntp:
        assert nntp_post(nntp.port, article("local.test,local.moderated")) == (
            b"441 local.moderated is moderated"
        )
        assert nntp_post(nntp.port, article("local.test")).startswith(b"240 ")
