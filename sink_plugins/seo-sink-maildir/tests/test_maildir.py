"""The maildir sink, installed, found by its entry point and fired by the real dispatcher."""

from __future__ import annotations

import base64
import email
import email.policy
import errno
import importlib
import os
import re
import resource
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import seo_sink_maildir
from click.testing import CliRunner
from seo_sink_maildir import mailbox_path

from seo_core.cli import cli
from seo_core.dispatcher import Dispatcher, DispatchResult
from seo_core.metabase import BindingSpec, Metabase
from seo_core.registry import SinkRegistry
from seo_core.sdk import DeliveryEvent, PropertyValue

SOURCE_TREE = Path(__file__).resolve().parents[1]
NAME = re.compile(r"(\d+)\.M(\d{1,6})P(\d+)Q(\d+)R([0-9a-f]{16})\.(.+)")

REAL_FSYNC = os.fsync
REAL_LINK = os.link


class Store:
    """One StoreDriver binding to the maildir sink, and a way to fire it."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.result = DispatchResult()

    def deliver(
        self,
        recipient: str,
        message: EmailMessage | None = None,
        *,
        raw: bytes | None = None,
        source_flushes: bool = False,
        resumed: bool = False,
        message_id: str = "m-1",
        mail_from: str = "sender@example.org",
    ) -> DeliveryEvent:
        event = DeliveryEvent(
            source="smtp/1",
            name="StoreDriver",
            message_id=message_id,
            message=message if message is not None else plain_message(),
            mail_from=mail_from,
            recipients=[recipient],
            recipient=recipient,
            raw=raw,
            source_flushes=source_flushes,
            resumed=resumed,
        )
        self.result = self.dispatcher.notify_sync(event)
        return event


Bind = Callable[..., Store]


@pytest.fixture(scope="module")
def registry() -> SinkRegistry:
    return SinkRegistry.discover()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def bind(tmp_path: Path, registry: SinkRegistry, root: Path) -> Iterator[Bind]:
    """``bind(**sink_properties)``: a fresh metabase with one binding; ``root`` by default."""
    opened: list[tuple[Metabase, Dispatcher]] = []

    def make(timeout: float | None = None, **sink_properties: PropertyValue) -> Store:
        sink_properties.setdefault("root", str(root))
        metabase = Metabase.open(tmp_path / f"metabase-{len(opened)}.db")
        metabase.add_binding(
            BindingSpec(
                source="smtp/1",
                event="StoreDriver",
                sink_class="maildir",
                display_name="Local",
                sink_properties=sink_properties,
                binding_properties={} if timeout is None else {"Timeout": timeout},
            )
        )
        dispatcher = Dispatcher("smtp/1", metabase, registry)
        opened.append((metabase, dispatcher))
        return Store(dispatcher)

    yield make
    for metabase, dispatcher in opened:
        dispatcher.close()
        metabase.close()


@pytest.fixture
def store(bind: Bind) -> Store:
    return bind()


def plain_message(body: str = "Hello Alice.\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.org"
    message["To"] = "alice@example.com"
    message["Subject"] = "hello"
    message.set_content(body)
    return message


def files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def everything_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def delivered(event: DeliveryEvent, store: Store) -> Path:
    """The file the sink reported, after checking that it reported success and nothing else."""
    assert store.result.failed == 0
    assert store.result.timed_out == 0
    assert event.failure is None, event.failure
    assert event.stored_at is not None
    return Path(event.stored_at)


def message_in(path: Path) -> bytes:
    """The message a delivered file holds, under the ``Return-Path:`` line the sink puts first."""
    return_path, _, message = path.read_bytes().partition(b"\n")
    assert return_path == b"Return-Path: <sender@example.org>"
    return message


# -- discovery and the basic delivery -----------------------------------------------------


def test_is_discovered_from_the_installed_distribution(registry: SinkRegistry) -> None:
    info = registry.resolve("maildir")
    assert info.distribution == "seo-sink-maildir"
    assert info.events == ("StoreDriver",)
    assert info.target is seo_sink_maildir.MaildirSink
    installed = Path(seo_sink_maildir.__file__).resolve()
    assert not installed.is_relative_to(SOURCE_TREE), "testing the source tree, not the install"


def test_delivers_into_new_and_leaves_tmp_empty(store: Store, root: Path) -> None:
    message = plain_message()
    event = store.deliver("alice@example.com", message)
    path = delivered(event, store)
    mailbox = root / "example.com" / "alice"
    assert path.parent == mailbox / "new"
    assert files(mailbox / "new") == [path]
    assert files(mailbox / "tmp") == []
    assert files(mailbox / "cur") == []
    assert NAME.fullmatch(path.name)
    assert message_in(path) == message.as_bytes(policy=email.policy.default)
    assert b"\r\n" not in path.read_bytes()


@pytest.mark.parametrize(
    ("mail_from", "line"),
    [
        ("sender@example.org", b"Return-Path: <sender@example.org>\n"),
        ("", b"Return-Path: <>\n"),  # a bounce: nowhere to send one back
        ("jos\u00e9@exampl\u00e9.org", "Return-Path: <jos\u00e9@exampl\u00e9.org>\n".encode()),
    ],
    ids=["sender", "null sender", "SMTPUTF8 sender"],
)
def test_the_file_starts_with_the_envelope_sender_as_return_path(
    store: Store, mail_from: str, line: bytes
) -> None:
    message = plain_message()
    path = delivered(store.deliver("alice@example.com", message, mail_from=mail_from), store)
    assert path.read_bytes() == line + message.as_bytes(policy=email.policy.default)


def test_folders_are_private_and_files_get_exactly_the_mode_asked_for(
    bind: Bind, root: Path
) -> None:
    old_umask = os.umask(0o077)  # the mode is set exactly, whatever the umask
    try:
        store = bind(mode=0o640)
        path = delivered(store.deliver("alice@example.com"), store)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    mailbox = root / "example.com" / "alice"
    for folder in (root / "example.com", mailbox, *(mailbox / n for n in ("tmp", "new", "cur"))):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_message_files_are_0600_by_default(store: Store) -> None:
    path = delivered(store.deliver("alice@example.com"), store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_delivery_gets_its_own_unique_name(store: Store, root: Path) -> None:
    paths = [delivered(store.deliver("alice@example.com"), store) for _ in range(200)]
    mailbox = root / "example.com" / "alice"
    assert len({p.name for p in paths}) == 200
    assert files(mailbox / "new") == sorted(paths)
    assert files(mailbox / "tmp") == []
    parsed = [NAME.fullmatch(p.name) for p in paths]
    assert all(parsed)
    assert {m.group(3) for m in parsed if m} == {str(os.getpid())}
    assert len({m.group(4) for m in parsed if m}) == 200  # the counter always moves on


def test_host_names_are_escaped_in_file_names(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "mail/box:2")
    path = delivered(store.deliver("alice@example.com"), store)
    assert path.name.endswith(".mail\\057box\\0722")
    assert path.parent.name == "new"


def test_a_relative_root_is_resolved_against_the_working_folder(
    bind: Bind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = bind(root="var/mail")
    path = delivered(store.deliver("alice@example.com"), store)
    assert (tmp_path / path).parent == tmp_path / "var" / "mail" / "example.com" / "alice" / "new"


# -- where mail goes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "folder"),
    [
        pytest.param("alice@example.com", "example.com/alice", id="plain"),
        pytest.param("Alice@Example.COM", "example.com/alice", id="case"),
        pytest.param("<alice@example.com>", "example.com/alice", id="angle-brackets"),
        pytest.param("alice@example.com.", "example.com/alice", id="trailing-dot"),
        pytest.param('"Alice"@example.com', "example.com/alice", id="quoted"),
        pytest.param("@relay.example:alice@example.com", "example.com/alice", id="source-route"),
        pytest.param("alice+news@example.com", "example.com/alice+news", id="sub-address"),
        pytest.param('"a/b"@example.com', "example.com/a%2Fb", id="quoted-slash"),
        pytest.param('"a@b"@example.com', "example.com/a%40b", id="quoted-at"),
        pytest.param('"a\\"b"@example.com', "example.com/a%22b", id="quoted-pair"),
        pytest.param("100%@example.com", "example.com/100%25", id="percent"),
        pytest.param(".hidden@example.com", "example.com/%2Ehidden", id="leading-dot"),
        pytest.param(
            "../../etc/passwd@example.com",
            "example.com/%2E.%2F..%2Fetc%2Fpasswd",
            id="dot-dot-slash",
        ),
        pytest.param("a\\b@example.com", "example.com/a%5Cb", id="backslash"),
        pytest.param("a\0b@example.com", "example.com/a%00b", id="nul"),
        pytest.param("x@../../etc", "%2E.%2F..%2Fetc/x", id="domain-dot-dot"),
        pytest.param("x@[192.0.2.1]", "%5B192.0.2.1%5D/x", id="address-literal"),
        pytest.param("jörg@bücher.example", "xn--bcher-kva.example/j%C3%B6rg", id="idn"),
        pytest.param("JÖRG@BÜCHER.EXAMPLE", "xn--bcher-kva.example/j%C3%B6rg", id="idn-case"),
        pytest.param("x@xn--bcher-kva.example", "xn--bcher-kva.example/x", id="a-label"),
        pytest.param("x@bücher\u3002example", "xn--bcher-kva.example/x", id="ideographic-dot"),
    ],
)
def test_mailbox_path(recipient: str, folder: str, root: Path) -> None:
    assert mailbox_path(root, recipient) == root / folder


HOSTILE = [
    pytest.param("../../etc/passwd@example.com", id="dot-dot-slash"),
    pytest.param('"a/b"@example.com', id="quoted-slash"),
    pytest.param('"../../../x"@example.com', id="quoted-dot-dot"),
    pytest.param("..@example.com", id="dot-dot"),
    pytest.param("x@..", id="domain-dot-dot-only"),
    pytest.param("x@../../etc", id="domain-dot-dot"),
    pytest.param("x@/etc", id="domain-absolute"),
    pytest.param("/etc/x@example.com", id="local-absolute"),
    pytest.param("a\0b@example.com", id="nul"),
    pytest.param("..\\..\\x@example.com", id="backslashes"),
]


@pytest.mark.parametrize("recipient", HOSTILE)
def test_no_recipient_reaches_outside_the_root(
    recipient: str, store: Store, root: Path, tmp_path: Path
) -> None:
    event = store.deliver(recipient)
    if event.failure is not None:
        assert event.permanent_failure
    else:
        path = delivered(event, store)
        assert path.resolve().is_relative_to(root.resolve())
        assert len(path.relative_to(root).parts) == 4  # domain, local part, new, file
        assert not path.relative_to(root).parts[0].startswith(".")
        assert not path.relative_to(root).parts[1].startswith(".")
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(root) and p.is_file()]
    assert all(p.name.startswith("metabase-") for p in outside), outside


@pytest.mark.parametrize(
    "recipient",
    [
        pytest.param("postmaster", id="no-domain"),
        pytest.param("@example.com", id="empty-local-part"),
        pytest.param('""@example.com', id="empty-quoted-local-part"),
        pytest.param("x@", id="empty-domain"),
        pytest.param("x@.", id="only-a-dot"),
        pytest.param("x" * 300 + "@example.com", id="too-long"),
    ],
)
def test_a_recipient_without_a_mailbox_name_fails_for_good(
    recipient: str, store: Store, root: Path
) -> None:
    event = store.deliver(recipient)
    assert event.stored_at is None
    assert event.failure is not None
    assert event.failure.startswith("no such mailbox")
    assert event.permanent_failure
    assert not root.exists()


def test_idn_domains_share_one_folder_in_a_label_form(store: Store, root: Path) -> None:
    first = delivered(store.deliver("jörg@bücher.example"), store)
    second = delivered(store.deliver("JÖRG@XN--BCHER-KVA.EXAMPLE"), store)
    mailbox = root / "xn--bcher-kva.example" / "j%C3%B6rg"
    assert files(mailbox / "new") == sorted([first, second])
    assert [p.name for p in root.iterdir()] == ["xn--bcher-kva.example"]


# -- create = false -----------------------------------------------------------------------


def test_without_create_a_missing_mailbox_fails_for_good(bind: Bind, root: Path) -> None:
    store = bind(create=False)
    event = store.deliver("alice@example.com")
    assert event.failure == "no such mailbox"
    assert event.permanent_failure
    assert event.stored_at is None
    assert not root.exists()


def test_without_create_an_existing_mailbox_is_delivered_to(bind: Bind, root: Path) -> None:
    mailbox = root / "example.com" / "alice"
    for name in ("tmp", "new", "cur"):
        (mailbox / name).mkdir(parents=True)
    store = bind(create=False)
    path = delivered(store.deliver("Alice@example.com"), store)
    assert path.parent == mailbox / "new"
    half_made = root / "example.com" / "bob"
    (half_made / "new").mkdir(parents=True)
    event = store.deliver("bob@example.com")
    assert event.failure == "no such mailbox"
    assert files(half_made / "new") == []


# -- failures leave nothing behind --------------------------------------------------------


def test_a_mailbox_that_cannot_be_made_is_a_temporary_failure(bind: Bind, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    store = bind(root=str(blocker / "mail"))
    event = store.deliver("alice@example.com")
    assert event.stored_at is None
    assert event.failure is not None
    assert "cannot deliver" in event.failure
    assert "Not a directory" in event.failure
    assert not event.permanent_failure
    assert blocker.read_text() == "a regular file"


def test_a_subfolder_that_is_a_file_is_a_temporary_failure(store: Store, root: Path) -> None:
    mailbox = root / "example.com" / "alice"
    mailbox.mkdir(parents=True)
    (mailbox / "new").write_text("")
    event = store.deliver("alice@example.com")
    assert event.failure is not None
    assert "not a folder" in event.failure
    assert not event.permanent_failure
    assert files(mailbox / "tmp") == []


def _failing_fsync_of(kind: str) -> Callable[[int], None]:
    def fsync(fd: int) -> None:
        is_folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        if is_folder == (kind == "folder"):
            raise OSError(errno.EIO, "Input/output error")
        REAL_FSYNC(fd)

    return fsync


def _failing_link(source: object, target: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    ("function", "replacement"),
    [
        pytest.param("fsync", _failing_fsync_of("file"), id="fsync-of-the-file"),
        pytest.param("link", _failing_link, id="link-into-new"),
        pytest.param("fsync", _failing_fsync_of("folder"), id="fsync-of-new"),
    ],
)
def test_a_failing_step_leaves_nothing_in_tmp_or_new(
    function: str,
    replacement: Callable[..., None],
    store: Store,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = delivered(store.deliver("alice@example.com"), store)
    mailbox = root / "example.com" / "alice"
    monkeypatch.setattr(os, function, replacement)
    event = store.deliver("alice@example.com")
    monkeypatch.undo()
    assert event.stored_at is None
    assert event.failure is not None
    assert "cannot deliver" in event.failure
    assert not event.permanent_failure
    assert files(mailbox / "new") == [first]
    assert files(mailbox / "tmp") == []


def test_a_write_cut_short_leaves_no_partial_file(store: Store, root: Path) -> None:
    first = delivered(store.deliver("alice@example.com"), store)
    mailbox = root / "example.com" / "alice"
    big = EmailMessage()
    big["Subject"] = "too big for the file size limit"
    big.set_content(("y" * 76 + "\n") * 40_000)  # about 3 MB; the limit is 1 MiB
    limit = 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of dying
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        event = store.deliver("alice@example.com", big)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert event.stored_at is None
    assert event.failure is not None
    assert "File too large" in event.failure
    assert files(mailbox / "new") == [first]
    assert files(mailbox / "tmp") == []


def test_without_hard_links_the_file_is_renamed_into_new(
    store: Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    message = plain_message()
    path = delivered(store.deliver("alice@example.com", message), store)
    mailbox = root / "example.com" / "alice"
    assert files(mailbox / "new") == [path]
    assert files(mailbox / "tmp") == []
    assert message_in(path) == message.as_bytes(policy=email.policy.default)


def test_a_file_is_named_by_the_deliverys_key(store: Store) -> None:
    event = store.deliver("alice@example.com", message_id="18f-abc")
    match = NAME.fullmatch(delivered(event, store).name)
    assert match is not None
    assert match.group(5) == event.key


@pytest.mark.parametrize("moved", [False, True], ids=["still-in-new", "moved-to-cur"])
def test_a_resumed_delivery_reports_the_copy_an_earlier_run_stored(
    moved: bool, store: Store, root: Path
) -> None:
    first = delivered(store.deliver("alice@example.com", message_id="18f-abc"), store)
    mailbox = root / "example.com" / "alice"
    if moved:  # a mail reader saw it and moved it, with flags
        first = first.rename(mailbox / "cur" / f"{first.name}:2,S")
    again = store.deliver("alice@example.com", message_id="18f-abc", resumed=True)
    assert again.stored_at == str(first)
    assert files(mailbox / "new") + files(mailbox / "cur") == [first]
    other = store.deliver("alice@example.com", message_id="18f-def", resumed=True)
    assert other.stored_at != str(first)  # another message: stored as usual


def test_where_the_server_flushes_the_sink_names_the_file_and_its_folder(
    store: Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivered(store.deliver("alice@example.com"), store)  # the mailbox exists from now on
    flushed: list[int] = []
    monkeypatch.setattr(os, "fsync", flushed.append)
    event = store.deliver("alice@example.com", source_flushes=True)
    monkeypatch.undo()
    path = delivered(event, store)
    assert flushed == []  # the server does it, with the other deliveries of the moment
    assert event.unflushed == [str(path), str(root / "example.com" / "alice" / "new")]


def test_where_the_server_does_not_flush_the_sink_flushes_file_and_folder(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds: list[str] = []

    def fsync(fd: int) -> None:
        kinds.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        REAL_FSYNC(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    event = store.deliver("alice@example.com")
    monkeypatch.undo()
    delivered(event, store)
    assert sorted(set(kinds)) == ["file", "folder"]
    assert event.unflushed == []


@pytest.mark.parametrize("slow", ["file", "folder"], ids=["fsync-of-the-file", "fsync-of-new"])
def test_a_delivery_that_times_out_leaves_nothing_behind(
    slow: str, bind: Bind, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bind(timeout=0.1)
    first = delivered(store.deliver("alice@example.com"), store)
    mailbox = root / "example.com" / "alice"

    def slow_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) == (slow == "folder"):
            time.sleep(0.5)  # a disk slower than the binding's Timeout
        REAL_FSYNC(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    event = store.deliver("alice@example.com")
    # notify_sync returns once its event loop has shut down, worker thread included.
    assert store.result.timed_out == 1
    assert event.stored_at is None
    assert files(mailbox / "new") == [first]
    assert files(mailbox / "tmp") == []


# -- what is written ------------------------------------------------------------------------


def test_raw_bytes_are_written_as_received_with_lf_line_ends(store: Store) -> None:
    raw = (
        b"Received: from client.example.org\r\n"
        b"\tby mx.example.com; Tue, 3 Dec 2024 10:00:00 +0000\r\n"
        b"From:sender@example.org\r\n"
        b"Subject:   spacing kept\r\n"
        b"\r\n"
        b"From the start of a line, not mangled.\r\n"
        b".a leading dot\r\n"
        b"bare\rCR kept\r\n"
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    path = delivered(store.deliver("alice@example.com", message, raw=raw), store)
    assert message_in(path) == raw.replace(b"\r\n", b"\n")


def test_an_edited_message_is_written_with_its_edits(store: Store) -> None:
    original = MESSAGES[0].values[0]
    assert isinstance(original, bytes)
    message = email.message_from_bytes(original, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    message["X-Spam-Flag"] = "NO"  # what an OnArrival sink does; the source then has no raw
    path = delivered(store.deliver("alice@example.com", message), store)
    written = message_in(path)
    head, _body = written.split(b"\n\n", 1)
    assert head.endswith(b"\nX-Spam-Flag: NO")
    assert written == original.replace(b"\n\n", b"\nX-Spam-Flag: NO\n\n", 1)


def _attachment_message() -> bytes:
    """A Thunderbird-style message: QP text, a base64 PDF, encoded-word headers, folding."""
    pdf = base64.encodebytes(b"%PDF-1.4\n" + bytes(range(256)) * 12)
    return (
        b"Received: from mail.example.org (mail.example.org [192.0.2.25])\n"
        b"\tby mx.example.com with ESMTPS id 4Xa1b2c3d4\n"
        b"\tfor <alice@example.com>; Tue, 3 Dec 2024 10:00:00 +0000\n"
        b"Message-ID: <8b0c1c2e-1d0b-4d7e-9f5b-2f4e0d1c9a77@example.org>\n"
        b"Date: Tue, 3 Dec 2024 11:00:00 +0100\n"
        b"MIME-Version: 1.0\n"
        b"User-Agent: Mozilla Thunderbird\n"
        b"From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\n"
        b"To: Alice <alice@example.com>\n"
        b"Subject: =?UTF-8?Q?Quartalsbericht_f=C3=BCr_das_dritte_Quartal_mit_einem_seh?=\n"
        b" =?UTF-8?Q?r_langen_Betreff?=\n"
        b'Content-Type: multipart/mixed;\n boundary="------------0aBcDeFgHiJkLmNoPqRsTu"\n'
        b"\n"
        b"This is a multi-part message in MIME format.\n"
        b"--------------0aBcDeFgHiJkLmNoPqRsTu\n"
        b"Content-Type: text/plain; charset=UTF-8; format=flowed\n"
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n"
        b"Hallo Alice,\n"
        b"\n"
        b"anbei der Bericht. Gr=C3=BC=C3=9Fe aus M=C3=BCnchen, und eine sehr lange Z=\n"
        b"eile, die mit weichen Zeilenumbr=C3=BCchen umbrochen wurde.\n"
        b"\n"
        b"J=C3=B6rg\n"
        b"\n"
        b"--------------0aBcDeFgHiJkLmNoPqRsTu\n"
        b'Content-Type: application/pdf; name="Bericht Q3.pdf"\n'
        b'Content-Disposition: attachment; filename="Bericht Q3.pdf"\n'
        b"Content-Transfer-Encoding: base64\n"
        b"\n" + pdf + b"\n"
        b"--------------0aBcDeFgHiJkLmNoPqRsTu--\n"
    )


def _eight_bit_message() -> bytes:
    """SMTPUTF8 headers, an 8-bit UTF-8 body, a 900-byte line, From and dot lines."""
    long_line = "x" * 600 + "é" * 150  # 900 bytes
    return (
        "From: Zoë Ångström <zoe@example.org>\n"
        "To: alice@example.com\n"
        "Subject: Grüße — 日本語のテキスト\n"
        "References: " + " ".join(f"<{n}.thread@example.org>" for n in range(12)) + "\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Ein 8-Bit-Text: äöü ß € 😀\n" + long_line + "\n"
        "From the start of a line: must not become >From.\n"
        ".a leading dot\n"
        "\n"
        "trailing blank lines\n"
        "\n"
        "\n"
    ).encode()


def _alternative_message() -> bytes:
    """multipart/alternative in ISO-8859-1 quoted-printable, with a forwarded message inside."""
    return (
        b"From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.net>\n"
        b"To: alice@example.com\n"
        b"Subject: =?ISO-8859-1?B?Q2Fm6SBjcuhtZQ==?=\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="outer"\n'
        b"\n"
        b"--outer\n"
        b'Content-Type: multipart/alternative; boundary="inner"\n'
        b"\n"
        b"--inner\n"
        b'Content-Type: text/plain; charset="iso-8859-1"\n'
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n"
        b"Caf=E9 cr=E8me\n"
        b"--inner\n"
        b'Content-Type: text/html; charset="iso-8859-1"\n'
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n"
        b'<html><body><p style=3D"color:red">Caf=E9</p></body></html>\n'
        b"--inner--\n"
        b"\n"
        b"--outer\n"
        b"Content-Type: message/rfc822\n"
        b"\n"
        b"From: bob@example.com\n"
        b"Subject: the original\n"
        b"\n"
        b"Forwarded body.\n"
        b"\n"
        b"--outer--\n"
        b"epilogue text\n"
    )


def _built_message() -> bytes:
    """What Python's own email package sends: QP text, HTML alternative, binary attachment."""
    message = EmailMessage()
    message["From"] = "Ünïcode Sender <sender@example.org>"
    message["To"] = "alice@example.com"
    message["Subject"] = "Résumé attached: " + "a long subject " * 8
    message.set_content("Plain body with ünïcode and a long line " * 10 + "\n", cte="8bit")
    message.add_alternative("<p>html with ünïcode</p>\n", subtype="html", cte="quoted-printable")
    message.add_attachment(
        bytes(range(256)) * 8,
        maintype="application",
        subtype="octet-stream",
        filename="données.bin",
    )
    return message.as_bytes(policy=email.policy.SMTP)  # CRLF, as it travels


