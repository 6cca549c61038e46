"""The supervisor with real child processes and a fake clock for restart timing."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agentctl.backends.file.workspace import Workspace
from agentctl.config.roster import load_roster
from agentctl.model.clock import SYSTEM_CLOCK, FakeClock
from agentctl.model.constants import (
    RESTART_BACKOFF_INITIAL_S,
    RESTART_COOLDOWN_S,
    RESTART_MAX_QUICK_FAILURES,
    WORKER_RESTART_EXIT_CODE,
)
from agentctl.model.message import AgentMessage
from agentctl.protocol.journalreader import read_all
from agentctl.protocol.proc import ProcessRef
from agentctl.protocol.status import (
    AgentState,
    AgentStatus,
    iso_after,
    read_status,
    write_status,
)
from agentctl.runtime.agentprocess import AgentProcess, describe_exit, log_tail, signal_group
from agentctl.runtime.supervisor import ProcState, Supervisor
from tests.conftest import wait_until, write_roster


def _supervisor(tmp_path: Path, command: str, restart: str, clock: FakeClock,
                grace_s: float = 2.0, backoff: str = "{}") -> Supervisor:
    write_roster(tmp_path, f"""\
        - name: proc
          command: [sh, -c, {command!r}]
          restart: {restart}
          restart_backoff: {backoff}
    """)
    roster = load_roster(tmp_path / "agents.yaml")
    return Supervisor(roster, Workspace(tmp_path / "workspace", fsync=False), clock=clock,
                      grace_s=grace_s)


def _wait_exit(sup: Supervisor) -> None:
    proc = sup.agents["proc"]
    assert proc.popen is not None
    proc.popen.wait(timeout=10)
    sup.tick()


@pytest.mark.parametrize(
    ("command", "restart", "expected"),
    [
        ("exit 0", "on-failure", ProcState.EXITED),
        ("exit 1", "on-failure", ProcState.BACKOFF),
        ("kill -9 $$", "on-failure", ProcState.BACKOFF),
        ("exit 0", "always", ProcState.BACKOFF),
        ("exit 1", "always", ProcState.BACKOFF),
        ("kill -9 $$", "always", ProcState.BACKOFF),
        ("exit 0", "never", ProcState.EXITED),
        ("exit 1", "never", ProcState.EXITED),
        ("kill -9 $$", "never", ProcState.EXITED),
    ],
)
def test_restart_policy(tmp_path: Path, command: str, restart: str, expected: ProcState) -> None:
    clock = FakeClock()
    sup = _supervisor(tmp_path, command, restart, clock)
    sup.start()
    try:
        _wait_exit(sup)
        assert sup.agents["proc"].state is expected
        if expected is ProcState.BACKOFF:
            clock.advance(RESTART_BACKOFF_INITIAL_S)
            sup.tick()
            assert sup.agents["proc"].state is ProcState.RUNNING
            assert sup.agents["proc"].restarts == 1
    finally:
        sup.stop()


def test_backoff_grows_then_the_agent_is_fatal(tmp_path: Path) -> None:
    clock = FakeClock()
    sup = _supervisor(tmp_path, "exit 1", "on-failure", clock)
    sup.start()
    delays = []
    try:
        while sup.agents["proc"].state is not ProcState.FATAL:
            _wait_exit(sup)
            proc = sup.agents["proc"]
            if proc.state is ProcState.BACKOFF:
                delays.append(proc.restart_at - clock.monotonic())
                clock.advance(proc.restart_at - clock.monotonic())
                sup.tick()
        assert delays == [0.5, 1.0, 2.0, 4.0]
        assert sup.agents["proc"].quick_failures == RESTART_MAX_QUICK_FAILURES
        clock.advance(RESTART_COOLDOWN_S - 1)
        sup.tick()
        assert sup.agents["proc"].state is ProcState.FATAL  # stays down for the cool-down
        assert any("fatal" in e for e in sup.drain_events())
    finally:
        sup.stop()


# Fails at once until a file `fixed` appears in the roster's directory, then runs.
FAILS_UNTIL_FIXED = "test -e fixed || exit 1; exec sleep 300"


def _fail_until_fatal(sup: Supervisor, clock: FakeClock) -> None:
    """Let the agent's quick failures run their course (fake time) until it is fatal."""
    while sup.agents["proc"].state is not ProcState.FATAL:
        _wait_exit(sup)
        proc = sup.agents["proc"]
        if proc.state is ProcState.BACKOFF:
            clock.advance(proc.restart_at - clock.monotonic())
            sup.tick()


