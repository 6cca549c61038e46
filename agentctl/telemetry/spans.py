"""Journal events -> trace spans: the one rule both the live export and `trace export` use.

SpanAssembler is fed journal records one at a time, in journal order, and hands back each span
as soon as the record that ends it arrives. The live exporter (telemetry/live.py) feeds it the
records as they are appended; `agentctl trace export` feeds it a thread's records read back.
Every id and time comes from the records themselves (ids: model/tracecontext.py), so both
arrive at the same spans. This module makes the send, attempt, LLM call and tool spans; a
pipeline's run and stage spans are telemetry/runspans.py's. Stdlib only: OpenTelemetry is
imported by telemetry/otlp.py alone.

The spans (OpenTelemetry GenAI semantic conventions 1.44.0, development status):

    send <agent>                 a message sent from outside (the `user`): a thread's root
      invoke_workflow <pipeline> a pipeline run (events: flagged, budget, escalated, resumed)
        stage <i> <pipeline>     one stage, up to its verdict
          invoke_agent <agent>   one attempt at a stage's task
      invoke_agent <agent>       one attempt at a message (a retried one has one span each)
        chat <model>             the LLM call of an llm: agent's attempt, with its tokens
        execute_tool <tool>      a tool the agent called (`tool_call` events)
"""

from __future__ import annotations

from typing import Any

from agentctl.flow.pipeline import parse_stage_id
from agentctl.model.constants import PIPELINE_AGENT, USER_AGENT
from agentctl.model.tracecontext import (
    attempt_span_id,
    parse_traceparent,
    send_span_id,
    span_id_of,
    stage_span_id,
    trace_id_of,
)
from agentctl.model.vocab import Event
from agentctl.telemetry.journalfields import Bounded, as_int, earlier, kept
from agentctl.telemetry.runspans import RunSpans
from agentctl.telemetry.spanrecord import SpanEvent, SpanKind, SpanRecord

SEMCONV_VERSION = "1.44.0"
TOOL_CALL_EVENT = "tool_call"  # journaled by llm: agents for each MCP tool they call

__all__ = ["SpanAssembler", "SpanEvent", "SpanKind", "SpanRecord", "spans_of"]


