"""The article store of an NNTP source: one file per article and an index in SQLite.

Layout under the source's ``store`` folder::

    index.sqlite3   groups (low and high water marks), articles (Message-ID, overview fields)
                    and the number of each article in each group it is filed in
    articles/       the articles: <row // 1000>/<row>.art, ``row`` being the article's index row
    incoming/       files being written (cleared at start)

Storing an article is one transaction. Its numbers are taken from the groups' high water marks
(the write lock is held from the start, so two posts never get one number), the file is written
to ``incoming/``, fsynced and renamed into ``articles/``, and the index rows are committed last.
A crash before the commit leaves no trace in the index; the file it may leave behind carries the
row id the next article gets, and that article's file replaces it. Message-IDs are unique in the
index, which is what refuses a duplicate even when two copies race each other.

Every call runs on the store's own single worker thread (:meth:`ArticleStore.call`): SQLite and
the disk never block the event loop, and the one connection is only ever used from one thread.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from seo_core.sources.nntp.article import CRLF, Field, Overview, render, xref_field

P = ParamSpec("P")
T = TypeVar("T")

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "create groups, articles and numbers",
        """
        CREATE TABLE groups (
            name TEXT PRIMARY KEY,
            low INTEGER NOT NULL DEFAULT 1,
            high INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE articles (
            row INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            subject TEXT NOT NULL,
            from_ TEXT NOT NULL,
            date TEXT NOT NULL,
            refs TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            lines INTEGER NOT NULL,
            stored_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE numbers (
            grp TEXT NOT NULL REFERENCES groups (name),
            number INTEGER NOT NULL,
            row INTEGER NOT NULL REFERENCES articles (row),
            PRIMARY KEY (grp, number)
        ) WITHOUT ROWID;
        CREATE INDEX numbers_by_row ON numbers (row);
        """,
    ),
)
"""Ordered schema changes; ``PRAGMA user_version`` records how many are applied."""

MAX_NUMBER = 2**63 - 1
"""The highest article number: SQLite's largest INTEGER.

RFC 3977 (section 6) keeps article numbers within 2,147,483,647 but lets a server go to 63 bits;
taking SQLite's bound means every number the store can hand out can also be asked for. Clients
may name any number at all, and SQLite raises on an integer beyond this, so every lookup by a
client's number goes through :func:`_within` first.
"""


class DuplicateArticle(Exception):
    """An article with this Message-ID is already stored."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"duplicate article {message_id}")
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group as GROUP and LIST ACTIVE report it. An empty group has ``high == low - 1``."""

    name: str
    count: int
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class ArticleRef:
    """Where an article is: its index row, its number (0 when found by Message-ID), its id."""

    row: int
    number: int
    message_id: str


@dataclass(frozen=True, slots=True)
class Stored:
    """An article just stored: where it was filed and the bytes on disk."""

    row: int
    message_id: str
    numbers: dict[str, int]
    data: bytes


class ArticleStore:
    """The store folder of one NNTP source. Use :meth:`call` to run any method."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.articles = root / "articles"
        self.incoming = root / "incoming"
        self.index_path = root / "index.sqlite3"
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- running ---------------------------------------------------------------------------

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the store's worker thread and wait for it."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"seo-store-{self.root.name}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def open(self, groups: Sequence[str]) -> None:
        """Create the folders and the index, clear half-written files, carry ``groups``."""
        for folder in (self.root, self.articles, self.incoming):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)
        db = sqlite3.connect(self.index_path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        self._db = db
        self._migrate()
        with self._transaction():
            db.executemany("INSERT OR IGNORE INTO groups (name) VALUES (?)", [(g,) for g in groups])

    def close(self) -> None:
        """Close the index; runs on the worker thread (:meth:`aclose` is how to call it)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    async def aclose(self) -> None:
        """Close the index on the worker thread, then let the thread go."""
        if self._executor is None:
            return
        await self.call(self.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the article store {self.root} is not open")
        return self._db

    def _migrate(self) -> None:
        (applied,) = self.db.execute("PRAGMA user_version").fetchone()
        for version, (_name, script) in enumerate(MIGRATIONS[applied:], start=applied + 1):
            with self._transaction():
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` takes the write lock at once: numbers read are numbers kept."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------

    def group(self, name: str) -> GroupInfo | None:
        row = self.db.execute(
            "SELECT g.low, g.high, (SELECT count(*) FROM numbers WHERE grp = g.name)"
            " FROM groups AS g WHERE g.name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        low, high, count = row
        return GroupInfo(name, count, low, high)

    def groups(self, names: Sequence[str]) -> list[GroupInfo]:
        """The groups among ``names`` that the index carries, in the order given."""
        return [info for info in map(self.group, names) if info is not None]

    def has(self, message_id: str) -> bool:
        found = self.db.execute("SELECT 1 FROM articles WHERE message_id = ?", (message_id,))
        return found.fetchone() is not None

    def by_number(self, group: str, number: int) -> ArticleRef | None:
        if _within(number, number) is None:
            return None
        row = self.db.execute(
            "SELECT a.row, a.message_id FROM numbers AS n JOIN articles AS a USING (row)"
            " WHERE n.grp = ? AND n.number = ?",
            (group, number),
        ).fetchone()
        return None if row is None else ArticleRef(row[0], number, row[1])

    def by_message_id(self, message_id: str) -> ArticleRef | None:
        row = self.db.execute(
            "SELECT row FROM articles WHERE message_id = ?", (message_id,)
        ).fetchone()
        return None if row is None else ArticleRef(row[0], 0, message_id)

    def neighbour(self, group: str, number: int, *, after: bool) -> ArticleRef | None:
        """The article after (or before) ``number`` in ``group``: NEXT and LAST."""
        sql = (
            "SELECT n.number, a.row, a.message_id FROM numbers AS n JOIN articles AS a USING (row)"
            " WHERE n.grp = ? AND n.number {} ? ORDER BY n.number {} LIMIT 1"
        ).format(*((">", "ASC") if after else ("<", "DESC")))
        row = self.db.execute(sql, (group, number)).fetchone()
        return None if row is None else ArticleRef(row[1], row[0], row[2])

    def numbers(self, group: str, low: int, high: int) -> list[int]:
        span = _within(low, high)
        if span is None:
            return []
        rows = self.db.execute(
            "SELECT number FROM numbers WHERE grp = ? AND number BETWEEN ? AND ? ORDER BY number",
            (group, *span),
        )
        return [number for (number,) in rows]

    def overview(self, group: str, low: int, high: int) -> list[tuple[int, Overview]]:
        span = _within(low, high)
        if span is None:
            return []
        rows = self.db.execute(
            "SELECT n.number, a.subject, a.from_, a.date, a.message_id, a.refs, a.bytes, a.lines"
            " FROM numbers AS n JOIN articles AS a USING (row)"
            " WHERE n.grp = ? AND n.number BETWEEN ? AND ? ORDER BY n.number",
            (group, *span),
        )
        return [(row[0], Overview(*row[1:])) for row in rows]

    def overview_of(self, message_id: str) -> Overview | None:
        row = self.db.execute(
            "SELECT subject, from_, date, message_id, refs, bytes, lines FROM articles"
            " WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else Overview(*row)

    def read(self, ref: ArticleRef) -> bytes:
        return self._path(ref.row).read_bytes()

    # -- storing ---------------------------------------------------------------------------

    def store(
        self, fields: list[Field], body: bytes, message_id: str, groups: Sequence[str], host: str
    ) -> Stored:
        """File an article in ``groups`` (all carried here), durably, in one transaction.

        Raises :class:`DuplicateArticle` when its Message-ID is already stored.
        """
        db = self.db
        with self._transaction():
            numbers: dict[str, int] = {}
            for group in groups:
                (high,) = db.execute("SELECT high FROM groups WHERE name = ?", (group,)).fetchone()
                numbers[group] = high + 1
            head = [*fields, xref_field(host, numbers)]
            data = render(head) + CRLF + body
            overview = Overview.of(head, len(data), body)
            try:
                cursor = db.execute(
                    "INSERT INTO articles (message_id, subject, from_, date, refs, bytes, lines)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        message_id,
                        overview.subject,
                        overview.from_,
                        overview.date,
                        overview.references,
                        overview.size,
                        overview.lines,
                    ),
                )
            except sqlite3.IntegrityError:
                raise DuplicateArticle(message_id) from None
            row = cursor.lastrowid
            assert row is not None
            self._write(row, data)
            for group, number in numbers.items():
                db.execute("UPDATE groups SET high = ? WHERE name = ?", (number, group))
                db.execute(
                    "INSERT INTO numbers (grp, number, row) VALUES (?, ?, ?)", (group, number, row)
                )
        return Stored(row, message_id, numbers, data)

    def _path(self, row: int) -> Path:
        return self.articles / str(row // 1000) / f"{row}.art"

    def _write(self, row: int, data: bytes) -> None:
        """Write the file of article ``row`` durably: temporary file, fsync, rename, fsync."""
        final = self._path(row)
        folder = final.parent
        if not folder.exists():
            folder.mkdir(mode=0o700)
            _fsync_folder(self.articles)
        temporary = self.incoming / final.name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, final)
        _fsync_folder(folder)


def _within(low: int, high: int) -> tuple[int, int] | None:
    """``low..high`` cut to the numbers an article can have (1 to :data:`MAX_NUMBER`).

    ``None`` when nothing is left: the range selects no article, and SQLite need not be asked
    about numbers it cannot even hold.
    """
    low, high = max(low, 1), min(high, MAX_NUMBER)
    return (low, high) if low <= high else None


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
