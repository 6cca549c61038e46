"""The worker's loop, in this process: start, recovery, wake-ups and polls, stop, a lost
connection, a halted workspace, a disk that refuses writes, and a handler past its grace.

test_worker.py's real worker processes prove these end to end; here the same Worker runs in a
thread of the test's own process, on a fake clock, so that mutation testing (which cannot see
inside a child process) reaches the loop too (issue 20). The disk's refusals are real: a small
tmpfs filled up (as in test_full_disk.py), and a small ext4 whose full directory refuses even a
link (what a claim is).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentctl.backends.transport import Delivery
from agentctl.flow.halt import halt, resume
from agentctl.model.agent import BaseAgent
from agentctl.model.constants import WORKER_RESTART_EXIT_CODE
from agentctl.model.message import AgentMessage, parse_message
from agentctl.protocol.status import AgentState, iso_after, read_status
from agentctl.runtime.worker import Worker
from tests.conftest import fill, fill_directory, wait_until
from tests.test_worker import InProcess

GATE = threading.Event()  # opened by a test; Gated's handler holds its message until then


class Gated(BaseAgent):
    """Holds each message until the test opens GATE; then answers like an echo."""

    async def process(self, task: Any, context: Any) -> Any:
        while not GATE.is_set():
            await asyncio.sleep(0.01)
        return {"done": task["content"], "attempt": context["attempt"]}


class Running:
    """An InProcess worker whose run() goes on in a thread until stop()."""

    def __init__(self, team: InProcess) -> None:
        self.team = team
        self.worker = team.worker
        self.exit_codes: list[int] = []
        self.thread = threading.Thread(target=lambda: self.exit_codes.append(self.worker.run()))

    def start(self) -> Running:
        self.thread.start()
        return self

    def status(self) -> Any:
        return self.worker.reporter.snapshot()

    def status_file(self) -> Any:
        return read_status(self.team.ws.status_path("flaky"))

    def stop(self) -> int:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "run() did not return after stop()"
        [code] = self.exit_codes
        return code


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Running]:
    running = Running(InProcess(tmp_path, opened=False, stuck_after_s=7.5))
    yield running
    if running.thread.is_alive():
        running.stop()


@pytest.fixture
def team(tmp_path: Path) -> Iterator[InProcess]:
    """A worker in this process, its inbox open, not running: the test calls it step by step."""
    worker = InProcess(tmp_path)
    yield worker
    worker.close()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    GATE.clear()
    yield GATE
    GATE.set()  # a handler still waiting must not hold a thread past the test


def _leave_in_processing(team: InProcess, content: str) -> AgentMessage:
    """A message a dead worker was handling: in processing/, its attempt spent."""
    request = team.send(content)
    assert team.ws.mailbox("flaky").claim(request.file_name) is not None
    return request


def _reply(team: InProcess, request: AgentMessage) -> AgentMessage | None:
    path = team.ws.root / "user" / "inbox" / "new" / request.reply(None).file_name
    return parse_message(path.read_bytes()) if path.exists() else None


# -- start, wake, poll, stop -----------------------------------------------------------------


def test_a_worker_recovers_first_then_answers_what_arrives_and_stops_saying_so(
    loop: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    team, worker = loop.team, loop.worker
    left = _leave_in_processing(team, "left behind")
    seen: dict[str, Any] = {}

    def on_start() -> None:  # what the conductor does here: take up its unfinished runs
        seen["on_start"] = (team.inbox("processing"), loop.status().state)

    def close() -> None:
        seen["close"] = loop.status().state
        real_close()

    real_close = worker.handler.close
    monkeypatch.setattr(worker.handler, "on_start", on_start, raising=False)
    monkeypatch.setattr(worker.handler, "close", close)
    loop.start()

    # Ready: recovery settled the interrupted attempt before on_start, on_start before idle.
    wait_until(lambda: loop.status().state == AgentState.IDLE)
    assert seen["on_start"] == ([], AgentState.STARTING)
    [failed] = team.events("failed")
    assert failed["message_id"] == left.id and failed["error_kind"] == "interrupted"
    assert team.message("new", left.file_name).attempt == 1  # retried after its backoff
    on_disk = wait_until(loop.status_file)
    assert (on_disk.agent, on_disk.replica, on_disk.stuck_after_s) == ("flaky", 0, 7.5)
    assert on_disk.pid == os.getpid()

    # A message that arrives is claimed at the wake-up, answered, and the worker is idle again.
    request = team.send("hello")
    reply = wait_until(lambda: _reply(team, request))
    assert reply.content == {"done": "hello", "attempt": 1, "verdict": "flag"}
    wait_until(lambda: loop.status().handled == 1 and loop.status().state == AgentState.IDLE)
    assert loop.status().current_message_id is None

    # Stopped: run() returns 0, the status said `stopping` while the handler closed, then
    # `stopped` on disk.
    assert loop.stop() == 0
    assert seen["close"] == AgentState.STOPPING
    final = read_status(team.ws.status_path("flaky"))
    assert final is not None and final.state == AgentState.STOPPED
    assert final.current_message_id is None and final.handled == 1


def test_a_retry_comes_due_at_the_next_poll_with_no_file_event(loop: Running) -> None:
    team = loop.team
    left = _leave_in_processing(team, "again")
    loop.start()
    wait_until(lambda: team.events("failed"))  # the interrupted attempt: due again in 10 s
    wait_until(lambda: loop.status().state == AgentState.IDLE)

    team.clock.advance(10)  # nothing changes on disk: only the poll (0.5 s) finds it due

    reply = wait_until(lambda: _reply(team, left))
    assert reply.content == {"done": "again", "attempt": 2, "verdict": "flag"}
    assert loop.stop() == 0


@pytest.mark.parametrize("connected", [True, False])
def test_ready_the_loop_says_idle_or_disconnected_and_waits_a_poll_when_nothing_is_due(
    loop: Running, monkeypatch: pytest.MonkeyPatch, connected: bool
) -> None:
    worker = loop.worker
    worker._on_connection(connected)  # what the NATS transport calls while it reconnects
    first_claim: list[Any] = []
    waits: list[float] = []
    real_claim, real_wait = worker.inbox.claim, worker.inbox.wait

    def claim(may_claim: Any) -> Any:
        first_claim.append(loop.status().state)
        return real_claim(may_claim)

    def wait(timeout_s: float) -> None:
        waits.append(timeout_s)
        real_wait(timeout_s)

    monkeypatch.setattr(worker.inbox, "claim", claim)
    monkeypatch.setattr(worker.inbox, "wait", wait)
    loop.start()
    wait_until(lambda: waits)
    # Ready before the first claim, saying whether it is connected; then, nothing being due,
    # it waits for a wake-up or the poll interval rather than listing new/ again at once.
    assert first_claim[0] == (AgentState.IDLE if connected else AgentState.DISCONNECTED)
    assert waits[0] == 0.5
    worker._on_connection(True)
    assert loop.status().state == AgentState.IDLE
    assert loop.stop() == 0


def test_a_replica_reports_in_its_own_status_file(tmp_path: Path) -> None:
    team = InProcess(tmp_path, replica=2)
    try:
        assert team.worker.reporter.path == team.ws.status_path("flaky", 2)
        assert team.worker.reporter.snapshot().replica == 2
    finally:
        team.close()


# -- connection, halt ------------------------------------------------------------------------


def test_a_lost_connection_shows_in_the_status_idle_or_busy(
    team: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = team.worker
    worker._on_connection(False)
    assert worker.reporter.snapshot().state == AgentState.DISCONNECTED

    # A message handled meanwhile leaves the worker disconnected, not idle.
    team.send("hi")
    assert worker.claim_and_handle() == 1
    status = worker.reporter.snapshot()
    assert status.state == AgentState.DISCONNECTED and status.current_message_id is None

    worker._on_connection(True)
    assert worker.reporter.snapshot().state == AgentState.IDLE

    # Lost and back while a message is in hand: busy again, on that message.
    during: list[Any] = []
    real_handle = worker.handler.handle

    def handle(message: AgentMessage, **kw: Any) -> Any:
        worker._on_connection(False)
        during.append(worker.reporter.snapshot().state)
        worker._on_connection(True)
        during.append(worker.reporter.snapshot())
        return real_handle(message, **kw)

    monkeypatch.setattr(worker.handler, "handle", handle)
    request = team.send("again")
    assert worker.claim_and_handle() == 1
    lost, back = during
    assert lost == AgentState.DISCONNECTED
    assert back.state == AgentState.BUSY and back.current_message_id == request.id
    after = worker.reporter.snapshot()
    assert after.state == AgentState.IDLE and after.current_message_id is None


def test_a_halted_workspace_is_not_claimed_from_until_resumed(team: InProcess) -> None:
    request = team.send("hi")
    halt(team.ws, "checking something", by="alice")
    assert team.worker.claim_and_handle() == 0
    assert team.inbox("new") == [request.file_name]
    resume(team.ws, by="alice")
    assert team.worker.claim_and_handle() == 1
    assert team.inbox("done") == [request.file_name]


# -- one attempt's bookkeeping ---------------------------------------------------------------


def test_the_attempt_counts_the_deliveries_the_transport_saw(team: InProcess) -> None:
    # NATS counts deliveries the message does not carry: a worker died during them.
    request = team.send("hi", attempt=1)
    path = team.ws.mailbox("flaky").claim(request.file_name)
    team.worker._handle_or_put_back(Delivery(request.file_name, redeliveries=1, handle=path))
    [claimed] = team.events("claimed")
    assert claimed["attempt"] == 3
    assert _reply(team, request).content["attempt"] == 3


def test_a_delivery_past_the_last_attempt_is_dead_saying_the_worker_died(
    team: InProcess,
) -> None:
    request = team.send("hi", attempt=1)
    path = team.ws.mailbox("flaky").claim(request.file_name)
    team.worker._handle_or_put_back(Delivery(request.file_name, redeliveries=2, handle=path))
    [dead] = team.events("dead")
    assert dead["error"] == "worker died while handling its last attempt"
    assert dead["attempt"] == 3 and team.inbox("dead")[0] == request.file_name


def test_an_unreadable_not_before_is_due_at_once(team: InProcess) -> None:
    request = team.send("hi", headers={"not_before": "tomorrow-ish"})
    assert team.worker.claim_and_handle() == 1
    assert team.inbox("done") == [request.file_name]


def test_the_duration_is_the_handlers_time_in_milliseconds_to_the_microsecond(
    team: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_handle = team.worker.handler.handle

    def handle(message: AgentMessage, **kw: Any) -> Any:
        team.clock.advance(0.00123456)
        return real_handle(message, **kw)

    monkeypatch.setattr(team.worker.handler, "handle", handle)
    team.send("hi")
    assert team.worker.claim_and_handle() == 1
    [handled] = team.events("handled")
    assert handled["duration_ms"] == 1.235


# -- a handler past its timeout and grace ----------------------------------------------------


def test_the_overrun_note_names_the_message_and_why(team: InProcess) -> None:
    request = team.send("hi", headers={"timeout_s": "2.5"})
    [delivery] = list(team.worker.inbox.claim(lambda: True))
    team.worker._leave_overrun_note(delivery, parse_message(request.to_json_bytes()), 7.5)
    note = json.loads((team.ws.agent_dir("flaky") / "interrupted.json").read_bytes())
    assert note["file"] == request.file_name and note["message_id"] == request.id
    assert note["error"] == (
        "timed out after 2.5 s (still running 7.5 s later, so the worker was restarted)"
    )


def test_a_handler_past_its_grace_ends_the_process_for_a_restart(team: InProcess) -> None:
    # The guard ends the process: a forked child of this one plays the worker, so that the
    # Worker it builds is the code under test (a fresh interpreter would import it afresh).
    request = team.send("hi")
    [delivery] = list(team.worker.inbox.claim(lambda: True))
    message = parse_message(request.to_json_bytes())
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's only way out is an exit
        try:
            worker = Worker(team.ws, team.worker.spec, team.worker.handler,
                            poll_interval_s=0.5, clock=team.clock)  # fmt: skip
            worker.overrun.arm(600.0, delivery, message)
            team.clock.advance(600.0)  # on the worker's clock; the guard looks 4 times a second
            time.sleep(30)
        finally:
            os._exit(1)
    deadline = time.monotonic() + 30
    while (ended := os.waitpid(child, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    if ended == (0, 0):
        os.kill(child, 9)
        os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(ended[1]) == WORKER_RESTART_EXIT_CODE
    note = json.loads((team.ws.agent_dir("flaky") / "interrupted.json").read_bytes())
    assert note["message_id"] == request.id and "still running 600 s later" in note["error"]


# -- a disk that refuses writes --------------------------------------------------------------


@pytest.fixture
def on_disk(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Makes a worker whose workspace is on the given disk; stops it, if a test did not, before
    the disk is unmounted (fixtures end in the reverse order of the test's arguments)."""
    made: list[Running] = []

    def make(disk: Path, agent: str = "tests.test_worker:Flaky") -> Running:
        team = InProcess(tmp_path, agent=agent, workspace=disk / "workspace", opened=False)
        made.append(Running(team))
        return made[-1]

    yield make
    GATE.set()
    for running in made:
        if running.thread.is_alive():
            running.stop()


