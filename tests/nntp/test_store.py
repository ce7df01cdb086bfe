"""The article store: articles and numbering survive a restart; a crash leaves no half article."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from seo_core.sources.nntp.article import split_fields
from seo_core.sources.nntp.store import MAX_NUMBER, ArticleStore, DuplicateArticle
from tests.nntp.conftest import Dialogue, Serve, article, connect, nntplib, post


def test_articles_and_numbering_survive_a_restart(serve: Serve, store: Path) -> None:
    with serve() as news:
        first = post(news.port, article(subject="one")).split()[-1]
        second = post(news.port, article(groups="local.test,local.announce")).split()[-1]
        with connect(news.port) as client:
            client.group("local.test")
            before = [client.article(n)[1].lines for n in (1, 2)]

        news.restart()

        with connect(news.port) as client:
            assert client.group("local.announce")[1:4] == (1, 1, 1)
            assert client.group("local.test")[1:4] == (2, 1, 2)
            assert [client.article(n)[1].lines for n in (1, 2)] == before
            assert client.stat(first)[2] == first
            third = client.post(iter([article(subject="three")]))
            client.group("local.test")
            assert client.stat(3)[2] == third.split()[-1]
        with Dialogue(news.port) as talk:
            assert talk.command(b"IHAVE " + second.encode()).startswith(b"435 ")
        with pytest.raises(nntplib.NNTPTemporaryError, match=r"^441 duplicate"):
            post(news.port, article(extra=f"Message-ID: {first}\r\n".encode()))
    assert (store / "index.sqlite3").exists()
    assert sorted(p.name for p in (store / "articles" / "0").iterdir()) == [
        "1.art",
        "2.art",
        "3.art",
    ]


def test_concurrent_posts_get_distinct_numbers_and_a_duplicate_wins_once(serve: Serve) -> None:
    def attempt(data: bytes) -> str:
        try:
            return post(news.port, data)
        except nntplib.NNTPTemporaryError as exc:
            return str(exc)

    with serve() as news:
        with ThreadPoolExecutor(10) as pool:
            replies = list(pool.map(attempt, [article(subject=f"n{n}") for n in range(30)]))
        assert all(r.startswith("240 ") for r in replies)
        with connect(news.port) as client:
            assert client.group("local.test")[1:4] == (30, 1, 30)
            _, overview = client.over((1, 30))
        assert sorted(fields["subject"] for _, fields in overview) == sorted(
            f"n{n}" for n in range(30)
        )

        same = article(extra=b"Message-ID: <race@client.example>\r\n")
        with ThreadPoolExecutor(10) as pool:
            replies = list(pool.map(attempt, [same] * 10))
        assert sorted(r.split()[0] for r in replies) == ["240"] + ["441"] * 9


def test_a_group_added_to_the_config_starts_empty(serve: Serve, store: Path) -> None:
    with serve() as news:
        post(news.port, article())
    with serve(groups=["local.test", "local.new"]) as news, connect(news.port) as client:
        assert client.group("local.new")[1:4] == (0, 1, 0)
        assert client.group("local.test")[1:4] == (1, 1, 1)
        with pytest.raises(nntplib.NNTPTemporaryError, match=r"^411 "):
            client.group("local.announce")  # still in the index, no longer carried


FIELDS = split_fields(b"From: a@example.com\r\nNewsgroups: g\r\nSubject: s\r\n")


async def _open(root: Path) -> ArticleStore:
    store = ArticleStore(root)
    await store.call(store.open, ["g"])
    return store


def test_a_file_left_by_a_crash_before_the_commit_is_replaced(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        store = await _open(tmp_path)
        (tmp_path / "articles" / "0").mkdir()
        (tmp_path / "articles" / "0" / "1.art").write_bytes(b"half an article from before")
        (tmp_path / "incoming" / "1.art").write_bytes(b"half")
        await store.aclose()
        store = await _open(tmp_path)
        assert list((tmp_path / "incoming").iterdir()) == []
        stored = await store.call(store.store, FIELDS, b"body\r\n", "<1@x>", ["g"], "h")
        ref = await store.call(store.by_number, "g", 1)
        assert ref is not None
        data = await store.call(store.read, ref)
        await store.aclose()
        assert data == stored.data
        return data

    data = asyncio.run(scenario())
    assert data.endswith(b"Xref: h g:1\r\n\r\nbody\r\n")


def test_a_failed_store_takes_no_number(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await _open(tmp_path)
        await store.call(store.store, FIELDS, b"one\r\n", "<1@x>", ["g"], "h")
        with pytest.raises(DuplicateArticle):
            await store.call(store.store, FIELDS, b"two\r\n", "<1@x>", ["g"], "h")
        incoming = tmp_path / "incoming"
        incoming.rename(tmp_path / "away")
        incoming.write_bytes(b"")  # the article file cannot be written, so the index is not
        try:
            with pytest.raises(NotADirectoryError):
                await store.call(store.store, FIELDS, b"three\r\n", "<3@x>", ["g"], "h")
        finally:
            incoming.unlink()
            (tmp_path / "away").rename(incoming)
        stored = await store.call(store.store, FIELDS, b"four\r\n", "<4@x>", ["g"], "h")
        assert stored.numbers == {"g": 2}
        info = await store.call(store.group, "g")
        assert info is not None
        assert (info.count, info.low, info.high) == (2, 1, 2)
        await store.aclose()

    asyncio.run(scenario())


def test_numbers_sqlite_cannot_hold_name_no_article(tmp_path: Path) -> None:
    """Lookups take any int: past SQLite's INTEGER (or below 1) there is simply no article."""

    async def scenario() -> None:
        store = await _open(tmp_path)
        for n in (1, 2):
            await store.call(store.store, FIELDS, b"body\r\n", f"<{n}@x>", ["g"], "h")
        for number in (MAX_NUMBER, MAX_NUMBER + 1, 10**30, 0, -1, -(10**30)):
            assert await store.call(store.by_number, "g", number) is None
        assert await store.call(store.numbers, "g", -(10**30), 10**30) == [1, 2]
        assert await store.call(store.numbers, "g", 2, MAX_NUMBER + 1) == [2]
        assert await store.call(store.numbers, "g", MAX_NUMBER + 1, 10**30) == []
        assert await store.call(store.numbers, "g", -5, 0) == []
        overview = await store.call(store.overview, "g", 0, 10**30)
        assert [n for n, _ in overview] == [1, 2]
        assert await store.call(store.overview, "g", 10**30, 10**31) == []
        await store.aclose()

    asyncio.run(scenario())


def test_the_index_records_its_schema_version(tmp_path: Path) -> None:
    async def open_and_close() -> None:
        await (await _open(tmp_path)).aclose()

    asyncio.run(open_and_close())
    with sqlite3.connect(tmp_path / "index.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