def test_a_fatal_agent_is_tried_again_after_a_cooldown_that_doubles_to_a_cap(
    tmp_path: Path,
) -> None:
    # Given an agent that always fails fast, fatal after 2 quick failures, cool-down 60 s
    # doubling up to 200 s
    clock = FakeClock()
    sup = _supervisor(tmp_path, "exit 1", "on-failure", clock,
                      backoff="{max_quick_failures: 2, cooldown_s: 60, cooldown_max_s: 200}")
    sup.start()
    cooldowns = []
    try:
        for _ in range(4):
            _fail_until_fatal(sup, clock)
            proc = sup.agents["proc"]
            cooldown_s = proc.restart_at - clock.monotonic()
            cooldowns.append(cooldown_s)
            # status.json says when the next try is
            status = read_status(sup.workspace.status_path("proc"))
            assert status is not None and status.state == "fatal"
            assert status.next_try_at
            # Then nothing happens until the cool-down is over...
            clock.advance(cooldown_s - 0.1)
            sup.tick()
            assert proc.state is ProcState.FATAL
            # ...and then it gets a whole new burst of quick restarts
            clock.advance(0.1)
            sup.tick()
            assert proc.state is ProcState.RUNNING
            assert proc.quick_failures == 0
        assert cooldowns == [60.0, 120.0, 200.0, 200.0]
        assert any(e.startswith("proc: restarted (pid ") and e.endswith(" after cool-down")
                   for e in sup.drain_events())
    finally:
        sup.stop()


def test_a_stable_run_after_a_cooldown_resets_the_cooldown(tmp_path: Path) -> None:
    clock = FakeClock()
    sup = _supervisor(tmp_path, "read line", "on-failure", clock,
                      backoff="{max_quick_failures: 1, cooldown_s: 60}")
    sup.start()
    try:
        for expected_s in (60.0, 120.0):
            os.kill(sup.agents["proc"].popen.pid, signal.SIGKILL)
            _wait_exit(sup)
            assert sup.agents["proc"].state is ProcState.FATAL
            assert sup.agents["proc"].restart_at - clock.monotonic() == expected_s
            clock.advance(expected_s)
            sup.tick()
        clock.advance(60)  # it stays up past stable_s this time
        os.kill(sup.agents["proc"].popen.pid, signal.SIGKILL)
        _wait_exit(sup)
        assert sup.agents["proc"].state is ProcState.BACKOFF  # one quick failure allowed again
        clock.advance(sup.agents["proc"].restart_at - clock.monotonic())
        sup.tick()
        os.kill(sup.agents["proc"].popen.pid, signal.SIGKILL)
        _wait_exit(sup)
        # The first cool-down again.
        assert sup.agents["proc"].restart_at - clock.monotonic() == 60.0
    finally:
        sup.stop()


def test_cooldown_null_leaves_a_fatal_agent_down_until_restarted(tmp_path: Path) -> None:
    clock = FakeClock()
    sup = _supervisor(tmp_path, FAILS_UNTIL_FIXED, "on-failure", clock,
                      backoff="{max_quick_failures: 1, cooldown_s: null}")
    sup.start()
    try:
        _fail_until_fatal(sup, clock)
        (tmp_path / "fixed").touch()
        clock.advance(10 * RESTART_COOLDOWN_S)
        sup.tick()
        assert sup.agents["proc"].state is ProcState.FATAL
        assert read_status(sup.workspace.status_path("proc")).next_try_at is None
        assert sup.drain_events()[-1].endswith(
            "; no retry, or `agentctl restart proc` (see its agent.log)")

        answer = sup.restart_agent("proc")

        assert answer == [f"proc: restarted (pid {sup.agents['proc'].pid})"]
        assert sup.agents["proc"].state is ProcState.RUNNING
        # A running one stops gracefully, then starts again once it has exited (systemctl's
        # restart), never both at once
        pid = sup.agents["proc"].pid
        again = sup.restart_agent("proc")
        assert again == [f"proc: restarting (pid {pid}); it finishes its message in hand "
                         "(grace 2 s), then starts again"]
        assert sup.agents["proc"].state is ProcState.STOPPING
        wait_until(lambda: sup.tick() or sup.agents["proc"].pid not in (None, pid))
        assert sup.agents["proc"].state is ProcState.RUNNING

        # `stop` while a restart is under way calls the restart off: the worker stays down
        sup.restart_agent("proc")
        assert sup.requests.stop("proc") == ["proc: already stopping"]
        wait_until(lambda: sup.tick() or sup.agents["proc"].state is not ProcState.STOPPING)
        assert sup.agents["proc"].state is ProcState.STOPPED
    finally:
        sup.stop()