def _held(loop: Running) -> AgentMessage:
    """Start the loop with a message in Gated's handler: it stays there until the gate opens."""
    request = loop.team.send("hi")
    loop.start()
    wait_until(lambda: loop.status().current_message_id == request.id)
    return request


GATED = "tests.test_worker_loop:Gated"


def test_a_claim_the_full_disk_refuses_is_waited_out_and_the_status_clears_after(
    small_ext4: Path, on_disk: Callable[..., Running]
) -> None:
    loop = on_disk(small_ext4)
    team = loop.team
    request = team.send("later", headers={"not_before": iso_after(5, team.clock.now())})
    (anchor := small_ext4 / "anchor").touch()
    loop.start()
    wait_until(lambda: team.worker.inbox._delayed)  # claimed, put back, skipped for 5 s
    ballast = fill(small_ext4)
    pads = fill_directory(team.ws.root / "flaky" / "inbox" / "processing", anchor)

    team.clock.advance(5)  # due: the next poll claims it, and the disk refuses the link
    refused = wait_until(lambda: loop.status().write_error)
    assert refused.startswith("disk full: no space left on device")
    assert team.inbox("new") == [request.file_name] and team.inbox("processing") == []

    # Space comes back, and another claimer takes the message meanwhile: the next pass finds
    # nothing to claim, and the outage is over all the same.
    for pad in pads:
        pad.unlink()
    ballast.unlink()
    (team.ws.root / "flaky" / "inbox" / "new" / request.file_name).unlink(missing_ok=True)
    wait_until(lambda: loop.status().write_error is None)
    assert loop.status().state == AgentState.IDLE
    assert loop.stop() == 0


