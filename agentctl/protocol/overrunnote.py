"""The note a worker leaves when it gives up on a handler that overran its timeout.

The worker writes `<agent>/interrupted.json` just before it ends its own process; the next
worker (its inbox's recovery) takes the note and fails the message it names as a timeout rather
than a crash. Both ends live here, so the format is written once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentctl.model.constants import INTERRUPTED_NOTE_FILE
from agentctl.protocol.fsutil import write_atomic


def write_note(agent_dir: Path, *, file: str, message_id: str, error: str) -> None:
    """Say why the message in `file` was left in processing/: its handler timed out."""
    note = {"file": file, "message_id": message_id, "error": error, "error_kind": "timeout"}
    write_atomic(agent_dir / INTERRUPTED_NOTE_FILE, json.dumps(note).encode())


def take_note(agent_dir: Path) -> dict[str, Any] | None:
    """Read and remove the note a worker left when it gave up on an overrunning handler."""
    path = agent_dir / INTERRUPTED_NOTE_FILE
    try:
        note = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return note if isinstance(note, dict) else None
