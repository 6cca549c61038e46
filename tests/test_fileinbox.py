"""FileInbox: an agent's consuming end on the file workspace: claim order, retry delays, and
exactly one claimer per message. Real files in tmp_path; the claims are the mailbox's links."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import agentctl.backends.file.inbox as inbox_module
from agentctl.backends.file.inbox import FileInbox
from agentctl.model.constants import (
    INTERRUPTED_NOTE_FILE,
    NOT_BEFORE_HEADER,
    STALE_TMP_AGE_S,
    WORKER_LOCK_FILE,
)
from agentctl.model.errors import AgentctlError
from agentctl.model.message import AgentMessage, parse_message
from agentctl.model.priority import Priority
from agentctl.protocol.mailbox import Mailbox
from agentctl.protocol.status import parse_iso
from tests.conftest import wait_until

HOUR_S = 3600.0


def _inbox(tmp_path: Path) -> FileInbox:
    agent_dir = tmp_path / "agent"
    mailbox = Mailbox(agent_dir / "inbox", fsync=False, max_message_bytes=1 << 20).ensure()
    return FileInbox(mailbox, agent_dir, poll_interval_s=0.1)


def _send(inbox: FileInbox, content: str, priority: Priority = Priority.NORMAL) -> AgentMessage:
    message = AgentMessage(from_agent="user", to_agent="agent", content=content, priority=priority)
    inbox.mailbox.deliver(message)
    return message


def _claim_all(inbox: FileInbox) -> list[str]:
    return [delivery.key for delivery in inbox.claim(lambda: True)]


# -- retry delays --------------------------------------------------------------------------------


def test_a_retry_is_not_claimed_before_its_delay_is_over(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    first = _send(inbox, "fails once")
    [delivery] = list(inbox.claim(lambda: True))

    inbox.retry(delivery, first.model_copy(update={"attempt": 1}), delay_s=HOUR_S)
    second = _send(inbox, "waits for nothing")

    # The retry waits in new/, visible, but only the other message is claimed.
    assert _claim_all(inbox) == [second.file_name]
    assert inbox.mailbox.list_new() == [first.file_name]
    # And the delay is on disk too, so a restarted worker waits it out as well.
    on_disk = parse_message((inbox.mailbox.new / first.file_name).read_bytes())
    not_before = parse_iso(on_disk.headers[NOT_BEFORE_HEADER])
    assert not_before is not None and not_before > datetime.now(UTC)
    assert on_disk.attempt == 1


def test_a_retrys_not_before_is_taken_from_the_inboxs_clock(tmp_path: Path) -> None:
    from datetime import timedelta

    from agentctl.model.clock import FakeClock

    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    inbox = _inbox(tmp_path)
    inbox.clock = clock
    first = _send(inbox, "fails once")
    [delivery] = list(inbox.claim(lambda: True))
    inbox.retry(delivery, first.model_copy(update={"attempt": 1}), delay_s=90)
    on_disk = parse_message((inbox.mailbox.new / first.file_name).read_bytes())
    assert parse_iso(on_disk.headers[NOT_BEFORE_HEADER]) == clock.now() + timedelta(seconds=90)


def test_a_released_message_is_not_claimed_before_its_wait_is_over(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    first = _send(inbox, "not yet")
    [delivery] = list(inbox.claim(lambda: True))

    inbox.release(delivery, wait_s=HOUR_S)

    assert _claim_all(inbox) == []
    assert inbox.mailbox.list_new() == [first.file_name]


def test_a_retry_without_delay_is_claimed_again_at_once(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    first = _send(inbox, "again")
    [delivery] = list(inbox.claim(lambda: True))

    inbox.retry(delivery, first.model_copy(update={"attempt": 1}), delay_s=0)

    assert _claim_all(inbox) == [first.file_name]
    on_disk = parse_message((inbox.mailbox.processing / first.file_name).read_bytes())
    assert NOT_BEFORE_HEADER not in on_disk.headers


# -- one claimer per message ---------------------------------------------------------------------


def test_a_message_another_claimer_took_after_the_listing_is_not_yielded(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    names = [_send(inbox, f"m{i}").file_name for i in range(3)]
    rival = Mailbox(inbox.mailbox.path, fsync=False, max_message_bytes=1 << 20)

    claims = inbox.claim(lambda: True)
    mine = [next(claims).key]
    # Given: new/ was listed; another worker claims the next name before we reach it.
    assert rival.claim(names[1]) is not None
    mine += [delivery.key for delivery in claims]

    assert mine == [names[0], names[2]]
    assert sorted(inbox.mailbox.processing.iterdir()) == sorted(
        inbox.mailbox.processing / name for name in names
    )  # each exactly once, names[1] by the rival


def test_each_message_is_claimed_once_across_batches_and_priorities_are_relisted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "CLAIM_BATCH", 2)
    inbox = _inbox(tmp_path)
    normal = [_send(inbox, f"n{i}").file_name for i in range(3)]

    first_batch = _claim_all(inbox)
    urgent = _send(inbox, "urgent", Priority.HIGH).file_name
    second_batch = _claim_all(inbox)

    assert first_batch == normal[:2]
    assert second_batch == [urgent, normal[2]]  # re-listed: the high priority goes first
    assert _claim_all(inbox) == []


def _wait_returns(inbox: FileInbox) -> None:
    """inbox.wait(an hour) returns, and returns normally (not by raising), well before that."""
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            inbox.wait(HOUR_S)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    waiting.join(timeout=30)
    assert not waiting.is_alive()
    assert errors == []


def test_wait_ends_when_the_next_retry_is_due(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    first = _send(inbox, "soon")
    [delivery] = list(inbox.claim(lambda: True))
    inbox.retry(delivery, first.model_copy(update={"attempt": 1}), delay_s=0.2)

    # Nothing lands in new/ and nobody wakes it: only the due retry can end this wait.
    _wait_returns(inbox)
    wait_until(lambda: _claim_all(inbox) == [first.file_name])


def test_wait_ends_when_a_released_message_is_due(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    _send(inbox, "later")
    [delivery] = list(inbox.claim(lambda: True))
    inbox.release(delivery, wait_s=0.2)

    _wait_returns(inbox)


def test_wait_lasts_until_the_first_delayed_message_is_due_and_never_less_than_zero(
    tmp_path: Path,
) -> None:
    from agentctl.model.clock import FakeClock

    clock = FakeClock()
    inbox = _inbox(tmp_path)
    inbox.clock = clock
    asked: list[float] = []
    inbox.watcher.wait = asked.append  # type: ignore[method-assign]  # how long it would wait
    a, b = _send(inbox, "a"), _send(inbox, "b")
    da, db = list(inbox.claim(lambda: True))

    inbox.release(da, wait_s=0)  # no wait: nothing to wake up for
    inbox.wait(HOUR_S)
    inbox.retry(db, b.model_copy(update={"attempt": 1}), delay_s=30)
    inbox.wait(HOUR_S)  # the retry is due in 30 s
    inbox.wait(10)  # but asked for less
    clock.advance(40)
    inbox.wait(HOUR_S)  # overdue: no wait at all

    assert asked == [HOUR_S, 30.0, 10.0, 0.0]
    assert _claim_all(inbox) == sorted([a.file_name, b.file_name])


# -- the life of one claim, and of one worker ------------------------------------------------------


def test_a_claimed_message_is_read_then_acked_or_buried_with_its_reason(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    done, doomed = _send(inbox, "fine"), _send(inbox, "doomed")
    first, second = list(inbox.claim(lambda: True))

    assert parse_message(inbox.read(first)) == done
    inbox.ack(first)
    assert parse_message(inbox.read(second)) == doomed
    spent = doomed.model_copy(update={"attempt": 3})
    written = inbox.bury(second, {"error": "boom"}, spent)

    mailbox = inbox.mailbox
    assert os.listdir(mailbox.done) == [done.file_name]
    assert written is not None and (mailbox.dead / doomed.file_name).read_bytes() == written
    assert parse_message(written).attempt == 3
    assert mailbox.read_error(doomed.file_name) == {"error": "boom"}
    assert os.listdir(mailbox.processing) == []


def test_one_worker_per_agent_and_a_stale_tmp_file_is_cleaned_on_open(tmp_path: Path) -> None:
    inbox, rival = _inbox(tmp_path), _inbox(tmp_path)
    stale = inbox.mailbox.tmp / "1-x.json.123.1.tmp"
    stale.write_bytes(b"{")
    old = time.time() - 2 * STALE_TMP_AGE_S
    os.utime(stale, (old, old))

    inbox.open()
    try:
        assert not stale.exists()
        lock = tmp_path / "agent" / WORKER_LOCK_FILE
        assert lock.exists() and stat.S_IMODE(lock.stat().st_mode) == 0o600
        with pytest.raises(AgentctlError, match="agent: another worker is already running"):
            rival.open()
    finally:
        inbox.close()
    rival.open()  # the lock went with the first worker
    rival.close()
    _inbox(tmp_path).close()  # closing one never opened is harmless too
    rival.close()  # a second close (a shutdown path that closes again) is harmless


def test_recover_hands_back_what_a_dead_worker_left_with_its_note(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    overran, crashed = _send(inbox, "overran"), _send(inbox, "crashed")
    for message in (overran, crashed):
        assert inbox.mailbox.claim(message.file_name) is not None  # a worker that then died
    note = {"file": overran.file_name, "error": "timed out", "error_kind": "timeout"}
    (tmp_path / "agent" / INTERRUPTED_NOTE_FILE).write_text(json.dumps(note))

    found = {delivery.key: delivery for delivery in inbox.recover()}

    assert set(found) == {overran.file_name, crashed.file_name}
    assert all(d.interrupted for d in found.values())
    assert found[overran.file_name].reason == note and found[crashed.file_name].reason is None
    assert found[crashed.file_name].handle == inbox.mailbox.processing / crashed.file_name
    assert not (tmp_path / "agent" / INTERRUPTED_NOTE_FILE).exists()  # taken


def test_an_open_inbox_wakes_when_a_message_lands_in_new(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    inbox.open()
    try:
        inbox.watcher.clear()
        returned = threading.Event()
        waiting = threading.Thread(
            target=lambda: (inbox.wait(HOUR_S), returned.set()), daemon=True
        )
        waiting.start()
        _send(inbox, "wake up")
        assert returned.wait(timeout=30)  # the watcher of new/ saw it: no poll, no wake()
    finally:
        inbox.close()
