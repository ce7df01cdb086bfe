"""The headers sink, installed, fired by the real dispatcher and bound through the real CLI."""

from __future__ import annotations

import email
import email.policy
import re
import shlex
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path

import pytest
import seo_sink_headers
from click.testing import CliRunner

from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher, DispatchResult
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import MessageEvent, PropertyValue

SOURCE_TREE = Path(__file__).resolve().parents[1]

SMTP_PARSING = email.policy.SMTP.clone(refold_source="none", max_line_length=0)
"""How the SMTP source parses a spooled message and writes it back when a sink was notified."""

ORIGINAL = (
    b"Received: from client.example.org\r\n"
    b"\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000\r\n"
    b"From: sender@example.org\r\n"
    b"X-Tag: one\r\n"
    b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"X-TAG: two,\r\n"
    b"  folded\r\n"
    b"\r\n"
    b"Body line.\r\n"
)


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    return SinkRegistry.discover()


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=SMTP_PARSING)
    assert isinstance(message, EmailMessage)
    return message


def fire(
    tmp_path: Path,
    registry: SinkRegistry,
    sink_properties: Mapping[str, PropertyValue],
    *,
    event: MessageEvent | None = None,
    raw: bool = False,
) -> tuple[MessageEvent, DispatchResult]:
    """One OnArrival binding to ``headers``, notified of one message by the real dispatcher.

    The message is :data:`ORIGINAL`, parsed, and also as bytes when ``raw``; or ``event``.
    """
    if event is None:
        event = MessageEvent(
            source="smtp/1",
            name="OnArrival",
            message_id="m-1",
            message=parse(ORIGINAL),
            mail_from="sender@example.org",
            recipients=["alice@example.com"],
            raw=ORIGINAL if raw else None,
        )
    with Metabase.open(tmp_path / "m.db") as metabase:
        metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="OnArrival",
                sink_class="headers",
                display_name="Headers",
                sink_properties=sink_properties,
            )
        )
        dispatcher = Dispatcher("smtp/1", metabase, registry)
        try:
            result = dispatcher.notify_sync(event)
        finally:
            dispatcher.close()
    assert (result.notified, result.failed, result.timed_out) == (1, 0, 0)
    return event, result


def written(event: MessageEvent) -> bytes:
    return event.message.as_bytes(policy=SMTP_PARSING)


def test_is_discovered_from_the_installed_distribution(registry: SinkRegistry) -> None:
    info = registry.resolve("headers")
    assert info.distribution == "seo-sink-headers"
    assert info.events == ("OnArrival",)
    assert info.target is seo_sink_headers.HeadersSink
    installed = Path(seo_sink_headers.__file__).resolve()
    assert not installed.is_relative_to(SOURCE_TREE), "testing the source tree, not the install"


HEAD, BODY = ORIGINAL.split(b"\r\n\r\n", 1)
RECEIVED = (
    b"Received: from client.example.org\r\n\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000"
)
SUBJECT = b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?="


