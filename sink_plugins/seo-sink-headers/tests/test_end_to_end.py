"""Messages sent over SMTP to a running source: the headers sink changes only its own lines.

One server runs for the module, with a StoreDriver test sink that keeps the bytes the source
hands it. Every message is sent three times, and a binding rule picks what sees each copy:

- ``<case>-plain@example.com``: a sink that only reads the parsed message, so the source writes
  the message back from its parsed form, as it does whenever a sink has read it;
- ``<case>-tagged@example.com``: the headers sink, adding ``X-Seo-Tagged: yes``;
- ``<case>-unchanged@example.com``: the headers sink, removing a header the message lacks.
"""

from __future__ import annotations

import base64
import smtplib
import threading
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest

from seo_core.events.contexts import MESSAGE_POLICY, parse_message
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import DeliveryEvent, MessageEvent, hookimpl
from seo_core.testing import as_sent, running_smtp

TAG_LINE = b"X-Seo-Tagged: yes\r\n"


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


class Reader:
    """OnArrival: reads the parsed message and changes nothing, so the source writes it back."""

    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent) -> None:
        assert event.message.get("X-Absent") is None


def crlf(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _attachment() -> bytes:
    pdf = base64.encodebytes(b"%PDF-1.4\n" + bytes(range(256)) * 12)
    return crlf(
        b"Received: from mail.example.org (mail.example.org [192.0.2.25])\n"
        b"\tby mx.example.com with ESMTPS id 4Xa1b2c3d4\n"
        b"\tfor <alice@example.com>; Tue, 3 Dec 2024 10:00:00 +0000\n"
        b"Message-ID: <8b0c1c2e-1d0b-4d7e-9f5b-2f4e0d1c9a77@example.org>\n"
        b"MIME-Version: 1.0\n"
        b"From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\n"
        b"Subject: =?UTF-8?Q?Quartalsbericht_f=C3=BCr_das_dritte_Quartal_mit_einem_seh?=\n"
        b" =?UTF-8?Q?r_langen_Betreff?=\n"
        b'Content-Type: multipart/mixed;\n boundary="------------0aBcDeFgHiJkLmNoPqRsTu"\n'
        b"\n"
        b"This is a multi-part message in MIME format.\n"
        b"--------------0aBcDeFgHiJkLmNoPqRsTu\n"
        b"Content-Type: text/plain; charset=UTF-8; format=flowed\n"
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n"
        b"Gr=C3=BC=C3=9Fe aus M=C3=BCnchen, und eine sehr lange Z=\n"
        b"eile mit weichen Zeilenumbr=C3=BCchen.\n"
        b"\n"
        b"--------------0aBcDeFgHiJkLmNoPqRsTu\n"
        b'Content-Type: application/pdf; name="Bericht Q3.pdf"\n'
        b'Content-Disposition: attachment; filename="Bericht Q3.pdf"\n'
        b"Content-Transfer-Encoding: base64\n"
        b"\n" + pdf + b"\n"
        b"--------------0aBcDeFgHiJkLmNoPqRsTu--\n"
    )


def _alternative() -> bytes:
    return crlf(
        b"From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.net>\n"
        b"Subject: =?ISO-8859-1?B?Q2Fm6SBjcuhtZQ==?=\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="outer"\n'
        b"\n"
        b"preamble\n"
        b"--outer\n"
        b'Content-Type: multipart/alternative; boundary="inner"\n'
        b"\n"
        b"--inner\n"
        b'Content-Type: text/plain; charset="iso-8859-1"\n'
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n"
        b"Caf=E9 cr=E8me\n"
        b"--inner\n"
        b'Content-Type: text/html; charset="iso-8859-1"\n'
        b"\n"
        b"<p>Caf\xe9</p>\n"
        b"--inner--\n"
        b"\n"
        b"--outer\n"
        b"Content-Type: message/rfc822\n"
        b"\n"
        b"From: bob@example.com\n"
        b"Subject: the original\n"
        b"\n"
        b"Forwarded body.\n"
        b"\n"
        b"--outer--\n"
        b"epilogue text\n"
    )


def _built_by_python() -> bytes:
    message = EmailMessage()
    message["From"] = "Ünïcode Sender <sender@example.org>"
    message["To"] = "alice@example.com"
    message["Subject"] = "Résumé attached: " + "a long subject " * 8
    message.set_content("Plain body with ünïcode and a long line " * 10 + "\n", cte="8bit")
    message.add_alternative("<p>html with ünïcode</p>\n", subtype="html", cte="quoted-printable")
    message.add_attachment(
        bytes(range(256)) * 8, maintype="application", subtype="octet-stream", filename="d.bin"
    )
    return message.as_bytes(policy=SMTP)


SIMPLE_BODY = b"\r\nBody.\r\n"

KEPT = [
    # A continuation line at the very start continues the server's Received: line, and stays.
    pytest.param(b" continued\r\nSubject: x\r\n" + SIMPLE_BODY, id="leading-continuation-line"),
    # The body is delivered as received, even where the email package would rewrite it.
    pytest.param(
        crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\n\n--b--\n'),
        id="multipart-empty-part",
    ),
    # The body is delivered as received, even where the email package would rewrite it.
    pytest.param(
        crlf(
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n'
        ),
        id="multipart-without-closing-boundary",
    ),
    # The body is delivered as received, even where the email package would rewrite it.
    pytest.param(
        crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b  \n\nhi\n--b--\n'),
        id="white-space-after-a-boundary",
    ),
    # The body is delivered as received, even where the email package would rewrite it.
    pytest.param(
        crlf("Content-Type: message/rfc822\n\nFrom:x@example.net\nSubject:  inner\n\nhi\n"),
        id="attached-message-header-spacing",
    ),
    pytest.param(crlf("From: a@example.net\nSubject: hello\n\nBody.\n"), id="plain"),
    # A VT or FF inside a header value stays in it: no header injection when written back.
    pytest.param(b"Subject: a\x0bX-Spam-Flag: NO\r\n" + SIMPLE_BODY, id="vertical-tab-in-a-header"),
    pytest.param(b"Subject: a\x0cb\r\n" + SIMPLE_BODY, id="form-feed-in-a-header"),
    pytest.param(
        crlf(
            "Received: from a.example.net (a.example.net [192.0.2.1])\n"
            "\tby mx.example.com with ESMTP; Tue, 3 Dec 2024 10:00:00 +0000\n"
            "Received: from b.example.net\n        by a.example.net; Tue, 3 Dec 2024\n"
            "From: a@example.net\n\nBody.\n"
        ),
        id="folded-received-lines",
    ),
    pytest.param(
        crlf(
            "From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <joerg@example.org>\n"
            "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n =?UTF-8?Q?_aus_M=C3=BCnchen?=\n"
            "\nBody.\n"
        ),
        id="encoded-words-folded",
    ),
    pytest.param(
        crlf("From: Zoë Ångström <zoe@example.org>\nSubject: Grüße — 日本語\n\nBody.\n"),
        id="8bit-utf8-headers",
    ),
    pytest.param(
        crlf("Subject: trailing  \nX-Tab: value\t\nX-Space: \n\nBody.\n"),
        id="trailing-white-space",
    ),
    pytest.param(
        crlf("References: " + " ".join(f"<{n}.x@example.org>" for n in range(50)) + "\n\nB.\n"),
        id="900-byte-header-line",
    ),
    pytest.param(
        crlf("X-A: 1\nReceived: r1\nX-A: 2\nX-Seo-Tagged: no\nReceived: r2\n\nBody.\n"),
        id="repeated-headers-and-an-existing-tag",
    ),
    pytest.param(
        crlf(
            "Subject: body lines\n\nFrom the start of a line.\n.\n..two dots\n"
            ".leading dot\n\n\ntrailing blank lines\n\n\n"
        ),
        id="dot-from-and-blank-lines",
    ),
    pytest.param(crlf("Subject: empty body\n\n"), id="empty-body"),
    pytest.param(b"Subject: 8-bit body\r\n\r\n\x80\x81\xfe\xff caf\xe9\r\n", id="8bit-body"),
    pytest.param(_attachment(), id="multipart-qp-base64"),
    pytest.param(_alternative(), id="nested-multipart-preamble-epilogue-rfc822"),
    pytest.param(_built_by_python(), id="built-by-python"),
]


REWRITTEN_FORMS: list[tuple[str, bytes, str]] = [
    # (case, message as sent, what the source does to it)
    (
        "no-space-after-colon",
        b"From:a@example.net\r\nSubject: x\r\n" + SIMPLE_BODY,
        "'From:a' becomes 'From: a'",
    ),
    (
        "tab-after-colon",
        b"Subject:\tx\r\n" + SIMPLE_BODY,
        "'Subject:<TAB>x' becomes 'Subject: x'",
    ),
    (
        "spaces-after-colon",
        b"Subject:   x\r\n" + SIMPLE_BODY,
        "'Subject:   x' becomes 'Subject: x'",
    ),
    (
        "empty-value",
        b"X-Empty:\r\nSubject: x\r\n" + SIMPLE_BODY,
        "'X-Empty:' gains a trailing space",
    ),
    (
        "empty-first-line-before-a-fold",
        b"Subject:\r\n folded\r\n" + SIMPLE_BODY,
        "'Subject:' before a fold gains a trailing space",
    ),
    (
        "space-before-colon",
        b"From: a@example.net\r\nSubject : x\r\n" + SIMPLE_BODY,
        "a blank line goes before 'Subject : x', which becomes body",
    ),
    (
        "line-without-colon",
        b"From: a@example.net\r\nnot a header\r\nSubject: x\r\n" + SIMPLE_BODY,
        "a blank line goes before a line without a colon",
    ),
    (
        "no-blank-line-after-the-headers",
        b"Subject: headers only\r\n",
        "a blank line is added after the headers",
    ),
]
"""Messages the source writes back differently once a sink has changed them (not this sink's
doing: see ``test_forms_the_source_normalizes_once_a_sink_changed_the_message``). A sink that
only reads them leaves them as received."""

REWRITTEN = [pytest.param(data, id=case) for case, data, _ in REWRITTEN_FORMS]


def with_tag(data: bytes) -> bytes:
    """``data`` with the tag line at the end of its header block."""
    end = data.find(b"\r\n\r\n")
    return data + TAG_LINE if end < 0 else data[: end + 2] + TAG_LINE + data[end + 2 :]


EDITED = crlf(
    "Received: from a.example.net\n\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000\n"
    "X-Remove: one\n"
    "From: a@example.net\n"
    "X-Spam-Flag: YES,\n  and folded\n"
    "x-remove: two\n  folded\n"
    "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n"
    "X-Spam-Flag: again\n"
    "\n"
    "Body.\n"
)
EDITED_EXPECTED = crlf(
    "Received: from a.example.net\n\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000\n"
    "From: a@example.net\n"
    "X-Spam-Flag: NO\n"
    "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n"
    "\n"
    "Body.\n"
)

CASES = {str(p.id): p.values[0] for p in [*KEPT, *REWRITTEN]}
COPIES = ("plain", "tagged", "unchanged")


def _bind(metabase: Metabase, name: str, sink: str, rule: str, **properties: Any) -> None:
    metabase.add_binding(
        BindingSpec(
            source="smtp/1",
            event="OnArrival",
            sink_class=sink,
            display_name=name,
            sink_properties=properties,
            source_properties={"Rule": rule},
        )
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Run one SMTP source, send every copy of every message, return what was stored by
    recipient."""
    tmp = tmp_path_factory.mktemp("e2e")
    mail = tmp / "mail"
    metabase_path = tmp / "m.db"
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
        _bind(metabase, "Reader", "reader", "rcpt to=*-plain@example.com")
        _bind(
            metabase, "Tag", "headers", "rcpt to=*-tagged@example.com", add={"X-Seo-Tagged": "yes"}
        )
        _bind(metabase, "No-op", "headers", "rcpt to=*-unchanged@example.com", remove=["X-Absent"])
        _bind(
            metabase,
            "Edit",
            "headers",
            "rcpt to=edited@example.com",
            remove=["X-Remove"],
            set={"X-Spam-Flag": "NO"},
        )
    installed = SinkRegistry.discover()
    own = SinkRegistry.from_objects({"store": Store, "reader": Reader})
    registry = SinkRegistry([*installed.sinks, *own.sinks])
    sent = {"edited@example.com": EDITED}
    for name, data in CASES.items():
        assert isinstance(data, bytes)
        sent.update({f"{name}-{copy}@example.com": data for copy in COPIES})
    with running_smtp(metabase_path, registry, spool=tmp / "spool") as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            for recipient, data in sent.items():
                assert client.sendmail("a@example.net", [recipient], data) == {}
        smtp.wait_idle()
    found = {}
    for recipient in sent:
        (path,) = (mail / recipient).iterdir()  # each delivered once
        found[recipient] = as_sent(path.read_bytes())
    return found


def copy(stored: dict[str, bytes], data: bytes, which: str) -> bytes:
    (name,) = (name for name, case in CASES.items() if case == data)
    return stored[f"{name}-{which}@example.com"]


@pytest.mark.parametrize("data", KEPT)
def test_a_tagged_message_is_the_original_plus_the_tag_line(
    data: bytes, stored: dict[str, bytes]
) -> None:
    assert copy(stored, data, "tagged") == with_tag(data)


@pytest.mark.parametrize("data", [*KEPT, *REWRITTEN])
def test_a_message_a_sink_read_survives_the_source_byte_for_byte(
    data: bytes, stored: dict[str, bytes]
) -> None:
    assert copy(stored, data, "plain") == data


@pytest.mark.parametrize("data", REWRITTEN)
def test_forms_the_source_normalizes_once_a_sink_changed_the_message(
    data: bytes, stored: dict[str, bytes]
) -> None:
    """Once a sink changed the message, the source writes these back as the email package
    reads them (see REWRITTEN_FORMS for what changes), with the sink's line and nothing else.
    If the source learns to keep one, the first assertion fails: move that case to KEPT."""
    tagged = copy(stored, data, "tagged")
    assert tagged != with_tag(data)
    assert tagged == with_tag(parse_message(data).as_bytes(policy=MESSAGE_POLICY))


@pytest.mark.parametrize("data", KEPT)
def test_the_sink_adds_its_line_and_changes_nothing_else(
    data: bytes, stored: dict[str, bytes]
) -> None:
    assert copy(stored, data, "tagged") == with_tag(copy(stored, data, "plain"))


@pytest.mark.parametrize("data", [*KEPT, *REWRITTEN])
def test_a_binding_with_nothing_to_change_leaves_the_bytes_as_received(
    data: bytes, stored: dict[str, bytes]
) -> None:
    assert copy(stored, data, "unchanged") == data


def test_set_and_remove_change_only_their_lines(stored: dict[str, bytes]) -> None:
    assert stored["edited@example.com"] == EDITED_EXPECTED
