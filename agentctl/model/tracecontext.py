"""W3C trace context for agentctl's threads: one trace per thread, ids derived, not drawn.

A thread's trace id is a digest of its thread id, and each span's id a digest of the journal
facts that name it (a message id and attempt, a run and stage). So every process that handles
a thread, and `agentctl trace export` reading the journal long afterwards, arrive at the same
ids without telling each other: the `traceparent` header a message carries (and `TRACEPARENT`
in an `exec:` program's environment) is how agents in other languages join the trace, not how
agentctl's own spans find their parents. See docs/TRACING.md.

Stdlib only: the model layer, usable where OpenTelemetry is not installed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentctl.model.message import AgentMessage

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
TRACE_HEADERS = frozenset({TRACEPARENT_HEADER, TRACESTATE_HEADER})
TRACEPARENT_ENV = "TRACEPARENT"  # what an `exec:` program finds in its environment
TRACESTATE_ENV = "TRACESTATE"
SAMPLED_FLAGS = "01"

# W3C Trace Context level 1: version-traceid-parentid-flags. A later version may append
# fields after the flags ("-..."), which a version-00 reader ignores; version ff is invalid.
_TRACEPARENT_RE = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?"
)
_TRACESTATE_MEMBER_RE = re.compile(
    r"[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_MAX_TRACESTATE_MEMBERS = 32
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True)
class TraceParent:
    """A parsed `traceparent`: the trace, the parent span, the flags (hex)."""

    trace_id: str
    span_id: str
    flags: str = SAMPLED_FLAGS

    def format(self) -> str:
        """The header's text (version 00)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(text: str | None) -> TraceParent | None:
    """The header's parts, or None when it is absent or not valid W3C trace context."""
    if not text:
        return None
    match = _TRACEPARENT_RE.fullmatch(text.strip())
    if match is None or match["version"] == "ff":
        return None
    if match["version"] == "00" and match["rest"]:
        return None  # version 00 has exactly four fields
    if match["trace"] == _ZERO_TRACE or match["span"] == _ZERO_SPAN:
        return None
    return TraceParent(match["trace"], match["span"], match["flags"])


def valid_tracestate(text: str) -> bool:
    """Whether `text` is a W3C `tracestate` list (at most 32 `key=value` members)."""
    members = [m.strip() for m in text.split(",") if m.strip()]
    return 0 < len(members) <= _MAX_TRACESTATE_MEMBERS and all(
        _TRACESTATE_MEMBER_RE.fullmatch(m) for m in members
    )


def _digest_hex(chars: int, *parts: object) -> str:
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    text = hashlib.sha256(b"agentctl\x1e" + data).hexdigest()[:chars]
    # An all-zero id is invalid in W3C and OTLP; 1 in 2**64 at worst, but never sent.
    return text if text.strip("0") else text[:-1] + "1"


def trace_id_of(thread_id: str) -> str:
    """The trace id of a thread (32 hex digits)."""
    return _digest_hex(32, "trace", thread_id)


def span_id_of(*parts: object) -> str:
    """A span id (16 hex digits) named by `parts` (see the *_span_id functions)."""
    return _digest_hex(16, "span", *parts)


def send_span_id(message_id: str) -> str:
    """The span of a message sent from outside (a thread's root): `send <agent>`."""
    return span_id_of("send", message_id)


def attempt_span_id(message_id: str, requeued: int, attempt: int) -> str:
    """The span of one attempt at a message: `invoke_agent <agent>`."""
    return span_id_of("attempt", message_id, requeued, attempt)


def run_span_id(run_id: str) -> str:
    """The span of a pipeline run."""
    return span_id_of("run", run_id)


def stage_span_id(run_id: str, stage: int) -> str:
    """The span of one stage of a pipeline run (the `finally` stage is the last index)."""
    return span_id_of("stage", run_id, stage)


def context_headers(thread_id: str, span_id: str, tracestate: str | None = None) -> dict[str, str]:
    """The `traceparent` (and `tracestate`) headers naming span `span_id` of the thread."""
    headers = {TRACEPARENT_HEADER: TraceParent(trace_id_of(thread_id), span_id).format()}
    if tracestate:
        headers[TRACESTATE_HEADER] = tracestate
    return headers


def attempt_context(message: AgentMessage) -> dict[str, str]:
    """The trace headers of the attempt now being made at `message` (its `attempt` field is
    the current attempt): what its reply carries, and what an `exec:` program is given."""
    span = attempt_span_id(message.id, message.requeued, message.attempt)
    return context_headers(message.thread_id, span, message.headers.get(TRACESTATE_HEADER))


def attempt_env(message: AgentMessage) -> dict[str, str]:
    """`TRACEPARENT` (and `TRACESTATE`) for a program run on the current attempt, as the
    OpenTelemetry SDKs read them (the environment-variable carrier)."""
    context = attempt_context(message)
    env = {TRACEPARENT_ENV: context[TRACEPARENT_HEADER]}
    if TRACESTATE_HEADER in context:
        env[TRACESTATE_ENV] = context[TRACESTATE_HEADER]
    return env


def root_context(message: AgentMessage) -> AgentMessage:
    """`message`, which starts work from outside, carrying the context of its `send` span
    (the root of its part of the thread's trace)."""
    headers = {**message.headers, **context_headers(message.thread_id, send_span_id(message.id))}
    return message.model_copy(update={"headers": headers})