def message(*lines: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + BODY


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        pytest.param(
            {"add": {"X-Seo-Tagged": "yes"}},
            HEAD + b"\r\nX-Seo-Tagged: yes\r\n\r\n" + BODY,
            id="add-goes-last",
        ),
        pytest.param(
            {"add": {"X-Tag": "three"}},
            HEAD + b"\r\nX-Tag: three\r\n\r\n" + BODY,
            id="add-keeps-existing",
        ),
        pytest.param(
            {"add": {"X-A": "1", "X-B": "2"}},
            HEAD + b"\r\nX-A: 1\r\nX-B: 2\r\n\r\n" + BODY,
            id="add-several-in-order",
        ),
        pytest.param(
            {"set": {"X-Tag": "new"}},
            message(RECEIVED, b"From: sender@example.org", b"X-Tag: new", SUBJECT),
            id="set-replaces-every-occurrence-in-place-of-the-first",
        ),
        pytest.param(
            {"set": {"x-tag": "new"}},
            message(RECEIVED, b"From: sender@example.org", b"x-tag: new", SUBJECT),
            id="set-matches-any-case-and-writes-the-name-as-given",
        ),
        pytest.param(
            {"set": {"X-Seo-Tagged": "yes"}},
            HEAD + b"\r\nX-Seo-Tagged: yes\r\n\r\n" + BODY,
            id="set-adds-when-absent",
        ),
        pytest.param(
            {"remove": ["x-tag"]},
            message(RECEIVED, b"From: sender@example.org", SUBJECT),
            id="remove-every-occurrence-with-its-folded-lines",
        ),
        pytest.param(
            {"remove": ["Received", "Subject"]},
            message(b"From: sender@example.org", b"X-Tag: one", b"X-TAG: two,\r\n  folded"),
            id="remove-several",
        ),
        pytest.param(
            {"remove": ["X-Tag"], "set": {"X-Tag": "set"}, "add": {"X-Tag": "added"}},
            message(
                RECEIVED,
                b"From: sender@example.org",
                SUBJECT,
                b"X-Tag: set",
                b"X-Tag: added",
            ),
            id="remove-then-set-then-add",
        ),
        pytest.param(
            {"add": {"X-Note": "Grüße aus München"}},
            HEAD + b"\r\nX-Note: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\n\r\n" + BODY,
            id="non-ascii-becomes-encoded-words",
        ),
        pytest.param(
            {"add": {"X-Long": " ".join(["word"] * 30)}},
            HEAD
            + b"\r\nX-Long: "
            + b" ".join([b"word"] * 14)
            + b"\r\n "
            + b" ".join([b"word"] * 15)
            + b"\r\n "
            + b"word\r\n\r\n"
            + BODY,
            id="long-values-are-folded",
        ),
    ],
)
def test_edits_only_the_named_header_lines(
    properties: dict[str, PropertyValue], expected: bytes, tmp_path: Path, registry: SinkRegistry
) -> None:
    event, _ = fire(tmp_path, registry, properties)
    assert written(event) == expected


def test_the_edited_message_parses_to_the_new_values(
    tmp_path: Path, registry: SinkRegistry
) -> None:
    event, _ = fire(
        tmp_path, registry, {"set": {"X-Tag": "new"}, "add": {"X-Note": "Grüße aus München"}}
    )
    again = parse(written(event))
    assert again.get_all("X-Tag") == ["new"]
    assert str(again["X-Note"]) == "Grüße aus München"
    assert str(again["Subject"]) == "Grüße"


def test_an_edit_drops_the_stale_raw_bytes(tmp_path: Path, registry: SinkRegistry) -> None:
    event, _ = fire(tmp_path, registry, {"add": {"X-Seo-Tagged": "yes"}}, raw=True)
    assert event.raw is None


def arrival_from_bytes(data: bytes) -> MessageEvent:
    """An OnArrival event as the SMTP source makes it: bytes, parsed when a sink reads them."""
    return MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id="m-1",
        mail_from="sender@example.org",
        recipients=["alice@example.com"],
        raw=data,
    )


def test_an_edit_of_an_unread_message_hands_the_source_the_edited_message(
    tmp_path: Path, registry: SinkRegistry
) -> None:
    event, _ = fire(
        tmp_path, registry, {"add": {"X-Seo-Tagged": "yes"}}, event=arrival_from_bytes(ORIGINAL)
    )
    assert event.message_used  # so the source writes the message out again
    assert event.raw is None
    assert written(event) == HEAD + b"\r\nX-Seo-Tagged: yes\r\n\r\n" + BODY


def test_set_replaces_a_forged_value_even_in_a_message_nested_too_deep_to_parse(
    tmp_path: Path, registry: SinkRegistry
) -> None:
    """A client cannot keep its own X-Seo-Tagged by nesting MIME parts 1,500 deep: the
    message is read as its headers, and the sink sets the value all the same."""
    parts = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (n, n + 1)
        for n in range(1500)
    )
    data = b"X-Seo-Tagged: forged\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n" + parts
    event, _ = fire(
        tmp_path, registry, {"set": {"X-Seo-Tagged": "yes"}}, event=arrival_from_bytes(data)
    )
    assert event.message.get_all("X-Seo-Tagged") == ["yes"]


def test_nothing_to_change_leaves_an_unread_message_unread(
    tmp_path: Path, registry: SinkRegistry
) -> None:
    event, _ = fire(
        tmp_path,
        registry,
        {"remove": ["X-Absent"], "set": {"From": "sender@example.org"}},
        event=arrival_from_bytes(ORIGINAL),
    )
    assert not event.message_used  # so the source keeps the bytes it received
    assert event.raw == ORIGINAL


