"""All the bundled sinks at once: installed, bound with the CLI, fired by ``seo serve``.

One SMTP source, eight sinks bound with the real ``seo`` command, real messages sent with
``smtplib``; every effect is checked where an administrator would look for it.
"""

from __future__ import annotations

import json
import smtplib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.conftest import run_process, without_trace
from tests.test_serve import Server, free_port, maildir_files, wait_for

SCRIPT = """
from pathlib import Path

def on_arrival(event, sink_properties):
    with Path(sink_properties["Journal"]).open("a") as journal:
        journal.write(f"{event.mail_from} -> {','.join(event.recipients)}\\n")
"""


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((str(self.headers["Authorization"]), json.loads(body)))
        Hook.arrived.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def hook() -> Iterator[str]:
    Hook.received, Hook.arrived = [], threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/seo"
    finally:
        server.shutdown()
        server.server_close()


def test_every_bundled_sink_does_its_job_in_one_server(
    tmp_path: Path, seo_exe: str, hook: str
) -> None:
    port = free_port()
    config = tmp_path / "seo.toml"
    config.write_text(f"""
metabase = "var/seo-metabase.db"

[sources."smtp/1"]
listen = "127.0.0.1:{port}"
hostname = "mx.test"
local_domains = ["example.com"]
spool = "var/spool"
""")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "journal.py").write_text(SCRIPT)
    metabase = str(tmp_path / "var" / "seo-metabase.db")
    (tmp_path / "var").mkdir()
    binds = [
        [
            "OnInboundCommand",
            "Block spam",
            "policy",
            "--rule",
            "mail from=*@spam.example",
            "--sink-prop",
            "text=5.7.1 no spam.example here",
        ],
        ["OnArrival", "Tag", "headers", "--sink-prop", 'add={ "X-Seo-Tagged" = "yes" }'],
        [
            "OnArrival",
            "Archive",
            "archive",
            "--sink-prop",
            f"ArchiveLocation={tmp_path / 'archive'}",
        ],
        [
            "OnArrival",
            "Journal",
            "script",
            "--sink-prop",
            f"ScriptName={tmp_path}/scripts/journal.py",
            "--sink-prop",
            f"AllowedDir={tmp_path}/scripts",
            "--sink-prop",
            f"Journal={tmp_path}/journal.txt",
        ],
        [
            "OnArrival",
            "Hook",
            "webhook",
            "--sink-prop",
            f"url={hook}",
            "--sink-prop",
            "token_env=SEO_TEST_HOOK_TOKEN",
        ],
        ["OnArrival", "Audit", "log", "--sink-prop", f"File={tmp_path / 'audit.jsonl'}"],
        [
            "OnCategorize",
            "Aliases",
            "alias",
            "--sink-prop",
            "aliases={ postmaster = ['alice@example.com', 'bob@example.com'] }",
        ],
        ["StoreDriver", "Mailboxes", "maildir", "--sink-prop", f"root={tmp_path / 'mail'}"],
    ]
    for event, name, sink, *options in binds:
        added = run_process(
            seo_exe,
            "--metabase",
            metabase,
            "bindings",
            "add",
            "smtp/1",
            event,
            name,
            sink,
            *options,
        )
        assert added.returncode == 0, added.stderr
    server = Server(seo_exe, config, env={"SEO_TEST_HOOK_TOKEN": "s3cret"})
    try:
        message = b"From: carol@example.net\r\nSubject: for the postmaster\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", port) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("x@spam.example", ["postmaster@example.com"], message)
            assert refused.value.smtp_code == 550
            assert refused.value.smtp_error == b"5.7.1 no spam.example here"
            client.rset()
            assert client.sendmail("carol@example.net", ["postmaster@example.com"], message) == {}
        mail = tmp_path / "mail"
        wait_for(lambda: maildir_files(mail, "bob@example.com"))
        wait_for(lambda: maildir_files(mail, "alice@example.com"))
        assert Hook.arrived.wait(20)
    finally:
        assert server.stop() == 0

    for person in ("alice@example.com", "bob@example.com"):
        (stored,) = maildir_files(mail, person)
        assert without_trace(stored.read_bytes()) == message.replace(
            b"\r\n\r\n", b"\r\nX-Seo-Tagged: yes\r\n\r\n"
        ).replace(b"\r\n", b"\n")
    assert maildir_files(mail, "postmaster@example.com") == []
    (archived,) = (tmp_path / "archive").iterdir()
    assert b"Subject: for the postmaster" in archived.read_bytes()
    assert (tmp_path / "journal.txt").read_text() == (
        "carol@example.net -> postmaster@example.com\n"
    )
    ((authorization, payload),) = Hook.received
    assert authorization == "Bearer s3cret"
    assert payload["mail_from"] == "carol@example.net"
    assert "hello" not in json.dumps(payload)
    (line,) = (tmp_path / "audit.jsonl").read_text().splitlines()
    audit = json.loads(line)
    assert (audit["event"], audit["binding"], audit["mail_from"]) == (
        "OnArrival",
        "Audit",
        "carol@example.net",
    )
    assert "s3cret" not in (tmp_path / "var" / "seo-metabase.db").read_bytes().decode("latin-1")
