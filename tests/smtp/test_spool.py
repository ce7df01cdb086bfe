"""The spool's journal on a real folder: what is acknowledged survives, and nothing else."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from pathlib import Path

import pytest

from seo_core.sources.smtp import spool as spool_module
from seo_core.sources.smtp.spool import (
    Envelope,
    GroupCommit,
    Location,
    Spool,
    SpoolBusyError,
    new_message_id,
)


def envelope(recipients: tuple[str, ...] = ("bob@example.com",)) -> Envelope:
    return Envelope(
        id=new_message_id(),
        mail_from="alice@example.net",
        recipients=list(recipients),
        received_at=time.time(),
        size=0,
    )


def opened(root: Path) -> Spool:
    spool = Spool(root)
    spool.open_journal()
    spool.open_queue()
    return spool


def accept(spool: Spool, content: bytes, recipients: tuple[str, ...] = ("bob@example.com",)) -> str:
    message = envelope(recipients)
    (location,) = spool.accept_group([(message, content)])
    assert spool.track(message, location)
    return message.id


def segments(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "journal").glob("*.log"))


def test_a_group_of_messages_in_pieces_reads_back_whole_after_a_restart(tmp_path: Path) -> None:
    """The listener hands the trace line and the message as two pieces, written in a row."""
    spool = opened(tmp_path)
    contents = [
        (b"Received: by mx\r\n", b"Subject: one\r\n\r\n" + b"x" * 100_000),
        (b"", b"Subject: two\r\n\r\n2\r\n"),
        b"Subject: three\r\n\r\n3\r\n",
    ]
    messages = [(envelope(("bob@example.com",)), content) for content in contents]
    for (message, _), location in zip(messages, spool.accept_group(messages), strict=True):
        assert spool.track(message, location)
    spool.close()

    again = opened(tmp_path)
    loaded = [again.load(message.id)[1] for message, _ in messages]
    assert loaded == [c if isinstance(c, bytes) else b"".join(c) for c in contents]
    again.close()


def test_an_accepted_message_is_there_after_a_restart_byte_for_byte(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    content = b"Subject: hi\r\n\r\n" + bytes(range(256)) * 10
    first = accept(spool, content, ("bob@example.com", "carol@example.com"))
    second = accept(spool, b"Subject: two\r\n\r\nsecond\r\n")
    spool.close()

    again = opened(tmp_path)
    assert again.pending() == sorted([first, second])
    loaded, data = again.load(first)
    assert data == content
    assert loaded.recipients == ["bob@example.com", "carol@example.com"]
    assert loaded.mail_from == "alice@example.net"


def test_a_torn_record_at_the_end_is_ignored_and_the_spool_goes_on(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    kept = accept(spool, b"Subject: kept\r\n\r\nkept\r\n")
    torn = accept(spool, b"Subject: torn\r\n\r\n" + b"x" * 500 + b"\r\n")
    spool.close()
    # A crash in the middle of writing the second record: its last bytes never reached the disk.
    (segment,) = (tmp_path / "journal").glob("*.log")
    data = bytearray(segment.read_bytes())
    end = data.index(b"x" * 500) + 400
    data[end : end + 200] = bytes(200)
    segment.write_bytes(bytes(data))

    again = opened(tmp_path)
    assert again.pending() == [kept]
    assert torn not in again.pending()
    later = accept(again, b"Subject: later\r\n\r\nlater\r\n")
    again.close()
    assert Spool(tmp_path).pending() == sorted([kept, later])


def test_delivery_state_and_done_survive_a_restart(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    partly = accept(spool, b"Subject: a\r\n\r\na\r\n", ("bob@example.com", "carol@example.com"))
    done = accept(spool, b"Subject: b\r\n\r\nb\r\n")
    state, _ = spool.load(partly)
    state.delivered.append("bob@example.com")
    state.attempts = 2
    spool.update(state)
    spool.finish(done)
    spool.close()

    again = opened(tmp_path)
    assert again.pending() == [partly]
    loaded, _ = again.load(partly)
    assert loaded.delivered == ["bob@example.com"]
    assert loaded.attempts == 2
    with pytest.raises(KeyError):
        again.load(done)


def test_segments_of_finished_messages_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 4096)
    spool = opened(tmp_path)
    ids = [accept(spool, b"Subject: n\r\n\r\n" + b"y" * 1000 + b"\r\n") for _ in range(12)]
    assert len(segments(tmp_path)) >= 3
    spool.finish_group(ids[:-1])
    assert len(segments(tmp_path)) == 1  # only the segment still written to
    spool.finish(ids[-1])
    spool.close()
    before = segments(tmp_path)
    again = opened(tmp_path)  # a new start goes on writing where the last one stopped
    assert again.pending() == []
    assert segments(tmp_path) == before
    more = accept(again, b"Subject: more\r\n\r\nmore\r\n")
    assert again.load(more)[1] == b"Subject: more\r\n\r\nmore\r\n"


def test_a_start_makes_no_new_segment_and_needs_no_new_space(tmp_path: Path) -> None:
    for n in range(3):
        spool = opened(tmp_path)
        accept(spool, f"Subject: {n}\r\n\r\n{n}\r\n".encode())
        spool.close()
    assert segments(tmp_path) == ["00000001.log"]
    assert len(Spool(tmp_path).pending()) == 3


def test_a_message_bigger_than_a_segment_gets_one_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 4096)
    spool = opened(tmp_path)
    content = b"Subject: big\r\n\r\n" + b"z" * 20000 + b"\r\n"
    big = accept(spool, content)
    assert spool.load(big)[1] == content
    spool.close()
    assert Spool(tmp_path).load(big)[1] == content


def test_two_servers_cannot_write_one_spool(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    with pytest.raises(SpoolBusyError, match="in use by another process"):
        Spool(tmp_path).open_journal()
    spool.close()
    Spool(tmp_path).open_journal()


def test_a_spool_of_files_from_an_earlier_version_is_taken_over(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    queue.mkdir(parents=True)
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "half.eml").write_bytes(b"never acknowledged")
    old = envelope()
    (queue / f"{old.id}.eml").write_bytes(b"Subject: old\r\n\r\nold\r\n")
    (queue / f"{old.id}.json").write_bytes(old.to_json())
    (queue / "orphan.eml").write_bytes(b"content without an envelope")

    spool = opened(tmp_path)
    assert spool.pending() == [old.id]
    assert spool.load(old.id)[1] == b"Subject: old\r\n\r\nold\r\n"
    assert not queue.exists()
    assert not (tmp_path / "incoming").exists()


def test_tracking_a_message_the_queue_read_at_start_does_nothing(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.open_journal()
    message = envelope()
    (location,) = writer.accept_group([(message, b"Subject: x\r\n\r\nx\r\n")])
    queue = Spool(tmp_path)
    queue.open_queue()  # reads the message from the journal
    assert queue.pending() == [message.id]
    queue.finish(message.id)
    assert not queue.track(message, location)  # a late notice of it must not bring it back
    assert queue.pending() == []
    assert queue.track(envelope(), Location(location.segment, location.offset + 10_000, 5))


def test_a_group_commit_answers_every_caller_once_for_the_group() -> None:
    groups: list[list[int]] = []

    def perform(items: list[int]) -> list[int]:
        groups.append(items)
        time.sleep(0.01)
        return [item * 10 for item in items]

    async def main() -> list[int]:
        writer = GroupCommit(perform, "test writer")
        try:
            return list(await asyncio.gather(*(writer.commit(n) for n in range(20))))
        finally:
            writer.close()

    assert asyncio.run(main()) == [n * 10 for n in range(20)]
    assert sorted(item for group in groups for item in group) == list(range(20))
    assert len(groups) < 20


def test_a_failed_group_commit_fails_each_caller() -> None:
    def perform(items: list[int]) -> list[int]:
        raise OSError(28, "No space left on device")

    async def main() -> list[BaseException | int]:
        writer = GroupCommit(perform, "test writer")
        try:
            return list(
                await asyncio.gather(*(writer.commit(n) for n in range(3)), return_exceptions=True)
            )
        finally:
            writer.close()

    outcomes = asyncio.run(main())
    assert all(isinstance(o, OSError) and "No space left" in str(o) for o in outcomes)


def test_the_state_file_is_json_lines_a_person_can_read(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    message = accept(spool, b"Subject: x\r\n\r\nx\r\n")
    spool.finish(message)
    (state,) = (tmp_path / "journal").glob("*.state")
    assert [json.loads(line) for line in state.read_text().splitlines()] == [
        {"id": message, "done": True}
    ]


def test_a_message_in_hand_when_delivery_died_counts_a_crash(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    crashed = accept(spool, b"Subject: a\r\n\r\na\r\n")
    stopped = accept(spool, b"Subject: b\r\n\r\nb\r\n")
    for message in (crashed, stopped):
        spool.mark(message, "started")
    spool.mark(stopped, "ended")
    spool.close()  # as if the process died: no flush was asked for the marks

    again = opened(tmp_path)
    assert (again.crashes(crashed), again.crashes(stopped)) == (1, 0)
    again.mark(crashed, "started")
    again.close()
    assert opened(tmp_path).crashes(crashed) == 2


def test_a_full_disk_refuses_the_message_leaves_no_partial_segment_and_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 4096)
    monkeypatch.setattr(Spool, "_make_spare", lambda self: None)  # no segment made ahead
    spool = opened(tmp_path)
    kept = accept(spool, b"Subject: fits\r\n\r\n" + b"k" * 3000 + b"\r\n")

    def disk_full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as full:
        full.setattr(spool_module.os, "write", disk_full)
        full.setattr(spool_module.os, "pwrite", disk_full)
        with pytest.raises(OSError, match="No space left"):
            accept(spool, b"Subject: too much\r\n\r\n" + b"t" * 3000 + b"\r\n")
    assert segments(tmp_path) == ["00000001.log"]  # no half-made segment left behind
    later = accept(spool, b"Subject: later\r\n\r\n" + b"l" * 3000 + b"\r\n")
    spool.close()
    assert Spool(tmp_path).pending() == sorted([kept, later])


def short_writes_then_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write from now on puts down a few bytes, then finds the disk full (as a real one
    does when its last block runs out in the middle of a line)."""
    real_write = spool_module.os.write

    def write(fd: int, data: bytes) -> int:
        if getattr(write, "wrote", False):
            raise OSError(errno.ENOSPC, "No space left on device")
        write.wrote = True  # type: ignore[attr-defined]
        return real_write(fd, bytes(data[:5]))

    monkeypatch.setattr(spool_module.os, "write", write)


