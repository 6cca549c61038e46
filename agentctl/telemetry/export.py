"""`agentctl trace export`: a thread's spans rebuilt from the journal, sent or written.

The journal holds everything the spans need (telemetry/spans.py), so a thread can be exported
after the fact, or again, or from a workspace that ran with no collector configured; the ids
are the ones a live export gave the same spans, so a backend that has both sees one trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.audit.history import parse_when
from agentctl.model.errors import AgentctlError
from agentctl.protocol.fsutil import write_atomic
from agentctl.telemetry.otlp import capture_content, configured_endpoint, otlp_json, send_spans
from agentctl.telemetry.spans import SpanRecord, spans_of

if TYPE_CHECKING:
    from datetime import datetime

    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster

ALL_EVENTS = 10**12  # `--since` reads the journal from that time on, however much it is


@dataclass(frozen=True)
class Exported:
    """What `trace export` did: how many spans of how many threads, and where they went."""

    spans: list[SpanRecord]
    threads: list[str]
    where: str


def export_trace(
    backend: Backend,
    roster: Roster | None,
    *,
    thread: str | None = None,
    since: str | None = None,
    endpoint: str | None = None,
    output: Path | None = None,
    now: datetime | None = None,
) -> Exported:
    """Rebuild the spans of `thread` (or of every thread active `since`) and send them to
    `endpoint` (else the OTEL_EXPORTER_OTLP_* one) or write them to `output` as OTLP JSON."""
    if (thread is None) == (since is None):
        raise AgentctlError("give a THREAD or --since TIME (one of them); nothing exported")
    if endpoint is not None and output is not None:
        raise AgentctlError("give --endpoint or --output, not both; nothing exported")
    target = endpoint or (None if output is not None else configured_endpoint())
    if output is None and target is None:
        raise AgentctlError(
            "nowhere to export to: give --endpoint URL or --output FILE.json, or set "
            "OTEL_EXPORTER_OTLP_ENDPOINT; nothing exported"
        )
    records = _thread_records(backend, thread) if thread else _records_since(backend, since, now)
    threads = list(dict.fromkeys(str(r["thread_id"]) for r in records if r.get("thread_id")))
    models = {a.name: a.llm.model for a in roster.agents if a.llm} if roster else {}
    spans = spans_of(records, models=models, content=capture_content())
    if output is not None:
        data = json.dumps(otlp_json(spans), ensure_ascii=False, indent=1).encode() + b"\n"
        try:
            write_atomic(output, data)
        except OSError as exc:
            raise AgentctlError(f"{output}: cannot write: {exc.strerror or exc}") from None
        return Exported(spans, threads, str(output))
    assert target is not None
    if spans:
        send_spans(spans, target)
    return Exported(spans, threads, target)


def _thread_records(backend: Backend, ident: str) -> list[dict[str, Any]]:
    history = backend.history()
    records, _ = history.find_events(ident)
    if not records:
        raise AgentctlError(f"{ident}: no thread or message by that id in {history.where}")
    # A message id names its thread: the trace is the whole thread's.
    thread = next((r["thread_id"] for r in records if r.get("thread_id")), ident)
    if thread != ident:
        records, _ = history.find_events(thread)
    return [r for r in records if r.get("thread_id") == thread]


def _records_since(backend: Backend, since: str | None, now: datetime | None) -> list[Any]:
    start = parse_when(since or "", now=now, option="--since")
    stamp = start.isoformat(timespec="microseconds").replace("+00:00", "Z")
    threads = set()
    records = backend.read_events(ALL_EVENTS, lambda r: bool(r.get("thread_id")))
    for record in records:
        if str(record.get("ts") or "") >= stamp:
            threads.add(record["thread_id"])
    if not threads:
        # An empty file or an empty send would look like a success that exported nothing.
        raise AgentctlError(
            f"no thread has an event since {stamp} (--since {since}); nothing exported"
        )
    # Whole threads: a span begun before `since` and ended after it is still whole.
    return [r for r in records if r.get("thread_id") in threads]
