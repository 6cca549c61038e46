"""The workspace: where each agent's inbox, outbox, status and log live.

    <root>/<agent>/inbox/{tmp,new,processing,done,dead}/
    <root>/<agent>/outbox/        a copy of everything the agent sent
    <root>/<agent>/status.json    written atomically by the agent's worker
    <root>/<agent>/agent.log      the worker's stdout and stderr
    <root>/.agentctl/             the supervisor's lock and pid file

Every path is built from a validated agent name, so nothing lands outside the root.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentctl.constants import (
    AGENT_NAME_RE,
    CONTROL_DIR,
    DEFAULT_MAX_MESSAGE_BYTES,
    INBOX_DIR,
    LOG_FILE,
    OUTBOX_DIR,
    STATUS_FILE,
)
from agentctl.fsutil import check_real_dir, ensure_dir
from agentctl.mailbox import Mailbox
from agentctl.names import validate_agent_name


class Workspace:
    """Paths and mailboxes of one workspace root."""

    def __init__(
        self,
        root: Path | str,
        *,
        fsync: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.root = Path(root).absolute()
        self.fsync = fsync
        self.max_message_bytes = max_message_bytes
        self._ensured: dict[str, Mailbox] = {}

    @property
    def control_dir(self) -> Path:
        """`.agentctl/`: supervisor lock and pid file."""
        return self.root / CONTROL_DIR

    def agent_dir(self, name: str) -> Path:
        """The directory of agent `name` (validated first)."""
        return self.root / validate_agent_name(name)

    def status_path(self, name: str) -> Path:
        """The agent's status.json."""
        return self.agent_dir(name) / STATUS_FILE

    def log_path(self, name: str) -> Path:
        """The agent's log file."""
        return self.agent_dir(name) / LOG_FILE

    def outbox(self, name: str) -> Path:
        """The agent's outbox directory."""
        return self.agent_dir(name) / OUTBOX_DIR

    def mailbox(self, name: str) -> Mailbox:
        """The agent's inbox, without touching the disk."""
        return Mailbox(
            self.agent_dir(name) / INBOX_DIR,
            fsync=self.fsync,
            max_message_bytes=self.max_message_bytes,
        )

    def ensure_agent(self, name: str) -> Mailbox:
        """Create the agent's directories if missing (refusing symlinks); return its inbox."""
        mailbox = self._ensured.get(name)
        if mailbox is None:
            ensure_dir(self.root)
            ensure_dir(self.agent_dir(name))
            mailbox = self.mailbox(name).ensure()
            ensure_dir(self.outbox(name))
            self._ensured[name] = mailbox
        return mailbox

    def ensure_control_dir(self) -> Path:
        """Create `.agentctl/` if missing."""
        ensure_dir(self.root)
        ensure_dir(self.control_dir)
        return self.control_dir

    def has_agent(self, name: str) -> bool:
        """Whether the agent's inbox exists as a real directory."""
        path = self.agent_dir(name) / INBOX_DIR
        if not os.path.lexists(path):
            return False
        check_real_dir(path)
        return True

    def agent_names(self) -> list[str]:
        """Agents that have an inbox in this workspace (including the `user` pseudo-agent)."""
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [
            n
            for n in entries
            if AGENT_NAME_RE.fullmatch(n) and os.path.isdir(self.root / n / INBOX_DIR)
        ]
