"""The archive sink, installed, fired by the real dispatcher and bound through the real CLI."""

from __future__ import annotations

import email
import email.policy
import errno
import hashlib
import json
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import seo_sink_archive
from click.testing import CliRunner
from seo_sink_archive import file_name
from structlog.testing import capture_logs

from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher, DispatchResult
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import EventContext, MessageEvent, PostEvent, PropertyValue, hookimpl

SOURCE_TREE = Path(__file__).resolve().parents[1]
REAL_FSYNC = os.fsync

MESSAGE = (
    b"Received: from client.example.org\r\n"
    b"\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000\r\n"
    b"From:sender@example.org\r\n"
    b"Subject:   spacing kept\r\n"
    b"\r\n"
    b"From the start of a line.\r\n"
    b".a leading dot\r\n"
)

PARSED = MESSAGE.replace(b"From:sender", b"From: sender").replace(b"Subject:   ", b"Subject: ")
"""MESSAGE parsed and written out: Python's parser keeps one space after a header's colon."""


class Tagger:
    """OnArrival, ahead of the archive: edits the parsed message as sinks do."""

    @hookimpl
    def smtp_on_arrival(self, event: MessageEvent) -> None:
        event.message["X-Tagged"] = "yes"


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    installed = SinkRegistry.discover()
    return SinkRegistry([*installed.sinks, *SinkRegistry.from_objects({"tagger": Tagger}).sinks])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "archive"


Bind = Callable[..., Dispatcher]


@pytest.fixture
def bind(tmp_path: Path, registry: SinkRegistry, folder: Path) -> Iterator[Bind]:
    """``bind(event="OnArrival", source="smtp/1", **sink_properties)``: one archive binding,
    ``ArchiveLocation`` being ``folder`` unless given."""
    opened: list[tuple[Metabase, Dispatcher]] = []

    def make(
        event: str = "OnArrival", source: str = "smtp/1", **props: PropertyValue
    ) -> Dispatcher:
        props.setdefault("ArchiveLocation", str(folder))
        metabase = Metabase.open(tmp_path / f"m-{len(opened)}.db")
        metabase.add_binding(
            BindingSpec(
                source=source,
                event=event,
                sink_class="archive",
                display_name="Archive",
                sink_properties=props,
            )
        )
        dispatcher = Dispatcher(source, metabase, registry)
        opened.append((metabase, dispatcher))
        return dispatcher

    yield make
    for metabase, dispatcher in opened:
        dispatcher.close()
        metabase.close()


def arrival(
    data: bytes = MESSAGE, message_id: str = "18edce439213b55b-6824c1a15ebd"
) -> MessageEvent:
    """An OnArrival event as the SMTP source makes it: the bytes, parsed if a sink reads them."""
    return MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id=message_id,
        mail_from="sender@example.org",
        recipients=["alice@example.com"],
        raw=data,
    )


def fire(dispatcher: Dispatcher, event: EventContext) -> DispatchResult:
    result = dispatcher.notify_sync(event)
    assert result.notified + result.failed == 1
    return result


def only_file(folder: Path) -> Path:
    (path,) = folder.iterdir()
    return path


def test_is_discovered_from_the_installed_distribution() -> None:
    info = SinkRegistry.discover().resolve("archive")
    assert info.distribution == "seo-sink-archive"
    assert info.events == ("OnArrival", "OnPostFinal")
    assert info.target is seo_sink_archive.ArchiveSink
    installed = Path(seo_sink_archive.__file__).resolve()
    assert not installed.is_relative_to(SOURCE_TREE), "testing the source tree, not the install"


def test_writes_the_bytes_as_received_to_one_private_file(bind: Bind, folder: Path) -> None:
    event = arrival()
    result = fire(bind(), event)
    assert result.failed == 0
    path = only_file(folder)
    digest = hashlib.sha256(MESSAGE).hexdigest()[:16]
    assert path.name == f"18edce439213b55b-6824c1a15ebd.{digest}.eml"
    assert path.read_bytes() == MESSAGE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not event.message_used  # so the source keeps delivering the bytes it received


