"""The note a worker leaves when it gives up on a handler that overran its timeout.

`<agent>/interrupted.json` names the message (its file, or its stream sequence) and says why:
the next worker fails that message as a timeout instead of running it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def take_note(path: Path) -> dict[str, Any] | None:
    """Read and remove the note a worker left when it gave up on an overrunning handler."""
    try:
        note = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return note if isinstance(note, dict) else None
