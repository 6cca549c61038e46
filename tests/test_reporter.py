"""StatusReporter: status.json follows a burst of changes, written from its own thread."""

from __future__ import annotations

import threading
from pathlib import Path

from agentctl.protocol.status import AgentState, AgentStatus, read_status
from agentctl.runtime.reporter import StatusReporter
from tests.conftest import wait_until


def test_the_last_change_of_a_burst_from_another_thread_is_written(tmp_path: Path) -> None:
    """A worker flips busy/idle twice per message: the writes are coalesced, but whatever
    the thread's timing, the state after the burst is the one on disk."""
    path = tmp_path / "status.json"
    reporter = StatusReporter(path, AgentStatus(agent="a"), min_interval_s=0.001)
    reporter.start()
    try:

        def burst() -> None:
            for n in range(2000):
                reporter.update(state=AgentState.BUSY, current_message_id=f"m{n}")
                reporter.count(handled=1)
                reporter.update(state=AgentState.IDLE, current_message_id=None)

        worker = threading.Thread(target=burst)
        worker.start()
        worker.join()

        def written() -> bool:
            status = read_status(path)
            return status is not None and (
                status.handled,
                status.state,
                status.current_message_id,
            ) == (2000, AgentState.IDLE, None)

        wait_until(written)
    finally:
        reporter.close(AgentState.STOPPED)
