"""``seo serve`` with NNTP sources: the start-up report, and the real command end to end."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from seo_core.errors import SourceStartError
from seo_core.sources.runner import describe, start_sources
from tests.nntp.conftest import Bind, Dialogue, Serve, article, connect, nntplib, registry_with


def test_describe_lists_the_nntp_source_and_its_bindings(
    bind: Bind, serve: Serve, store: Path
) -> None:
    bind("OnPost", "trail", name="Trail", rule="newsgroups=local.*", priority=10)
    bind("OnPostEarly", "not-installed", name="Missing")
    with serve() as news:
        lines = describe(news.running)
        address = news.source.address
    assert lines == [
        f"nntp/1 listening on {address} (groups: local.test, local.announce; store: {store})",
        "  OnPost 1. Trail -> trail (priority 10) rule 'newsgroups=local.*'",
        "  OnPostEarly UNAVAILABLE Missing -> not-installed: "
        + lines[2].partition("not-installed: ")[2],
    ]


def test_stopping_lets_a_post_in_progress_finish_and_tells_idle_clients(serve: Serve) -> None:
    with serve() as news, Dialogue(news.port) as idle, Dialogue(news.port) as poster:
        assert poster.command(b"POST").startswith(b"340 ")
        poster.send(article()[:40])
        assert idle.command(b"DATE").startswith(b"111 ")  # both sessions are up
        stopping = asyncio.run_coroutine_threadsafe(
            news.running.stop(deadline=30), news.server.loop
        )

        async def closing() -> bool:
            return not news.source.sessions or all(s.closing for s in news.source.sessions)

        while not news.server.call(closing()):
            pass
        assert idle.line() == b"400 service shutting down"
        assert idle.file.readline() == b""
        poster.send(article()[40:] + b".\r\n")
        assert poster.line().startswith(b"240 ")
        assert poster.line() == b"400 service shutting down"
        assert poster.file.readline() == b""
        stopping.result(timeout=30)


def test_a_source_that_cannot_listen_leaves_nothing_running(
    serve: Serve, metabase_path: Path, tmp_path: Path
) -> None:
    with serve() as news:
        clash = replace(news.source.settings, port=news.port, store=tmp_path / "other-store")
        with pytest.raises(SourceStartError, match=r"cannot listen on .*address already in use"):
            asyncio.run(start_sources(metabase_path, registry_with(), nntp=[clash]))
    assert [t.name for t in threading.enumerate() if "other-store" in t.name] == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def seo_serve(tmp_path: Path, seo_exe: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``seo serve --config`` on a file declaring only an NNTP source, until it prints it."""
    port = _free_port()
    config = tmp_path / "seo.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            metabase = "seo-metabase.db"

            [sources."nntp/1"]
            listen = "127.0.0.1:{port}"
            hostname = "news.example.com"
            store = "var/news"
            groups = ["local.test", "local.announce"]

            [[bindings]]
            source = "nntp/1"
            event = "OnPost"
            name = "Audit posts"
            sink = "log"
            sink_properties = {{ File = "var/posts.jsonl" }}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "SEO_METABASE"}
    process = subprocess.Popen(
        [seo_exe, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("nntp/1 listening on"):
                break
        else:
            pytest.fail(f"seo serve ended with {process.wait()} before listening")
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_seo_serve_runs_a_config_with_only_an_nntp_source(
    seo_serve: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    process, port = seo_serve
    with connect(port) as client:
        assert client.getwelcome().startswith("200 news.example.com ")
        reply = client.post(io.BytesIO(article()))
        assert reply.startswith("240 ")
        with pytest.raises(nntplib.NNTPTemporaryError, match=r"^441 no such newsgroup"):
            client.post(io.BytesIO(article(groups="elsewhere")))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    (line,) = (tmp_path / "var" / "posts.jsonl").read_text().splitlines()
    assert json.loads(line)["newsgroups"] == ["local.test"]
    assert (tmp_path / "var" / "news" / "index.sqlite3").exists()
