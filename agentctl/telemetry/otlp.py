"""Spans out: OTLP/HTTP through the OpenTelemetry SDK, or OTLP JSON written by hand.

The only module that imports opentelemetry, and only inside functions: nothing loads it unless
an export is asked for. Writing a file needs no SDK (OTLP JSON is plain data), so
`trace export --output` works without the `otel` extra.
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agentctl.model.errors import AgentctlError
from agentctl.telemetry.spans import SpanKind, SpanRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
TIMEOUT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
EXPORT_TIMEOUT_S = 3.0  # `trace export`'s own, when neither TIMEOUT_ENVS is set
CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"  # "true": summaries go too
SCOPE_NAME = "agentctl"
SERVICE_NAME = "agentctl"
MISSING_EXTRA = "OpenTelemetry export needs the otel extra: pip install 'agentctl[otel]'"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_NUMBERS = {SpanKind.INTERNAL: 1, SpanKind.PRODUCER: 4, SpanKind.CLIENT: 3}


class MissingExtraError(AgentctlError):
    """The `otel` extra is not installed."""


def configured_endpoint() -> str | None:
    """The OTLP endpoint the standard environment variables name, or None (export nothing)."""
    return os.environ.get(TRACES_ENDPOINT_ENV) or os.environ.get(ENDPOINT_ENV) or None


def capture_content() -> bool:
    """Whether the user opted in to message summaries on spans (CONTENT_ENV=true)."""
    return os.environ.get(CONTENT_ENV, "").strip().lower() == "true"


def unix_ns(ts: str) -> int:
    """Nanoseconds since the epoch of a journal timestamp (exact to its microseconds)."""
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


# -- OTLP JSON (no SDK) -------------------------------------------------------------------------


def otlp_json(spans: Sequence[SpanRecord]) -> dict[str, Any]:
    """An OTLP/JSON `ExportTraceServiceRequest` holding `spans` (ids in hex, as OTLP/JSON has)."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _json_attributes({"service.name": _service_name()})},
                "scopeSpans": [
                    {"scope": {"name": SCOPE_NAME}, "spans": [_json_span(s) for s in spans]}
                ],
            }
        ]
    }


def _json_span(span: SpanRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": _KIND_NUMBERS[span.kind],
        "startTimeUnixNano": str(unix_ns(span.start)),
        "endTimeUnixNano": str(unix_ns(span.end)),
        "attributes": _json_attributes(span.attributes),
        "events": [
            {
                "name": e.name,
                "timeUnixNano": str(unix_ns(e.ts)),
                "attributes": _json_attributes(e.attributes),
            }
            for e in span.events
        ],  # fmt: skip
        "status": {"code": 2, "message": span.error} if span.error else {"code": 0},
    }
    if span.parent_id:
        data["parentSpanId"] = span.parent_id
    if span.links:
        data["links"] = [{"traceId": trace, "spanId": other} for trace, other in span.links]
    return data


