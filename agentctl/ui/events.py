"""Server-sent events: the journal, as it grows, pushed to every open page.

One thread follows the journal (`Backend.follow_events`, files or NATS alike) and hands each
event to every subscriber's queue on the server's event loop; a page that hears one fetches
itself again (static/ui.js). One follower for all pages: a second tab costs a queue, not a
second reader of the journal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentctl.backends.base import Backend, Record

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0  # a comment line this often, so proxies and browsers keep the stream open
QUEUE_MAX = 1000  # a page that cannot keep up loses events, not the server's memory


class Broadcaster:
    """Follows the journal in a thread and fans each event out to the subscribed queues."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.stop = threading.Event()
        self._queues: set[asyncio.Queue[Record | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start following, handing events to subscribers on `loop`."""
        self._loop = loop
        self._thread = threading.Thread(target=self._follow, name="agentctl-ui-events",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def end_streams_soon(self) -> None:
        """End every open stream, and any opened from now on, from the event loop: safe to call
        from a signal handler. A server asked to exit waits for its open responses, and these
        never end by themselves."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._end_streams)

    def close(self) -> None:
        """Stop following and end every open stream."""
        self._end_streams()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _end_streams(self) -> None:
        self.stop.set()
        with self._lock:
            queues = list(self._queues)
        for queue in queues:
            self._hand(queue, None)

    def _follow(self) -> None:
        try:
            for record in self.backend.follow_events(lambda _: True, self.stop):
                with self._lock:
                    queues = list(self._queues)
                for queue in queues:
                    self._hand(queue, record)
        except Exception:  # the pages stop being live; they still load
            if not self.stop.is_set():
                log.exception("following the journal stopped")

    def _hand(self, queue: asyncio.Queue[Record | None], record: Record | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def put() -> None:
            if queue.full():
                return
            queue.put_nowait(record)

        loop.call_soon_threadsafe(put)

    async def stream(self) -> AsyncIterator[str]:
        """One subscriber's events, as SSE lines, until the server stops."""
        queue: asyncio.Queue[Record | None] = asyncio.Queue(maxsize=QUEUE_MAX)
        with self._lock:
            self._queues.add(queue)
        try:
            yield "retry: 1000\n\n"
            while not self.stop.is_set():
                try:
                    record = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if record is None:
                    return
                yield f"event: journal\ndata: {_compact(record)}\n\n"
        finally:
            with self._lock:
                self._queues.discard(queue)


def _compact(record: dict[str, Any]) -> str:
    # One line: SSE ends a data field at a newline. The page needs only what happened and to
    # which thread and run; the content stays on the server.
    kept = {k: record.get(k) for k in ("event", "agent", "message_id", "thread_id", "run", "ts")}
    return json.dumps(kept, separators=(",", ":"), default=str)
