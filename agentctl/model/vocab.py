"""The words agentctl writes to disk: journal events, pipeline run status, error kinds.

Each is a `StrEnum` whose values are exactly the strings stored in the journal, run files and
dead-letter reasons, so workspaces written before these enums, and foreign agents that write
the strings themselves, read the same. An agent's life-cycle state is `AgentState`
(agentctl/protocol/status.py), next to the status file it describes.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    """A journal line's `event`: what happened (docs/PROTOCOL.md, "The journal")."""

    # A message's life, journaled by its sender, its inbox's worker or `send --wait`.
    SENT = "sent"
    DISCARDED = "discarded"  # a de-duplicated or failed delivery
    CLAIMED = "claimed"
    HANDLED = "handled"
    FAILED = "failed"
    RETRIED = "retried"
    DEAD = "dead"
    RECEIVED = "received"  # a reply taken by `send --wait`
    REQUEUED = "requeued"  # a dead letter brought back
    ROUTED = "routed"  # a `send --route/--fanout` decision
    RELEASED = "released"  # put back by a stop, without an attempt counted
    RECOVERED = "recovered"  # a torn journal line ended by the next appender
    TOOL_CALL = "tool_call"  # an llm: agent's model called an MCP tool while handling it
    # The supervisor's, about an agent process.
    STARTED = "started"
    RESTARTED = "restarted"
    CRASHED = "crashed"
    EXITED = "exited"
    FATAL = "fatal"
    KILLED = "killed"
    STOPPED = "stopped"
    # The workspace's halt switch, and a person's answer to an escalation.
    HALTED = "halted"
    RESUMED = "resumed"
    RESOLVED = "resolved"
    # The pipeline conductor's, about a run.
    RUN_STARTED = "run_started"
    STAGE_DONE = "stage_done"
    FLAGGED = "flagged"
    ESCALATED = "escalated"
    BUDGET = "budget"
    RUN_RESUMED = "run_resumed"
    RUN_ENDED = "run_ended"


class RunStatus(StrEnum):
    """A pipeline run's `status` in its run file (`outcome` once it ends)."""

    RUNNING = "running"
    ESCALATED = "escalated"  # parked until a person resolves its escalation
    DONE = "done"
    BLOCKED = "blocked"
    STOPPED = "stopped"  # a result said `halt: true`
    HALTED = "halted"  # a HALT verdict, or its budget ran out


# A run with one of these has its outcome; HALTED ones skip the `finally` stage.
RUN_OUTCOMES = frozenset({RunStatus.DONE, RunStatus.BLOCKED, RunStatus.STOPPED})


class ErrorKind(StrEnum):
    """Why an attempt failed: `error_kind` in `failed` and `dead` events and dead-letter reasons."""

    ERROR = "error"  # the handler raised, or its result could not be delivered
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"  # its worker died while handling it, or no attempts were left
    NON_RETRYABLE = "non_retryable"  # the handler said retrying cannot help
    BAD_MESSAGE = "bad_message"  # a file that is not a message


def choices(vocabulary: type[StrEnum]) -> str:
    """The values of a vocabulary, comma-separated, for an error message."""
    return ", ".join(member.value for member in vocabulary)
