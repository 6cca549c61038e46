"""Live export: the supervisor follows the journal and exports each span as it ends.

Started by `agentctl run` when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces endpoint variable) is
set; otherwise nothing here runs and OpenTelemetry is never imported. It reads the very records
`agentctl trace export` reads later, through the same SpanAssembler, so both send the same
spans. Handlers never wait for it: it is a thread of the supervisor reading what the workers
journaled, and the SDK's batch processor sends from a thread of its own, dropping spans when
the collector is down (telemetry/collector.py turns an outage into one line of `run`'s
output). On NATS every machine's supervisor follows the whole stream and exports
the spans of the agents it runs (SpanRecord.owner), so each span leaves once.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentctl.model.constants import USER_AGENT
from agentctl.model.vocab import Event
from agentctl.telemetry.collector import CollectorWatch, route_sdk_log
from agentctl.telemetry.otlp import (
    MissingExtraError,
    batch_processor,
    capture_content,
    configured_endpoint,
    readable_spans,
    span_exporter,
)
from agentctl.telemetry.spans import SpanAssembler

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from opentelemetry.sdk.trace import SpanProcessor

    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster

log = logging.getLogger(__name__)
FOLLOW_AGAIN_S = 1.0  # after the backend failed a following, before the next
EXPORT_NICENESS = 10  # added to the export thread's, so the workers and the supervisor come first

PRIME_SENDS = 200  # sends made before the supervisor started, whose spans it still emits
STOP_WAIT_S = 3.0  # how long a stop waits for the last spans to leave
DOWN_STOP_WAIT_S = 1.0  # the same, when the last export failed: they would not leave anyway


@dataclass(frozen=True)
class Team:
    """What the supervisor runs now: whose spans it sends, and each LLM agent's model."""

    owners: frozenset[str]
    models: dict[str, str]


def team_of(roster: Roster, running: Iterable[str]) -> Team:
    """The Team of the agents `running` (their names) under `roster`."""
    models = {a.name: a.llm.model for a in roster.agents if a.llm is not None}
    return Team(frozenset(running), models)


class LiveExport:
    """A thread that turns the journal's new records into spans and hands them to the SDK."""

    def __init__(
        self,
        backend: Backend,
        processor: SpanProcessor,
        *,
        team: Callable[[], Team],
        watch: CollectorWatch | None = None,
    ) -> None:
        self.backend = backend
        self.processor = processor
        self.watch = watch
        # Asked again for every record: `agentctl reload` adds, changes and removes agents
        # while the export runs, and an added agent's spans are ours from its first record.
        self.team = team
        self.assembler = SpanAssembler(content=capture_content())
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="otel-live", daemon=True)

    def start(self) -> None:
        """Remember recent sends, then follow the journal from its end."""
        self._prime()
        self._thread.start()

    def _prime(self) -> None:
        for record in self.backend.read_events(PRIME_SENDS, _user_send):
            self.assembler.prime(record)

    def close(self) -> None:
        """Stop following; give the spans still queued STOP_WAIT_S to leave (none when the
        collector is down: they would only be retried until its timeout)."""
        self.stopping.set()
        self._thread.join(STOP_WAIT_S)
        wait_s = STOP_WAIT_S
        if self.watch is not None and self.watch.down:
            # The SDK's shutdown first waits for the batch in its retries (10 s by default):
            # abandoning cuts those short, and the batches still queued fail at once.
            self.watch.abandon()
            wait_s = DOWN_STOP_WAIT_S
        # The SDK's shutdown flushes the queue, and retries an unreachable collector for its
        # whole timeout: in a daemon thread, so stopping the team never waits on it.
        flusher = threading.Thread(target=self.processor.shutdown, daemon=True)
        flusher.start()
        flusher.join(wait_s)

    def _follow(self) -> None:
        # Tracing is background work: on a busy machine the workers' handlers come first and
        # the spans follow a little later (Linux applies a niceness to one thread by its id).
        try:
            below = min(os.getpriority(os.PRIO_PROCESS, 0) + EXPORT_NICENESS, 19)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), below)
        except OSError:
            pass  # not allowed here: the export just competes as any thread does
        # A backend that stops answering (a NATS server gone) ends one following, never the
        # export: follow again once it answers, until the supervisor stops.
        while not self.stopping.is_set():
            try:
                self._follow_once()
            except Exception as exc:
                log.warning("tracing: cannot follow the journal (%s); trying again", exc)
                self.stopping.wait(FOLLOW_AGAIN_S)

    def _follow_once(self) -> None:
        primed_again = False
        for record in self.backend.follow_events(_any, self.stopping):
            if not primed_again:
                # Following began before this record arrived, so a send made between the first
                # priming and that moment is in the journal by now: read the sends once more.
                primed_again = True
                self._prime()
            try:
                self.export(record)
            except Exception:  # a bad record costs its span, never the supervisor
                log.exception("tracing: cannot export the spans of %r", record.get("event"))

    def export(self, record: dict[str, Any]) -> None:
        """Hand the spans `record` ends, of the agents we run, to the batch processor."""
        team = self.team()
        self.assembler.models = team.models
        spans = [s for s in self.assembler.feed(record) if s.owner in team.owners]
        for span in readable_spans(spans):
            self.processor.on_end(span)


def start_live_export(
    backend: Backend, team: Callable[[], Team], say: Callable[[str], None]
) -> LiveExport | None:
    """A started LiveExport when an OTLP endpoint is configured, else None. What `agentctl
    run` shows goes to `say`: a missing `otel` extra (never a failed start), and a collector
    going down or coming back."""
    url = configured_endpoint()
    if url is None:
        return None
    try:
        watch = CollectorWatch(span_exporter(), url, say)
    except MissingExtraError as exc:
        say(f"tracing off: {exc}")
        return None
    route_sdk_log(watch)
    readable_spans([])  # makes the resource now, on this thread (see otlp._resource)
    live = LiveExport(backend, batch_processor(watch), team=team, watch=watch)
    live.start()
    say(f"tracing: spans go to {url}")
    return live


def _user_send(record: dict[str, Any]) -> bool:
    return record.get("event") == Event.SENT and record.get("agent") == USER_AGENT


def _any(record: dict[str, Any]) -> bool:
    return True