class SpanAssembler:
    """Turns journal records into spans (see the module docstring)."""

    def __init__(self, *, models: dict[str, str] | None = None, content: bool = False) -> None:
        self.models = models or {}  # an llm: agent's configured model, when its result names none
        self.content = content  # message summaries on send spans (opted in)
        self._sends: Bounded[dict[str, Any]] = Bounded()  # message id -> sent (by the user)
        self._emitted_sends: Bounded[bool] = Bounded()
        self._attempts: Bounded[SpanRecord] = Bounded()  # agent/message id -> open attempt
        self._failed: Bounded[SpanRecord] = Bounded()  # message id -> failed, fate unknown
        self._tools: Bounded[int] = Bounded()  # attempt span id -> tool calls so far
        self.runs = RunSpans()  # pipeline runs and their stages: telemetry/runspans.py

    def prime(self, record: dict[str, Any]) -> None:
        """Remember a send journaled before we started, to emit when its message is claimed."""
        if record.get("event") == Event.SENT and record.get("agent") == USER_AGENT:
            self._sends[str(record.get("message_id"))] = record

    def feed(self, record: dict[str, Any]) -> list[SpanRecord]:
        """The spans `record` ends (often none)."""
        event = record.get("event")
        thread, message_id = record.get("thread_id"), record.get("message_id")
        if not isinstance(thread, str) or not thread or not isinstance(message_id, str):
            return []
        handler = self._handlers.get(str(event))
        if handler is None:
            return self.runs.feed(record, thread, message_id)
        return handler(self, record, thread, message_id)

    def finish(self) -> list[SpanRecord]:
        """Failed attempts whose fate was never journaled (the journal ends there)."""
        spans = list(self._failed.values())
        self._failed.clear()
        return spans

    # -- sends --------------------------------------------------------------------------------

    def _sent(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        if record.get("agent") != USER_AGENT:
            return []
        self._sends[message_id] = record
        return self._send_span(message_id, thread)

    def _send_span(self, message_id: str, thread: str) -> list[SpanRecord]:
        record = self._sends.get(message_id)
        if record is None or message_id in self._emitted_sends:
            return []
        self._emitted_sends[message_id] = True
        to = str(record.get("to") or "?")
        attributes: dict[str, Any] = {
            "messaging.operation.type": "send",
            "messaging.destination.name": to,
            "messaging.message.id": message_id,
            "gen_ai.conversation.id": thread,
        }
        for key in ("keywords", "priority"):
            if record.get(key) is not None:
                attributes[f"agentctl.{key}"] = record[key]
        for key in ("by", "login", "client"):  # who sent it (model/actor.py)
            if isinstance(record.get(key), str):
                attributes[f"agentctl.actor.{key}"] = record[key]
        if self.content and record.get("summary") is not None:
            attributes["agentctl.message.summary"] = record["summary"]
        ts = str(record.get("ts"))
        link = record.get("link")  # the sender's own trace (a CI job's), if it had one
        outside = parse_traceparent(link) if isinstance(link, str) else None
        return [
            SpanRecord(
                trace_id_of(thread),
                send_span_id(message_id),
                None,
                f"send {to}",
                SpanKind.PRODUCER,
                ts,
                ts,
                attributes,
                owner=to,
                links=[(outside.trace_id, outside.span_id)] if outside else [],
            )
        ]

    # -- attempts -----------------------------------------------------------------------------

    def _claimed(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        agent = str(record.get("agent"))
        spans = self._send_span(message_id, thread)  # primed: sent before we started
        if agent == PIPELINE_AGENT:
            return spans  # the conductor's work shows as run and stage spans
        stale = self._failed.pop(message_id, None)  # a retry is claimed: the failure's fate
        if stale is not None:
            spans.append(stale)
        requeued, attempt = as_int(record.get("requeued")), as_int(record.get("attempt"))
        stage = parse_stage_id(message_id)
        if stage is not None and stage[2] != "escalation":
            parent = stage_span_id(stage[0], stage[1])
            self.runs.stage_claimed(stage[0], stage[1])
        else:
            parent = send_span_id(message_id)
        self._attempts[f"{agent}/{message_id}"] = SpanRecord(
            trace_id_of(thread),
            attempt_span_id(message_id, requeued, attempt),
            parent,
            f"invoke_agent {agent}",
            SpanKind.INTERNAL,
            str(record.get("ts")),
            str(record.get("ts")),
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.conversation.id": thread,
                "messaging.message.id": message_id,
                "agentctl.attempt": attempt,
                **({"agentctl.requeued": requeued} if requeued else {}),
            },
            owner=agent,
        )
        return spans

    def _end_attempt(self, record: dict[str, Any], message_id: str) -> SpanRecord | None:
        span = self._attempts.pop(f"{record.get('agent')}/{message_id}", None)
        if span is not None:
            span.end = str(record.get("ts"))
            self._tools.pop(span.span_id, None)
        return span

    def _handled(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        span = self._end_attempt(record, message_id)
        if span is None:
            return []
        if record.get("verdict") is not None:
            span.attributes["agentctl.verdict"] = record["verdict"]
        if record.get("result_id"):
            span.attributes["agentctl.result.id"] = record["result_id"]
        spans = [span]
        usage = record.get("usage")
        if isinstance(usage, dict):
            spans.append(self._chat_span(span, record, usage))
        return spans

    def _chat_span(
        self, attempt: SpanRecord, record: dict[str, Any], usage: dict[str, Any]
    ) -> SpanRecord:
        agent = attempt.owner
        served = record.get("model")  # what the endpoint says answered
        model = str(self.models.get(agent) or served or "unknown")  # what the roster asks for
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.agent.name": agent,
        }
        if served:
            attributes["gen_ai.response.model"] = str(served)
        for ours, theirs in (
            ("prompt_tokens", "gen_ai.usage.input_tokens"),
            ("completion_tokens", "gen_ai.usage.output_tokens"),
        ):
            if isinstance(usage.get(ours), int):
                attributes[theirs] = usage[ours]
        if isinstance(usage.get("cost"), int | float):
            attributes["agentctl.cost_usd"] = usage["cost"]  # the conventions have no cost
        # The journal times the attempt, not the call within it: the chat span spans both.
        return SpanRecord(
            attempt.trace_id,
            span_id_of("chat", attempt.span_id),
            attempt.span_id,
            f"chat {model}",
            SpanKind.CLIENT,
            attempt.start,
            attempt.end,
            attributes,
            owner=agent,
        )

    def _failed_event(
        self, record: dict[str, Any], thread: str, message_id: str
    ) -> list[SpanRecord]:
        span = self._end_attempt(record, message_id)
        if span is None:
            return []
        span.error = str(record.get("error") or "failed")
        span.attributes["error.type"] = str(record.get("error_kind") or "error")
        self._failed[message_id] = span  # its fate (retried, dead) is the next event
        return []

    def _fate(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        span = self._failed.pop(message_id, None)
        if span is None:
            return []
        if record.get("event") == Event.RETRIED:
            span.events.append(
                SpanEvent("retried", str(record.get("ts")), kept(record, "retry_in_s"))
            )
        else:
            span.events.append(SpanEvent("dead", str(record.get("ts")), kept(record, "error")))
            span.attributes["agentctl.dead"] = True
        return [span]

    def _tool_call(self, record: dict[str, Any], thread: str, message_id: str) -> list[SpanRecord]:
        attempt = self._attempts.get(f"{record.get('agent')}/{message_id}")
        tool = str(record.get("tool") or record.get("name") or "tool")
        parent = attempt.span_id if attempt is not None else send_span_id(message_id)
        count = self._tools.get(parent, 0)
        self._tools[parent] = count + 1
        end = str(record.get("ts"))
        start = earlier(end, record.get("duration_ms"))  # journaled when the call returned
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.agent.name": str(record.get("agent")),
        }
        for key in ("server", "duration_ms"):
            if record.get(key) is not None:
                attributes[f"agentctl.tool.{key}"] = record[key]
        error = record.get("error")
        if error:
            attributes["error.type"] = str(record.get("error_kind") or "error")
        return [
            SpanRecord(
                trace_id_of(thread),
                span_id_of("tool", parent, count),
                parent,
                f"execute_tool {tool}",
                SpanKind.INTERNAL,
                start,
                end,
                attributes,
                owner=str(record.get("agent")),
                error=str(error) if error else None,
            )
        ]

    _handlers = {
        Event.SENT: _sent,
        Event.CLAIMED: _claimed,
        Event.HANDLED: _handled,
        Event.FAILED: _failed_event,
        Event.RETRIED: _fate,
        Event.DEAD: _fate,
        TOOL_CALL_EVENT: _tool_call,
    }


def spans_of(records: list[dict[str, Any]], **options: Any) -> list[SpanRecord]:
    """Every span the records of a thread (or several) come to, in the order they end."""
    assembler = SpanAssembler(**options)
    spans = [span for record in records for span in assembler.feed(record)]
    return spans + assembler.finish()
