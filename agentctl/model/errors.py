"""The errors agentctl raises, all rooted in one class.

AgentctlError                   anything agentctl reports as one clear line
├── ConfigError                 agents.yaml is missing or invalid
├── InvalidNameError            an agent name or message id that must not touch a path
├── WorkspaceError              the workspace is unusable (symlinked inbox, not a directory)
├── BadMessageError             a message file that cannot be read as an AgentMessage
├── DeliveryError               a message could not be delivered (e.g. duplicate id)
├── SupervisorError             a supervisor is already running, or none is
├── HandlerError                an agent's handler failed on a message
│   ├── HandlerTimeoutError     ... by running past its timeout_s
│   └── NonRetryableError       ... in a way retrying cannot fix (raise it from a handler)
└── WaitTimeoutError            no reply arrived in time
    └── ReplyTakenError         ... because another receiver took it
"""

from __future__ import annotations

from agentctl.model.constants import MAX_ERROR_CHARS


class AgentctlError(Exception):
    """Base of every error agentctl reports to a user as one line."""


class ConfigError(AgentctlError):
    """The roster file is missing or invalid; the message names file, line and field."""


class InvalidNameError(AgentctlError, ValueError):
    """A name that would be unsafe as a path component."""


class WorkspaceError(AgentctlError):
    """The workspace cannot be used safely."""


class BadMessageError(AgentctlError):
    """A message file that is not a valid AgentMessage."""


class DeliveryError(AgentctlError):
    """A message could not be delivered."""


class SupervisorError(AgentctlError):
    """Supervisor life-cycle problems: already running, not running."""


class HandlerError(AgentctlError):
    """A handler failed on a message; the attempt counts as failed."""


class HandlerTimeoutError(HandlerError):
    """A handler ran past its timeout_s."""


class NonRetryableError(HandlerError):
    """Raise from a handler when retrying cannot help (bad input, a refused request).

    The message skips its remaining attempts: it goes to dead/ at once, and the requester gets
    the escalation reply. Any other exception counts as one failed attempt.
    """


class WaitTimeoutError(AgentctlError):
    """No reply arrived within the wait."""


class ReplyTakenError(WaitTimeoutError):
    """The reply arrived, but another receiver waiting for it took it first."""


def cap_error(error: str, max_chars: int = MAX_ERROR_CHARS) -> str:
    """`error`, or its start and how long it was in all, in at most `max_chars` characters."""
    if len(error) <= max_chars:
        return error
    # The whole result fits in max_chars, so capping it again leaves it as it is.
    said = f"… (cut: {len(error)} characters in all)"
    return error[: max_chars - len(said)] + said
