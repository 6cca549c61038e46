"""A span as plain data: what the assembler (spans.py) makes and the exporters (otlp.py) send."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SpanKind(StrEnum):
    """OpenTelemetry's span kinds, by their OTLP names (less the `SPAN_KIND_` prefix)."""

    INTERNAL = "internal"
    PRODUCER = "producer"
    CLIENT = "client"


@dataclass
class SpanEvent:
    """Something that happened during a span: a retry, a budget stop, an escalation."""

    name: str
    ts: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SpanRecord:
    """One finished span, in plain data (times are the journal's ISO timestamps)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: SpanKind
    start: str
    end: str
    attributes: dict[str, Any]
    owner: str  # the agent whose work it is: on NATS, the supervisor running it exports it
    events: list[SpanEvent] = field(default_factory=list)
    error: str | None = None  # the status description of a failed span
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id) elsewhere
