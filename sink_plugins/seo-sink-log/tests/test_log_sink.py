"""The log sink, installed, bound through the real CLI and fired by the real dispatcher."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

from click.testing import CliRunner

from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher
from seo_core.metabase import Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import CommandEvent, MessageEvent, SessionInfo


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


def fire(metabase: Path, *events: object) -> None:
    with Metabase.open(metabase) as opened:
        dispatcher = Dispatcher("smtp/1", opened, SinkRegistry.discover())
        for event in events:
            dispatcher.notify_sync(event)  # type: ignore[arg-type]
        dispatcher.close()


def test_is_discovered_from_its_entry_point() -> None:
    info = SinkRegistry.discover().resolve("log")
    assert info.distribution == "seo-sink-log"
    assert {"OnArrival", "OnInboundCommand", "OnPost"} <= set(info.events)


def test_writes_one_json_line_per_arrival(tmp_path: Path) -> None:
    metabase, audit = tmp_path / "m.db", tmp_path / "new-folder" / "audit.jsonl"
    code, output = seo(
        metabase,
        "bindings",
        "add",
        "smtp/1",
        "OnArrival",
        "Audit",
        "log",
        "--sink-prop",
        f"File={audit}",
    )
    assert code == 0, output
    message = EmailMessage()
    message["Subject"] = "hello"
    message.set_content("secret body text")
    fire(
        metabase,
        MessageEvent(
            source="smtp/1",
            name="OnArrival",
            message_id="m-1",
            message=message,
            mail_from="a@example.com",
            recipients=["b@example.com"],
        ),
    )
    (line,) = audit.read_text().splitlines()
    record = json.loads(line)
    assert {
        k: record[k]
        for k in ("source", "event", "binding", "message_id", "mail_from", "recipients", "status")
    } == {
        "source": "smtp/1",
        "event": "OnArrival",
        "binding": "Audit",
        "message_id": "m-1",
        "mail_from": "a@example.com",
        "recipients": ["b@example.com"],
        "status": "deliver",
    }
    assert "secret body text" not in line


def test_fields_choose_what_is_written_and_auth_arguments_never_are(tmp_path: Path) -> None:
    metabase, audit = tmp_path / "m.db", tmp_path / "audit.jsonl"
    code, output = seo(
        metabase,
        "bindings",
        "add",
        "smtp/1",
        "OnInboundCommand",
        "Commands",
        "log",
        "--sink-prop",
        f"File={audit}",
        "--sink-prop",
        'Fields=["event", "command", "argument"]',
    )
    assert code == 0, output
    session = SessionInfo(id="s1", peer=("127.0.0.1", 5000))
    fire(
        metabase,
        CommandEvent(
            source="smtp/1",
            name="OnInboundCommand",
            command="MAIL",
            argument="FROM:<a@example.com>",
            session=session,
        ),
        CommandEvent(
            source="smtp/1",
            name="OnInboundCommand",
            command="AUTH",
            argument="PLAIN AGFsaWNlAHNlY3JldA==",
            session=session,
        ),
    )
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert lines == [
        {"event": "OnInboundCommand", "command": "MAIL", "argument": "FROM:<a@example.com>"},
        {"event": "OnInboundCommand", "command": "AUTH"},
    ]
    assert "AGFsaWNl" not in audit.read_text()


def test_an_unknown_field_is_refused_when_the_binding_is_written(tmp_path: Path) -> None:
    metabase = tmp_path / "m.db"
    code, output = seo(
        metabase,
        "bindings",
        "add",
        "smtp/1",
        "OnArrival",
        "Bad",
        "log",
        "--sink-prop",
        'Fields=["time", "password"]',
    )
    assert code == 1
    assert "unknown field password" in output
    code, output = seo(
        metabase,
        "bindings",
        "add",
        "smtp/1",
        "OnArrival",
        "Typo",
        "log",
        "--sink-prop",
        "Flie=/tmp/x",
    )
    assert code == 1
    assert "SinkProperties.Flie" in output
    assert "did you mean 'File'" in output
