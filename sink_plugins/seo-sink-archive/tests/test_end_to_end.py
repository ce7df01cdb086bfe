"""The archive sink bound to running sources: SMTP with smtplib, NNTP with a raw client."""

from __future__ import annotations

import smtplib
import socket
import threading
from pathlib import Path
from typing import Any

from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import DeliveryEvent, hookimpl
from seo_core.testing import as_sent, running_nntp, running_smtp

# Forms Python's email package would write back differently: the copy must be the bytes sent.
MESSAGE = (
    b"Received: from client.example.org\r\n"
    b"\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000\r\n"
    b"From:a@example.org\r\n"
    b"Subject:   =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"\r\n"
    b"From the start of a line.\r\n"
    b"..two dots (smtplib sends three)\r\n"
)


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


def test_each_message_is_archived_as_received_and_still_delivered(tmp_path: Path) -> None:
    metabase_path, archive, mail = tmp_path / "m.db", tmp_path / "archive", tmp_path / "mail"
    with Metabase.open(metabase_path) as metabase:
        metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="OnArrival",
                sink_class="archive",
                display_name="Archive",
                sink_properties={"ArchiveLocation": str(archive)},
            )
        )
        metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="StoreDriver",
                sink_class="store",
                display_name="Store",
                sink_properties={"root": str(mail)},
            )
        )
    installed = SinkRegistry.discover()
    registry = SinkRegistry([*installed.sinks, *SinkRegistry.from_objects({"store": Store}).sinks])
    with running_smtp(metabase_path, registry, spool=tmp_path / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.sendmail("a@example.org", ["alice@example.com"], MESSAGE)
            second = MESSAGE + b"second\r\n"
            client.sendmail("a@example.org", ["bob@example.com"], second)
        smtp.wait_idle()
    copies = sorted(archive.iterdir())
    assert sorted(as_sent(p.read_bytes()) for p in copies) == sorted([MESSAGE, second])
    assert all(p.suffix == ".eml" and not p.name.startswith(".") for p in copies)
    assert [as_sent(p.read_bytes()) for p in (mail / "alice@example.com").iterdir()] == [MESSAGE]
    assert [as_sent(p.read_bytes()) for p in (mail / "bob@example.com").iterdir()] == [second]


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


def test_each_stored_article_is_archived_under_its_message_id(tmp_path: Path) -> None:
    metabase_path, archive = tmp_path / "m.db", tmp_path / "archive"
    with Metabase.open(metabase_path) as metabase:
        metabase.add_binding(
            BindingSpec(
                source="nntp/1",
                event="OnPostFinal",
                sink_class="archive",
                display_name="Archive news",
                sink_properties={"ArchiveLocation": str(archive)},
                source_properties={"Rule": "newsgroups=local.test"},
            )
        )
    article = (
        b"From: Alice <alice@example.com>\r\n"
        b"Newsgroups: local.test\r\n"
        b"Subject: hello\r\n"
        b"Message-ID: <first.1@example.com>\r\n"
        b"\r\n"
        b"Hello, group.\r\n"
    )
    other = article.replace(b"local.test", b"local.announce").replace(b"first.1", b"other.2")
    with running_nntp(metabase_path, SinkRegistry.discover(), store=tmp_path / "news") as nntp:
        # The server replies only after OnPostFinal: the copy is there when the reply is.
        assert nntp_post(nntp.port, article) == b"240 article received <first.1@example.com>"
        (copy,) = archive.iterdir()
        assert nntp_post(nntp.port, other).startswith(b"240 ")
    assert list(archive.iterdir()) == [copy]  # the rule left local.announce out
    assert copy.name.startswith("first.1@example.com.")
    assert copy.name.endswith(".eml")
    stored = copy.read_bytes()
    head, body = stored.split(b"\r\n\r\n", 1)
    assert body == b"Hello, group.\r\n"
    for line in article.split(b"\r\n\r\n")[0].split(b"\r\n"):
        assert line in head.split(b"\r\n")
    added = {line.split(b":", 1)[0] for line in head.split(b"\r\n")} - {
        line.split(b":", 1)[0] for line in article.split(b"\r\n\r\n")[0].split(b"\r\n")
    }
    assert added == {b"Path", b"Date", b"Xref"}  # what the server adds when it stores it
