"""``seo serve`` as a user runs it: a real process, a config file, real clients, real signals."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seo_core.metabase import BindingSpec, Metabase
from seo_core.sources.smtp.spool import Spool
from tests.conftest import run_process, without_trace


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    folder: Path, port: int, *, mail_root: str = "mail", retry: str = "[1, 1]"
) -> Path:
    config = folder / "seo.toml"
    config.write_text(f"""
metabase = "var/seo-metabase.db"

[sources."smtp/1"]
listen = "127.0.0.1:{port}"
hostname = "mx.test"
local_domains = ["example.com"]
spool = "var/spool"
retry_schedule = {retry}
shutdown_timeout = 10

[[bindings]]
source = "smtp/1"
event = "OnArrival"
name = "Audit"
sink = "log"
sink_properties = {{ File = "var/audit.jsonl" }}

[[bindings]]
source = "smtp/1"
event = "StoreDriver"
name = "Local mailboxes"
sink = "maildir"
sink_properties = {{ root = "{mail_root}" }}
""")
    return config


class Server:
    """A ``seo serve`` process; waits until it listens by reading what it prints."""

    def __init__(self, seo_exe: str, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = (config.parent / "serve.log").open("a")
        self.process = subprocess.Popen(
            [seo_exe, "--log-format", "json", "serve", "--config", str(config)],
            cwd=config.parent,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdout is not None
        self.banner: list[str] = []
        for line in self.process.stdout:
            self.banner.append(line.rstrip("\n"))
            if " listening on " in line:
                break
        else:
            self.close()
            raise AssertionError(f"seo serve did not start: {self.logged()}")
        for line in self.process.stdout:  # the bindings follow the listening line
            self.banner.append(line.rstrip("\n"))
            if "StoreDriver" in line:
                break

    def logged(self) -> str:
        return (self.config.parent / "serve.log").read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.close()

    def close(self) -> int:
        code = self.process.wait(timeout=30)
        self.process.stdout.close()  # type: ignore[union-attr]
        self.log.close()
        return code


@pytest.fixture
def served(tmp_path: Path, seo_exe: str) -> Iterator[tuple[Server, int, Path]]:
    port = free_port()
    server = Server(seo_exe, write_config(tmp_path, port))
    try:
        yield server, port, tmp_path
    finally:
        if not server.log.closed:
            server.stop(signal.SIGKILL)


def maildir_files(root: Path, recipient: str) -> list[Path]:
    local, _, domain = recipient.partition("@")
    return sorted((root / domain / local / "new").glob("*"))


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    """Poll a condition on files another process writes (there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_serve_prints_what_it_runs_and_delivers_mail(served: tuple[Server, int, Path]) -> None:
    server, port, folder = served
    assert server.banner[0].startswith("applied ")
    assert f"smtp/1 listening on 127.0.0.1:{port} (local domains: example.com;" in "\n".join(
        server.banner
    )
    assert "  OnArrival 1. Audit -> log (priority 24575)" in server.banner
    assert "  StoreDriver 1. Local mailboxes -> maildir (priority 24575)" in server.banner
    message = b"From: a@example.net\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nhello bob\r\n"
    with smtplib.SMTP("127.0.0.1", port) as client:
        assert client.sendmail("a@example.net", ["bob@example.com"], message) == {}
    wait_for(lambda: maildir_files(folder / "mail", "bob@example.com"))
    (stored,) = maildir_files(folder / "mail", "bob@example.com")
    assert without_trace(stored.read_bytes()) == message.replace(b"\r\n", b"\n")
    wait_for((folder / "var" / "audit.jsonl").exists)
    audit = json.loads((folder / "var" / "audit.jsonl").read_text().splitlines()[0])
    assert (audit["event"], audit["mail_from"]) == ("OnArrival", "a@example.net")
    assert server.stop() == 0


@pytest.mark.parametrize("metabase", ["rel.db", None], ids=["relative-env", "config-file"])
def test_the_banner_names_the_metabase_by_its_absolute_path(
    tmp_path: Path, seo_exe: str, metabase: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEO_METABASE", raising=False)
    env = {"SEO_METABASE": metabase} if metabase else {}
    server = Server(seo_exe, write_config(tmp_path, free_port()), env)
    try:
        expected = tmp_path / (metabase or "var/seo-metabase.db")
        (line,) = [line for line in server.banner if line.startswith("seo serving with ")]
        assert line.startswith(f"seo serving with metabase {expected} (event loop: "), line
    finally:
        assert server.stop() == 0


def test_the_banner_lists_what_fires_and_says_why_the_others_do_not(
    tmp_path: Path, seo_exe: str
) -> None:
    """Expired, disabled and fired-out bindings fire for no event: they are not numbered in
    the firing order but named after it with ``seo explain``'s reason."""
    config = write_config(tmp_path, free_port())
    with config.open("a", encoding="utf-8") as extra:
        extra.write(
            '\n[[bindings]]\nsource = "smtp/1"\nevent = "OnArrival"\nname = "Expired"\n'
            'sink = "log"\npriority = "PRIO_HIGH"\nexpires = 2001-01-01T00:00:00Z\n'
            '\n[[bindings]]\nsource = "smtp/1"\nevent = "OnArrival"\nname = "Off"\n'
            'sink = "log"\npriority = 30000\nenabled = false\n'
        )
    (tmp_path / "var").mkdir()
    with Metabase.open(tmp_path / "var" / "seo-metabase.db") as metabase:
        once = metabase.add_binding(
            BindingSpec(
                "smtp/1",
                "OnArrival",
                "log",
                display_name="Once",
                max_firings=1,
                source_properties={"Priority": 31000},
            )
        )
        assert metabase.claim_firing(once.id)
    server = Server(seo_exe, config)
    try:
        assert [line for line in server.banner if line.startswith("  ")] == [
            "  OnArrival 1. Audit -> log (priority 24575)",
            "  OnArrival NOT FIRING Expired -> log: expired at 2001-01-01T00:00:00+00:00",
            "  OnArrival NOT FIRING Off -> log: disabled",
            "  OnArrival NOT FIRING Once -> log: fired out (1 of MaxFirings 1)",
            "  StoreDriver 1. Local mailboxes -> maildir (priority 24575)",
        ]
    finally:
        assert server.stop() == 0


def test_swaks_can_send_through_it(served: tuple[Server, int, Path]) -> None:
    server, port, folder = served
    assert shutil.which("swaks"), "swaks is needed (.ci/run installs it: apt-get install swaks)"
    result = run_process(
        "swaks",
        "--server",
        f"127.0.0.1:{port}",
        "--from",
        "alice@example.net",
        "--to",
        "carol@example.com",
        "--header",
        "Subject: from swaks",
        "--body",
        "swaks body",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 2.0.0 OK queued as" in result.stdout
    wait_for(lambda: maildir_files(folder / "mail", "carol@example.com"))
    (stored,) = maildir_files(folder / "mail", "carol@example.com")
    assert b"Subject: from swaks" in stored.read_bytes()
    assert b"swaks body" in stored.read_bytes()
    assert server.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_a_stop_signal_lets_a_session_in_flight_finish(
    served: tuple[Server, int, Path], signum: signal.Signals
) -> None:
    """SIGTERM from a service manager, SIGHUP from a terminal that closed: the session under
    way still gets its 250, and the server stops cleanly."""
    server, port, folder = served
    client = smtplib.SMTP("127.0.0.1", port)
    client.ehlo()
    client.mail("a@example.net")
    client.rcpt("dave@example.com")
    server.process.send_signal(signum)
    code, _ = client.data(b"Subject: in flight\r\n\r\nstill accepted\r\n")
    assert code == 250
    client.quit()
    assert server.close() == 0
    logged = server.logged()
    assert "serve_stopped" in logged
    assert "smtp_delivery_process_ended" not in logged  # the delivery process ignored it
    delivered = maildir_files(folder / "mail", "dave@example.com")
    assert len(delivered) + len(Spool(folder / "var" / "spool").pending()) == 1
    with pytest.raises(ConnectionRefusedError):  # no new sessions once stopped
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


class RawClient:
    """A client speaking SMTP by hand, to see each reply as the server sends it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220 ")

    def reply(self) -> bytes:
        lines = [self.file.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self.file.readline())
        return b"".join(lines)

    def say(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_stopping_tells_a_client_between_transactions_421_at_once(
    served: tuple[Server, int, Path],
) -> None:
    server, port, folder = served  # shutdown_timeout = 10
    idle = RawClient(port)
    assert idle.say(b"EHLO idle.test").startswith(b"250")
    busy = RawClient(port)
    busy.say(b"EHLO busy.test")
    assert busy.say(b"MAIL FROM:<a@example.net>").startswith(b"250")
    assert busy.say(b"RCPT TO:<erin@example.com>").startswith(b"250")
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    assert idle.reply() == b"421 4.3.2 Service shutting down; try again later\r\n"
    assert idle.file.read() == b""  # and the server hung up
    # The open transaction goes on to its end, then that client is told too.
    assert busy.say(b"DATA").startswith(b"354")
    assert busy.say(b"Subject: under way\r\n\r\nstill taken\r\n.").startswith(b"250 2.0.0")
    assert busy.reply() == b"421 4.3.2 Service shutting down; try again later\r\n"
    assert server.close() == 0
    assert time.monotonic() - started < 10  # it did not wait out the shutdown timeout
    idle.close()
    busy.close()
    queued = Spool(folder / "var" / "spool").pending()
    assert len(maildir_files(folder / "mail", "erin@example.com")) + len(queued) == 1


def test_a_second_signal_cuts_the_sessions_left_and_still_stops_cleanly(
    served: tuple[Server, int, Path],
) -> None:
    server, port, folder = served
    client = RawClient(port)
    client.say(b"EHLO slow.test")
    client.say(b"MAIL FROM:<a@example.net>")
    client.say(b"RCPT TO:<fay@example.com>")
    assert client.say(b"DATA").startswith(b"354")
    client.sock.sendall(b"Subject: never finished\r\n\r\nhalf a mess")
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "smtp_stopping" in server.logged())
    server.process.send_signal(signal.SIGTERM)
    assert client.file.read() == b""  # cut: no 250 was ever sent for it
    assert server.close() == 0
    client.close()
    logged = server.logged()
    assert "serve_stopping_now" in logged
    assert "serve_stopped" in logged
    assert "Aborted" not in logged
    assert "Traceback" not in logged
    assert maildir_files(folder / "mail", "fay@example.com") == []
    assert Spool(folder / "var" / "spool").pending() == []


def test_kill_9_loses_nothing_and_the_next_start_delivers_each_message_once(
    tmp_path: Path, seo_exe: str
) -> None:
    port = free_port()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the mail root should be, so delivery fails for now\n")
    server = Server(
        seo_exe, write_config(tmp_path, port, mail_root=str(blocked / "mail"), retry="[3600]")
    )
    recipients = [f"user{n}@example.com" for n in range(10)]
    with smtplib.SMTP("127.0.0.1", port) as client:
        for n, recipient in enumerate(recipients):
            body = f"Subject: number {n}\r\n\r\nmessage {n}\r\n".encode()
            assert client.sendmail("a@example.net", [recipient, "all@example.com"], body) == {}
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(Spool(tmp_path / "var" / "spool").pending()) == 10

    server = Server(seo_exe, write_config(tmp_path, port, mail_root="mail"))
    try:
        wait_for(lambda: len(maildir_files(tmp_path / "mail", "all@example.com")) == 10)
        wait_for(lambda: not Spool(tmp_path / "var" / "spool").pending())
        for n, recipient in enumerate(recipients):
            (stored,) = maildir_files(tmp_path / "mail", recipient)
            assert stored.read_bytes().endswith(f"message {n}\n".encode())
    finally:
        assert server.stop() == 0
    assert len(list((tmp_path / "var" / "spool" / "journal").glob("*.log"))) == 1


def logged_pids(server: Server, event: str) -> list[int]:
    return [
        entry["pid"]
        for entry in map(json.loads, server.logged().splitlines())
        if entry.get("event") == event
    ]


def delivery_pids(server: Server) -> list[int]:
    """The delivery processes the server started, from its JSON log, in order."""
    return logged_pids(server, "smtp_delivery_process_started")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not status.exists() or status.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def send(port: int, recipient: str, subject: str) -> None:
    body = f"Subject: {subject}\r\n\r\n{subject}\r\n".encode()
    with smtplib.SMTP("127.0.0.1", port) as client:
        assert client.sendmail("a@example.net", [recipient], body) == {}


def test_delivery_runs_in_a_process_of_its_own_that_ends_with_the_server(
    served: tuple[Server, int, Path],
) -> None:
    server, port, folder = served
    (pid,) = delivery_pids(server)
    assert pid != server.process.pid
    wait_for(lambda: pid in logged_pids(server, "smtp_delivery_ready"))
    parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    assert int(parent) == server.process.pid
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE  # runs when nothing else wants the CPU
    assert os.sched_getscheduler(server.process.pid) == os.SCHED_OTHER
    send(port, "erin@example.com", "via the delivery process")
    wait_for(lambda: maildir_files(folder / "mail", "erin@example.com"))
    assert server.stop() == 0
    wait_for(lambda: not alive(pid))


def test_a_delivery_process_that_dies_is_started_again_and_nothing_is_lost(
    served: tuple[Server, int, Path],
) -> None:
    server, port, folder = served
    (first,) = delivery_pids(server)
    os.kill(first, signal.SIGKILL)
    send(port, "fay@example.com", "while delivery was down")  # accepted all the same
    wait_for(lambda: len(delivery_pids(server)) == 2)
    wait_for(lambda: maildir_files(folder / "mail", "fay@example.com"))
    send(port, "fay@example.com", "after the restart")
    wait_for(lambda: len(maildir_files(folder / "mail", "fay@example.com")) == 2)
    assert server.stop() == 0
    ended = [
        entry
        for entry in map(json.loads, server.logged().splitlines())
        if entry.get("event") == "smtp_delivery_process_ended"
    ]
    assert [(e["pid"], e["returncode"]) for e in ended] == [(first, -signal.SIGKILL)]


def test_a_delivery_process_never_outlives_a_killed_server(
    served: tuple[Server, int, Path],
) -> None:
    server, _port, _folder = served
    (pid,) = delivery_pids(server)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_for(lambda: not alive(pid))


def test_the_server_runs_on_uvloop_unless_told_to_use_asyncio(
    served: tuple[Server, int, Path], tmp_path: Path, seo_exe: str
) -> None:
    server, _port, _folder = served
    assert any(line.endswith("(event loop: uvloop)") for line in server.banner)
    assert server.stop() == 0

    port = free_port()
    plain = Server(seo_exe, write_config(tmp_path, port), env={"SEO_EVENT_LOOP": "asyncio"})
    try:
        assert any(line.endswith("(event loop: asyncio)") for line in plain.banner)
        send(port, "gil@example.com", "on asyncio's own loop")
        wait_for(lambda: maildir_files(tmp_path / "mail", "gil@example.com"))
    finally:
        assert plain.stop() == 0


def add_script_store_driver(config: Path, script: str, code: str) -> None:
    """Bind a script (the ``script`` sink) to StoreDriver after the mailbox, in ``config``."""
    (config.parent / script).write_text(code)
    config.write_text(
        config.read_text()
        + f"""
[[bindings]]
source = "smtp/1"
event = "StoreDriver"
name = "After the mailbox: {script}"
sink = "script"
priority = "PRIO_LOWEST"
sink_properties = {{ ScriptName = "{script}", AllowedDir = "." }}
"""
    )


POISON = """
import os


def store_driver(event):
    if event.message["Subject"] == "poison":
        os._exit(3)  # as a sink with a bug in C code might
"""


def test_a_message_that_crashes_delivery_goes_to_badmail_and_is_stored_once(
    tmp_path: Path, seo_exe: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    add_script_store_driver(config, "poison.py", POISON)
    server = Server(seo_exe, config)
    try:
        send(port, "hal@example.com", "poison")
        send(port, "hal@example.com", "fine")
        badmail = tmp_path / "var" / "spool" / "badmail"
        wait_for(lambda: list(badmail.glob("*.json")), timeout=60)
        wait_for(lambda: len(maildir_files(tmp_path / "mail", "hal@example.com")) == 2)
        send(port, "hal@example.com", "after")
        wait_for(lambda: len(maildir_files(tmp_path / "mail", "hal@example.com")) == 3)
    finally:
        assert server.stop() == 0
    subjects = sorted(
        line
        for path in maildir_files(tmp_path / "mail", "hal@example.com")
        for line in path.read_text().splitlines()
        if line.startswith("Subject:")
    )
    assert subjects == ["Subject: after", "Subject: fine", "Subject: poison"]  # one copy each
    (reason,) = [json.loads(p.read_text())["reason"] for p in badmail.glob("*.json")]
    assert "delivery ended abruptly 3 times" in reason
    assert len(delivery_pids(server)) == 4  # the first, and one after each crash


SLOW_STORE = """
import threading
import time


def store_driver(event):
    time.sleep(0.3)  # a slow second delivery, after the mailbox
"""


def test_stopping_with_a_backlog_delivers_each_message_once_over_two_runs(
    tmp_path: Path, seo_exe: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    config.write_text(config.read_text().replace("shutdown_timeout = 10", "shutdown_timeout = 1"))
    add_script_store_driver(config, "slow.py", SLOW_STORE)
    server = Server(seo_exe, config)
    subjects = [f"backlog {n}" for n in range(30)]
    with smtplib.SMTP("127.0.0.1", port) as client:
        for subject in subjects:
            body = f"Subject: {subject}\r\n\r\n{subject}\r\n".encode()
            assert client.sendmail("a@example.net", ["ivy@example.com"], body) == {}
    wait_for(lambda: len(maildir_files(tmp_path / "mail", "ivy@example.com")) >= 2)
    assert server.stop() == 0  # stops in the middle of deliveries, most messages still queued
    serve_until_the_spool_is_empty(seo_exe, config)
    stored = [
        without_trace(path.read_bytes()).decode().splitlines()[0]
        for path in maildir_files(tmp_path / "mail", "ivy@example.com")
    ]
    assert sorted(stored) == sorted(f"Subject: {s}" for s in subjects)


def serve_until_the_spool_is_empty(seo_exe: str, config: Path) -> None:
    """Start ``seo serve`` again on a spool that a stop left messages in, until it is empty."""
    spool = Spool(config.parent / "var" / "spool")
    assert spool.pending()
    server = Server(seo_exe, config)
    try:
        wait_for(lambda: not spool.pending(), timeout=60)
    finally:
        assert server.stop() == 0


class SlowAfterDelivery(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that answers the ``delivered`` step of MsgTrackLog only after 20 s."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("step") == "delivered":
            time.sleep(20)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_delivery_cut_off_by_the_stop_deadline_is_not_delivered_again(
    tmp_path: Path, seo_exe: str
) -> None:
    """The mailbox got its copy, an async sink after it outlasts stopping, the delivery
    process is ended: the next start knows the message was in hand, and finds the copy."""
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowAfterDelivery)
    receiver.daemon_threads = True
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = free_port()
    config = write_config(tmp_path, port)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    config.write_text(
        config.read_text().replace("shutdown_timeout = 10", "shutdown_timeout = 1")
        + f"""
[[bindings]]
source = "smtp/1"
event = "MsgTrackLog"
name = "Slow hook"
sink = "webhook"
sink_properties = {{ url = "{url}", timeout = 25, retries = 0 }}
"""
    )
    try:
        server = Server(seo_exe, config)
        send(port, "kim@example.com", "cut off")
        wait_for(lambda: maildir_files(tmp_path / "mail", "kim@example.com"))
        assert server.stop() == 0
        assert '"smtp_delivery_process_killed"' in server.logged()
        serve_until_the_spool_is_empty(seo_exe, config)
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert len(maildir_files(tmp_path / "mail", "kim@example.com")) == 1


def test_every_log_line_of_both_processes_is_whole_json_under_load(
    served: tuple[Server, int, Path],
) -> None:
    server, port, folder = served

    def send_many(first: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as client:
            for n in range(first, first + 150):
                body = f"Subject: load {n}\r\n\r\n{n}\r\n".encode()
                client.sendmail("a@example.net", ["jo@example.com"], body)

    threads = [threading.Thread(target=send_many, args=(k * 150,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: len(maildir_files(folder / "mail", "jo@example.com")) == 1200, timeout=90)
    assert server.stop() == 0
    lines = server.logged().splitlines()
    assert len(lines) > 2400
    broken = [line for line in lines if not _is_json_object(line)]
    assert broken == []
    # Both processes load the bindings; each line says which one wrote it.
    loaded = [json.loads(line) for line in lines if '"bindings_loaded"' in line]
    assert {entry.get("process") for entry in loaded} == {None, "delivery"}


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('spool = "var/spool"', 'spool = "not-a-folder"'),
            "seo: error: cannot start smtp/1: cannot use {folder}/not-a-folder: Not a directory (",
        ),
        (
            ('listen = "127.0.0.1:{port}"', 'listen = "192.0.2.1:{port}"'),
            "seo: error: cannot start smtp/1: cannot listen on 192.0.2.1:{port}: ",
        ),
        (
            ('listen = "127.0.0.1:{port}"', 'listen = "nohost.invalid:{port}"'),
            "seo: error: cannot start smtp/1: cannot listen on nohost.invalid:{port}: "
            "the host name does not resolve",
        ),
    ],
    ids=["spool-is-a-file", "address-not-here", "host-unknown"],
)
def test_a_source_that_cannot_start_is_one_line_and_exit_1(
    tmp_path: Path, seo_exe: str, change: tuple[str, str], message: str
) -> None:
    port = free_port()
    (tmp_path / "not-a-folder").write_text("a file")
    config = write_config(tmp_path, port)
    old, new = (part.format(port=port) for part in change)
    config.write_text(config.read_text().replace(old, new))
    result = run_process(seo_exe, "serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("seo: error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(message.format(port=port, folder=tmp_path)), errors[0]
    assert "Traceback" not in result.stderr


def bindings_json(seo_exe: str, metabase: Path) -> str:
    listed = run_process(seo_exe, "--metabase", str(metabase), "bindings", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def test_a_second_server_on_the_same_spool_is_refused_in_one_line_and_changes_nothing(
    served: tuple[Server, int, Path], seo_exe: str
) -> None:
    """A server that cannot start leaves alone the metabase the running one reads."""
    server, _port, folder = served
    metabase = folder / "var" / "seo-metabase.db"
    before = bindings_json(seo_exe, metabase)
    config = folder / "seo.toml"
    other = free_port()
    edited = config.read_text().replace(f":{_port}", f":{other}").replace('"Audit"', '"Audit 2"')
    config.write_text(edited)
    result = run_process(seo_exe, "serve", "--config", str(config), cwd=folder)
    assert result.returncode == 1
    (error,) = seo_errors(result)
    assert error == (
        f"seo: error: cannot start smtp/1: the spool {folder}/var/spool "
        "is in use by another process"
    )
    assert "applied" not in result.stdout
    assert bindings_json(seo_exe, metabase) == before
    assert server.stop() == 0


def test_a_server_whose_port_is_taken_by_another_changes_nothing(
    served: tuple[Server, int, Path], seo_exe: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same with a second config on the first one's port (and its own spool)."""
    server, port, folder = served
    metabase = folder / "var" / "seo-metabase.db"
    before = bindings_json(seo_exe, metabase)
    config = folder / "second.toml"
    spool = tmp_path_factory.mktemp("second") / "spool"
    text = (folder / "seo.toml").read_text().replace('"Audit"', '"Audit 2"')
    config.write_text(text.replace('spool = "var/spool"', f'spool = "{spool}"'))
    result = run_process(seo_exe, "serve", "--config", str(config), cwd=folder)
    assert result.returncode == 1
    (error,) = seo_errors(result)
    assert error.startswith(f"seo: error: cannot start smtp/1: cannot listen on 127.0.0.1:{port}: ")
    assert bindings_json(seo_exe, metabase) == before
    assert not spool.exists()
    assert server.stop() == 0


def test_delivery_priority_normal_runs_delivery_as_the_server(tmp_path: Path, seo_exe: str) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    config.write_text(
        config.read_text().replace(
            "shutdown_timeout = 10", 'shutdown_timeout = 10\ndelivery_priority = "normal"'
        )
    )
    server = Server(seo_exe, config)
    try:
        (pid,) = delivery_pids(server)
        wait_for(lambda: pid in logged_pids(server, "smtp_delivery_ready"))
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(
            os.PRIO_PROCESS, server.process.pid
        )
    finally:
        assert server.stop() == 0


def serve_and_apply(
    seo_exe: str, config: Path
) -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    """``seo serve --config`` and ``seo config apply`` of ``config``, from its folder, with no
    SEO_METABASE: the file alone says where the metabase is."""
    env = {k: v for k, v in os.environ.items() if k != "SEO_METABASE"}
    for command in (["serve", "--config"], ["config", "apply"]):
        result = subprocess.run(
            [seo_exe, *command, str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=config.parent,
            env=env,
        )
        yield " ".join(command), result


def seo_errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What ``seo`` said went wrong, in its own words; a traceback fails the test."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("seo: error:")]


@pytest.mark.parametrize(
    ("metabase", "reason"),
    [
        ("afile/mb.db", "{folder}/afile is a file, not a folder"),
        (
            "afile/sub/mb.db",
            "cannot create its folder {folder}/afile/sub: {folder}/afile is a file, not a folder",
        ),
        ("/proc/seo/m.db", "cannot create its folder /proc/seo: No such file or directory"),
    ],
    ids=["folder-is-a-file", "under-a-file", "under-proc"],
)
def test_a_metabase_folder_that_cannot_be_made_is_one_line_naming_the_line(
    tmp_path: Path, seo_exe: str, metabase: str, reason: str
) -> None:
    (tmp_path / "afile").write_text("a file")
    config = write_config(tmp_path, free_port())
    config.write_text(
        config.read_text().replace('metabase = "var/seo-metabase.db"', f'metabase = "{metabase}"')
    )
    path = metabase if metabase.startswith("/") else f"{tmp_path}/{metabase}"
    expected = f"seo: error: {config}:2: metabase {path}: {reason.format(folder=tmp_path)}"
    for command, result in serve_and_apply(seo_exe, config):
        assert result.returncode == 1, command
        assert seo_errors(result) == [expected], command
        assert result.stdout == "", command


@pytest.mark.parametrize("metabase_key", [True, False], ids=["file-names-metabase", "default"])
def test_a_config_refused_for_its_sinks_creates_nothing(
    tmp_path: Path, seo_exe: str, metabase_key: bool
) -> None:
    config = write_config(tmp_path, free_port())
    text = config.read_text().replace('sink = "log"', 'sink = "header"')
    text = text.replace('{ root = "mail" }', '{ rooot = "mail" }')
    if not metabase_key:
        text = text.replace('metabase = "var/seo-metabase.db"', "")
    config.write_text(text)
    for command, result in serve_and_apply(seo_exe, config):
        assert result.returncode == 1, command
        errors = seo_errors(result)
        assert len(errors) == 2, errors
        assert "SinkClass 'header': no installed sink" in errors[0]
        assert "SinkProperties.rooot 'mail': unknown property (did you mean 'root'?)" in errors[1]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["seo.toml"], command


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on an 8 MiB tmpfs, for a disk too small for a spool; needs root to mount."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_disk_too_small_for_the_journal_says_so_not_cannot_listen(
    tmp_path: Path, seo_exe: str, small_disk: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    spool = small_disk / "spool"
    config.write_text(config.read_text().replace('spool = "var/spool"', f'spool = "{spool}"'))
    result = run_process(seo_exe, "serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert seo_errors(result) == [
        f"seo: error: cannot start smtp/1: cannot use {spool}: No space left on device "
        "(the journal needs 32 MiB free: a 16 MiB segment, and the next one, made ahead)"
    ]
    assert list((spool / "journal").iterdir()) == []  # no partial segment is left


LIMITED = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20)); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
"""Runs a command that may write no file past 8 MiB: the journal's first 16 MiB segment fails
with EFBIG, an OSError with no file name, like a full disk's (and no root is needed)."""


def test_a_spool_write_the_system_refuses_is_not_called_a_listen_error(
    tmp_path: Path, seo_exe: str
) -> None:
    config = write_config(tmp_path, free_port())
    result = run_process(
        sys.executable, "-c", LIMITED, seo_exe, "serve", "--config", str(config), cwd=tmp_path
    )
    assert result.returncode == 1
    assert seo_errors(result) == [
        f"seo: error: cannot start smtp/1: cannot use {tmp_path}/var/spool: File too large"
    ]


def test_a_port_in_use_is_a_listen_error_in_one_line(tmp_path: Path, seo_exe: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port)
        result = run_process(seo_exe, "serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    (error,) = seo_errors(result)
    assert error.startswith(f"seo: error: cannot start smtp/1: cannot listen on 127.0.0.1:{port}: ")
    assert error.lower().endswith("address already in use"), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seo.toml"]  # no metabase, no spool


def test_without_a_config_a_port_in_use_creates_nothing_either(
    tmp_path: Path, seo_exe: str
) -> None:
    """The built-in smtp/1 listens on 127.0.0.1:2525: taken, it is refused before the metabase
    and the spool are made, as with a config file."""
    with socket.socket() as taken:
        with contextlib.suppress(OSError):  # taken by another program already: as good
            taken.bind(("127.0.0.1", 2525))
            taken.listen()
        result = run_process(seo_exe, "serve", cwd=tmp_path)
    assert result.returncode == 1
    (error,) = seo_errors(result)
    assert error.startswith("seo: error: cannot start smtp/1: cannot listen on 127.0.0.1:2525: ")
    assert error.lower().endswith("address already in use"), error
    assert list(tmp_path.iterdir()) == []  # no metabase, no spool


@pytest.mark.parametrize(
    ("second", "marker", "error"),
    [
        (
            '[sources."smtp/2"]\nlisten = "127.0.0.1:{other}"\nspool = "var/./spool"\n',
            'spool = "var/./spool"',
            'sources."smtp/2": spool: {folder}/var/spool is also the spool of sources."smtp/1" '
            "(line 8); each source needs a folder of its own",
        ),
        (
            '[sources."nntp/1"]\nlisten = "127.0.0.1:{port}"\n',
            'listen = "127.0.0.1:{port}"',
            'sources."nntp/1": listen: 127.0.0.1:{port} clashes with sources."smtp/1", which '
            "listens on 127.0.0.1:{port} (line 5); each source needs an address of its own",
        ),
        (
            '[sources."nntp/1"]\nlisten = "0.0.0.0:{port}"\n',
            'listen = "0.0.0.0:{port}"',
            'sources."nntp/1": listen: 0.0.0.0:{port} clashes with sources."smtp/1", which '
            "listens on 127.0.0.1:{port} (line 5); each source needs an address of its own",
        ),
    ],
    ids=["same-spool", "same-listen", "wildcard-listen"],
)
def test_two_sources_sharing_a_spool_or_an_address_are_refused_before_the_metabase_is_written(
    tmp_path: Path, seo_exe: str, second: str, marker: str, error: str
) -> None:
    port, other = free_port(), free_port()
    config = write_config(tmp_path, port)
    config.write_text(config.read_text() + "\n" + second.format(port=port, other=other))
    lines = config.read_text().splitlines()
    line = max(n for n, text in enumerate(lines, 1) if text == marker.format(port=port))
    result = run_process(seo_exe, "serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert seo_errors(result) == [
        f"seo: error: {config}:{line}: {error.format(port=port, folder=tmp_path)}"
    ]
    assert not (tmp_path / "var" / "seo-metabase.db").exists()


def test_the_example_config_serves_and_tags_mail_as_the_readme_says(
    tmp_path: Path, seo_exe: str
) -> None:
    repository = Path(__file__).resolve().parent.parent
    smtp_port, nntp_port = free_port(), free_port()
    example = (repository / "examples" / "seo.toml").read_text()
    (tmp_path / "examples").mkdir()
    config = tmp_path / "examples" / "seo.toml"
    config.write_text(
        example.replace("127.0.0.1:2525", f"127.0.0.1:{smtp_port}").replace(
            "127.0.0.1:1119", f"127.0.0.1:{nntp_port}"
        )
    )
    server = Server(seo_exe, config)
    try:
        forged = b"X-Seo-Tagged: forged\r\nSubject: hi\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            assert client.sendmail("alice@example.net", ["bob@example.com"], forged) == {}
        mail = tmp_path / "var" / "mail"
        wait_for(lambda: maildir_files(mail, "bob@example.com"))
    finally:
        assert server.stop() == 0
    (stored,) = maildir_files(mail, "bob@example.com")
    head, _, body = stored.read_bytes().partition(b"\n\n")
    lines = head.split(b"\n")
    assert lines[0] == b"Return-Path: <alice@example.net>"
    assert lines[1].startswith(b"Received: from ")
    assert [line for line in lines if line.startswith(b"X-Seo-Tagged")] == [b"X-Seo-Tagged: yes"]
    assert body == b"hello\n"
    (arrival,) = (tmp_path / "var" / "log" / "arrivals.jsonl").read_text().splitlines()
    assert json.loads(arrival)["mail_from"] == "alice@example.net"