def test_restart_through_the_control_channel(tmp_path: Path) -> None:
    from agentctl.protocol.control import ControlAction, read_answer, submit_request

    # Given an agent made fatal, then fixed
    clock = FakeClock()
    sup = _supervisor(tmp_path, FAILS_UNTIL_FIXED, "on-failure", clock,
                      backoff="{max_quick_failures: 1}")
    sup.start()
    try:
        _fail_until_fatal(sup, clock)
        (tmp_path / "fixed").touch()
        restart = submit_request(sup.workspace, ControlAction.RESTART, "proc")
        unknown = submit_request(sup.workspace, ControlAction.RESTART, "other")

        sup.tick()  # the supervisor answers in its loop

        assert sup.agents["proc"].state is ProcState.RUNNING
        ok, lines = read_answer(sup.workspace, restart)
        assert ok and lines[0].startswith("proc: restarted (pid")
        ok, lines = read_answer(sup.workspace, unknown)
        assert not ok and "other" in lines[0]
        assert os.listdir(sup.workspace.control_dir / "requests") == []
    finally:
        sup.stop()


def test_a_request_nobody_answers_is_withdrawn(tmp_path: Path) -> None:
    from agentctl.model.errors import SupervisorError
    from agentctl.protocol.control import (
        ControlAction,
        ask_supervisor,
        release_supervisor_lock,
        take_supervisor_lock,
    )

    # Given a process that holds the supervisor lock but never serves requests
    ws = Workspace(tmp_path / "workspace", fsync=False)
    lock_fd = take_supervisor_lock(ws, "agents.yaml")
    try:
        with pytest.raises(SupervisorError, match="gave no answer within 0.2 s; .* withdrawn"):
            ask_supervisor(ws, ControlAction.RESTART, "proc", timeout_s=0.2)
        assert os.listdir(ws.control_dir / "requests") == []
    finally:
        release_supervisor_lock(ws, lock_fd)


def test_a_stable_run_resets_the_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    sup = _supervisor(tmp_path, "read line", "on-failure", clock)  # runs until signalled
    sup.start()
    try:
        for _ in range(3):  # three quick crashes
            os.kill(sup.agents["proc"].popen.pid, signal.SIGKILL)
            _wait_exit(sup)
            clock.advance(sup.agents["proc"].restart_at - clock.monotonic())
            sup.tick()
        assert sup.agents["proc"].backoff_s == 2.0
        clock.advance(60)  # then it stays up a long time
        os.kill(sup.agents["proc"].popen.pid, signal.SIGKILL)
        _wait_exit(sup)
        assert sup.agents["proc"].backoff_s == RESTART_BACKOFF_INITIAL_S
        assert sup.agents["proc"].quick_failures == 0
    finally:
        sup.stop()


def _proc_stats() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgid) of every process."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            out.append((int(entry), fields[0], int(fields[1]), int(fields[2])))
    return out


def _live_members(pgid: int) -> list[int]:
    return [pid for pid, state, _, group in _proc_stats() if group == pgid and state != "Z"]


def _zombie_children() -> list[int]:
    return [pid for pid, state, ppid, _ in _proc_stats() if state == "Z" and ppid == os.getpid()]


def test_many_crashes_leave_no_zombies(tmp_path: Path) -> None:
    clock = FakeClock()
    sup = _supervisor(tmp_path, "exit 1", "always", clock)
    sup.start()
    try:
        for _ in range(100):
            _wait_exit(sup)  # the tick reaps the exited child
            proc = sup.agents["proc"]
            proc.quick_failures = 0  # keep it from turning fatal: we count zombies, not policy
            clock.advance(proc.restart_at - clock.monotonic())
            sup.tick()
        _wait_exit(sup)
        assert sup.agents["proc"].restarts == 100
        assert _zombie_children() == []
    finally:
        sup.stop()
    assert _zombie_children() == []


def test_stop_kills_what_ignores_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, "trap '' TERM; sleep 300 & echo $! > child.pid; wait",
                      "always", FakeClock(), grace_s=0.3)
    sup.clock = SYSTEM_CLOCK  # the grace period is real time here
    sup.start()
    wait_until(lambda: (tmp_path / "child.pid").exists() and
               (tmp_path / "child.pid").read_text().strip())
    child = int((tmp_path / "child.pid").read_text())
    group = sup.agents["proc"].popen.pid

    sup.stop()

    assert sup.agents["proc"].state is ProcState.STOPPED
    assert any("killed" in e for e in sup.drain_events())
    # Nothing of the group is alive any more, the background `sleep` included (a killed
    # orphan may linger as a zombie until init reaps it: that is not alive).
    wait_until(lambda: _live_members(group) == [])
    assert child not in _live_members(group)