def test_a_state_line_cut_short_by_a_full_disk_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = opened(tmp_path)
    message = accept(spool, b"Subject: s\r\n\r\ns\r\n")
    state, _ = spool.load(message)
    state.attempts = 1
    with monkeypatch.context() as full:
        short_writes_then_full(full)
        with pytest.raises(OSError, match="No space left"):
            spool.update(state)
    state.attempts = 2
    spool.update(state)  # room again: the line starts on a line of its own
    spool.close()
    lines = (tmp_path / "journal" / "00000001.state").read_bytes().splitlines()
    assert [json.loads(line)["attempts"] for line in lines] == [2]
    loaded, _ = opened(tmp_path).load(message)
    assert loaded.attempts == 2


def test_a_message_not_set_aside_for_a_full_disk_leaves_no_badmail_and_stays_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = opened(tmp_path)
    message = accept(spool, b"Subject: b\r\n\r\n" + b"b" * 1000 + b"\r\n")
    state, content = spool.load(message)
    state.reason = "no mailbox would take it"
    with monkeypatch.context() as full:
        short_writes_then_full(full)
        with pytest.raises(OSError, match="No space left"):
            spool.to_badmail(state, content)
    assert list((tmp_path / "badmail").iterdir()) == []
    assert message in spool.pending()
    spool.to_badmail(state, content)
    assert sorted(p.name for p in (tmp_path / "badmail").iterdir()) == [
        f"{message}.eml",
        f"{message}.json",
    ]
    assert message not in spool.pending()


def test_a_done_record_the_disk_had_no_room_for_is_written_with_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = opened(tmp_path)
    first = accept(spool, b"Subject: 1\r\n\r\n1\r\n")
    second = accept(spool, b"Subject: 2\r\n\r\n2\r\n")
    with monkeypatch.context() as full:
        short_writes_then_full(full)
        with pytest.raises(OSError, match="No space left"):
            spool.finish(first)
    assert first not in spool.pending()  # this process never takes it again
    spool.finish(second)
    spool.close()
    assert opened(tmp_path).pending() == []
