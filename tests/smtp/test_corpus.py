"""Real-world messages through the real server into real Maildir folders.

CPython's own e-mail test corpus (multipart, attachments, encoded headers, 8-bit bodies, long
lines, odd structures) is sent with ``smtplib`` to a source with the ``headers`` sink tagging
every message and the ``maildir`` sink delivering it. Each message must arrive once, in its
recipient's Maildir, with its body byte for byte and the tag the sink added.
"""

from __future__ import annotations

import importlib
import re
import smtplib
from pathlib import Path

import pytest

from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.testing import running_smtp


def corpus() -> list[Path]:
    folder = Path(str(importlib.import_module("test.test_email").__file__)).parent / "data"
    found = sorted(folder.glob("msg_*.txt"))
    assert len(found) > 40, f"CPython's e-mail corpus is missing from {folder}"
    return found


def as_sent(path: Path) -> bytes:
    """The file as a client sends it: CRLF line ends, no mbox ``From `` line, final CRLF."""
    data = path.read_bytes()
    if data.startswith(b"From "):
        data = data.split(b"\n", 1)[1]
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


HEADER_LINE = re.compile(rb"^[!-9;-~]+:")


def split(message: bytes) -> tuple[bytes, bytes]:
    """Header block and body as RFC 5322 reads them: the header block is the leading run of
    header and continuation lines (possibly empty); one blank line after it is a separator."""
    lines = message.split(b"\n")
    count = 0
    while count < len(lines) and (
        HEADER_LINE.match(lines[count]) or (count and lines[count][:1] in (b" ", b"\t"))
    ):
        count += 1
    rest = lines[count:]
    if rest and rest[0] == b"":
        rest = rest[1:]
    return b"\n".join(lines[:count]), b"\n".join(rest)


MESSAGES = corpus()


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("corpus")
    metabase_path, mail = tmp / "m.db", tmp / "mail"
    with Metabase.open(metabase_path) as metabase:
        metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="OnArrival",
                sink_class="headers",
                display_name="Tag",
                sink_properties={"add": {"X-Seo-Tagged": "corpus"}},
            )
        )
        metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="StoreDriver",
                sink_class="maildir",
                display_name="Mail",
                sink_properties={"root": str(mail)},
            )
        )
    with running_smtp(
        metabase_path,
        SinkRegistry.discover(),
        spool=tmp / "spool",
        settings={"max_message_size": 5_000_000},
    ) as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            for n, path in enumerate(MESSAGES):
                refused = client.sendmail(
                    "sender@example.net", [f"user{n}@example.com"], as_sent(path)
                )
                assert refused == {}, path.name
        smtp.wait_idle(timeout=120)
    found = {}
    for n, path in enumerate(MESSAGES):
        (stored,) = (mail / "example.com" / f"user{n}" / "new").iterdir()
        found[path.name] = stored.read_bytes()
    return found


@pytest.mark.parametrize("path", MESSAGES, ids=[p.name for p in MESSAGES])
def test_each_message_arrives_with_its_body_unchanged_and_the_tag_added(
    path: Path, delivered: dict[str, bytes]
) -> None:
    stored = delivered[path.name]
    sent = as_sent(path).replace(b"\r\n", b"\n")
    stored_head, stored_body = split(stored)
    sent_head, sent_body = split(sent)
    assert stored_body == sent_body
    assert stored_head.split(b"\n")[-1] == b"X-Seo-Tagged: corpus"
    assert b"X-Seo-Tagged" not in sent_head
