"""A real OTLP/HTTP trace receiver on loopback, for the tracing tests.

It decodes what a collector would: `ExportTraceServiceRequest` in protobuf (the SDK's exporter)
with opentelemetry-proto, or in OTLP JSON (what a foreign agent may post with curl), and keeps
each span as a plain dict with hex ids.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.conftest import wait_until

_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


class OtlpReceiver:
    """Collects the spans posted to `<url>/v1/traces`."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                if "json" in (self.headers.get("Content-Type") or ""):
                    spans = _from_json(json.loads(raw))
                else:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(raw)
                    spans = _from_proto(request)
                with receiver.lock:
                    receiver.spans.extend(spans)
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", self.headers.get("Content-Type") or "")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self.server.server_port}"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)

    def wait_for(self, name: str, timeout_s: float = 30) -> dict[str, Any]:
        """The first span called `name`, once it has arrived."""
        return wait_until(
            lambda: next((s for s in self.received() if s["name"] == name), None),
            timeout_s=timeout_s,
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


def _from_proto(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    spans = []
    for resource_spans in request.resource_spans:
        service = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_id": span.parent_span_id.hex() or None,
                    "name": span.name,
                    "kind": _KINDS.get(span.kind, str(span.kind)),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                    "events": [e.name for e in span.events],
                    "error": span.status.code == 2,
                    "service": service.get("service.name"),
                    "links": [(k.trace_id.hex(), k.span_id.hex()) for k in span.links],
                })  # fmt: skip
    return spans


def _json_value(value: dict[str, Any]) -> Any:
    for key, got in value.items():
        if key == "intValue":
            return int(got)
        if key == "arrayValue":
            return [_json_value(v) for v in got.get("values", [])]
        return got
    return None


def _from_json(request: dict[str, Any]) -> list[dict[str, Any]]:
    spans = []
    for resource_spans in request.get("resourceSpans", []):
        attrs = resource_spans.get("resource", {}).get("attributes", [])
        service = {a["key"]: _json_value(a["value"]) for a in attrs}
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                spans.append({
                    "trace_id": span["traceId"],
                    "span_id": span["spanId"],
                    "parent_id": span.get("parentSpanId") or None,
                    "name": span["name"],
                    "kind": _KINDS.get(span.get("kind", 0), str(span.get("kind"))),
                    "start_ns": int(span.get("startTimeUnixNano", 0)),
                    "end_ns": int(span.get("endTimeUnixNano", 0)),
                    "attributes": {
                        a["key"]: _json_value(a["value"]) for a in span.get("attributes", [])
                    },
                    "events": [e["name"] for e in span.get("events", [])],
                    "error": span.get("status", {}).get("code") == 2,
                    "service": service.get("service.name"),
                    "links": [(k["traceId"], k["spanId"]) for k in span.get("links", [])],
                })  # fmt: skip
    return spans


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    """A receiver for the test; closed afterwards."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()
