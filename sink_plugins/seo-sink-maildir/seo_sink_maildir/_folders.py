"""Where a recipient's mail goes: ``<root>/<domain>/<local part>``, never outside ``root``.

Both names are canonical, so every spelling of one address finds one mailbox: the domain in
lower case with IDNA A-labels (``bücher.example`` is ``xn--bcher-kva.example``), the local part
unquoted and in lower case. Then each name is made safe as one folder name: a character outside
``a-z 0-9 + - . = _ ~`` is percent-encoded (its UTF-8 bytes as ``%XX``), and so is a leading dot,
so a name never holds ``/``, a NUL or a backslash and is never ``.`` or ``..``. The encoding is
one-to-one (``%`` itself is encoded), so two addresses never share a folder by accident.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

NAME_MAX = 255
"""Bytes in one folder name on the usual file systems; a longer name is refused up front."""

_SAFE = frozenset(string.ascii_lowercase + string.digits + "+-.=_~")
# Full stops that IDNA treats as label separators (ideographic, full-width, half-width).
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


class RecipientError(ValueError):
    """A recipient that names no mailbox this sink can make (no domain, empty local part)."""


def mailbox_path(root: str | os.PathLike[str], recipient: str) -> Path:
    """The Maildir folder of ``recipient`` under ``root``; raises :class:`RecipientError`.

    ``recipient`` may be bare (``alice@example.com``) or in angle brackets, with a source route
    (``@relay.example:alice@example.com``, dropped) or a quoted local part
    (``"a b"@example.com``). The domain is the text after the last ``@``.
    """
    text = recipient.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@"):
        _route, colon, mailbox = text.partition(":")
        if colon:
            text = mailbox
    local, at, domain = text.rpartition("@")
    if not at:
        raise RecipientError(f"{recipient!r} has no domain")
    domain_folder = _folder_name(_canonical_domain(domain), "domain", recipient)
    local_folder = _folder_name(_unquote(local).lower(), "local part", recipient)
    return Path(root) / domain_folder / local_folder


def _canonical_domain(domain: str) -> str:
    """Lower case, no trailing dot, each label an IDNA A-label where the codec accepts it.

    The same canonical form as the framework's rules (a label the codec refuses is case-folded),
    so a ``rcpt to=*@bücher.example`` rule and this sink agree on a recipient's domain.
    """
    text = domain.strip().translate(_IDNA_DOTS).rstrip(".")
    if text.isascii():
        return text.lower()
    return ".".join(_a_label(label) for label in text.split("."))


def _a_label(label: str) -> str:
    if label.isascii():
        return label.lower()
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return label.casefold()


def _unquote(local: str) -> str:
    """``"a\\"b"`` is the mailbox ``a"b``: the same one as the unquoted spelling, if any."""
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        return _QUOTED_PAIR.sub(r"\1", local[1:-1])
    return local


def _folder_name(name: str, what: str, recipient: str) -> str:
    if not name:
        raise RecipientError(f"{recipient!r} has an empty {what}")
    safe = "".join(char if char in _SAFE else _percent(char) for char in name)
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    if len(safe) > NAME_MAX:
        raise RecipientError(f"the {what} of {recipient!r} is too long for a folder name")
    return safe


def _percent(char: str) -> str:
    # surrogatepass: a lone surrogate (undecodable input) still gets one fixed spelling.
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
