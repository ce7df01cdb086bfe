"""Fixtures for the NNTP source: a real server on 127.0.0.1, a real metabase, small real sinks."""

from __future__ import annotations

import io
import socket
import struct
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import Binding, PostEvent, hookimpl
from seo_core.testing import RunningNntp, running_nntp

with warnings.catch_warnings():
    # nntplib is deprecated (PEP 594) but still the standard library's NNTP client up to 3.12.
    warnings.filterwarnings("ignore", "'nntplib' is deprecated", DeprecationWarning)
    import nntplib


@dataclass(frozen=True, slots=True)
class Seen:
    """One notification, as a sink saw it."""

    source: str
    event: str
    binding: str
    newsgroups: tuple[str, ...]
    message_id: str | None
    subject: str | None
    has_body: bool


SEEN: list[Seen] = []
_SEEN_LOCK = threading.Lock()


def _record(event: PostEvent, binding: Binding) -> None:
    payload = event.message.get_payload()
    with _SEEN_LOCK:
        SEEN.append(
            Seen(
                source=event.source,
                event=event.name,
                binding=binding.display_name or binding.id,
                newsgroups=tuple(event.newsgroups),
                message_id=event.message_id,
                subject=event.message["Subject"],
                has_body=bool(payload),
            )
        )


class Trail:
    """Writes down every NNTP notification it gets."""

    @hookimpl
    def nntp_on_post_early(self, event: PostEvent, binding: Binding) -> None:
        _record(event, binding)

    @hookimpl
    def nntp_on_post(self, event: PostEvent, binding: Binding) -> None:
        _record(event, binding)

    @hookimpl
    def nntp_on_post_final(self, event: PostEvent, binding: Binding) -> None:
        _record(event, binding)


class Moderate:
    """Refuses posts to the group named by its ``group`` property, with its ``reason``."""

    @staticmethod
    def _judge(event: PostEvent, sink_properties: Any) -> None:
        if str(sink_properties["group"]) in event.newsgroups:
            event.refuse(str(sink_properties.get("reason", "moderated group")))

    @hookimpl
    def nntp_on_post_early(self, event: PostEvent, sink_properties: Any) -> None:
        self._judge(event, sink_properties)

    @hookimpl
    def nntp_on_post(self, event: PostEvent, sink_properties: Any) -> None:
        self._judge(event, sink_properties)

    @hookimpl
    def nntp_on_post_final(self, event: PostEvent) -> None:
        event.refuse("too late: OnPostFinal only observes")
        event.newsgroups.clear()


class Refile:
    """Files the article in the groups of its ``to`` property instead."""

    @hookimpl
    def nntp_on_post_early(self, event: PostEvent, sink_properties: Any) -> None:
        event.newsgroups = list(sink_properties["to"])  # type: ignore[arg-type]

    @hookimpl
    def nntp_on_post(self, event: PostEvent, sink_properties: Any) -> None:
        event.newsgroups = list(sink_properties["to"])  # type: ignore[arg-type]


class Broken:
    @hookimpl
    def nntp_on_post(self, event: PostEvent) -> None:
        raise RuntimeError("sink bug")


TEST_SINKS: dict[str, object] = {
    "trail": Trail,
    "moderate": Moderate,
    "refile": Refile,
    "broken": Broken,
}


def registry_with(**extra: object) -> SinkRegistry:
    """The installed sinks plus the tests' own, as one registry."""
    installed = SinkRegistry.discover()
    own = SinkRegistry.from_objects({**TEST_SINKS, **extra})
    return SinkRegistry([*installed.sinks, *own.sinks])


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "news"


Bind = Callable[..., str]
Serve = Callable[..., AbstractContextManager[RunningNntp]]


@pytest.fixture
def bind(metabase: Metabase) -> Bind:
    """Add a binding to nntp/1: ``bind(event, sink, rule=..., priority=..., **spec fields)``."""

    def add(
        event: str,
        sink: str,
        *,
        name: str | None = None,
        rule: str = "",
        priority: int | None = None,
        **fields: Any,
    ) -> str:
        source_properties: dict[str, Any] = {"Rule": rule} if rule else {}
        if priority is not None:
            source_properties["Priority"] = priority
        return metabase.add_binding(
            BindingSpec(
                source="nntp/1",
                event=event,
                sink_class=sink,
                display_name=name or f"{event} {sink}",
                source_properties=source_properties,
                **fields,
            )
        ).id

    return add


@pytest.fixture
def serve(metabase_path: Path, metabase: Metabase, store: Path) -> Serve:
    """Run nntp/1 (carrying local.test and local.announce) with the bindings made so far."""

    def start(**settings: Any) -> AbstractContextManager[RunningNntp]:
        return running_nntp(metabase_path, registry_with(), store=store, settings=settings)

    return start


@pytest.fixture
def news(serve: Serve) -> Iterator[RunningNntp]:
    with serve() as running:
        yield running


def connect(port: int) -> nntplib.NNTP:
    return nntplib.NNTP("127.0.0.1", port, timeout=30)


def article(
    *,
    groups: str = "local.test",
    subject: str = "hello",
    body: bytes = b"first line\r\nsecond line\r\n",
    extra: bytes = b"",
) -> bytes:
    """An article as a client composes it (CRLF line endings, not dot-stuffed)."""
    return (
        b"From: Alice <alice@example.com>\r\n"
        + f"Newsgroups: {groups}\r\nSubject: {subject}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def post(port: int, data: bytes) -> str:
    """POST ``data`` with nntplib; the server's reply line (nntplib raises on 4xx/5xx)."""
    with connect(port) as client:
        return str(client.post(io.BytesIO(data)))


class Dialogue:
    """A raw NNTP client: sends bytes exactly as given, reads reply lines and data blocks."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()
        assert self.greeting.startswith(b"200 ")

    def line(self) -> bytes:
        """One reply line without its CRLF."""
        got = self.file.readline()
        if not got:
            raise ConnectionError("server closed the connection")
        assert got.endswith(b"\r\n"), got
        return got[:-2]

    def block(self) -> list[bytes]:
        """The lines of a multi-line data block, still dot-stuffed, without the ``.`` line."""
        lines = []
        while (got := self.line()) != b".":
            lines.append(got)
        return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.line()

    def close(self) -> None:
        """QUIT and wait for the 205 (or the end): then the server is done with the session."""
        try:
            self.send(b"QUIT\r\n")
            while (got := self.file.readline()) and not got.startswith(b"205 "):
                pass
        except OSError:
            pass
        finally:
            self.file.close()
            self.sock.close()

    def drop(self) -> None:
        """Go away without a word, resetting the connection (no FIN, no QUIT)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Dialogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
