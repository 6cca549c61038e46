"""Journal records -> spans -> the OpenTelemetry SDK: names, kinds, parents, attributes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentctl.backends.file.workspace import Workspace
from agentctl.flow.router import user_message
from agentctl.model.tracecontext import (
    attempt_span_id,
    run_span_id,
    send_span_id,
    stage_span_id,
    trace_id_of,
)
from agentctl.telemetry.live import LiveExport, Team
from agentctl.telemetry.otlp import otlp_json, readable_spans, unix_ns
from agentctl.telemetry.spans import SpanAssembler, spans_of
from tests.conftest import wait_until

THREAD = "01TESTTHREAD"
_seconds = iter(range(10, 60))


def ev(event: str, agent: str, message_id: str = THREAD, **fields: Any) -> dict[str, Any]:
    """A journal record, one second after the one before."""
    ts = f"2026-01-02T03:04:{next(_seconds):02d}.000001Z"
    return {"ts": ts, "event": event, "agent": agent, "message_id": message_id,
            "thread_id": THREAD, **fields}  # fmt: skip


def exported(records: list[dict[str, Any]], **options: Any) -> dict[str, ReadableSpan]:
    """The spans, through the SDK's own exporter, by name."""
    memory = InMemorySpanExporter()
    memory.export(readable_spans(spans_of(records, **options)))
    spans = memory.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert len(by_name) == len(spans), [s.name for s in spans]
    return by_name


def ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    assert span.context is not None
    parent = f"{span.parent.span_id:016x}" if span.parent else None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}", parent


