"""The backend contract: the same tests on the file workspace and on NATS JetStream.

Each behaviour a command, the worker or a future surface relies on is asserted once here, for
both backends, so the two cannot drift apart again (issue 14).
"""

from __future__ import annotations

import shutil
import textwrap
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
