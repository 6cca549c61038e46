"""StatusReporter: status.json follows a burst of changes, written from its own thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.protocol.status import (
    AgentState,
    AgentStatus,
    iso_now,
    iso_of_ns,
    parse_iso,
    read_status,
)
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


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=(2**33) * 10**9), min_size=1, max_size=6))
def test_timestamps_are_the_isoformat_of_the_time_whatever_the_order_asked(
    times_ns: list[int],
) -> None:
    # iso_of_ns formats each second once and reuses it: any sequence of times (the same
    # second, the next, an earlier one) gives what datetime's isoformat gives for each.
    for epoch_ns in times_ns:
        expected = EPOCH + timedelta(microseconds=epoch_ns // 1000)
        assert iso_of_ns(epoch_ns) == expected.isoformat(timespec="microseconds")[:-6] + "Z"


def test_iso_now_is_now() -> None:
    before = datetime.now(UTC)
    now = parse_iso(iso_now())
    after = datetime.now(UTC)
    assert before - timedelta(microseconds=1) <= now <= after