def test_a_pipeline_run_is_a_tree_under_its_send() -> None:
    run, stage0 = THREAD, f"{THREAD}.s0.judge"
    records = [
        ev("sent", "user", to="pipeline", kind="task", summary="secret text"),
        ev("claimed", "pipeline", attempt=1),
        ev("run_started", "pipeline", run=run, pipeline="review", stages=[["judge"]]),
        ev("sent", "pipeline", stage0, to="judge"),
        ev("claimed", "judge", stage0, attempt=1),
        ev("handled", "judge", stage0, attempt=1, verdict="pass", model="served",
           usage={"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12, "cost": 0.25}),
        ev("flagged", "pipeline", run=run, stage=0, reason="budget 85% used"),
        ev("stage_done", "pipeline", run=run, pipeline="review", stage=0, verdict="pass",
           agents=["judge"]),
        ev("run_ended", "pipeline", run=run, pipeline="review", outcome="done", verdict="flag"),
    ]  # fmt: skip
    spans = exported(records, models={"judge": "asked-model"})
    trace = trace_id_of(THREAD)
    send, workflow = spans["send pipeline"], spans["invoke_workflow review"]
    stage, attempt = spans["stage 0 review"], spans["invoke_agent judge"]
    chat = spans["chat asked-model"]
    assert ids(send) == (trace, send_span_id(THREAD), None)
    assert ids(workflow) == (trace, run_span_id(run), send_span_id(THREAD))
    assert ids(stage) == (trace, stage_span_id(run, 0), run_span_id(run))
    assert ids(attempt) == (trace, attempt_span_id(stage0, 0, 1), stage_span_id(run, 0))
    assert ids(chat)[2] == attempt_span_id(stage0, 0, 1)
    assert send.kind is SpanKind.PRODUCER and chat.kind is SpanKind.CLIENT
    assert attempt.kind is workflow.kind is SpanKind.INTERNAL
    assert dict(attempt.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "judge",
        "gen_ai.conversation.id": THREAD, "messaging.message.id": stage0,
        "agentctl.attempt": 1, "agentctl.verdict": "pass",
    }  # fmt: skip
    assert dict(chat.attributes or {}) == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "asked-model",
        "gen_ai.response.model": "served", "gen_ai.agent.name": "judge",
        "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 5, "agentctl.cost_usd": 0.25,
    }  # fmt: skip
    assert (workflow.attributes or {})["gen_ai.workflow.name"] == "review"
    assert [e.name for e in workflow.events] == ["flagged"]
    assert workflow.events[0].attributes == {"stage": 0, "reason": "budget 85% used"}
    assert stage.start_time == workflow.start_time and stage.end_time < workflow.end_time
    # Message content stays out unless opted in.
    assert "agentctl.message.summary" not in (send.attributes or {})
    opted = exported(records, content=True)["send pipeline"]
    assert (opted.attributes or {})["agentctl.message.summary"] == "secret text"


def test_a_retry_and_a_dead_letter_are_failed_spans_with_their_fate() -> None:
    records = [
        ev("sent", "user", to="worker"),
        ev("claimed", "worker", attempt=1),
        ev("failed", "worker", attempt=1, error="boom", error_kind="timeout"),
        ev("retried", "worker", attempt=1, retry_in_s=2.0),
        ev("claimed", "worker", attempt=2),
        ev("failed", "worker", attempt=2, error="boom again", error_kind="error"),
        ev("dead", "worker", attempt=2, error="boom again", error_kind="error"),
    ]
    spans = spans_of(records)
    assert [s.name for s in spans] == ["send worker", "invoke_agent worker", "invoke_agent worker"]
    first, second = readable_spans(spans[1:])
    for span, fate, kind in ((first, "retried", "timeout"), (second, "dead", "error")):
        assert span.status.status_code is StatusCode.ERROR
        assert [e.name for e in span.events] == [fate]
        assert (span.attributes or {})["error.type"] == kind
        assert ids(span)[2] == send_span_id(THREAD)
    assert first.events[0].attributes == {"retry_in_s": 2.0}


def test_tool_calls_are_spans_under_their_attempt() -> None:
    records = [
        ev("claimed", "coder", "m1", attempt=1),
        ev("tool_call", "coder", "m1", tool="read_file", server="fs", duration_ms=3.5),
        ev("tool_call", "coder", "m1", tool="write_file", error="denied"),
        ev("handled", "coder", "m1", attempt=1),
    ]
    spans = {s.name: s for s in spans_of(records)}
    read, write = spans["execute_tool read_file"], spans["execute_tool write_file"]
    assert read.parent_id == write.parent_id == attempt_span_id("m1", 0, 1)
    assert read.span_id != write.span_id
    assert read.attributes["gen_ai.tool.name"] == "read_file" and write.error == "denied"
    # A call is journaled when it returns: its span starts its duration earlier
    assert unix_ns(read.end) - unix_ns(read.start) == 3_500_000
    assert write.start == write.end  # no duration journaled: no length invented


def test_a_live_assembler_that_started_late_still_emits_a_primed_send_once() -> None:
    sent, claimed = ev("sent", "user", to="worker"), ev("claimed", "worker", attempt=1)
    late = SpanAssembler()
    late.prime(sent)
    late.prime(sent)  # primed twice (again after following began): still one span
    [send] = late.feed(claimed)
    # The same span `trace export` makes, reading the send in the journal.
    assert send == spans_of([sent, claimed])[0]
    assert late.feed(ev("claimed", "worker", attempt=2)) == []


def test_otlp_json_has_hex_ids_and_nanosecond_strings() -> None:
    spans = spans_of([ev("sent", "user", to="w", keywords=["a", "b"])])
    [span] = otlp_json(spans)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert span["traceId"] == trace_id_of(THREAD) and "parentSpanId" not in span
    assert span["startTimeUnixNano"] == str(unix_ns(spans[0].start))
    assert {"key": "agentctl.keywords",
            "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}} in (
        span["attributes"])  # fmt: skip
    json.dumps(span)


def test_unix_ns_is_exact_to_the_microsecond() -> None:
    assert unix_ns("1970-01-01T00:00:01.000002Z") == 1_000_002_000


@pytest.mark.parametrize(("owners", "names"), [({"worker"}, ["send worker", "invoke_agent worker"]),
                                                ({"pipeline"}, [])])  # fmt: skip
def test_a_live_exporter_sends_only_the_spans_of_the_agents_it_runs(
    tmp_path: Path, owners: set[str], names: list[str]
) -> None:
    # On NATS every machine follows the whole stream; each span leaves from one machine.
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    memory = InMemorySpanExporter()
    team = Team(frozenset(owners), {})
    live = LiveExport(Workspace(tmp_path / "ws"), SimpleSpanProcessor(memory), team=lambda: team)
    for record in (ev("sent", "user", to="worker"), ev("claimed", "worker", attempt=1),
                   ev("handled", "worker", attempt=1)):  # fmt: skip
        live.export(record)
    assert [s.name for s in memory.get_finished_spans()] == names


def test_a_collector_outage_is_one_line_and_its_end_another(tmp_path: Path) -> None:
    import logging
    import socket

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    from agentctl.telemetry.collector import CollectorWatch, route_sdk_log
    from tests.otlpfix import OtlpReceiver

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    said: list[str] = []
    watch = CollectorWatch(OTLPSpanExporter(f"{closed}/v1/traces", timeout=1), closed, said.append)
    sdk_log = logging.getLogger("opentelemetry")
    handlers, propagate = list(sdk_log.handlers), sdk_log.propagate
    route_sdk_log(watch)
    spans = readable_spans(spans_of([ev("sent", "user", to="worker")]))
    receiver = OtlpReceiver()
    try:
        # Given: a collector that is down for two batches, then up.
        assert watch.export(spans) is SpanExportResult.FAILURE
        assert watch.export(spans) is SpanExportResult.FAILURE
        watch.exporter = OTLPSpanExporter(f"{receiver.url}/v1/traces", timeout=1)
        assert watch.export(spans) is SpanExportResult.SUCCESS
    finally:
        receiver.close()
        sdk_log.handlers[:], sdk_log.propagate = handlers, propagate
    # Then: the SDK's retry lines became one outage line and one recovery line.
    assert said == [
        f"tracing: collector at {closed} unreachable (spans dropped until it answers)",
        f"tracing: collector at {closed} answers again",
    ]


def test_a_live_exporter_follows_the_team_a_reload_changes(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    memory = InMemorySpanExporter()
    teams = [Team(frozenset({"first"}), {})]
    live = LiveExport(Workspace(tmp_path / "ws"), SimpleSpanProcessor(memory),
                      team=lambda: teams[-1])  # fmt: skip
    # When: a reload adds `late`, an LLM agent, after the export started.
    teams.append(Team(frozenset({"first", "late"}), {"late": "roster-model"}))
    handled = ev("handled", "late", attempt=1, model="served", usage={"prompt_tokens": 3})
    for record in (ev("sent", "user", to="late"), ev("claimed", "late", attempt=1), handled):
        live.export(record)
    # Then: its spans leave, the LLM call named after the model the roster now gives it.
    assert [s.name for s in memory.get_finished_spans()] == [
        "send late", "invoke_agent late", "chat roster-model"]  # fmt: skip


def test_a_following_the_backend_fails_is_taken_up_again(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    # Given a workspace whose first following fails, as a NATS read times out when the server goes
    class Flaky(Workspace):
        failures = 1

        def follow_events(self, keep, stop, **kwargs):  # type: ignore[no-untyped-def]
            if Flaky.failures:
                Flaky.failures -= 1
                raise OSError("the backend stopped answering")
            yield from super().follow_events(keep, stop, **kwargs)

    memory = InMemorySpanExporter()
    ws = Flaky(tmp_path / "ws", fsync=False)
    live = LiveExport(ws, SimpleSpanProcessor(memory), team=lambda: Team(frozenset({"a"}), {}))
    live.start()
    try:
        # When the journal goes on after the failure (what is sent while nobody follows may
        # be missed: send until one is seen)
        def sent_and_seen() -> bool:
            ws.deliver(user_message("a", "hi"))
            return "send a" in [s.name for s in memory.get_finished_spans()]

        # Then the export follows again and the spans leave
        wait_until(sent_and_seen, interval_s=0.2)
        assert Flaky.failures == 0 and live._thread.is_alive()
    finally:
        live.stopping.set()


def test_the_export_thread_yields_to_the_workers(tmp_path: Path) -> None:
    import os

    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from agentctl.telemetry.live import EXPORT_NICENESS

    # Given a live export following a workspace
    live = LiveExport(Workspace(tmp_path / "ws", fsync=False),
                      SimpleSpanProcessor(InMemorySpanExporter()),
                      team=lambda: Team(frozenset({"a"}), {}))  # fmt: skip
    live.start()
    try:
        # Then its thread runs below the process's own priority (tracing is background work)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        tid = wait_until(lambda: live._thread.native_id)
        wait_until(lambda: os.getpriority(os.PRIO_PROCESS, tid) == min(own + EXPORT_NICENESS, 19))
    finally:
        live.stopping.set()


def test_the_spans_resource_follows_otel_service_name_and_resource_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [ev("sent", "user", to="worker")]
    [default] = readable_spans(spans_of(records))
    assert default.resource.attributes["service.name"] == "agentctl"

    # The resource is made once per setting, and a changed setting is a new one.
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ci-agents")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
    [named] = readable_spans(spans_of(records))
    assert named.resource.attributes["service.name"] == "ci-agents"
    assert named.resource.attributes["deployment.environment"] == "ci"
    [again] = readable_spans(spans_of(records))
    assert again.resource is named.resource
