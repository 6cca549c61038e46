"""The workspace's halted state: the seed's HALT verdict, "stop everything".

While `<workspace>/.agentctl/halted.json` exists, no agent claims new work: messages in hand
finish (or go back to new/ on shutdown), waiting ones wait. `agentctl resume` removes it.
"""

from __future__ import annotations

import json
from typing import Any

from agentctl.fsutil import write_atomic
from agentctl.status import iso_now
from agentctl.workspace import Workspace


def halt(ws: Workspace, reason: str, *, by: str, run: str | None = None) -> None:
    """Enter the halted state (again: the first reason is kept)."""
    if ws.is_halted():
        return
    ws.ensure_control_dir()
    record = {"reason": reason, "by": by, "run": run, "halted_at": iso_now()}
    write_atomic(ws.halt_path, json.dumps(record, indent=2).encode() + b"\n", fsync=ws.fsync)
    ws.record("halted", None, by, reason=reason, run=run)


def halted_state(ws: Workspace) -> dict[str, Any] | None:
    """Why and since when the workspace is halted, or None."""
    try:
        data = json.loads(ws.halt_path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"reason": "halted.json is damaged", "by": None, "run": None, "halted_at": None}
    return data if isinstance(data, dict) else None


def resume(ws: Workspace, *, by: str) -> dict[str, Any] | None:
    """Leave the halted state; the state that was lifted, or None if it was not halted."""
    state = halted_state(ws)
    if state is None:
        return None
    ws.halt_path.unlink(missing_ok=True)
    ws.record("resumed", None, by, reason=state.get("reason"))
    return state
