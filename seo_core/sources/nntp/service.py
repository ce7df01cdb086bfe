"""One running NNTP source: its listener, its article store and its dispatcher."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import TYPE_CHECKING, Any

import structlog

from seo_core.sources.nntp.protocol import NntpSession
from seo_core.sources.nntp.settings import NntpSettings
from seo_core.sources.nntp.store import ArticleStore

if TYPE_CHECKING:
    from seo_core.dispatcher import Dispatcher

log = structlog.get_logger("seo.nntp")


class NntpSource:
    """An NNTP virtual server: ``start()`` listens, ``stop()`` winds it down gracefully."""

    def __init__(self, settings: NntpSettings, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.name = settings.name
        self.dispatcher = dispatcher
        self.store = ArticleStore(settings.store)
        self.carried = frozenset(settings.groups)
        """The groups this server carries: the config's ``groups``."""
        self.sessions: set[NntpSession] = set()
        self._server: asyncio.Server | None = None
        self._session_ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)

    def new_session_id(self) -> str:
        return f"{self._prefix}-{next(self._session_ids)}"

    async def start(self) -> None:
        """Open the store (creating the configured groups) and start listening."""
        try:
            await self.store.call(self.store.open, self.settings.groups)
            self._server = await asyncio.start_server(
                self._serve, host=self.settings.host, port=self.settings.port
            )
        except BaseException:
            await self.store.aclose()  # its worker thread must not outlive a failed start
            raise
        log.info(
            "nntp_listening",
            source=self.name,
            address=self.address,
            groups=list(self.settings.groups),
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = NntpSession(self, reader, writer)
        self.sessions.add(session)
        try:
            await session.run()
        except asyncio.CancelledError:
            # stop() cut the session short. asyncio reads task.exception() of a connection
            # task when it ends, which would raise on a cancelled one: end quietly instead.
            pass
        finally:
            self.sessions.discard(session)

    @property
    def address(self) -> str:
        """Where it listens; the real port when the settings asked for port 0."""
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self.settings.address

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def hurry(self) -> None:
        """Stop now (a second Ctrl-C): cut the commands still in progress."""
        for session in list(self.sessions):
            if session.task is not None:
                session.task.cancel()

    async def stop(self, deadline: float | None = None) -> None:
        """Stop accepting; close idle sessions; let a command in progress finish for up to
        ``deadline`` seconds (the settings' ``shutdown_timeout`` by default), then cut it.

        An article whose reply was not sent may or may not be stored (a store in progress is
        always completed or not at all); a client that got 240 has its article on disk.
        """
        timeout = self.settings.shutdown_timeout if deadline is None else deadline
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.shut_down()
        tasks = [s.task for s in self.sessions if s.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await self.store.aclose()
        log.info("nntp_stopped", source=self.name)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "address": self.address, "groups": list(self.settings.groups)}
