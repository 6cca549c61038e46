"""Whether the collector takes the live spans: one line of ours per outage, not the SDK's.

The SDK's exporter logs each retry of each batch ("Transient error ... retrying") and each
batch it gives up on, through Python logging: with no handler configured they reach `agentctl
run`'s output unprefixed, several lines a batch for as long as the collector is down. A
CollectorWatch stands between the batch processor and the exporter, and is the handler of the
`opentelemetry` loggers: it turns an outage into one `tracing: ... unreachable` line and its
end into one `answers again` line. Only the `opentelemetry` loggers are routed here: agentctl's
own errors keep their way out.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from opentelemetry.sdk.trace import ReadableSpan

SDK_LOGGER = "opentelemetry"
EXPORTER_LOGGER = "opentelemetry.exporter"  # what it says is about export failures: ours now
_REFUSED_RE = re.compile(r"code: (\d+), reason: (.*)", re.DOTALL)  # the collector answered no
_MAX_NOTED = 100  # distinct other SDK warnings shown, once each


class CollectorWatch(logging.Handler):
    """Wraps the span exporter and hears the SDK's log: says when an outage begins and ends."""

    def __init__(self, exporter: Any, url: str, say: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.exporter = exporter
        self.url = url
        self.say = say
        self.down = False  # the last export failed: spans are being dropped
        self.abandoned = False  # stopping while down: later batches are not even tried
        self._noted: set[str] = set()
        self._lock = threading.Lock()  # the exporter's thread and the supervisor's both report

    # -- the exporter the batch processor calls ----------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        """Export `spans`; on a change between taken and dropped, say so once."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.abandoned:
            return SpanExportResult.FAILURE
        result = self.exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            self._answers()
        else:
            self._unreachable()
        return result

    def shutdown(self) -> None:
        """Shut the exporter down (which also cuts short a retry under way)."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here."""
        return True

    def abandon(self) -> None:
        """Give up on a collector that is down: the batch in its retries and every later one."""
        self.abandoned = True
        self.exporter.shutdown()

    # -- the SDK's log -----------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Turn the SDK's warnings into our lines: at most one per outage, or once each."""
        if record.name.startswith(EXPORTER_LOGGER):
            refused = _REFUSED_RE.search(record.getMessage())
            if refused and refused.group(1) != "None":
                self._unreachable(f"refuses the spans ({refused.group(1)}: {refused.group(2)})")
            elif not self.abandoned:
                self._unreachable()
            return
        message = " ".join(record.getMessage().split())[:300]
        with self._lock:
            if self.down or message in self._noted or len(self._noted) >= _MAX_NOTED:
                return  # spans are dropped while down: the outage line said so already
            self._noted.add(message)
        self.say(f"tracing: {message}")

    def _unreachable(self, why: str = "unreachable") -> None:
        with self._lock:
            if self.down:
                return
            self.down = True
        self.say(f"tracing: collector at {self.url} {why} (spans dropped until it answers)")

    def _answers(self) -> None:
        with self._lock:
            if not self.down:
                return
            self.down = False
        self.say(f"tracing: collector at {self.url} answers again")


def route_sdk_log(watch: CollectorWatch) -> None:
    """Send the `opentelemetry` loggers' warnings to `watch`, and nowhere else."""
    sdk_log = logging.getLogger(SDK_LOGGER)
    for handler in [h for h in sdk_log.handlers if isinstance(h, CollectorWatch)]:
        sdk_log.removeHandler(handler)  # a second live export in one process replaces the first
    sdk_log.addHandler(watch)
    sdk_log.propagate = False