def test_a_program_that_cannot_start_is_retried_not_fatal_at_once(tmp_path: Path) -> None:
    write_roster(tmp_path, "- name: proc\n  command: [/nonexistent/program]\n")
    clock = FakeClock()
    sup = Supervisor(load_roster(tmp_path / "agents.yaml"),
                     Workspace(tmp_path / "workspace", fsync=False), clock=clock)
    sup.start()
    try:
        proc = sup.agents["proc"]
        assert proc.state is ProcState.BACKOFF
        assert (proc.quick_failures, proc.restart_at) == (1, clock.monotonic() + 0.5)
        error = "cannot start '/nonexistent/program': no such file or directory: " \
                "/nonexistent/program"
        assert sup.drain_events() == [f"proc: {error}"]
        assert _fields(_journaled(sup)[-1], "error") == {
            "event": "crashed", "agent": "proc", "error": error}
        sup.stop()
        assert proc.state is ProcState.STOPPED  # no restart pending any more
    finally:
        sup.stop()


def test_the_supervisor_lock_is_exclusive(tmp_path: Path) -> None:
    from agentctl.model.errors import SupervisorError

    first = _supervisor(tmp_path, "read line", "never", FakeClock())
    first.start()
    try:
        second = Supervisor(first.roster, Workspace(tmp_path / "workspace"), clock=FakeClock())
        with pytest.raises(SupervisorError, match="already running"):
            second.start()
        assert first.agents["proc"].state is ProcState.RUNNING  # untouched by the attempt
        record = json.loads((first.workspace.control_dir / "supervisor.json").read_text())
        assert (record["pid"], record["config"]) == (os.getpid(), str(tmp_path / "agents.yaml"))
    finally:
        first.stop()
    assert not (first.workspace.control_dir / "supervisor.json").exists()  # released


def test_a_supervisor_that_has_not_taken_the_lock_answers_no_request(tmp_path: Path) -> None:
    from agentctl.protocol.control import ControlAction, submit_request

    sup = _supervisor(tmp_path, "exec sleep 300", "always", FakeClock())
    submit_request(sup.workspace, ControlAction.RESTART, "proc")

    sup.tick()  # not started: the lock, and the requests, belong to another one

    assert len(os.listdir(sup.workspace.control_dir / "requests")) == 1
    sup.stop()  # nothing to stop, no lock to release


# -- in process, what the end-to-end tests check through real workers (issue 20) -------------
# A worker is a Python process, which `make mutate` cannot start (tools/mutmut_plugin.py): these
# give a Python agent a `sh` stand-in through the spawn seam, so the supervisor's policy for
# workers runs in the test's process.


def _worker_supervisor(tmp_path: Path, stand_in: str, clock: FakeClock,
                       restart: str = "on-failure") -> Supervisor:
    """A supervisor of one Python agent, `proc`, whose worker is `sh -c stand_in`."""
    write_roster(tmp_path, f"""\
        - name: proc
          python: agentctl.agents.echo:EchoAgent
          restart: {restart}
    """)

    def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        assert argv[1:3] == ["-m", "agentctl.runtime.worker"]  # what it stands in for
        return subprocess.Popen(["sh", "-c", stand_in], **kwargs)

    return Supervisor(load_roster(tmp_path / "agents.yaml"),
                      Workspace(tmp_path / "workspace", fsync=False), clock=clock, spawn=spawn)


def _journaled(sup: Supervisor) -> list[dict[str, Any]]:
    return [e.record for e in read_all(sup.workspace.journal_dir) if e.record is not None]


