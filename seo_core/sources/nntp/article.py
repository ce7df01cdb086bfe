"""Articles as bytes: header fields, the headers the server adds, overview data, a message view.

An article is stored as the client sent it, plus the headers the server is responsible for
(RFC 5537, 3.5): ``Path`` (this server's name prepended), ``Message-ID`` and ``Date`` when absent,
and ``Xref`` (the groups and numbers it was filed under, set by the store). Header fields are kept
as raw bytes, folding and all, rather than round-tripped through :mod:`email`, so nothing the
server does not own is ever rewritten. Sinks get an :class:`~email.message.EmailMessage` view to
read; changes to it do not alter the stored article (OnPost may change where an article is filed,
not what it says).
"""

from __future__ import annotations

import email
import email.policy
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

CRLF = b"\r\n"
PARSE_POLICY = email.policy.SMTP.clone(refold_source="none", max_line_length=0)

_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")
_MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>$")
MAX_MESSAGE_ID = 250
"""Octets (RFC 5536, 3.1.3)."""


class ArticleError(ValueError):
    """The article is not acceptable as it is; the message is what the client is told."""


@dataclass(frozen=True, slots=True)
class Field:
    """One header field: its name as written and its raw lines (folding kept, CRLF included)."""

    name: str
    raw: bytes

    @property
    def value(self) -> str:
        """The unfolded value, surrounding white space removed; invalid UTF-8 kept escaped."""
        text = self.raw.partition(b":")[2].decode("utf-8", "surrogateescape")
        return re.sub(r"\r\n(?=[ \t])", "", text).strip()


def split_fields(block: bytes) -> list[Field]:
    """The fields of a header block whose lines end with CRLF.

    A line starting with white space continues the field before it. A first line that does, or
    a line without a valid ``name:``, makes the article malformed.
    """
    fields: list[Field] = []
    lines = block.split(CRLF)
    if lines[-1] == b"":
        lines.pop()  # after the last CRLF, or an empty block
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise ArticleError("malformed header: the first line is a continuation")
            last = fields[-1]
            fields[-1] = Field(last.name, last.raw + line + CRLF)
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not _NAME.match(name):
            shown = line[:40].decode("ascii", "replace")
            raise ArticleError(f"malformed header line {shown!r}")
        fields.append(Field(name.decode("ascii"), line + CRLF))
    return fields


def value_of(fields: list[Field], name: str) -> str | None:
    """The value of the first field called ``name`` (any case), or ``None``."""
    wanted = name.lower()
    for found in fields:
        if found.name.lower() == wanted:
            return found.value
    return None


def make_field(name: str, value: str) -> Field:
    return Field(name, f"{name}: {value}".encode("utf-8", "surrogateescape") + CRLF)


def valid_message_id(text: str) -> bool:
    """``<left@right>`` in printable ASCII, no white space or angle brackets inside, <= 250."""
    return len(text) <= MAX_MESSAGE_ID and _MESSAGE_ID.match(text) is not None


def new_message_id(hostname: str) -> str:
    """Unique without coordination: the time, then randomness, at this server's name."""
    return f"<{time.time_ns():x}.{secrets.token_hex(6)}@{hostname}>"


def split_newsgroups(value: str | None) -> list[str]:
    """``a.b, c.d`` -> ``["a.b", "c.d"]``: comma-separated, stripped, empty and repeats dropped."""
    if not value:
        return []
    return list(dict.fromkeys(g.strip() for g in value.split(",") if g.strip()))


def inject(fields: list[Field], *, hostname: str, message_id: str) -> list[Field]:
    """The fields with the server's own: Path, and Message-ID and Date when absent.

    ``Path`` gets this server prepended where the client put it (added first when it had none).
    An ``Xref`` from the client is dropped: only the store knows where the article is filed.
    """
    result: list[Field] = []
    has_path = False
    for found in fields:
        lower = found.name.lower()
        if lower == "path":
            has_path = True
            result.append(make_field(found.name, f"{hostname}!{found.value}"))
        elif lower != "xref":
            result.append(found)
    if not has_path:
        result.insert(0, make_field("Path", f"{hostname}!not-for-mail"))
    if value_of(result, "Message-ID") is None:
        result.append(make_field("Message-ID", message_id))
    if value_of(result, "Date") is None:
        result.append(make_field("Date", format_datetime(datetime.now(UTC), usegmt=True)))
    return result


def render(fields: list[Field]) -> bytes:
    return b"".join(f.raw for f in fields)


def xref_field(hostname: str, numbers: dict[str, int]) -> Field:
    return make_field("Xref", " ".join([hostname, *(f"{g}:{n}" for g, n in numbers.items())]))


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview fields of one article (LIST OVERVIEW.FMT order), as OVER sends them."""

    subject: str
    from_: str
    date: str
    message_id: str
    references: str
    size: int
    """``:bytes``: octets of the article as stored."""
    lines: int
    """``:lines``: lines of its body."""

    @classmethod
    def of(cls, fields: list[Field], size: int, body: bytes) -> Overview:
        def get(name: str) -> str:
            return _overview_text(value_of(fields, name) or "")

        return cls(
            subject=get("Subject"),
            from_=get("From"),
            date=get("Date"),
            message_id=get("Message-ID"),
            references=get("References"),
            size=size,
            lines=body.count(CRLF) + (0 if not body or body.endswith(CRLF) else 1),
        )

    def line(self, number: int) -> str:
        return "\t".join(
            [
                str(number),
                self.subject,
                self.from_,
                self.date,
                self.message_id,
                self.references,
                str(self.size),
                str(self.lines),
            ]
        )


OVERVIEW_FORMAT = ("Subject:", "From:", "Date:", "Message-ID:", "References:", ":bytes", ":lines")


def _overview_text(value: str) -> str:
    """RFC 3977, 8.3.2: tabs, CRs and LFs in an overview field become spaces.

    Header bytes that are not UTF-8 (legacy 8-bit subjects) become U+FFFD here, in the index
    only; the stored article keeps its bytes.
    """
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def parse_message(data: bytes) -> EmailMessage:
    """The read-only view sinks get of an article (or of its headers alone)."""
    message = email.message_from_bytes(data, policy=PARSE_POLICY)
    assert isinstance(message, EmailMessage)
    return message
