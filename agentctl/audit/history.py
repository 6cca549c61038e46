"""Reading the audit trail back: event filters, times, and the reconstruction of one thread.

`load_thread` scans the journal for one id (a thread's or a message's) without loading the whole
journal, then joins each message's events with the message file on disk, so `replay` can show
who sent what to whom, in order, with attempts, results, verdicts and errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agentctl.backends.base import History, Record
from agentctl.backends.records import STATE_AFTER
from agentctl.model.constants import RESERVED_AGENT_NAMES
from agentctl.model.errors import AgentctlError
from agentctl.model.names import validate_agent_name, validate_message_id
from agentctl.model.vocab import Event, choices

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# A message's events (a tool call is one of its attempt's steps, changing no state).
MESSAGE_EVENTS = frozenset(STATE_AFTER) | {Event.FAILED, Event.DISCARDED, Event.TOOL_CALL}


class HistoryError(AgentctlError):
    """A replay or tail request that cannot be answered (unknown id, bad time)."""


def parse_when(text: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """An ISO time (UTC if it has no zone) or a duration ago like 10m, 2h, 1d."""
    now = now or datetime.now(UTC)
    match = _DURATION_RE.fullmatch(text.strip())
    if match:
        try:
            return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        except (OverflowError, ValueError):
            raise HistoryError(f"{option}: {text!r} is too far back") from None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(
            f"{option}: {text!r} is neither an ISO time (2026-11-25T10:00:00Z) "
            "nor a duration like 30s, 10m, 2h, 1d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def event_time(record: Record) -> datetime | None:
    """The timestamp of a journal record."""
    try:
        return datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None


def event_filter(
    *,
    agent: str | None = None,
    thread: str | None = None,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    agents: list[str] | None = None,
) -> Callable[[Record], bool]:
    """A predicate over journal records; `agent` matches the actor or the recipient.

    `kinds` must be journal events, and `agent` one of `agents` (the roster's, when given) or a
    reserved name: a typo would otherwise show an empty journal instead of an error.
    """
    if agent is not None:
        validate_agent_name(agent)
        known = sorted({*agents, *RESERVED_AGENT_NAMES}) if agents is not None else None
        if known is not None and agent not in known:
            raise HistoryError(f"unknown agent {agent!r}; the agents: {', '.join(known)}")
    for kind in kinds or ():
        if kind not in list(Event):
            raise HistoryError(f"unknown event kind {kind!r}; the events: {choices(Event)}")
    wanted = set(kinds or ())

    def keep(record: Record) -> bool:
        if agent is not None and agent not in (record.get("agent"), record.get("to")):
            return False
        if thread is not None and record.get("thread_id") != thread:
            return False
        if wanted and record.get("event") not in wanted:
            return False
        if since is not None or until is not None:
            when = event_time(record)
            if when is None:
                return False
            if since is not None and when < since:
                return False
            if until is not None and when > until:
                return False
        return True

    return keep


# -- one thread -------------------------------------------------------------------------------


@dataclass
class MessageTrace:
    """One message of a thread: its envelope, its file's content, and what happened to it."""

    id: str
    from_agent: str | None = None
    to_agent: str | None = None
    kind: str | None = None
    in_reply_to: str | None = None
    file: str | None = None
    content: Any = None
    content_found: bool = False
    state: str = "unknown"
    attempts: int = 0
    verdict: str | None = None
    error: str | None = None
    result_id: str | None = None
    events: list[Record] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form used by `replay --json`."""
        return {
            "id": self.id,
            "from": self.from_agent,
            "to": self.to_agent,
            "kind": self.kind,
            "in_reply_to": self.in_reply_to,
            "file": self.file,
            "content": self.content,
            "state": self.state,
            "attempts": self.attempts,
            "verdict": self.verdict,
            "error": self.error,
            "result_id": self.result_id,
            "events": self.events,
        }


@dataclass
class Thread:
    """Everything the journal and the files say about one thread."""

    thread_id: str
    events: list[Record]
    messages: dict[str, MessageTrace]
    torn_lines: int = 0

    @property
    def started(self) -> datetime | None:
        """When the thread's first event happened."""
        return event_time(self.events[0]) if self.events else None

    def roots(self) -> list[MessageTrace]:
        """Messages that answer nothing in this thread, in the order they were first seen."""
        return [
            m
            for m in self.messages.values()
            if not m.in_reply_to or m.in_reply_to not in self.messages
        ]

    def replies_to(self, message_id: str) -> list[MessageTrace]:
        """Messages answering `message_id`."""
        return [m for m in self.messages.values() if m.in_reply_to == message_id]

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form used by `replay --json`."""
        return {
            "thread_id": self.thread_id,
            "started": self.events[0]["ts"] if self.events else None,
            "messages": [m.to_json() for m in self.messages.values()],
            "events": self.events,
        }


def replay_thread(
    history: History,
    ident: str,
    *,
    agent: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Thread:
    """The thread as `replay` shows it: events by or to `agent`, between `since` and `until`
    (ISO times or durations ago), each message's state as of `until`."""
    as_of = parse_when(until, option="--until") if until else None
    start = parse_when(since, option="--since") if since else None
    keep = event_filter(agent=agent, since=start, until=as_of)
    return load_thread(history, ident, keep=keep, as_of=as_of)


def load_thread(
    history: History,
    ident: str,
    *,
    keep: Callable[[Record], bool] | None = None,
    as_of: datetime | None = None,
) -> Thread:
    """The thread `ident` names, or the thread of the message `ident` names.

    `keep` chooses the events shown; each message's state is what every event up to `as_of`
    (default: now, and then the files, which have the last word) made it.
    """
    validate_message_id(ident)
    records, torn = history.find_events(ident)
    if not records:
        raise HistoryError(f"{ident}: no thread or message with this id in {history.where}")
    thread_id = next(
        (r["thread_id"] for r in records if r.get("thread_id") == ident),
        records[0].get("thread_id") or ident,
    )
    if thread_id != ident:
        records, torn = history.find_events(thread_id)
        records = [r for r in records if r.get("thread_id") == thread_id]
    events = [r for r in records if keep is None or keep(r)]
    messages: dict[str, MessageTrace] = {}
    # States come from every event up to `as_of` (a filter by agent hides events, it does not
    # change what happened); `keep` only chooses which events each message shows.
    for record in records:
        message_id = record.get("message_id")
        if not message_id or record.get("event") not in MESSAGE_EVENTS:
            continue
        if as_of is not None and (event_time(record) or as_of) > as_of:
            continue
        trace = messages.setdefault(message_id, MessageTrace(id=message_id))
        _apply(trace, record, shown=keep is None or keep(record))
    for trace in list(messages.values()):
        _load_content(history, trace, with_state=as_of is None)
        if as_of is None:
            for reply in history.unjournaled_replies(trace):
                _add_unjournaled(history, messages, reply)
    if keep is not None:
        messages = {i: m for i, m in messages.items() if m.events or keep(_as_record(m))}
    return Thread(thread_id=thread_id, events=events, messages=messages, torn_lines=torn)


# The inbox folder a message file is in, and the state it means, in life-cycle order.
def _add_unjournaled(history: History, messages: dict[str, MessageTrace], data: Record) -> None:
    message_id = data.get("id")
    if not isinstance(message_id, str) or message_id in messages:
        return
    trace = MessageTrace(
        id=message_id,
        from_agent=data.get("from_agent"),
        to_agent=data.get("to_agent"),
        kind=data.get("kind"),
        in_reply_to=data.get("in_reply_to"),
        file=data.get("_file"),
        content=data.get("content"),
        content_found=True,
    )
    trace.state = history.file_state(trace) or "unknown"
    messages[message_id] = trace


def _as_record(trace: MessageTrace) -> Record:
    # An unjournaled message, as the event filter sees one: by whom and to whom.
    return {"agent": trace.from_agent, "to": trace.to_agent, "thread_id": None,
            "event": Event.SENT}  # fmt: skip


def _apply(trace: MessageTrace, record: Record, *, shown: bool = True) -> None:
    event = record["event"]
    if shown:
        trace.events.append(record)
    trace.state = STATE_AFTER.get(event, trace.state)
    if event == Event.SENT:
        trace.from_agent = record.get("agent")
        trace.to_agent = record.get("to")
        trace.kind = record.get("kind")
        trace.in_reply_to = record.get("in_reply_to")
        trace.file = record.get("file")
    elif event == Event.CLAIMED:
        trace.attempts = max(trace.attempts, int(record.get("attempt") or 0))
        trace.to_agent = trace.to_agent or record.get("agent")
        trace.file = trace.file or record.get("file")
    elif event == Event.HANDLED:
        trace.verdict = record.get("verdict")
        trace.result_id = record.get("result_id")
        trace.error = None
    elif event in (Event.FAILED, Event.DEAD, Event.DISCARDED):
        trace.error = record.get("error")
        trace.file = trace.file or record.get("file")


def _load_content(history: History, trace: MessageTrace, *, with_state: bool) -> None:
    data = history.envelope(trace)
    if data is not None:
        trace.content = data.get("content")
        trace.content_found = True
        trace.from_agent = trace.from_agent or data.get("from_agent")
        trace.kind = trace.kind or data.get("kind")
        trace.in_reply_to = trace.in_reply_to or data.get("in_reply_to")
    # The files are the truth about where a message is: a foreign agent moves its task to
    # done/ without journaling it, and the journal's last lines may be lost in a power cut.
    if with_state:
        trace.state = history.file_state(trace) or trace.state