def test_a_worker_asking_for_a_fresh_process_is_restarted_at_once_not_as_a_crash(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    sup = _worker_supervisor(tmp_path, f"exit {WORKER_RESTART_EXIT_CODE}", clock)
    sup.start()
    try:
        first = sup.agents["proc"].pid
        _wait_exit(sup)

        proc = sup.agents["proc"]
        assert proc.state is ProcState.RUNNING and proc.pid != first  # no backoff
        assert (proc.restarts, proc.quick_failures) == (1, 0)
        assert sup.drain_events()[1:] == [
            "proc: handler overran its timeout; restarting the worker",
            f"proc: restarted (pid {proc.pid})",
        ]
        exited = [r for r in _journaled(sup) if r["event"] == "exited"]
        assert [(r["agent"], r["exit"]) for r in exited] == [("proc", "exit 75")]
        _wait_exit(sup)  # and again: each restart counts
        assert (proc.state, proc.restarts, proc.quick_failures) == (ProcState.RUNNING, 2, 0)
    finally:
        sup.stop()


@pytest.mark.parametrize("restart", ["never", "command"])
def test_exit_75_is_a_plain_exit_for_a_command_agent_or_restart_never(
    tmp_path: Path, restart: str
) -> None:
    clock = FakeClock()
    if restart == "never":  # a worker that may not be restarted at all
        sup = _worker_supervisor(tmp_path, f"exit {WORKER_RESTART_EXIT_CODE}", clock, "never")
        expected = ProcState.EXITED
    else:  # a program of its own: 75 means what that program means by it, a failure
        sup = _supervisor(tmp_path, f"exit {WORKER_RESTART_EXIT_CODE}", "on-failure", clock)
        expected = ProcState.BACKOFF
    sup.start()
    try:
        _wait_exit(sup)
        assert sup.agents["proc"].state is expected
        assert sup.agents["proc"].restarts == 0
        assert [r["event"] for r in _journaled(sup)] == ["started", "crashed"]
    finally:
        sup.stop()


def test_a_worker_whose_heartbeat_is_silent_past_its_limit_is_killed_at_the_next_check(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    sup = _worker_supervisor(tmp_path, "exec sleep 300", clock)
    sup.start()
    try:
        proc = sup.agents["proc"]
        ref = ProcessRef.of(proc.pid)
        assert ref is not None
        write_status(sup.workspace.status_path("proc"), AgentStatus(
            agent="proc", state=AgentState.BUSY, pid=proc.pid, pid_start_ticks=ref.start_ticks,
            heartbeat_at=clock.now().isoformat(), stuck_after_s=0.5))
        sup.tick()  # checked now: it beat just now; the next check is in a second
        clock.advance(0.75)
        sup.tick()  # silent past its limit, but not checked yet
        assert [r["event"] for r in _journaled(sup)] == ["started"]
        clock.advance(0.25)

        sup.tick()

        assert proc.popen.wait(timeout=10) == -signal.SIGKILL
        assert sup.drain_events()[-1] == "proc: stuck: no heartbeat for 1 s; killed (SIGKILL)"
        killed = _journaled(sup)[-1]
        assert (killed["event"], killed["agent"]) == ("killed", "proc")
        assert killed["error"] == "no heartbeat for 1 s"
        sup.tick()
        assert proc.state is ProcState.BACKOFF  # a crash like any other: the policy restarts it
    finally:
        sup.stop()


def test_a_dead_supervisors_leftover_agents_are_stopped_before_they_start_anew(
    tmp_path: Path,
) -> None:
    # Given: agents a killed supervisor left running (status.json names them): one takes a
    # moment to finish on SIGTERM, the other ignores it (and one agent never ran)
    write_roster(tmp_path, """\
        - name: fresh
          command: [sh, -c, 'exec sleep 300']
        - name: polite
          command: [sh, -c, 'exec sleep 300']
        - name: stubborn
          command: [sh, -c, 'exec sleep 300']
    """)
    ws = Workspace(tmp_path / "workspace", fsync=False)
    leftovers = {
        "polite": subprocess.Popen(["sh", "-c", "trap 'sleep 0.1; exit 7' TERM; sleep 300 & wait"],
                                   process_group=0),
        "stubborn": subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 300"],
                                     process_group=0),
    }
    stubborn_comm = Path(f"/proc/{leftovers['stubborn'].pid}/comm")
    wait_until(lambda: stubborn_comm.read_text().strip() == "sleep")  # TERM ignored from here
    polite = leftovers["polite"].pid
    polite_children = Path(f"/proc/{polite}/task/{polite}/children")
    wait_until(lambda: polite_children.read_text().strip())  # its trap is set, it waits
    for name, leftover in leftovers.items():
        ref = ProcessRef.of(leftover.pid)
        assert ref is not None
        ws.ensure_agent(name)
        write_status(ws.status_path(name), AgentStatus(
            agent=name, state=AgentState.RUNNING, pid=leftover.pid,
            pid_start_ticks=ref.start_ticks))
    sup = Supervisor(load_roster(tmp_path / "agents.yaml"), ws, grace_s=0.3)  # real time
    try:
        # When: a new supervisor starts
        sup.start()

        # Then: SIGTERM first, SIGKILL for what outlives the grace period, then its own agents
        assert leftovers["polite"].wait(timeout=10) == 7  # given the time to finish
        assert leftovers["stubborn"].wait(timeout=10) == -signal.SIGKILL
        events = sup.drain_events()
        for name, leftover in leftovers.items():
            assert f"{name}: stopped a leftover process (pid {leftover.pid})" in events
            assert sup.agents[name].state is ProcState.RUNNING
            assert sup.agents[name].pid not in (None, leftover.pid)
    finally:
        sup.stop()
        for leftover in leftovers.values():
            leftover.kill()
            leftover.wait()


@pytest.mark.parametrize("kind", ["worker", "command"])
def test_a_worker_killed_at_the_end_of_the_stop_grace_puts_its_message_back(
    tmp_path: Path, kind: str
) -> None:
    ignores_term = "trap '' TERM; exec sleep 300"
    if kind == "worker":
        sup = _worker_supervisor(tmp_path, ignores_term, FakeClock())
    else:
        sup = _supervisor(tmp_path, ignores_term, "always", FakeClock())
    sup.clock, sup.grace_s = SYSTEM_CLOCK, 0.2  # the grace period is real time here
    sup.start()
    mailbox = sup.workspace.mailbox("proc")
    message = AgentMessage(from_agent="user", to_agent="proc", content="in hand")
    mailbox.deliver(message)
    mailbox.claim(message.file_name)  # what the worker had in hand
    pid = sup.agents["proc"].pid
    wait_until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep")

    sup.stop()

    assert sup.agents["proc"].popen.returncode == -signal.SIGKILL
    assert "proc: still running after 0.2 s; killed" in sup.drain_events()
    records = _journaled(sup)
    assert [r["event"] for r in records][-3:] == (
        ["killed", "released", "stopped"] if kind == "worker" else ["started", "killed", "stopped"]
    )
    if kind == "worker":  # stopped, not crashed: back in new/ with no attempt counted
        released = records[-2]
        assert released["agent"] == "proc" and released["file"] == message.file_name
        assert released["reason"] == "stopped before its handler finished"
        assert os.listdir(mailbox.new) == [message.file_name]
    else:  # a command agent's inbox is its own business
        assert os.listdir(mailbox.processing) == [message.file_name]
    assert records[-1]["exit"] == "signal SIGKILL"


def _fields(record: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: record.get(name) for name in ("event", "agent", *names)}


def test_each_exit_is_journaled_and_shown_with_what_the_policy_decided(tmp_path: Path) -> None:
    # Given: an agent that always fails fast, fatal after 2 quick failures, cool-down 60 s
    clock = FakeClock()
    sup = _supervisor(tmp_path, 'echo "$AGENTCTL_AGENT: oops" >&2; exit 3', "on-failure", clock,
                      backoff="{max_quick_failures: 2, cooldown_s: 60}")
    sup.workspace.ensure_agent("proc")
    log = sup.workspace.log_path("proc")
    log.write_text("an earlier run\n")
    sup.start()
    try:
        pids = [sup.agents["proc"].pid]
        _wait_exit(sup)  # a crash: backoff
        clock.advance(RESTART_BACKOFF_INITIAL_S)
        sup.tick()
        pids.append(sup.agents["proc"].pid)
        _wait_exit(sup)  # the second quick crash in a row: fatal
        status = read_status(sup.workspace.status_path("proc"))
        assert status is not None and status.state == "fatal"
        assert status.last_error == "exit 3; fatal after 2 quick failures in a row"
        assert status.next_try_at == iso_after(60, clock.now())
        # its output (stderr too) appended to its log, and its environment its own
        assert status.log_tail == ["an earlier run", "proc: oops", "proc: oops"]
        clock.advance(60)
        sup.tick()  # the cool-down is over
        pids.append(sup.agents["proc"].pid)

        assert sup.drain_events() == [
            f"proc: started (pid {pids[0]})",
            "proc: exit 3; restarting in 0.5 s",
            f"proc: restarted (pid {pids[1]})",
            "proc: exit 3",
            "proc: exit 3; fatal after 2 quick failures in a row; next try in 60 s, or "
            "`agentctl restart proc` (see its agent.log)",
            f"proc: restarted (pid {pids[2]}) after cool-down",
        ]
        assert [_fields(r, "pid", "restarts", "cause", "exit", "restart", "restart_in_s",
                        "error", "retry_in_s") for r in _journaled(sup)] == [
            {"event": "started", "agent": "proc", "pid": pids[0], "restarts": None,
             "cause": None, "exit": None, "restart": None, "restart_in_s": None,
             "error": None, "retry_in_s": None},
            {"event": "crashed", "agent": "proc", "pid": None, "restarts": None, "cause": None,
             "exit": "exit 3", "restart": None, "restart_in_s": 0.5, "error": None,
             "retry_in_s": None},
            {"event": "restarted", "agent": "proc", "pid": pids[1], "restarts": 1,
             "cause": None, "exit": None, "restart": None, "restart_in_s": None,
             "error": None, "retry_in_s": None},
            {"event": "crashed", "agent": "proc", "pid": None, "restarts": None, "cause": None,
             "exit": "exit 3", "restart": False, "restart_in_s": None, "error": None,
             "retry_in_s": None},
            {"event": "fatal", "agent": "proc", "pid": None, "restarts": None, "cause": None,
             "exit": None, "restart": None, "restart_in_s": None,
             "error": "exit 3; fatal after 2 quick failures in a row", "retry_in_s": 60.0},
            {"event": "restarted", "agent": "proc", "pid": pids[2], "restarts": 2,
             "cause": "cool-down", "exit": None, "restart": None, "restart_in_s": None,
             "error": None, "retry_in_s": None},
        ]  # fmt: skip
    finally:
        sup.stop()


@pytest.mark.parametrize(("command", "event", "state"), [
    ("exit 0", "exited", "stopped"),
    ("kill -9 $$", "crashed", "crashed"),
])
def test_an_exit_the_policy_does_not_restart_is_journaled_and_shown_so(
    tmp_path: Path, command: str, event: str, state: str
) -> None:
    sup = _supervisor(tmp_path, command, "never", FakeClock())
    sup.start()
    try:
        _wait_exit(sup)
        exit_text = "exit 0" if command == "exit 0" else "signal SIGKILL"
        assert sup.drain_events()[1:] == [f"proc: {exit_text}; not restarted (never)"]
        assert _fields(_journaled(sup)[-1], "exit", "restart") == {
            "event": event, "agent": "proc", "exit": exit_text, "restart": False}
        status = read_status(sup.workspace.status_path("proc"))
        assert status is not None and status.state == state
        sup.stop()
        assert sup.agents["proc"].state is ProcState.EXITED  # not stopped: it was not running
        assert _journaled(sup)[-1]["event"] == event
    finally:
        sup.stop()


# -- one agent process's bookkeeping (agentprocess.py) ------------------------------------------


def _agent_process(tmp_path: Path, backoff: str) -> AgentProcess:
    write_roster(tmp_path, f"""\
        - name: proc
          command: [sh, -c, 'exit 1']
          restart_backoff: {backoff}
    """)
    return AgentProcess(load_roster(tmp_path / "agents.yaml").agent("proc"))


def test_the_backoff_grows_by_its_factor_to_its_cap_and_a_stable_run_starts_afresh(
    tmp_path: Path,
) -> None:
    proc = _agent_process(tmp_path, "{initial_s: 0.25, factor: 2, max_s: 1.5}")
    delays = []
    for now_s in (100.0, 200.0, 300.0, 400.0, 500.0):
        proc.schedule_restart(now_s, quick=True)
        delays.append(proc.restart_at - now_s)
    assert delays == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert proc.quick_failures == 5
    proc.times_fatal = 2

    proc.schedule_restart(600.0, quick=False)  # it ran longer than stable_s

    assert (proc.restart_at, proc.backoff_s) == (600.25, 0.25)
    assert (proc.quick_failures, proc.times_fatal) == (0, 0)
    proc.quick_failures, proc.backoff_s = 4, 2.0
    proc.forget_failures(times_fatal=3)
    assert (proc.quick_failures, proc.backoff_s, proc.times_fatal) == (0, -1.0, 3)
    proc.schedule_restart(700.0, quick=True)  # the first quick failure of a new burst
    assert (proc.restart_at, proc.quick_failures) == (700.25, 1)


def test_describe_exit_names_the_signal_or_its_number() -> None:
    assert describe_exit(0) == "exit 0"
    assert describe_exit(75) == "exit 75"
    assert describe_exit(-signal.SIGTERM) == "signal SIGTERM"
    assert describe_exit(-40) == "signal 40"  # a real-time signal has no name of its own


def test_log_tail_reads_the_last_lines_of_a_long_log(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    lines = "".join(f"line {n}\n" for n in range(2000)) + "\n  \nlast \xe9\n"
    log.write_bytes(lines.encode() + b"bad \xff byte\n")  # a program's output is any bytes
    assert log.stat().st_size > 8192
    assert log_tail(log, 3) == ["line 1999", "last \xe9", "bad \ufffd byte"]  # no blank lines
    log.write_text("first\nsecond\n")
    assert log_tail(log, 3) == ["first", "second"]  # a short log from its first byte
    assert log_tail(tmp_path / "missing.log", 3) == []


def test_signal_group_of_a_process_gone_already_does_nothing(tmp_path: Path) -> None:
    proc = _agent_process(tmp_path, "{}")
    proc.popen = subprocess.Popen(["true"], process_group=0)
    proc.popen.wait()
    assert proc.pid is None  # not running: no pid to show
    signal_group(proc, signal.SIGKILL)  # no error: the group is gone
    proc.state = ProcState.RUNNING
    assert proc.pid == proc.popen.pid


def test_a_silent_worker_is_spared_while_its_disk_refuses_writes_and_said_so_once(
    tmp_path: Path,
) -> None:
    """A worker that cannot write cannot beat either: the supervisor asks the disk first (a
    real read-only tmpfs under the agent's folder: needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    clock = FakeClock()
    sup = _worker_supervisor(tmp_path, "exec sleep 300", clock)
    agent_dir = sup.workspace.agent_dir("proc")
    agent_dir.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(agent_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    worker = subprocess.Popen(["sleep", "300"], process_group=0)
    try:
        proc = sup.agents["proc"]
        proc.popen, proc.state = worker, ProcState.RUNNING
        ref = ProcessRef.of(worker.pid)
        assert ref is not None
        sup.workspace.ensure_agent("proc")
        write_status(sup.workspace.status_path("proc"), AgentStatus(
            agent="proc", state=AgentState.IDLE, pid=worker.pid, pid_start_ticks=ref.start_ticks,
            heartbeat_at=(clock.now() - timedelta(seconds=60)).isoformat(), stuck_after_s=2))
        subprocess.run(["mount", "-o", "remount,ro", str(agent_dir)], check=True)
        try:
            sup.tick()
            clock.advance(1)
            sup.tick()  # silent at each check, said once
            assert [r["event"] for r in _journaled(sup)] == []  # nothing killed
            [spared] = [e for e in sup.drain_events() if "silent" in e]
            assert re.fullmatch(r"proc: silent, but the disk refuses writes \(read-only file "
                                r"system: .*/proc/\.write-probe\S*\); not killed", spared)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(agent_dir)], check=True)

        clock.advance(1)
        sup.tick()  # writable again: the same silence is stuck

        assert worker.wait(timeout=10) == -signal.SIGKILL
        assert [r["event"] for r in _journaled(sup)] == ["killed"]
        assert proc.spared is False  # a later refusal is said again
    finally:
        worker.kill()
        worker.wait()
        subprocess.run(["umount", "-l", str(agent_dir)], check=False)


def test_a_run_of_exactly_stable_s_is_stable(tmp_path: Path) -> None:
    clock = FakeClock()
    sup = _supervisor(tmp_path, "read line", "on-failure", clock,
                      backoff="{initial_s: 1, stable_s: 5}")
    sup.start()
    try:
        proc = sup.agents["proc"]
        for ran_s, quick_failures, backoff_s in ((4.5, 1, 1.0), (0, 2, 2.0), (5, 0, 1.0)):
            clock.advance(ran_s)
            os.kill(proc.popen.pid, signal.SIGKILL)
            _wait_exit(sup)
            assert (proc.quick_failures, proc.backoff_s) == (quick_failures, backoff_s), ran_s
            clock.advance(proc.restart_at - clock.monotonic())
            sup.tick()
    finally:
        sup.stop()


def test_a_command_agent_gets_a_status_json_saying_it_runs(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, "exec sleep 300", "always", FakeClock())
    sup.start()
    try:
        status = read_status(sup.workspace.status_path("proc"))
        assert status is not None
        assert (status.state, status.pid) == ("running", sup.agents["proc"].pid)
        ref = ProcessRef.of(sup.agents["proc"].pid)
        assert ref is not None and status.pid_start_ticks == ref.start_ticks
        assert stat.S_IMODE(sup.workspace.log_path("proc").stat().st_mode) == 0o600  # its log
    finally:
        sup.stop()


def test_run_agent_starts_only_the_agents_named(tmp_path: Path) -> None:
    write_roster(tmp_path, """\
        - name: one
          command: [sh, -c, 'exec sleep 300']
        - name: two
          command: [sh, -c, 'exec sleep 300']
    """)
    roster = load_roster(tmp_path / "agents.yaml")
    sup = Supervisor(roster, Workspace(tmp_path / "workspace", fsync=False), agents=["two"],
                     clock=FakeClock())
    assert list(sup.agents) == ["two"] and sup.only == ["two"]


def test_stop_gives_an_agent_its_grace_period_to_finish_on_sigterm(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, "trap 'sleep 0.1; exit 7' TERM; sleep 300 & wait", "always",
                      FakeClock(), grace_s=10)
    sup.clock = SYSTEM_CLOCK  # the grace period is real time here
    sup.start()
    pid = sup.agents["proc"].pid
    wait_until(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().strip())

    sup.stop()

    assert sup.agents["proc"].popen.returncode == 7  # finished, not killed
    assert [r["event"] for r in _journaled(sup)] == ["started", "stopped"]
    assert (_journaled(sup)[-1]["agent"], _journaled(sup)[-1]["exit"]) == ("proc", "exit 7")
