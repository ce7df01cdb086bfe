"""The strict block reader and the small parsers of the protocol, without a socket."""

from __future__ import annotations

import pytest

from seo_core.sources.nntp.article import ArticleError, split_fields, split_newsgroups
from seo_core.sources.nntp.block import BlockReader
from seo_core.sources.nntp.protocol import parse_range, wildmat


def feed(reader: BlockReader, *pieces: bytes) -> list[bool]:
    return [reader.feed(piece) for piece in pieces]


def lines(data: bytes) -> list[bytes]:
    """``data`` cut as ``StreamReader.readuntil(b"\\n")`` cuts it."""
    return [line + b"\n" for line in data.split(b"\n")[:-1]]


class TestBlockReader:
    def test_headers_body_and_the_end(self) -> None:
        reader = BlockReader(1000)
        assert feed(reader, *lines(b"A: 1\r\nB: 2\r\n\r\nbody\r\n.\r\n")) == [
            False,
            False,
            False,
            False,
            True,
        ]
        assert (reader.headers, reader.body, reader.size) == (b"A: 1\r\nB: 2\r\n", b"body\r\n", 20)
        assert not reader.faulty

    def test_headers_complete_is_known_before_the_body(self) -> None:
        reader = BlockReader(1000)
        feed(reader, b"A: 1\r\n")
        assert not reader.headers_complete
        feed(reader, b"\r\n")
        assert reader.headers_complete
        assert (reader.headers, reader.body) == (b"A: 1\r\n", b"")

    @pytest.mark.parametrize(
        ("pieces", "bare"),
        [
            ((b"abc\r", b"\n"), False),
            ((b"abc\r", b"d\r\n"), True),
            ((b"abc", b"\r\n"), False),
            ((b"abc", b"\n"), True),
            ((b"a\rb\r\n",), True),
            ((b"\n",), True),
            ((b".\n",), True),
        ],
        ids=["cr|lf", "cr|other", "text|crlf", "text|lf", "inner-cr", "lone-lf", "dot-lf"],
    )
    def test_line_endings_across_pieces(self, pieces: tuple[bytes, ...], bare: bool) -> None:
        reader = BlockReader(1000)
        feed(reader, *pieces)
        assert reader.bare_line_ending is bare

    def test_the_end_needs_crlf_before_and_after_the_dot(self) -> None:
        reader = BlockReader(1000)
        assert feed(reader, b"x\n", b".\r\n", b".\n", b"y\r\n", b".\r\n") == [
            False,
            False,
            False,
            False,
            True,
        ]
        assert reader.bare_line_ending

    def test_the_end_may_come_first(self) -> None:
        reader = BlockReader(1000)
        assert reader.feed(b".\r\n")
        assert (reader.headers, reader.size) == (b"", 0)

    def test_dot_stuffing_is_undone_once_per_line_only_at_its_start(self) -> None:
        reader = BlockReader(1000)
        feed(reader, b"..A: 1\r\n", b"\r\n", b"...\r\n", b"x" * 10, b".y\r\n", b".\r\n")
        assert reader.headers == b".A: 1\r\n"
        assert reader.body == b"..\r\n" + b"x" * 10 + b".y\r\n"

    def test_over_the_limit_nothing_more_is_kept(self) -> None:
        reader = BlockReader(10)
        feed(reader, b"0123456789\r\n", b"more\r\n")
        assert reader.too_big
        assert reader.headers == b""
        assert reader.size == 18


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*", "local.test", True),
        ("local.*", "local.test", True),
        ("local.*,!*.test", "local.test", False),
        ("!*.test,local.*", "local.test", True),
        ("loc?l.test", "local.test", True),
        ("local.[st]est", "local.test", True),
        ("local.[^t]est", "local.test", False),
        ("LOCAL.*", "local.test", False),
        ("comp.*", "local.test", False),
    ],
)
def test_wildmat(pattern: str, name: str, matches: bool) -> None:
    assert wildmat(pattern, name) is matches


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5, 5)),
        ("5-", (5, 9)),
        ("5-7", (5, 7)),
        ("12-", (12, 12)),
        ("007-08", (7, 8)),
        ("1-" + "9" * 30, (1, int("9" * 30))),
        ("9" * 30 + "-", (int("9" * 30), int("9" * 30))),
        ("x", None),
        ("5-x", None),
        ("", None),
        ("-", None),
        ("-5", None),
        ("+5", None),
        ("5-+7", None),
        ("5--7", None),
        ("5-7-", None),
        (" 5", None),
        ("\N{SUPERSCRIPT TWO}", None),
        ("1-\N{ARABIC-INDIC DIGIT THREE}", None),
    ],
)
def test_parse_range(text: str, expected: tuple[int, int] | None) -> None:
    """Huge numbers are numbers (the store answers for them); signs and non-ASCII digits not."""
    assert parse_range(text, 9) == expected


def test_split_fields_keeps_folding() -> None:
    fields = split_fields(b"Subject: one\r\n  two\r\nFrom: a@b\r\n")
    assert [(f.name, f.value) for f in fields] == [("Subject", "one  two"), ("From", "a@b")]
    assert fields[0].raw == b"Subject: one\r\n  two\r\n"
    with pytest.raises(ArticleError):
        split_fields(b"no colon here\r\n")


def test_split_newsgroups() -> None:
    assert split_newsgroups(" a.b ,c.d,,a.b ") == ["a.b", "c.d"]
    assert split_newsgroups(None) == []
