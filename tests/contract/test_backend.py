"""The backend contract: the same tests on the file workspace and on NATS JetStream.

Each behaviour a command, the worker or a future surface relies on is asserted once here, for
both backends, so the two cannot drift apart again (issue 14).
"""

from __future__ import annotations

import queue
import shutil
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentctl.backends import open_backend
from agentctl.backends.base import Backend
from agentctl.config.roster import load_roster
from agentctl.flow.router import user_message
from agentctl.model.errors import AgentctlError
from agentctl.protocol.mailbox import Depth
from tests.conftest import wait_until


@pytest.fixture
def backend(roster_dir: Path, kind: str) -> Iterator[Backend]:
    """The backend the roster names, opened as a command opens it."""
    opened = open_backend(load_roster(roster_dir / "agents.yaml"), roster_dir / "workspace")
    try:
        yield opened
    finally:
        if kind == "nats":  # streams on one server may not share subjects: the next test's
            opened.loop.call(opened.js.delete_stream(opened.stream))  # type: ignore[attr-defined]
        opened.close()


def _events(backend: Backend, event: str, message_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in backend.read_events(10_000, lambda r: r.get("message_id") == message_id)
        if r["event"] == event
    ]


def _claim_one(backend: Backend, roster_dir: Path) -> tuple[Any, Any]:
    spec = load_roster(roster_dir / "agents.yaml").agent("a")
    inbox = backend.inbox(spec, poll_interval_s=0.1)
    inbox.open()
    deliveries = wait_until(lambda: list(inbox.claim(lambda: True)), timeout_s=10)
    return inbox, deliveries[0]


def test_a_delivered_message_is_waiting_then_in_hand(backend: Backend, roster_dir: Path) -> None:
    backend.deliver(user_message("a", "hello"))
    inbox, _ = _claim_one(backend, roster_dir)
    try:
        depth = backend.depth(["a"])["a"]
        # One definition of an inbox's depth, whichever backend counts it.
        assert type(depth) is Depth
        assert depth == Depth(new=0, processing=1, dead=0)
    finally:
        inbox.close()


def test_a_requeued_dead_letter_journals_its_digest(backend: Backend, roster_dir: Path) -> None:
    # Given a message given up on by its agent
    message = user_message("a", "hello")
    backend.deliver(message)
    inbox, delivery = _claim_one(backend, roster_dir)
    error = {"message_id": message.id, "error": "boom", "error_kind": "error", "attempts": 1}
    inbox.bury(delivery, error, message)
    inbox.close()
    (letter,) = backend.dead_letters(["a"])
    assert (letter.message_id, letter.error) == (message.id, "boom")

    # When it is requeued
    from agentctl.flow.deadletters import requeue

    assert requeue(backend, letter) == message.id

    # Then the journal holds the digest of what was requeued, as it does for a send
    (requeued,) = _events(backend, "requeued", message.id)
    revived = backend.dead_letters(["a"])
    assert revived == []
    assert requeued["sha256"]
    assert requeued["previous_error"] == "boom"
    sent = _events(backend, "sent", message.id)
    assert len(sent) == 1  # a requeue is journaled as `requeued` only, on both backends


def test_each_action_is_journaled_with_who_took_it(backend: Backend, roster_dir: Path) -> None:
    # Given a surface other than the terminal (an MCP client), acting through the core functions
    from agentctl.flow.deadletters import requeue
    from agentctl.flow.halt import halt, resume
    from agentctl.flow.send import SendRequest, send_message
    from agentctl.model.actor import Actor

    mcp = Actor("mcp", "test-client")
    roster = load_roster(roster_dir / "agents.yaml")
    (message,) = send_message(backend, roster, SendRequest("hi", to="a", by=mcp)).messages
    inbox, delivery = _claim_one(backend, roster_dir)
    error = {"message_id": message.id, "error": "boom", "error_kind": "error", "attempts": 1}
    inbox.bury(delivery, error, message)
    inbox.close()
    (letter,) = backend.dead_letters(["a"])
    requeue(backend, letter, by=mcp)
    halt(backend, "look first", by=mcp)
    resume(backend, by=Actor("ui"))

    # Then every event it caused names it; a send without an actor names nobody
    (sent,) = _events(backend, "sent", message.id)
    (requeued,) = _events(backend, "requeued", message.id)
    assert (sent["by"], sent["client"]) == ("mcp", "test-client")
    assert (requeued["by"], requeued["client"]) == ("mcp", "test-client")
    control = backend.read_events(100, lambda r: r["event"] in ("halted", "resumed"))
    assert [(r["event"], r["by"], r.get("client")) for r in control] == [
        ("halted", "mcp", "test-client"),
        ("resumed", "ui", None),
    ]
    plain = user_message("a", "no actor")
    backend.deliver(plain)
    assert "by" not in _events(backend, "sent", plain.id)[0]


def _break_delivery(backend: Backend, kind: str, roster_dir: Path) -> None:
    """Make the next delivery to `a` fail inside the backend (not in its input checks)."""
    if kind == "file":
        new = roster_dir / "workspace" / "a" / "inbox" / "new"
        shutil.rmtree(new)
        new.write_text("not a directory")
        return
    # A stream that stores nothing over 2 KiB: the message is refused, its events are not.
    from agentctl.backends.nats.transport import NatsTransport

    assert isinstance(backend, NatsTransport)

    async def shrink() -> None:
        info = await backend.js.stream_info(backend.stream)
        info.config.max_msg_size = 2048
        await backend.js.update_stream(info.config)

    backend.loop.call(shrink())