def _json_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_value(v)} for k, v in _otel_attributes(attributes).items()]


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _otel_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Values OpenTelemetry accepts: scalars, and lists of one scalar type (others as text)."""
    kept: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            kept[key] = list(value)
        elif isinstance(value, bool | int | float | str):
            kept[key] = value
        else:
            import json

            kept[key] = json.dumps(value, ensure_ascii=False)
    return kept


def _service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME


# -- the SDK ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _resource(service_name: str, resource_attributes: str) -> Any:
    # Made once per name and OTEL_RESOURCE_ATTRIBUTES (which the SDK reads): Resource.create
    # runs the resource detectors on a thread pool, ~370 us a call, which the live export paid
    # on every journal event; and a pool started from the export thread while the supervisor
    # forks a worker could fail with "release unlocked lock" (seen once under load).
    _, _, resources, _ = _sdk()
    return resources.Resource.create({"service.name": service_name})


def readable_spans(spans: Sequence[SpanRecord]) -> list[ReadableSpan]:
    """The SDK's form of `spans`, with our ids and times (MissingExtraError without the SDK)."""
    trace_api, sdk_trace, _, scope_cls = _sdk()
    resource = _resource(_service_name(), os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    scope = scope_cls(SCOPE_NAME)
    kinds = {
        SpanKind.INTERNAL: trace_api.SpanKind.INTERNAL,
        SpanKind.PRODUCER: trace_api.SpanKind.PRODUCER,
        SpanKind.CLIENT: trace_api.SpanKind.CLIENT,
    }
    sampled = trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED)
    out = []
    for span in spans:
        trace_id = int(span.trace_id, 16)
        context = trace_api.SpanContext(trace_id, int(span.span_id, 16), False, sampled)
        parent = (
            trace_api.SpanContext(trace_id, int(span.parent_id, 16), True, sampled)
            if span.parent_id
            else None
        )
        status = (
            trace_api.Status(trace_api.StatusCode.ERROR, span.error)
            if span.error
            else trace_api.Status(trace_api.StatusCode.UNSET)
        )
        out.append(
            sdk_trace.ReadableSpan(
                name=span.name,
                context=context,
                parent=parent,
                resource=resource,
                attributes=_otel_attributes(span.attributes),
                events=[
                    sdk_trace.Event(e.name, _otel_attributes(e.attributes), unix_ns(e.ts))
                    for e in span.events
                ],
                kind=kinds[span.kind],
                status=status,
                links=[
                    trace_api.Link(trace_api.SpanContext(int(t, 16), int(o, 16), True, sampled))
                    for t, o in span.links
                ],
                start_time=unix_ns(span.start),
                end_time=unix_ns(span.end),
                instrumentation_scope=scope,
            )
        )
    return out


def send_spans(spans: Sequence[SpanRecord], endpoint: str | None = None) -> None:
    """Send `spans` over OTLP/HTTP now (to `endpoint`, else where the environment says);
    AgentctlError when the collector refuses them or cannot be reached."""
    exporter_cls = _exporter_cls()
    readable = readable_spans(spans)
    # The SDK retries a collector that is down for its whole timeout (10 s by default): a
    # command gives up sooner, unless the standard variable says otherwise.
    configured = any(os.environ.get(name) for name in TIMEOUT_ENVS)
    timeout_s = None if configured else EXPORT_TIMEOUT_S
    exporter = exporter_cls(endpoint=_traces_url(endpoint) if endpoint else None, timeout=timeout_s)
    said = _SdkLog()  # the SDK logs each failure: its words go into our one error line
    sdk_log = logging.getLogger("opentelemetry")
    sdk_log.addHandler(said)
    propagate, sdk_log.propagate = sdk_log.propagate, False
    try:
        result = exporter.export(readable)
    finally:
        exporter.shutdown()
        sdk_log.removeHandler(said)
        sdk_log.propagate = propagate
    if result.name != "SUCCESS":
        where = endpoint or configured_endpoint()
        raise AgentctlError(f"{where}: the spans were not taken: {said.reason()}")


class _SdkLog(logging.Handler):
    """Keeps what the SDK's exporter said about a failed export."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def reason(self) -> str:
        if any("Connection refused" in m for m in self.messages):
            return "connection refused (is the collector running?)"
        first = self.messages[0] if self.messages else "no reason given"
        return " ".join(first.split())[:300]


def span_exporter() -> Any:
    """The SDK's OTLP/HTTP span exporter, configured by the environment."""
    return _exporter_cls()()


def batch_processor(exporter: Any) -> SpanProcessor:
    """The SDK's batch processor around `exporter`: spans queue in memory and leave from its
    own thread (dropped, never waited for, when the collector is down)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(exporter)


def _traces_url(endpoint: str) -> str:
    # As OTEL_EXPORTER_OTLP_ENDPOINT: a base URL gets the traces path appended.
    return (
        endpoint
        if endpoint.rstrip("/").endswith("/v1/traces")
        else (endpoint.rstrip("/") + "/v1/traces")
    )


def _sdk() -> tuple[Any, Any, Any, Any]:
    try:
        from opentelemetry import trace as trace_api
        from opentelemetry.sdk import resources
        from opentelemetry.sdk import trace as sdk_trace
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    except ImportError:
        raise MissingExtraError(MISSING_EXTRA) from None
    return trace_api, sdk_trace, resources, InstrumentationScope


def _exporter_cls() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise MissingExtraError(MISSING_EXTRA) from None
    return OTLPSpanExporter
