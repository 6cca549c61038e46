"""The history of a thread on the file workspace: the journal and the message files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentctl.backends.file.workspace import Workspace
from agentctl.model.constants import (
    DEAD,
    DONE,
    INBOX_DIR,
    NEW,
    OUTBOX_DIR,
    PROCESSING,
    REQUEUED_HEADER,
)
from agentctl.model.ids import reply_id
from agentctl.model.priority import Priority
from agentctl.protocol.journalreader import read_all

Record = dict[str, Any]

_FOLDER_STATE = {NEW: "waiting", PROCESSING: "in hand", DONE: "done", DEAD: "dead"}


def find_events(ws: Workspace, ident: str) -> tuple[list[Record], int]:
    """Records whose thread or message id is `ident`, and the count of torn lines seen."""
    needle = f'"{ident}"'.encode()
    found: list[Record] = []
    torn = 0
    for entry in read_all(ws.journal_dir, needle=needle):
        if entry.record is None:
            torn += 1
            continue
        record = entry.record
        if ident in (record.get("thread_id"), record.get("message_id")):
            found.append(record)
    return found, torn


class FileHistory:
    """The file journal and the message files of a workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.where = str(ws.journal_dir)

    def find_events(self, ident: str) -> tuple[list[Record], int]:
        """Records about `ident`, found with a byte search of the journal."""
        return find_events(self.ws, ident)

    def envelope(self, trace: Any) -> dict[str, Any] | None:
        """The message's file, wherever its life cycle left it."""
        return message_envelope(self.ws, trace)

    def file_state(self, trace: Any) -> str | None:
        """The recipient's inbox folder that holds the file: the truth about its state."""
        if not trace.file or not trace.to_agent:
            return None
        inbox = self.ws.agent_dir(trace.to_agent) / INBOX_DIR
        for sub, state in _FOLDER_STATE.items():
            if os.path.lexists(inbox / sub / trace.file):
                return state
        return None

    def unjournaled_replies(self, trace: Any) -> list[dict[str, Any]]:
        """Replies (`<rank>-<id>-reply*.json`) in the sender's inbox that the journal lacks."""
        if trace.kind != "task" or not trace.from_agent:
            return []
        inbox = self.ws.agent_dir(trace.from_agent) / INBOX_DIR
        # The names the protocol allows, probed: listing the sender's done/ to match them
        # (66,000 names in a million-event journal) was half the cost of a replay.
        names = _reply_names(message_envelope(self.ws, trace), trace.id)
        found = []
        for sub in _FOLDER_STATE:
            for name in names if names is not None else _listed_replies(inbox / sub, trace.id):
                data = _read_json(inbox / sub / name, self.ws.max_message_bytes)
                if data is not None and data.get("in_reply_to") == trace.id:
                    found.append({**data, "_file": name})
        return found


_MAX_PROBED_LIVES = 100


def _reply_names(request: dict[str, Any] | None, request_id: str) -> list[str] | None:
    """The file names of the replies a task may have had, one per life (PROTOCOL.md,
    "Replies"), in listing order; None when its file cannot say (gone, or a bad priority)."""
    if request is None:
        return None
    try:
        rank = Priority(request.get("priority", Priority.NORMAL)).rank
    except (ValueError, TypeError):
        return None
    headers = request.get("headers")
    requeued = headers.get(REQUEUED_HEADER) if isinstance(headers, dict) else None
    # AgentMessage.requeued's rule: a count when all ASCII digits, else 0.
    lives = (
        int(requeued)
        if isinstance(requeued, str) and requeued.isascii() and requeued.isdigit()
        else 0
    )
    if lives > _MAX_PROBED_LIVES:
        return None  # a header no requeue wrote: listing is cheaper than so many probes
    return sorted(f"{rank}-{reply_id(request_id, life)}.json" for life in range(lives + 1))


def _listed_replies(folder: Path, request_id: str) -> list[str]:
    """`[0-9]-<id>-reply*.json` in the folder, matched by hand on one listing (Path.glob built a
    path and ran a regular expression per name)."""
    starts = tuple(f"{rank}-{request_id}-reply" for rank in range(10))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(starts) and n.endswith(".json"))


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def message_envelope(ws: Workspace, trace: Any) -> dict[str, Any] | None:
    """The JSON of a traced message's file, or None if it is gone.

    The file is wherever its life cycle left it; the sender's outbox keeps a copy.
    """
    if not trace.file:
        return None
    paths = []
    if trace.to_agent:
        inbox = ws.agent_dir(trace.to_agent) / INBOX_DIR
        paths += [inbox / sub / trace.file for sub in (DONE, DEAD, NEW, PROCESSING)]
    if trace.from_agent:
        paths.append(ws.agent_dir(trace.from_agent) / OUTBOX_DIR / trace.file)
    for path in paths:
        data = _read_json(path, ws.max_message_bytes)
        if data is not None:
            return data
    return None


def _read_json(path: os.PathLike[str], max_bytes: int) -> dict[str, Any] | None:
    try:
        with open(path, "rb", opener=_nofollow) as f:
            data = json.loads(f.read(max_bytes + 1))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
