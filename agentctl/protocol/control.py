"""The workspace's control directory: the one-supervisor lock, the supervisor's pid record, and
the channel through which commands ask a running supervisor to act (`agentctl restart`).

Standard library only: `status` and `stop` read these and must start fast.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NoReturn, Protocol

from agentctl.model.constants import (
    ANSWERS_DIR,
    REQUESTS_DIR,
    SUPERVISOR_LOCK_FILE,
    SUPERVISOR_PID_FILE,
)
from agentctl.model.errors import AgentctlError, SupervisorError
from agentctl.model.ids import new_id
from agentctl.protocol.fsutil import ensure_dir, write_atomic
from agentctl.protocol.proc import ProcessRef
from agentctl.protocol.status import iso_now


class Workspace(Protocol):
    """What the control channel needs of a workspace: where it is and its control directory
    (the file workspace has both; so does each machine's local workspace on NATS)."""

    @property
    def root(self) -> Path: ...

    @property
    def control_dir(self) -> Path: ...

    def ensure_control_dir(self) -> Path:
        """Create the control directory if needed; its path."""
        ...


@dataclass(frozen=True)
class SupervisorInfo:
    """Whether a supervisor runs on a workspace, and which."""

    running: bool
    pid: int | None
    started_at: str | None


def take_supervisor_lock(workspace: Workspace, config: str) -> int:
    """Take the workspace's lock and record our pid; the lock fd (keep it open while running).

    The kernel drops the lock when the process dies, however it dies, so a `kill -9` of a
    supervisor never blocks the next `agentctl run`.
    """
    control = workspace.ensure_control_dir()
    fd = os.open(control / SUPERVISOR_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = read_supervisor_ref(workspace)
        who = f" (pid {other.pid})" if other is not None and other.is_alive() else ""
        raise SupervisorError(
            f"{workspace.root}: a supervisor is already running{who}; stop it with `agentctl stop`"
        ) from None
    me = ProcessRef.of(os.getpid())
    record = {
        "pid": os.getpid(),
        "start_ticks": me.start_ticks if me else 0,
        "started_at": iso_now(),
        "config": config,
    }
    write_atomic(control / SUPERVISOR_PID_FILE, (json.dumps(record) + "\n").encode(), fsync=False)
    return fd


def release_supervisor_lock(workspace: Workspace, fd: int) -> None:
    """Forget our pid record and drop the lock."""
    (workspace.control_dir / SUPERVISOR_PID_FILE).unlink(missing_ok=True)
    os.close(fd)


def read_supervisor_ref(workspace: Workspace) -> ProcessRef | None:
    """The recorded supervisor process of a workspace, if any (it may be dead)."""
    try:
        data = json.loads((workspace.control_dir / SUPERVISOR_PID_FILE).read_text())
        return ProcessRef(int(data["pid"]), int(data["start_ticks"]), int(data["pid"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def supervisor_is_running(workspace: Workspace) -> bool:
    """Whether some process holds the workspace's supervisor lock."""
    try:
        fd = os.open(workspace.control_dir / SUPERVISOR_LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also drops the lock if we just took it
    return False


def supervisor_info(workspace: Workspace) -> SupervisorInfo:
    """Running or not (by the lock, not the pid file), with its pid and start time."""
    running = supervisor_is_running(workspace)
    ref = read_supervisor_ref(workspace) if running else None
    started_at = None
    if ref is not None:
        try:
            started_at = json.loads((workspace.control_dir / SUPERVISOR_PID_FILE).read_text()).get(
                "started_at"
            )
        except (OSError, ValueError):
            started_at = None
    return SupervisorInfo(running=running, pid=ref.pid if ref else None, started_at=started_at)


def stop_supervisor(workspace: Workspace, *, timeout_s: float) -> int:
    """SIGTERM the workspace's supervisor and wait until it has released its lock; its pid."""
    ref = read_supervisor_ref(workspace)
    if not supervisor_is_running(workspace) or ref is None or not ref.is_alive():
        raise SupervisorError(f"{workspace.root}: no supervisor is running")
    os.kill(ref.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while supervisor_is_running(workspace):
        if time.monotonic() > deadline:
            raise SupervisorError(f"supervisor (pid {ref.pid}) did not stop within {timeout_s:g} s")
        time.sleep(0.05)
    return ref.pid


# -- requests to a running supervisor ---------------------------------------------------------
#
# A command writes `.agentctl/requests/<id>.json` ({"action", "agent"}); the supervisor looks
# there on every tick (an empty directory costs one listdir), acts, writes
# `.agentctl/answers/<id>.json` ({"ok", "lines"}) and then removes the request. The command
# waits for its answer and removes it. Files, not a socket: they need no server thread in the
# supervisor (which forks, so it stays single-threaded), and a request outlives neither side
# unnoticed. Polling, not a signal: the supervisor wakes every SUPERVISOR_TICK_S anyway.


class ControlAction(StrEnum):
    """What a command may ask of a running supervisor; the value is the string on disk."""

    RESTART = "restart"  # start the agent now, clearing `fatal` and any backoff
    STOP = "stop"  # stop the agent gracefully and keep it down
    START = "start"  # start an agent that was stopped
    RELOAD = "reload"  # re-read the roster (names no agent)

    @property
    def names_agent(self) -> bool:
        """Whether a request for this action must name an agent."""
        return self is not ControlAction.RELOAD


_ACTIONS = frozenset(action.value for action in ControlAction)


@dataclass(frozen=True)
class ControlRequest:
    """One request read from the control directory."""

    request_id: str
    action: str  # a ControlAction value, or whatever a newer command wrote
    agent: str | None


def submit_request(workspace: Workspace, action: ControlAction, agent: str | None) -> str:
    """Leave a request for the supervisor; its id (to read the answer with)."""
    requests = workspace.ensure_control_dir() / REQUESTS_DIR
    ensure_dir(requests)
    request_id = new_id()
    record = {"action": action.value, "agent": agent, "requested_at": iso_now()}
    write_atomic(requests / f"{request_id}.json", (json.dumps(record) + "\n").encode())
    return request_id


def take_requests(workspace: Workspace) -> list[ControlRequest]:
    """The waiting requests, oldest first (the supervisor's side; each must be answered)."""
    requests = workspace.control_dir / REQUESTS_DIR
    try:
        names = sorted(n for n in os.listdir(requests) if _is_record(n))
    except FileNotFoundError:
        return []
    taken = []
    for name in names:
        request_id = name.removesuffix(".json")
        try:
            data = json.loads((requests / name).read_bytes())
            action, agent = str(data["action"]), data.get("agent")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            action, agent = "", None  # unreadable: answered as an unknown action
        taken.append(ControlRequest(request_id, action, agent if isinstance(agent, str) else None))
    return taken


def answer_request(workspace: Workspace, request_id: str, *, ok: bool, lines: list[str]) -> None:
    """Write the answer to a request, then remove the request (answered at least once)."""
    answers = workspace.control_dir / ANSWERS_DIR
    ensure_dir(answers)
    record = {"ok": ok, "lines": lines, "answered_at": iso_now()}
    write_atomic(answers / f"{request_id}.json", (json.dumps(record) + "\n").encode())
    (workspace.control_dir / REQUESTS_DIR / f"{request_id}.json").unlink(missing_ok=True)


def serve_requests(
    workspace: Workspace, actions: Mapping[ControlAction, Callable[[str | None], list[str]]]
) -> None:
    """Answer every waiting request by calling the action it names with its agent (None for an
    action that names none); the lines it returns are the answer, and an AgentctlError it
    raises is a refusal."""
    for request in take_requests(workspace):
        action = ControlAction(request.action) if request.action in _ACTIONS else None
        act = actions.get(action) if action is not None else None
        if act is None or action is None or (action.names_agent and request.agent is None):
            ok, lines = False, [f"cannot do {request.action!r} (agent {request.agent!r})"]
        else:
            try:
                ok, lines = True, act(request.agent)
            except AgentctlError as exc:
                ok, lines = False, [str(exc)]
        answer_request(workspace, request.request_id, ok=ok, lines=lines)


def read_answer(workspace: Workspace, request_id: str) -> tuple[bool, list[str]] | None:
    """The answer to a request, removed once read: (ok, lines); None while there is none."""
    path = workspace.control_dir / ANSWERS_DIR / f"{request_id}.json"
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None  # not yet (an answer is written whole, by rename)
    path.unlink(missing_ok=True)
    return bool(data.get("ok")), [str(line) for line in data.get("lines") or []]


def ask_supervisor(
    workspace: Workspace, action: ControlAction, agent: str | None, *, timeout_s: float
) -> list[str]:
    """Ask the running supervisor to act and wait for its answer; its lines.

    Raises SupervisorError when none is running, when it refuses (the answer says why), or when
    it does not answer within `timeout_s` (the request is withdrawn if it was not taken yet).
    """
    ref = read_supervisor_ref(workspace)
    if not supervisor_is_running(workspace) or ref is None or not ref.is_alive():
        raise SupervisorError(f"{workspace.root}: no supervisor is running (`agentctl run`)")
    request_id = submit_request(workspace, action, agent)
    deadline = time.monotonic() + timeout_s
    while (answer := read_answer(workspace, request_id)) is None:
        if not supervisor_is_running(workspace):
            _withdraw(workspace, request_id, f"supervisor (pid {ref.pid}) stopped")
        if time.monotonic() > deadline:
            _withdraw(
                workspace,
                request_id,
                f"supervisor (pid {ref.pid}) gave no answer within {timeout_s:g} s",
            )
        time.sleep(0.02)
    ok, lines = answer
    if not ok:
        raise SupervisorError("; ".join(lines) or f"the supervisor refused to {action.value}")
    return lines


def _withdraw(workspace: Workspace, request_id: str, what: str) -> NoReturn:
    # Withdrawn if still waiting, so a later supervisor does not act on a request nobody awaits.
    try:
        (workspace.control_dir / REQUESTS_DIR / f"{request_id}.json").unlink()
    except FileNotFoundError:
        raise SupervisorError(f"{what}; it had taken the request (it may yet act)") from None
    raise SupervisorError(f"{what}; the request is withdrawn")


def _is_record(name: str) -> bool:
    # write_atomic's temporary files start with a dot: not a request until renamed.
    return name.endswith(".json") and not name.startswith(".")
