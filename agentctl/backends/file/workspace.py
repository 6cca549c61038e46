"""The workspace: where each agent's inbox, outbox, status and log live.

    <root>/<agent>/inbox/{tmp,new,processing,done,dead}/
    <root>/<agent>/outbox/        a copy of everything the agent sent
    <root>/<agent>/status.json    written atomically by the agent's worker
    <root>/<agent>/agent.log      the worker's stdout and stderr
    <root>/.agentctl/             the supervisor's lock and pid file
    <root>/.agentctl/journal/     the journal of every event (see journal.py)

Every path is built from a validated agent name, so nothing lands outside the root.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.backends.records import sent_fields
from agentctl.model.clock import SYSTEM_CLOCK, Clock
from agentctl.model.constants import (
    AGENT_NAME_RE,
    CONTROL_DIR,
    DEFAULT_ESCALATION_OVERDUE_S,
    DEFAULT_JOURNAL_MAX_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    HALT_FILE,
    INBOX_DIR,
    JOURNAL_DIR,
    LOG_FILE,
    OUTBOX_DIR,
    STATUS_FILE,
)
from agentctl.model.errors import BadMessageError
from agentctl.model.names import validate_agent_name
from agentctl.model.vocab import Event
from agentctl.protocol.fsutil import check_real_dir, ensure_dir
from agentctl.protocol.mailbox import Mailbox

if TYPE_CHECKING:
    from agentctl.backends.file.history import FileHistory
    from agentctl.backends.file.inbox import FileInbox
    from agentctl.backends.records import AgentRow, DeadLetter, Verification
    from agentctl.config.agentspec import AgentSpec
    from agentctl.model.actor import Actor
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.journal import Journal
    from agentctl.protocol.mailbox import Depth
    from agentctl.protocol.status import AgentStatus


class Workspace:
    """Paths and mailboxes of one workspace root; the file transport (see transport.py)."""

    kind = "file"

    def __init__(
        self,
        root: Path | str,
        *,
        fsync: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        journal_max_bytes: int = DEFAULT_JOURNAL_MAX_BYTES,
        escalation_overdue_s: float = DEFAULT_ESCALATION_OVERDUE_S,
    ) -> None:
        self.root = Path(root).absolute()
        self.fsync = fsync
        self.max_message_bytes = max_message_bytes
        self.journal_max_bytes = journal_max_bytes
        self.escalation_overdue_s = escalation_overdue_s
        self.disabled: frozenset[str] = frozenset()  # agents that cannot run here (no endpoint)
        self._ensured: dict[str, Mailbox] = {}
        # Each ensured agent's outbox as a string ending in "/": the copy of every sent message
        # is named by concatenation (pathlib joins cost microseconds on the send path).
        self._outbox_s: dict[str, str] = {}
        self._journal: Journal | None = None
        self._halt_path_s = str(self.root / CONTROL_DIR / HALT_FILE)

    # -- the Transport protocol beyond deliver() and record() --------------------------------

    @property
    def local(self) -> Workspace:
        """The file transport is its own local directory."""
        return self

    def inbox(
        self, spec: AgentSpec, *, poll_interval_s: float, clock: Clock = SYSTEM_CLOCK
    ) -> FileInbox:
        """The agent's consuming end: claims from inbox/new/ by rename."""
        from agentctl.backends.file.inbox import FileInbox

        return FileInbox(
            self.ensure_agent(spec.name),
            self.agent_dir(spec.name),
            poll_interval_s=poll_interval_s,
            clock=clock,
        )

    def publish_status(self, status: AgentStatus) -> None:
        """Nothing beyond status.json, which the worker writes itself."""

    def watch_connection(self, listener: Callable[[bool], None]) -> None:
        """Files are never disconnected."""

    def halt_state(self) -> dict[str, Any] | None:
        """The content of halted.json, or None."""
        try:
            data = json.loads(self.halt_path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            return {"reason": "halted.json is damaged", "by": None, "run": None, "halted_at": None}
        return data if isinstance(data, dict) else None

    def write_halt(self, record: dict[str, Any]) -> None:
        """Create halted.json: from now on, no worker claims."""
        from agentctl.protocol.fsutil import write_atomic

        self.ensure_control_dir()
        data = json.dumps(record, indent=2).encode() + b"\n"
        write_atomic(self.halt_path, data, fsync=self.fsync)

    def clear_halt(self) -> None:
        """Remove halted.json."""
        self.halt_path.unlink(missing_ok=True)

    def claim_conductor(self) -> None:
        """Nothing to do: the supervisor's lock already makes one conductor per workspace."""

    def has_reply(self, agent: str, reply_id: str, priority: str) -> bool:
        """Whether the reply's file is anywhere in `agent`'s inbox."""
        from agentctl.model.message import message_file_name
        from agentctl.model.priority import Priority

        name = message_file_name(Priority(priority), reply_id)
        return self.mailbox(agent).locate(name) is not None

    def release_in_hand(self, agent: str) -> list[str]:
        """processing/ -> new/ for a worker killed on shutdown (no attempt counted)."""
        mailbox = self.mailbox(agent)
        names = mailbox.recover()
        for name in names:
            mailbox.release(name)
        return names

    def close(self) -> None:
        """Nothing to release."""

    # -- the Backend protocol: reading back, dead letters, escalations ----------------------

    def read_events(
        self,
        last_n: int,
        keep: Callable[[dict[str, Any]], bool],
        *,
        on_damaged: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """The last `last_n` journal events that `keep` accepts, oldest first."""
        from agentctl.protocol.journalreader import read_last

        def damaged(path: Path, raw: bytes) -> None:
            if on_damaged is not None:
                on_damaged(f"{path.name}: {raw[:60]!r}")

        return list(read_last(self.journal_dir, last_n, keep, on_damaged=damaged))

    def follow_events(
        self,
        keep: Callable[[dict[str, Any]], bool],
        stop: threading.Event,
        *,
        on_damaged: Callable[[str], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Journal events appended from this call on that `keep` accepts, until `stop` is set."""
        from agentctl.protocol.journalreader import follow, kept_records

        return kept_records(follow(self.journal_dir, stop=stop), keep, on_damaged)

    def history(self) -> FileHistory:
        """The journal and the message files."""
        from agentctl.backends.file.history import FileHistory

        return FileHistory(self)

    def dead_letters(self, agents: list[str] | None = None) -> list[DeadLetter]:
        """What dead/ holds, with the reasons in dead/.errors/."""
        from agentctl.backends.file.deadletters import list_dead

        return list_dead(self, agents)

    def read_dead(self, letter: DeadLetter) -> AgentMessage:
        """The message in dead/."""
        from agentctl.backends.file.deadletters import read_dead

        return read_dead(self, letter)

    def restore_dead(self, letter: DeadLetter, message: AgentMessage) -> None:
        """dead/ -> new/ with `message`, dropping the reason."""
        self.mailbox(letter.agent).revive(letter.file, message)

    def escalation_requests(self) -> list[tuple[str, AgentMessage]]:
        """What waits in the human inbox's new/."""
        from agentctl.backends.file.deadletters import escalation_requests

        return escalation_requests(self)

    def settle_escalation(self, where: str, reply: AgentMessage) -> None:
        """Claim the escalation's file, deliver `reply`, ack the file."""
        from agentctl.backends.file.deadletters import settle_escalation

        settle_escalation(self, where, reply)

    def depth(self, agents: list[str]) -> dict[str, Depth]:
        """Each agent's new/, processing/ and dead/ counts."""
        from agentctl.protocol.mailbox import Depth

        empty = Depth(new=0, processing=0, dead=0)
        return {a: self.mailbox(a).depth() if self.has_agent(a) else empty for a in agents}

    def wait_for_reply(self, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
        """Claim the reply from the sender's inbox when it lands there."""
        from agentctl.backends.file.replies import wait_for_reply

        return wait_for_reply(self, request, timeout_s=timeout_s)

    def worker_rows(self, names: list[str], now: datetime) -> list[AgentRow]:
        """From status.json (status.N.json), with liveness checked against the kernel."""
        from agentctl.backends.file.overview import worker_rows

        return worker_rows(self, names, now)

    def describe(self) -> dict[str, Any]:
        """Files: nothing more to say than where, which `status` shows."""
        return {"kind": self.kind}

    def verify(self) -> Verification:
        """The journal's hash chain, and done/ and dead/ against it."""
        from agentctl.backends.file.verify import verify_files

        return verify_files(self)

    @property
    def control_dir(self) -> Path:
        """`.agentctl/`: supervisor lock and pid file."""
        return self.root / CONTROL_DIR

    @property
    def halt_path(self) -> Path:
        """`.agentctl/halted.json`: present while the workspace is halted."""
        return self.control_dir / HALT_FILE

    def is_halted(self) -> bool:
        """Whether agents must not claim new work (checked before every claim: one stat)."""
        return os.path.exists(self._halt_path_s)

    @property
    def journal_dir(self) -> Path:
        """`.agentctl/journal/`: the journal's segments."""
        return self.control_dir / JOURNAL_DIR

    @property
    def journal(self) -> Journal:
        """The journal appender (opened on first use)."""
        if self._journal is None:
            # Imported here: read-only commands (status) never pay for hashlib and friends.
            from agentctl.protocol.journal import Journal

            self._journal = Journal(self.journal_dir, max_bytes=self.journal_max_bytes)
        return self._journal

    def record(self, event: str, message: AgentMessage | None, agent: str, **fields: Any) -> None:
        """Journal `event` by `agent` about `message` (ids taken from it)."""
        self.journal.append(
            event,
            agent=agent,
            message_id=message.id if message else None,
            thread_id=message.thread_id if message else None,
            **fields,
        )

    def deliver(
        self, message: AgentMessage, *, dedupe: bool = False, by: Actor | None = None
    ) -> Path | None:
        """Send `message`: into its recipient's inbox and its sender's outbox, then journal it.

        With `dedupe`, a message already anywhere in the recipient's inbox is not delivered
        again (None is returned); replies use this, so a redelivered request cannot yield two.
        """

        inbox = self.ensure_agent(message.to_agent)
        self.ensure_agent(message.from_agent)
        data = message.to_json_bytes()
        if len(data) > self.max_message_bytes:
            # Its reader would refuse it: say so to the sender instead.
            raise BadMessageError(
                f"message {message.id} to {message.to_agent} is {len(data)} bytes, over the "
                f"limit of {self.max_message_bytes} (max_message_bytes)"
            )
        file_name = message.file_name
        copy = self._outbox_s[message.from_agent] + file_name

        def announce() -> None:
            self.record(
                Event.SENT,
                message,
                message.from_agent,
                file=file_name,
                **sent_fields(message, data),
                **(by.fields() if by else {}),
            )

        try:
            path = inbox.deliver(
                message, data=data, copies=(copy,), dedupe=dedupe, announce=announce
            )
        except Exception as exc:
            self.record(
                Event.DISCARDED, message, message.from_agent, to=message.to_agent, error=str(exc)
            )
            raise
        if path is None:
            reason = "already in the recipient's inbox"
            self.record(
                Event.DISCARDED, message, message.from_agent, to=message.to_agent, error=reason
            )
        return path

    def agent_dir(self, name: str) -> Path:
        """The directory of agent `name` (validated first)."""
        return self.root / validate_agent_name(name)

    def status_path(self, name: str, replica: int = 0) -> Path:
        """The agent's status.json (status.N.json for worker N of an agent with replicas)."""
        file_name = STATUS_FILE if replica == 0 else f"status.{replica}.json"
        return self.agent_dir(name) / file_name

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
            outbox = self.outbox(name)
            ensure_dir(outbox)
            self._outbox_s[name] = os.path.join(outbox, "")
            self._ensured[name] = mailbox
        return mailbox

    def ensure_agent_dir(self, name: str) -> Path:
        """The agent's directory, created (with its inbox) if missing."""
        self.ensure_agent(name)
        return self.agent_dir(name)

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
