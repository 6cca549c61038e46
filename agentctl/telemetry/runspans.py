"""Journal events -> the spans of pipeline runs: `invoke_workflow <pipeline>` and its stages.

Part of SpanAssembler (telemetry/spans.py), which hands it the run events (run_started,
stage_done, flagged, escalated, budget, run_resumed, run_ended) and says when a stage's task is
claimed. A stage span lasts from the moment its stage was dispatched (the previous stage's end,
or a resume) to its verdict; the `finally` stage, which journals no verdict of its own, ends
with its run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentctl.model.constants import PIPELINE_AGENT
from agentctl.model.tracecontext import run_span_id, send_span_id, stage_span_id, trace_id_of
from agentctl.model.vocab import Event
from agentctl.telemetry.journalfields import Bounded, as_int, kept, prefixed
from agentctl.telemetry.spanrecord import SpanEvent, SpanKind, SpanRecord

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class _Run:
    span: SpanRecord
    stages: int
    boundary: str  # when the stage now running began
    final_seen: bool = False


class RunSpans:
    """The open pipeline runs, and the run and stage spans their events end."""

    def __init__(self) -> None:
        self.runs: Bounded[_Run] = Bounded()  # run id -> open run

    def stage_claimed(self, run_id: str, stage: int) -> None:
        """A stage's task was claimed: past the declared stages, it is the `finally` stage."""
        run = self.runs.get(run_id)
        if run is not None and stage >= run.stages:
            run.final_seen = True

    def feed(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        """The spans the run event `record` ends (none for another event)."""
        handler = self._handlers.get(str(record.get("event")))
        return handler(self, record, thread, message_id) if handler else []

    def _started(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        run_id, pipeline = str(record.get("run")), str(record.get("pipeline"))
        stages = record.get("stages")
        ts = str(record.get("ts"))
        span = SpanRecord(
            trace_id_of(thread),
            run_span_id(run_id),
            send_span_id(message_id),
            f"invoke_workflow {pipeline}",
            SpanKind.INTERNAL,
            ts,
            ts,
            {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": pipeline,
                "gen_ai.conversation.id": thread,
                "agentctl.run": run_id,
            },
            owner=PIPELINE_AGENT,
        )
        self.runs[run_id] = _Run(span, len(stages) if isinstance(stages, list) else 0, ts)
        return []

    def _run_of(self, record: dict[str, Any], thread: str, message_id: str) -> _Run:
        run_id = str(record.get("run"))
        run = self.runs.get(run_id)
        if run is None:  # started before we did (a live exporter restarted): from here on
            self._started(record, thread, message_id)
            run = self.runs[run_id]
        return run

    def _stage_span(
        self, run: _Run, stage: int, end: str, attributes: dict[str, Any]
    ) -> SpanRecord:
        pipeline = run.span.attributes["gen_ai.workflow.name"]
        run_id = run.span.attributes["agentctl.run"]
        return SpanRecord(
            run.span.trace_id,
            stage_span_id(run_id, stage),
            run.span.span_id,
            f"stage {stage} {pipeline}",
            SpanKind.INTERNAL,
            run.boundary,
            end,
            {
                "gen_ai.workflow.name": pipeline,
                "agentctl.run": run_id,
                "agentctl.stage": stage,
                **attributes,
            },  # fmt: skip
            owner=PIPELINE_AGENT,
        )

    def _stage_done(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        run = self._run_of(record, thread, message_id)
        ts = str(record.get("ts"))
        attributes = kept(record, "verdict", "agents")
        span = self._stage_span(run, as_int(record.get("stage")), ts, prefixed(attributes))
        run.boundary = ts
        return [span]

    def _event(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        run = self._run_of(record, thread, message_id)
        ts = str(record.get("ts"))
        attributes = kept(record, "stage", "reason", "share", "tokens", "wall_s", "verdict")
        run.span.events.append(SpanEvent(str(record.get("event")), ts, attributes))
        if record.get("event") == Event.RUN_RESUMED:
            run.boundary = ts  # the next stage is dispatched now
        return []

    def _ended(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        run = self._run_of(record, thread, message_id)
        self.runs.pop(str(record.get("run")), None)
        ts = str(record.get("ts"))
        spans = []
        if run.final_seen:  # the `finally` stage journals no stage_done of its own
            spans.append(self._stage_span(run, run.stages, ts, {"agentctl.final": True}))
        run.span.end = ts
        outcome = record.get("outcome")
        run.span.attributes.update(prefixed(kept(record, "outcome", "verdict")))
        if outcome in ("blocked", "halted", "stopped"):
            run.span.error = f"run {outcome}"
        spans.append(run.span)
        return spans

    _handlers: dict[str, Callable[[RunSpans, dict[str, Any], str, str], list[SpanRecord]]] = {
        Event.RUN_STARTED: _started,
        Event.STAGE_DONE: _stage_done,
        Event.FLAGGED: _event,
        Event.ESCALATED: _event,
        Event.BUDGET: _event,
        Event.RUN_RESUMED: _event,
        Event.RUN_ENDED: _ended,
    }