@pytest.mark.parametrize(
    "properties",
    [
        pytest.param({"remove": ["X-Absent"]}, id="removing-an-absent-header"),
        pytest.param({"set": {"From": "sender@example.org"}}, id="setting-the-value-it-has"),
    ],
)
def test_a_message_left_as_it_was_keeps_its_raw_bytes(
    properties: dict[str, PropertyValue], tmp_path: Path, registry: SinkRegistry
) -> None:
    event, _ = fire(tmp_path, registry, properties, raw=True)
    assert event.raw == ORIGINAL
    assert written(event) == ORIGINAL


# -- sink properties, through the real command line ---------------------------------------


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


ADD = ("bindings", "add", "smtp/1", "OnArrival", "Tag mail", "headers")


@pytest.mark.parametrize(
    ("props", "complaint"),
    [
        pytest.param([], "give at least one of add, set or remove", id="nothing-to-do"),
        pytest.param(['ad={ X-A = "1" }'], "did you mean 'add'", id="typo"),
        pytest.param(["add=yes"], "SinkProperties.add", id="add-not-a-table"),
        pytest.param(['remove="X-A"'], "SinkProperties.remove", id="remove-not-a-list"),
        pytest.param(
            ['add={ "X Bad" = "1" }'],
            "SinkProperties.add 'X Bad': is not a header name",
            id="space",
        ),
        pytest.param(['remove=["X:A"]'], "SinkProperties.remove 'X:A'", id="colon-in-name"),
        pytest.param(["remove=[1]"], "SinkProperties.remove 1", id="name-not-a-string"),
        pytest.param(
            ['add={ "X-Count" = 1 }'],
            "SinkProperties.add.X-Count 1: must be a string",
            id="value-not-a-string",
        ),
        pytest.param(
            ['set={ "X-A" = "a\\nBcc: x@example.net" }'],
            "SinkProperties.set.X-A",
            id="line-break-in-value",
        ),
        pytest.param(
            ['add={ "X-A" = "a\\u000bb" }'],
            "must not contain line breaks or control characters",
            id="vertical-tab-in-value",
        ),
        pytest.param(
            ['set={ "X-A" = "1", "x-a" = "2" }'],
            "names the same header as 'X-A'",
            id="set-twice",
        ),
        pytest.param(
            ['set={ Date = "yesterday" }'], "is not a valid Date value", id="malformed-date"
        ),
    ],
)
def test_bad_sink_properties_are_refused_when_the_binding_is_written(
    props: list[str], complaint: str, tmp_path: Path
) -> None:
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(tmp_path / "m.db", *ADD, *arguments)
    assert code == 1, output
    assert complaint in output
    code, listing = seo(tmp_path / "m.db", "bindings", "list")
    assert "Tag mail" not in listing


def test_good_sink_properties_are_accepted(tmp_path: Path) -> None:
    props = [
        'add={ "X-Seo-Tagged" = "yes" }',
        'set={ "X-Spam-Flag" = "NO", Date = "Tue, 3 Dec 2024 10:00:00 +0000" }',
        'remove=["X-Originating-IP", "Return-Receipt-To"]',
    ]
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(tmp_path / "m.db", *ADD, *arguments)
    assert code == 0, output
    code, shown = seo(tmp_path / "m.db", "bindings", "show", "smtp/1", "OnArrival", "Tag mail")
    assert code == 0, shown
    assert "X-Seo-Tagged" in shown


# -- the README's examples ----------------------------------------------------------------

README = (SOURCE_TREE / "README.md").read_text()


def test_the_readme_command_line_adds_a_binding(tmp_path: Path) -> None:
    (line,) = re.findall(r"^seo bindings add .*$", README, flags=re.MULTILINE)
    code, output = seo(tmp_path / "m.db", *shlex.split(line)[1:])
    assert code == 0, output
    _, shown = seo(tmp_path / "m.db", "bindings", "show", "smtp/1", "OnArrival", "Tag mail")
    assert "X-Seo-Tagged" in shown


def test_the_readme_config_snippet_applies(tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    config = tmp_path / "seo.toml"
    config.write_text(snippet)
    code, output = seo(tmp_path / "m.db", "config", "apply", str(config))
    assert code == 0, output
    assert 'OnArrival "Tag mail" -> headers' in output