MESSAGES = [
    pytest.param(_attachment_message(), id="attachment-qp-base64"),
    pytest.param(_eight_bit_message(), id="8bit-utf8-long-lines"),
    pytest.param(_alternative_message(), id="alternative-forwarded"),
    pytest.param(_built_message(), id="built-by-python"),
    pytest.param(b"From: a@example.com\nSubject: x\n\nno final newline", id="no-final-newline"),
]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("data", MESSAGES)
def test_a_parsed_message_is_written_back_byte_for_byte(
    data: bytes, line_end: bytes, store: Store
) -> None:
    expected = data.replace(b"\r\n", b"\n")
    received = expected.replace(b"\n", line_end)
    message = email.message_from_bytes(received, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not [d for part in message.walk() for d in part.defects]
    path = delivered(store.deliver("alice@example.com", message), store)
    assert message_in(path) == expected


@pytest.mark.parametrize("data", MESSAGES)
def test_raw_bytes_win_over_the_parsed_message(data: bytes, store: Store) -> None:
    message = plain_message("not this one\n")
    path = delivered(store.deliver("alice@example.com", message, raw=data), store)
    assert message_in(path) == data.replace(b"\r\n", b"\n")


def _cpython_corpus() -> list[Path]:
    """CPython's email test messages (this interpreter ships its test suite)."""
    tests = importlib.import_module("test.test_email")
    folder = Path(str(tests.__file__)).parent / "data"
    found = sorted(folder.glob("msg_*.txt"))
    assert found, f"no CPython e-mail corpus in {folder}"
    return found


CORPUS = _cpython_corpus()

WRITTEN_BACK_DIFFERENTLY = {
    # Python's generator normalizes these well-formed oddities; raw bytes keep them.
    "msg_12.txt",  # a part with an empty body gains a blank line
    "msg_37.txt",  # runs of boundaries (empty parts) are written once
}


def _as_received(path: Path) -> bytes:
    """The file's message as SMTP would hand it over: no mbox ``From `` envelope line."""
    data = path.read_bytes()
    return data.split(b"\n", 1)[1] if data.startswith(b"From ") else data


def _well_formed(path: Path) -> bool:
    message = email.message_from_bytes(_as_received(path), policy=email.policy.default)
    return not [d for part in message.walk() for d in part.defects]


ROUND_TRIPPING = [p for p in CORPUS if _well_formed(p) and p.name not in WRITTEN_BACK_DIFFERENTLY]
"""Messages Python's email package writes back unchanged; the others (malformed on purpose,
or normalized) are kept exactly only through the raw bytes, which the test above covers."""


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_cpython_corpus_raw_bytes_are_kept_exactly(path: Path, store: Store) -> None:
    data = path.read_bytes()
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    stored = delivered(store.deliver("alice@example.com", message, raw=data), store)
    assert message_in(stored) == data.replace(b"\r\n", b"\n")


def test_most_of_the_corpus_round_trips_through_the_parser() -> None:
    assert len(ROUND_TRIPPING) >= 30


@pytest.mark.parametrize("path", ROUND_TRIPPING, ids=[p.name for p in ROUND_TRIPPING])
def test_cpython_corpus_parsed_messages_are_written_back_byte_for_byte(
    path: Path, store: Store
) -> None:
    data = _as_received(path)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    stored = delivered(store.deliver("alice@example.com", message), store)
    assert message_in(stored) == data.replace(b"\r\n", b"\n")


# -- sink properties ------------------------------------------------------------------------


def seo(metabase: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--metabase", str(metabase), *args])
    return result.exit_code, result.output + result.stderr


ADD = ("bindings", "add", "smtp/1", "StoreDriver", "Local mailboxes", "maildir")


@pytest.mark.parametrize(
    ("props", "complaint"),
    [
        pytest.param([], "SinkProperties.root", id="root-missing"),
        pytest.param(["root="], "root: must name a folder", id="root-empty"),
        pytest.param(["root=/var/mail", "mode=600"], "write it in octal", id="mode-decimal"),
        pytest.param(["root=/var/mail", "mode=yes"], "SinkProperties.mode", id="mode-text"),
        pytest.param(["root=/var/mail", "create=1"], "SinkProperties.create", id="create-int"),
        pytest.param(["root=/m", "crate=false"], "did you mean 'create'", id="typo"),
    ],
)
def test_bad_sink_properties_are_refused_when_the_binding_is_written(
    props: list[str], complaint: str, tmp_path: Path
) -> None:
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(tmp_path / "m.db", *ADD, *arguments)
    assert code == 1, output
    assert complaint in output


def test_good_sink_properties_are_accepted(tmp_path: Path) -> None:
    props = ["root=/var/mail", "create=false", "mode=0o640"]
    arguments = [arg for prop in props for arg in ("--sink-prop", prop)]
    code, output = seo(tmp_path / "m.db", *ADD, *arguments)
    assert code == 0, output