def test_a_message_changed_by_an_earlier_sink_is_archived_with_the_change(
    tmp_path: Path, registry: SinkRegistry, folder: Path
) -> None:
    with Metabase.open(tmp_path / "m.db") as metabase:
        for name, sink, priority, props in [
            ("Tag", "tagger", 0, {}),
            ("Archive", "archive", 1, {"ArchiveLocation": str(folder)}),
        ]:
            metabase.add_binding(
                BindingSpec(
                    source="smtp/1",
                    event="OnArrival",
                    sink_class=sink,
                    display_name=name,
                    sink_properties=props,
                    source_properties={"Priority": priority},
                )
            )
        dispatcher = Dispatcher("smtp/1", metabase, registry)
        result = dispatcher.notify_sync(arrival())
        dispatcher.close()
    assert (result.notified, result.failed) == (2, 0)
    # The parsed message, written out: with the tag, and with the one change the source's
    # parser makes to unusual headers (a single space after the colon).
    assert only_file(folder).read_bytes() == PARSED.replace(
        b"\r\n\r\n", b"\r\nX-Tagged: yes\r\n\r\n", 1
    )


def test_a_parsed_message_without_bytes_is_written_out(bind: Bind, folder: Path) -> None:
    message = email.message_from_bytes(MESSAGE.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    event = MessageEvent(
        source="smtp/1",
        name="OnArrival",
        message_id="m-1",
        message=message,
        mail_from="sender@example.org",
        recipients=["alice@example.com"],
    )
    fire(bind(), event)
    assert only_file(folder).read_bytes() == PARSED  # CRLF, whatever it was parsed with


def test_do_archive_false_writes_nothing(bind: Bind, folder: Path) -> None:
    result = fire(bind(DoArchive=False), arrival())
    assert result.failed == 0
    assert not folder.exists()


def test_the_same_message_again_lands_on_the_same_file(bind: Bind, folder: Path) -> None:
    dispatcher = bind()
    first, again = arrival(), arrival()
    other = arrival(MESSAGE + b"another message with the same id\r\n")
    for event in (first, again, other):
        fire(dispatcher, event)
    assert len(list(folder.iterdir())) == 2
    assert sorted(p.read_bytes() for p in folder.iterdir()) == sorted(
        [MESSAGE, MESSAGE + b"another message with the same id\r\n"]
    )


def test_a_relative_location_is_resolved_against_the_working_folder(
    bind: Bind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fire(bind(ArchiveLocation="var/archive"), arrival())
    assert only_file(tmp_path / "var" / "archive").read_bytes() == MESSAGE


@pytest.mark.parametrize(
    ("message_id", "name"),
    [
        pytest.param("<abc.123@news.example>", "abc.123@news.example", id="angle-brackets"),
        pytest.param("../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd", id="dot-dot-slash"),
        pytest.param("<../../x@host>", "%2E.%2F..%2Fx@host", id="bracketed-dot-dot"),
        pytest.param("..", "%2E.", id="dot-dot"),
        pytest.param(".hidden", "%2Ehidden", id="leading-dot"),
        pytest.param("a\\b\0c", "a%5Cb%00c", id="backslash-and-nul"),
        pytest.param("jörg$1@bücher", "j%C3%B6rg%241@b%C3%BCcher", id="non-ascii"),
        pytest.param("", "no-id", id="empty"),
        pytest.param("<>", "no-id", id="empty-brackets"),
        pytest.param("x" * 300, "x" * 120, id="long"),
        pytest.param("é" * 100, "%C3%A9" * 20, id="long-encoded-not-cut-mid-character"),
    ],
)
def test_file_names_stay_plain_names_in_the_folder(message_id: str, name: str) -> None:
    digest = hashlib.sha256(b"data").hexdigest()[:16]
    assert file_name(message_id, b"data") == f"{name}.{digest}.eml"


HOSTILE = ["../../etc/passwd", "<../x@host>", "/etc/passwd", "..", ".", "a/../../b", "\0"]


@pytest.mark.parametrize("message_id", HOSTILE)
def test_no_message_id_writes_outside_the_folder(
    message_id: str, bind: Bind, folder: Path, tmp_path: Path
) -> None:
    fire(bind(), arrival(message_id=message_id))
    path = only_file(folder)
    assert path.parent == folder
    assert not path.name.startswith(".")
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(folder)]
    assert all(p.name.startswith("m-") for p in outside), outside


# -- failures -----------------------------------------------------------------------------


def test_a_location_that_is_a_file_fails_the_notification(bind: Bind, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with capture_logs() as logs:
        result = fire(bind(ArchiveLocation=str(blocker / "archive")), arrival())
    assert result.failed == 1
    (failed,) = [log for log in logs if log["event"] == "sink_failed"]
    assert failed["sink"] == "archive"
    assert "Not a directory" in failed["error"]
    assert blocker.read_text() == "a file"


def test_a_failing_fsync_leaves_nothing_behind(
    bind: Bind, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = bind()
    fire(dispatcher, arrival())
    first = only_file(folder)

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        REAL_FSYNC(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = fire(dispatcher, arrival(MESSAGE + b"second\r\n"))
    monkeypatch.undo()
    assert result.failed == 1
    assert list(folder.iterdir()) == [first]  # neither the copy nor its temporary file


# -- news ---------------------------------------------------------------------------------


def test_a_stored_article_is_archived_under_its_message_id(bind: Bind, folder: Path) -> None:
    article = (
        b"Path: news.test!not-for-mail\r\n"
        b"From: Alice <alice@example.com>\r\n"
        b"Newsgroups: local.test\r\n"
        b"Subject: hello\r\n"
        b"Message-ID: <abc.1@news.test>\r\n"
        b"\r\n"
        b"Hello, group.\r\n"
    )
    message = email.message_from_bytes(article, policy=email.policy.SMTP)
    assert isinstance(message, EmailMessage)
    event = PostEvent(
        source="nntp/1",
        name="OnPostFinal",
        message=message,
        newsgroups=["local.test"],
        message_id="<abc.1@news.test>",
    )
    result = fire(bind("OnPostFinal", source="nntp/1"), event)
    assert result.failed == 0
    path = only_file(folder)
    assert path.name.startswith("abc.1@news.test.")
    assert path.read_bytes() == article


# -- sink properties, through the real command line ---------------------------------------


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


ADD = ("bindings", "add", "smtp/1", "OnArrival", "Archive", "archive")


@pytest.mark.parametrize(
    ("props", "complaint"),
    [
        pytest.param([], "SinkProperties.ArchiveLocation: is required", id="missing"),
        pytest.param(["ArchiveLocation="], "SinkProperties.ArchiveLocation", id="empty"),
        pytest.param(["ArchiveLocation=5"], "SinkProperties.ArchiveLocation 5", id="number"),
        pytest.param(
            ["ArchiveLocation=/a", "DoArchive=yes"], "SinkProperties.DoArchive", id="do-archive"
        ),
        pytest.param(["ArchiveLocaton=/a"], "did you mean 'ArchiveLocation'", id="typo"),
        pytest.param(
            ["ArchiveLocation=/a", "DoArchve=false"], "did you mean 'DoArchive'", id="typo-2"
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


def test_property_names_match_in_any_case(tmp_path: Path) -> None:
    code, output = seo(
        tmp_path / "m.db",
        *ADD,
        "--sink-prop",
        "archivelocation=/a",
        "--sink-prop",
        "doarchive=false",
    )
    assert code == 0, output


# -- the README's examples ----------------------------------------------------------------

README = (SOURCE_TREE / "README.md").read_text()


def test_the_readme_command_line_adds_a_binding(tmp_path: Path) -> None:
    (line,) = re.findall(r"^seo bindings add .*$", README, flags=re.MULTILINE)
    code, output = seo(tmp_path / "m.db", *shlex.split(line)[1:])
    assert code == 0, output


def test_the_readme_config_snippet_applies_with_paths_made_absolute(tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    config = tmp_path / "etc" / "seo.toml"
    config.parent.mkdir()
    config.write_text(snippet)
    code, output = seo(tmp_path / "m.db", "config", "apply", str(config))
    assert code == 0, output
    code, shown = seo(
        tmp_path / "m.db", "bindings", "show", "smtp/1", "OnArrival", "Archive", "--json"
    )
    assert code == 0, shown
    properties = json.loads(shown)["sink_properties"]
    assert properties["ArchiveLocation"] == str(tmp_path / "etc" / "var" / "archive" / "mail")
