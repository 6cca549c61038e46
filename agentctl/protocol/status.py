"""status.json: what a worker says about itself, written atomically, read without pydantic.

This module stays on the standard library because `agentctl status` must start fast.
"""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from agentctl.model.constants import DEFAULT_STUCK_AFTER_S
from agentctl.protocol.fsutil import overwrite_in_place, write_atomic
from agentctl.protocol.writeretry import describe_disk_error


class AgentState(StrEnum):
    """A worker's life-cycle state; the value is the string stored on disk."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"
    # Written by the supervisor for a `command:` agent that keeps no status.json of its own:
    # its process is alive, and nothing more is known (no heartbeat, so it is never "stuck").
    RUNNING = "running"
    FATAL = "fatal"  # written by the supervisor: restarted too often, left down
    DISCONNECTED = "disconnected"  # NATS: the connection is lost; the worker reconnects


# States in which a worker writes its heartbeat; older than `stuck_after_s` means stuck.
LIVE_STATES = frozenset(
    {
        AgentState.STARTING,
        AgentState.IDLE,
        AgentState.BUSY,
        AgentState.STOPPING,
        AgentState.DISCONNECTED,
    }
)


@dataclass
class AgentStatus:
    """The content of `<agent>/status.json`. Times are ISO 8601 UTC strings."""

    agent: str
    replica: int = 0  # which of the agent's workers (agents with `replicas: N`)
    host: str = ""  # the machine it runs on (NATS: workers of one agent span machines)
    state: AgentState = AgentState.STARTING
    pid: int = 0
    pid_start_ticks: int = 0  # with pid, identifies the process (pids get reused)
    started_at: str = ""
    heartbeat_at: str = ""
    current_message_id: str | None = None
    handled: int = 0
    failed: int = 0
    dead: int = 0
    last_error: str | None = None
    exit_code: int | None = None
    # The heartbeat is rewritten every second; one older than this means the worker is stuck.
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S
    log_tail: list[str] = field(default_factory=list)  # the last lines of agent.log, when fatal
    # Set while the worker cannot write (`disk full: no space left on device: <path>`): it is
    # alive and waiting for space, not stuck; None once its writes go through again.
    write_error: str | None = None
    next_try_at: str | None = None  # when fatal: when the supervisor tries it again, if it will

    def to_json_bytes(self) -> bytes:
        """The on-disk form."""
        data = asdict(self)
        data["state"] = self.state.value
        return json.dumps(data, indent=2).encode() + b"\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentStatus:
        """Build from a parsed status.json, ignoring unknown keys (newer writers)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["state"] = AgentState(values.get("state", AgentState.STARTING.value))
        return cls(**values)


# The formatted date and time of the last second asked for: (epoch second, "YYYY-MM-DDTHH:MM:SS").
_second: tuple[int, str] = (-1, "")


def iso_now() -> str:
    """Now as ISO 8601 UTC with a Z, the form used in every agentctl file."""
    return iso_of_ns(time.time_ns())  # the clock of datetime.now (CLOCK_REALTIME)


def iso_of_ns(epoch_ns: int) -> str:
    """`epoch_ns` (nanoseconds since the epoch) as iso_now() writes it, to the microsecond."""
    # Runs for every journal event and status write: the date and time are formatted once a
    # second and the microseconds appended (~1 us, against ~5 for datetime.now(UTC).isoformat).
    # Threads may both format a new second; each reads the one tuple whole.
    global _second
    seconds, nanoseconds = divmod(epoch_ns, 1_000_000_000)
    second = _second
    if second[0] != seconds:
        second = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{second[1]}.{nanoseconds // 1000:06d}Z"


def iso_after(seconds: float, now: datetime | None = None) -> str:
    """The time `seconds` from `now` (the real now by default), in the same form as iso_now()."""
    when = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    return when.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(value: str) -> datetime | None:
    """Parse an agentctl ISO timestamp; None for an empty or bad value."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def recount_handled(path: Path, done_dir: Path) -> None:
    """Raise a dead worker's `handled` to the number of messages in its done/.

    A worker writes its counters at most every STATUS_MIN_INTERVAL_S, so one killed with
    SIGKILL loses the last few; done/ holds exactly the messages it handled (acked), so it is
    the durable count. Only ever raised: a done/ that someone pruned must not lower it. A
    cleanly stopped worker wrote its final counters and is left alone.
    """
    status = read_status(path)
    if status is None or status.state is AgentState.STOPPED:
        return
    try:
        in_done = sum(1 for name in os.listdir(done_dir) if not name.startswith("."))
    except OSError:
        return  # no done/ (NATS, or never ran)
    if in_done > status.handled:
        status.handled = in_done
        try:
            write_status(path, status)
        except OSError:
            pass  # a full disk: the counts stay short, and the supervisor keeps running


def write_status(path: Path, status: AgentStatus) -> None:
    """Replace status.json atomically (readers never see half a file).

    When the disk refuses a new file (full, over quota), the old file is rewritten in place
    instead, saying so in `write_error`: that needs no new blocks, so the heartbeat and the
    reason keep reaching `status` and the supervisor while the disk is full. OSError if
    neither works.
    """
    try:
        write_atomic(path, status.to_json_bytes())
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        if status.write_error is None:
            status = replace(status, write_error=describe_disk_error(exc))
        try:
            overwrite_in_place(path, status.to_json_bytes())
        except OSError:
            raise exc from None


def read_status(path: Path) -> AgentStatus | None:
    """The status in `path`, or None if there is none or it cannot be read."""
    for _ in range(2):  # once more after a torn read of a file rewritten in place
        try:
            data = json.loads(path.read_bytes())
            return AgentStatus.from_dict(data)
        except (FileNotFoundError, TypeError):
            return None
        except ValueError:
            continue
    return None


def status_json_schema() -> dict[str, Any]:
    """JSON Schema of status.json, for programs in other languages."""
    from pydantic import TypeAdapter  # only `agentctl schema` pays for pydantic here

    schema: dict[str, Any] = TypeAdapter(AgentStatus).json_schema()
    schema["title"] = "AgentStatus"
    return schema


def error_record(message_id: str | None, error: str, kind: str, attempts: int) -> dict[str, Any]:
    """The content of a dead message's `<stem>.error.json`."""
    return {
        "message_id": message_id,
        "error": error,
        "error_kind": kind,
        "attempts": attempts,
        "dead_at": iso_now(),
    }