def test_a_failed_delivery_journals_discarded(
    backend: Backend, kind: str, roster_dir: Path
) -> None:
    backend.deliver(user_message("a", "first"))  # the recipient exists
    _break_delivery(backend, kind, roster_dir)
    message = user_message("a", "x" * 4000)

    with pytest.raises((AgentctlError, OSError)):
        backend.deliver(message)

    (discarded,) = _events(backend, "discarded", message.id)
    assert discarded["to"] == "a" and discarded["error"]


OVERRUNNER = """\
import time
from agentctl import BaseAgent


class Overrunner(BaseAgent):
    def process(self, task, context):  # synchronous: nothing can interrupt it in-process
        time.sleep(60)
        return {"slept": True}
"""


@pytest.mark.parametrize(
    "roster_dir",
    [
        textwrap.dedent("""\
            - name: a
              python: overrunner:Overrunner
              timeout_s: 0.5
              max_attempts: 1
        """)
    ],
    indirect=True,
)
def test_an_overrunning_handler_ends_as_a_timeout(
    backend: Backend, roster_dir: Path, supervised: Any
) -> None:
    # Given a handler that ignores its timeout: its worker is restarted, leaving a note
    (roster_dir / "overrunner.py").write_text(OVERRUNNER)
    supervised(roster_dir)
    message = user_message("a", "sleep")
    backend.deliver(message)

    # Then the next worker settles the message as a timeout, without running it again
    wait_until(lambda: backend.dead_letters(["a"]), timeout_s=30, interval_s=0.2)
    (letter,) = backend.dead_letters(["a"])
    assert letter.error_kind == "timeout"
    failed = _events(backend, "failed", message.id)
    assert [(f["attempt"], f["error_kind"]) for f in failed] == [(1, "timeout")]
    assert len(_events(backend, "claimed", message.id)) == 2  # run once, then settled
    assert not (roster_dir / "workspace" / "a" / "interrupted.json").exists()


def test_an_agent_that_handled_a_message_shows_handled_and_idle(
    backend: Backend, kind: str, roster_dir: Path, supervised: Any
) -> None:
    from agentctl.audit.overview import collect_overview

    supervised(roster_dir)
    backend.deliver(user_message("a", "hello"))

    def settled() -> Any:
        rows = [row for row in collect_overview(backend, ["a"]).agents if row.name == "a"]
        return rows if rows and rows[0].handled == 1 and rows[0].state == "idle" else None

    # The status overview is built once, above the backend: the same row on both
    (row,) = wait_until(settled, timeout_s=20, interval_s=0.2)
    assert row.alive and (row.new, row.processing, row.dead_letters) == (0, 0, 0)
    assert collect_overview(backend, ["a"]).to_json()["transport"]["kind"] == kind


def test_a_followed_journal_yields_events_appended_after_following_began(
    backend: Backend,
) -> None:
    # Given a message sent before anyone follows the journal
    before = user_message("a", "before")
    backend.deliver(before)
    stop = threading.Event()
    seen: queue.Queue[dict[str, Any]] = queue.Queue()

    def follow() -> None:
        for record in backend.follow_events(lambda r: r.get("event") == "sent", stop):
            seen.put(record)
            stop.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    # When messages are sent until the follower sees one (it starts at some point meanwhile)
    sent: list[str] = []

    def one_seen() -> dict[str, Any] | None:
        message = user_message("a", "after")
        backend.deliver(message)
        sent.append(message.id)
        try:
            return seen.get(timeout=0.2)
        except queue.Empty:
            return None

    record = wait_until(one_seen, timeout_s=15)

    # Then what it yields was sent after it began, never the message from before
    assert record["message_id"] in sent and record["message_id"] != before.id
    stop.set()
    follower.join(timeout=10)
    assert not follower.is_alive()


def test_following_starts_when_asked_so_what_comes_before_the_first_read_is_not_missed(
    backend: Backend,
) -> None:
    # Given: a follower asked for (not yet read), then the last events read, as `tail -f` does
    before = user_message("a", "before")
    backend.deliver(before)
    stop = threading.Event()
    followed = backend.follow_events(lambda r: r.get("event") == "sent", stop)
    # When: a message is sent before the follower is first read
    between = user_message("a", "between")
    backend.deliver(between)
    # Then: the follower yields it, and not what came before it was asked for
    record = next(iter(followed))
    stop.set()
    assert record["message_id"] == between.id


def _remove_from_trail(backend: Backend, kind: str, roster_dir: Path, where: Any) -> None:
    """Damage the audit trail as each backend allows: edit a done file, delete a message."""
    if kind == "file":
        (done,) = (roster_dir / "workspace" / "a" / "inbox" / "done").iterdir()
        done.write_text(done.read_text().replace("kept", "kEpt"))
        return
    backend.loop.call(  # type: ignore[attr-defined]
        backend.js.delete_msg(backend.stream, int(str(where).rpartition(":")[2]))  # type: ignore[attr-defined]
    )


def test_verify_finds_the_trail_intact_then_the_damage(
    backend: Backend, kind: str, roster_dir: Path
) -> None:
    # Given a message delivered and handled
    message = user_message("a", "kept")
    where = backend.deliver(message)
    inbox, delivery = _claim_one(backend, roster_dir)
    inbox.ack(delivery)
    inbox.close()

    # Then the trail is intact, on both backends
    found = backend.verify()
    assert found.ok and found.problems == [], found.problems
    assert found.doc["ok"] is True and found.summary

    # When the stored message is damaged, verify names it
    _remove_from_trail(backend, kind, roster_dir, where)
    found = backend.verify()
    assert not found.ok and not found.doc["ok"]
    assert [p for p in found.problems if message.id in p], found.problems
