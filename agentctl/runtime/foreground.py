"""`agentctl run`'s loop: start the agents, supervise them until asked to stop, stop them.

The command line only renders: it gets the supervisor's happenings through `report` and is
asked to redraw through `refresh`, so another front end (a daemon, a dashboard) can drive the
same loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agentctl.model.constants import SUPERVISOR_TICK_S
from agentctl.runtime.supervisor import Supervisor


def supervise(
    supervisor: Supervisor,
    stop: threading.Event,
    *,
    report: Callable[[list[str]], None],
    refresh: Callable[[], None] | None = None,
    refresh_s: float = 0.5,
    reload: threading.Event | None = None,
) -> None:
    """Start the agents, tick until `stop` is set, then stop them (always, even on an error).

    `report` gets each batch of happenings (started, crashed, stopping, ...); `refresh`, if
    given, is called about every `refresh_s` and once more after the stop. Each time `reload`
    is set (SIGHUP), the roster is re-read and applied, as `agentctl reload` does.
    """
    supervisor.start()
    try:
        ticks = 0
        next_refresh_s = 0.0
        while not stop.is_set():
            if reload is not None and reload.is_set():
                reload.clear()
                report(supervisor.requests.reload_lines())
            supervisor.tick()
            report(supervisor.drain_events())
            ticks += 1
            if refresh is not None and ticks * SUPERVISOR_TICK_S >= next_refresh_s:
                next_refresh_s = ticks * SUPERVISOR_TICK_S + refresh_s
                refresh()
            stop.wait(SUPERVISOR_TICK_S)
        running = len({proc.spec.name for proc in supervisor.agents.values()})
        report([f"stopping {running} agents (grace {supervisor.grace_s:g} s)"])
    finally:
        supervisor.stop()
        report(supervisor.drain_events())
        if refresh is not None:
            refresh()
