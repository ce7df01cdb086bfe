"""A disk that fills up under a running ``seo serve``, on a real (small, tmpfs) file system.

Mail that got its 250 waits out the full disk in the spool, and once there is room again it is
delivered, each message once, with no half-written file left anywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from seo_core.sources.smtp.spool import Spool
from tests.conftest import without_trace
from tests.test_serve import Server, free_port, maildir_files, send, wait_for

DISK_MB = 40  # the journal takes 16 MB (32 MB once it makes its next segment ahead)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", str(disk)],
        check=True,
    )
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Take every byte left on ``disk``; returns the file holding them."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def write_config(folder: Path, disk: Path, port: int) -> Path:
    config = folder / "seo.toml"
    config.write_text(f"""
metabase = "seo-metabase.db"

[sources."smtp/1"]
listen = "127.0.0.1:{port}"
local_domains = ["example.com"]
spool = "{disk}/spool"
retry_schedule = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]

[[bindings]]
source = "smtp/1"
event = "StoreDriver"
name = "Local mailboxes"
sink = "maildir"
sink_properties = {{ root = "{disk}/mail" }}
""")
    return config


def test_mail_accepted_while_the_disk_is_full_is_delivered_once_when_room_comes_back(
    tmp_path: Path, small_disk: Path, seo_exe: str
) -> None:
    port = free_port()
    server = Server(seo_exe, write_config(tmp_path, small_disk, port))
    try:
        send(port, "bob@example.com", "before")
        wait_for(lambda: len(maildir_files(small_disk / "mail", "bob@example.com")) == 1)

        filler = fill(small_disk)
        # The journal has room for these (its segment is made ahead), the Maildir has none,
        # and soon the spool cannot even record when to try again.
        waiting = [f"while full {n}" for n in range(40)]
        for subject in waiting:
            send(port, "bob@example.com", subject)
        wait_for(lambda: "smtp_pipeline_error" in server.logged())
        assert len(maildir_files(small_disk / "mail", "bob@example.com")) == 1

        filler.unlink()
        send(port, "bob@example.com", "after")
        wait_for(lambda: len(maildir_files(small_disk / "mail", "bob@example.com")) == 42, 30)

        delivered = sorted(
            without_trace(path.read_bytes()).split(b"\n", 1)[0].decode()
            for path in maildir_files(small_disk / "mail", "bob@example.com")
        )
        expected = ["before", *waiting, "after"]
        assert delivered == sorted(f"Subject: {subject}" for subject in expected)
        assert not list((small_disk / "spool" / "badmail").iterdir())
        assert not list((small_disk / "mail" / "example.com" / "bob" / "tmp").iterdir())
        assert server.stop(signal.SIGTERM) == 0
    finally:
        if not server.log.closed:
            server.stop(signal.SIGKILL)
    # Nothing is left for the next start: every message was recorded as done.
    assert Spool(small_disk / "spool").pending() == []
