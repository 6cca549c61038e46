"""The workspace's halted state: the seed's HALT verdict, "stop everything".

While the transport holds a halt record (`<workspace>/.agentctl/halted.json`, or a key in the
NATS control bucket), no agent claims new work: messages in hand finish (or go back on
shutdown), waiting ones wait. `agentctl resume` removes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentctl.model.constants import USER_AGENT
from agentctl.model.vocab import Event
from agentctl.protocol.status import iso_now

if TYPE_CHECKING:
    from agentctl.backends.transport import Transport
    from agentctl.model.actor import Actor


def halt(
    ws: Transport, reason: str, *, by: str | Actor, run: str | None = None
) -> dict[str, Any] | None:
    """Enter the halted state, `by` an agent (its name) or a person or program (an Actor).
    Already halted: nothing changes (the first reason is the one `resume` lifts) and the
    state in force is returned; else None."""
    if ws.is_halted():
        return halted_state(ws) or {}
    who, fields = _who(by)
    shown = by if isinstance(by, str) else by.label  # `status` says who: an agent, alice, ui
    ws.write_halt({"reason": reason, "by": shown, "run": run, "halted_at": iso_now()})
    ws.record(Event.HALTED, None, who, reason=reason, run=run, **fields)
    return None


def halted_state(ws: Transport) -> dict[str, Any] | None:
    """Why and since when the workspace is halted, or None."""
    return ws.halt_state()


def resume(ws: Transport, *, by: str | Actor) -> dict[str, Any] | None:
    """Leave the halted state; the state that was lifted, or None if it was not halted."""
    state = halted_state(ws)
    if state is None:
        return None
    ws.clear_halt()
    who, fields = _who(by)
    ws.record(Event.RESUMED, None, who, reason=state.get("reason"), **fields)
    return state


def _who(by: str | Actor) -> tuple[str, dict[str, str]]:
    """The journal's `agent` for the event, and the actor's fields beside it."""
    if isinstance(by, str):
        return by, {}
    return USER_AGENT, by.fields()