def test_stopping_while_the_reply_cannot_be_written_puts_the_message_back_uncounted(
    small_disk: Path, on_disk: Callable[..., Running], gate: threading.Event
) -> None:
    loop = on_disk(small_disk, GATED)
    team, request = loop.team, _held(loop)
    ballast = fill(small_disk)
    gate.set()  # the reply cannot be written: the worker waits for space
    wait_until(lambda: loop.status().write_error)
    assert not team.worker.overrun.armed  # waiting for space is not the handler overrunning

    assert loop.stop() == 0
    ballast.unlink()
    assert team.inbox("processing") == [] and team.inbox("new") == [request.file_name]
    assert team.message("new", request.file_name).attempt == 0  # not counted
    # Due at once for whoever claims next.
    assert [d.key for d in team.worker.inbox.claim(lambda: True)] == [request.file_name]


def test_stopping_when_not_even_the_way_back_can_be_written_leaves_it_for_recovery(
    small_ext4: Path, on_disk: Callable[..., Running], gate: threading.Event
) -> None:
    loop = on_disk(small_ext4, GATED)
    (anchor := small_ext4 / "anchor").touch()
    team, request = loop.team, _held(loop)
    fill(small_ext4)
    fill_directory(team.ws.root / "flaky" / "inbox" / "new", anchor)
    gate.set()  # neither the reply nor the link back into new/ can be written
    wait_until(lambda: loop.status().write_error)

    assert loop.stop() == 0
    assert team.inbox("processing") == [request.file_name] and team.inbox("new") == []


def test_stopping_while_recovery_cannot_write_leaves_the_interrupted_message_in_hand(
    small_disk: Path, on_disk: Callable[..., Running]
) -> None:
    loop = on_disk(small_disk)
    team = loop.team
    left = _leave_in_processing(team, "left behind")
    fill(small_disk)  # the `claimed` event of the recovery cannot be written
    loop.start()
    wait_until(lambda: loop.status().write_error)

    assert loop.stop() == 0
    # Still in processing/: the next worker counts the interrupted attempt.
    assert team.inbox("processing") == [left.file_name] and team.inbox("new") == []
