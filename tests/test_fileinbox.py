"""FileInbox: an agent's consuming end on the file workspace: claim order, retry delays, and
exactly one claimer per message. Real files in tmp_path; the claims are the mailbox's links."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import agentctl.backends.file.inbox as inbox_module
from agentctl.backends.file.inbox import FileInbox
from agentctl.model.constants import NOT_BEFORE_HEADER
from agentctl.model.message import AgentMessage, parse_message
from agentctl.model.priority import Priority
from agentctl.protocol.mailbox import Mailbox
from agentctl.protocol.status import parse_iso

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
