"""The agent runtime: one worker process per agent, claiming and handling its messages.

    python -m agentctl.runtime.worker --config agents.yaml --workspace workspace --agent NAME

(the process around it, from its command line to its signals, is runtime/workermain.py; how an
attempt ends, runtime/settlement.py).

The loop: clear the wake-up, list new/, claim and handle each message in order, then wait for a
watchdog wake-up or the poll interval, whichever comes first (events can be lost; the rescan
cannot). One worker per agent is enforced with a lock file; a worker that starts settles what a
dead one left in processing/, counting the interrupted attempt.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from datetime import datetime
from typing import TYPE_CHECKING

from agentctl.model.clock import SYSTEM_CLOCK, Clock
from agentctl.model.constants import (
    DEFAULT_STUCK_AFTER_S,
    HANDLER_OVERRUN_GRACE_S,
    NOT_BEFORE_HEADER,
    WORKER_RESTART_EXIT_CODE,
)
from agentctl.model.errors import (
    BadMessageError,
    HandlerError,
    HandlerTimeoutError,
    NonRetryableError,
)
from agentctl.model.message import AgentMessage, parse_message
from agentctl.model.vocab import ErrorKind, Event
from agentctl.protocol.journal import content_digest
from agentctl.protocol.overrunnote import write_note
from agentctl.protocol.status import AgentState, parse_iso
from agentctl.protocol.writeretry import RETRY_MAX_S, WriteRetry, WritesAbandoned, is_disk_error
from agentctl.runtime.overrun import OverrunGuard
from agentctl.runtime.reporter import StatusReporter, initial_status
from agentctl.runtime.settlement import Settlement

if TYPE_CHECKING:
    from agentctl.backends.transport import Delivery, Transport
    from agentctl.config.agentspec import AgentSpec
    from agentctl.runtime.handlers import Handler

log = logging.getLogger("agentctl.runtime.worker")


class Worker:
    """Claims, handles, replies to and settles the messages of one agent, on any transport."""

    def __init__(
        self,
        transport: Transport,
        spec: AgentSpec,
        handler: Handler,
        *,
        poll_interval_s: float,
        stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
        replica: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.workspace = transport.local
        self.spec = spec
        self.handler = handler
        self.poll_interval_s = poll_interval_s
        self.workspace.ensure_agent(spec.name)  # logs, status and notes live here on any transport
        self.inbox = transport.inbox(spec, poll_interval_s=poll_interval_s, clock=clock)
        self.stopping = threading.Event()
        status_path = self.workspace.status_path(spec.name, replica)
        self.reporter = StatusReporter(
            status_path,
            initial_status(status_path, spec.name, replica, stuck_after_s=stuck_after_s),
            publish=transport.publish_status,
        )
        self.overrun = OverrunGuard(self._on_overrun, clock=clock)
        # Every write of a message's settlement waits out a full disk instead of failing it.
        self.writes = WriteRetry(self.stopping, self._on_write_error)
        self.settlement = Settlement(
            transport, self.inbox, spec, writes=self.writes, reporter=self.reporter
        )
        self._connected = True
        transport.watch_connection(self._on_connection)

    def _on_connection(self, connected: bool) -> None:
        # NATS: `status` shows `disconnected` while the client reconnects.
        self._connected = connected
        if connected:
            busy = self.reporter.snapshot().current_message_id is not None
            self.reporter.update(state=AgentState.BUSY if busy else AgentState.IDLE)
        else:
            self.reporter.update(state=AgentState.DISCONNECTED)

    def _on_write_error(self, error: str | None) -> None:
        # `status` shows `disk full` (status.json is rewritten in place, so the heartbeat goes
        # on), and waiting for space is not the handler overrunning its timeout.
        if error is not None:
            self.overrun.disarm()
        self.reporter.update(write_error=error)

    # -- life cycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until stop() or SIGTERM/SIGINT; return the exit code."""
        self.inbox.open()
        try:
            self.reporter.start()
            self.recover()
            on_start = getattr(self.handler, "on_start", None)
            if on_start is not None:
                on_start()  # e.g. the conductor takes up its unfinished runs
            self.reporter.update(
                state=AgentState.IDLE if self._connected else AgentState.DISCONNECTED
            )
            log.info("agent %s ready (pid %d)", self.spec.name, os.getpid())
            self._loop()
            self.reporter.update(state=AgentState.STOPPING)
            return 0
        finally:
            self.overrun.close()
            self.inbox.close()
            self.handler.close()
            self.reporter.close(AgentState.STOPPED)

    def stop(self) -> None:
        """Finish the message in hand, claim no more, and return from run()."""
        self.stopping.set()
        self.inbox.wake()

    def _may_claim(self) -> bool:
        # The HALT verdict: claim nothing until `agentctl resume`.
        return not self.stopping.is_set() and not self.transport.is_halted()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                claimed = self.claim_and_handle()
            except OSError as exc:  # a claim is a link: a full directory can refuse it
                if not is_disk_error(exc):
                    raise
                self.writes.wait(exc, RETRY_MAX_S)
                continue
            if self.stopping.is_set():
                return
            # A claim the disk refused is over once a pass goes through, even one that found
            # nothing to claim (then no write of a settlement says so).
            self.writes.recovered()
            if not claimed:
                self._idle()
                self.inbox.wait(self.poll_interval_s)

    def claim_and_handle(self) -> int:
        """Claim and handle, in order, what the inbox holds that is due; how many were claimed."""
        claimed = 0
        for delivery in self.inbox.claim(self._may_claim):
            claimed += 1
            self._handle_or_put_back(delivery)
            # Idle until the next claim: on NATS the wait for the next message is inside
            # claim() (a fetch), and status must not show it as in hand.
            self._idle()
        return claimed

    def _idle(self) -> None:
        idle = AgentState.IDLE if self._connected else AgentState.DISCONNECTED
        self.reporter.update(state=idle, current_message_id=None)

    def recover(self) -> None:
        """Settle what a dead worker left in hand: each interrupted message spent an attempt."""
        for delivery in self.inbox.recover():
            self._handle_or_put_back(delivery)

    def _handle_or_put_back(self, delivery: Delivery) -> None:
        try:
            self._handle(delivery)
        except WritesAbandoned as exc:
            # Asked to stop while the disk refused a write: a claim of ours goes back to new/
            # uncounted (a link, which a full disk still allows); one a dead worker left stays
            # in processing/, so the next worker counts that interrupted attempt.
            log.warning("%s: stopping before it could be written (%s)", delivery.key, exc)
            if not delivery.interrupted:
                try:
                    self.inbox.release(delivery, 0)
                except OSError as release_error:
                    log.error("%s stays in processing/: %s", delivery.key, release_error)

    def _on_overrun(self, delivery: Delivery, message: AgentMessage, limit_s: float) -> None:
        # Runs on the guard's thread while the handler still holds the main thread: the only
        # way out of a handler that cannot be interrupted is a fresh process.
        try:
            self._leave_overrun_note(delivery, message, limit_s)
        finally:
            logging.shutdown()
            os._exit(WORKER_RESTART_EXIT_CODE)

    def _leave_overrun_note(
        self, delivery: Delivery, message: AgentMessage, limit_s: float
    ) -> None:
        # Said on disk before the process ends, so that the next worker fails the message as a
        # timeout rather than as a crash.
        error = (
            f"timed out after {self._timeout_s(message):g} s (still running {limit_s:g} s "
            "later, so the worker was restarted)"
        )
        log.error("%s: %s", message.id, error)
        write_note(
            self.workspace.agent_dir(self.spec.name),
            file=delivery.key,
            message_id=message.id,
            error=error,
        )

    # -- one message ---------------------------------------------------------------------

    def _handle(self, delivery: Delivery) -> None:
        data: bytes | None = None
        try:
            data = self.inbox.read(delivery)
            message = parse_message(data)
            if message.to_agent != self.spec.name:
                raise BadMessageError(f"addressed to {message.to_agent!r}, not {self.spec.name!r}")
        except (BadMessageError, OSError) as exc:
            self.settlement.bury_bad_file(delivery, str(exc), data)
            return
        except Exception as exc:  # a parser bug must not crash-loop the agent on one file
            unreadable = f"unreadable: {type(exc).__name__}: {exc}"
            self.settlement.bury_bad_file(delivery, unreadable, data)
            return
        wait_s = _seconds_until(message.headers.get(NOT_BEFORE_HEADER), self.clock.now())
        if wait_s > 0 and not delivery.interrupted:
            # A retry whose delay is not over (we restarted since we scheduled it): put it back
            # untouched, without counting an attempt, and come back when it is due.
            self.writes.run(lambda: self.inbox.release(delivery, wait_s))
            return
        # The attempt is counted here, at claim time: whatever happens next, it was spent.
        attempt = message.attempt + delivery.redeliveries + 1
        interrupted, reason = delivery.interrupted, delivery.reason
        if attempt > self.spec.max_attempts:
            # Redelivered after its last attempt: the worker died during that attempt (a
            # transport that counts deliveries, NATS, allows one more to settle it here).
            # Or it came spent: another program wrote it so, or max_attempts was lowered.
            died = "worker died while handling its last attempt"
            if message.attempt >= self.spec.max_attempts:
                died = (
                    f"arrived with attempt {message.attempt} >= max_attempts "
                    f"{self.spec.max_attempts}; not run"
                )
            attempt, interrupted = self.spec.max_attempts, True
            reason = reason or {"error": died}
        message = message.model_copy(update={"attempt": attempt})
        settle = self.settlement
        settle.record(
            Event.CLAIMED,
            message,
            attempt=message.attempt,
            file=delivery.key,
            sha256=content_digest(data),
            requeued=message.requeued or None,  # with the attempt, names its trace span
        )
        if interrupted:
            if reason is not None:
                settle.fail(
                    delivery,
                    message,
                    str(reason["error"]),
                    ErrorKind.TIMEOUT
                    if reason.get("error_kind") == ErrorKind.TIMEOUT
                    else ErrorKind.INTERRUPTED,
                )
            else:
                lost = "worker died while handling it"
                settle.fail(delivery, message, lost, ErrorKind.INTERRUPTED)
            return
        self.reporter.update(state=AgentState.BUSY, current_message_id=message.id)
        started = self.clock.monotonic()
        timeout_s = self._timeout_s(message)
        self.overrun.arm(timeout_s + HANDLER_OVERRUN_GRACE_S, delivery, message)
        try:
            result = self.handler.handle(message, timeout_s=timeout_s)
        except HandlerTimeoutError as exc:
            settle.fail(delivery, message, str(exc), ErrorKind.TIMEOUT, self._ms_since(started))
        except NonRetryableError as exc:
            kind = ErrorKind.NON_RETRYABLE
            settle.fail(delivery, message, str(exc), kind, self._ms_since(started), final=True)
        except HandlerError as exc:
            settle.fail(delivery, message, str(exc), ErrorKind.ERROR, self._ms_since(started))
        except Exception as exc:  # a bug must not stop the agent: count it as a failed attempt
            log.error("handler crashed on %s:\n%s", message.id, traceback.format_exc())
            error = f"{type(exc).__name__}: {exc}"
            settle.fail(delivery, message, error, ErrorKind.ERROR, self._ms_since(started))
        else:
            settle.succeed(delivery, message, result, self._ms_since(started))
        finally:
            self.overrun.disarm()

    def _ms_since(self, started: float) -> float:
        return round((self.clock.monotonic() - started) * 1000, 3)

    def _timeout_s(self, message: AgentMessage) -> float:
        override = message.headers.get("timeout_s")
        try:
            return float(override) if override else self.spec.timeout_s
        except ValueError:
            return self.spec.timeout_s


def _seconds_until(when: str | None, now: datetime) -> float:
    """Seconds from `now` until the ISO time `when` (0 when absent, past or unreadable)."""
    if not when:
        return 0.0
    moment = parse_iso(when)
    if moment is None:
        return 0.0
    return max(0.0, (moment - now).total_seconds())


if __name__ == "__main__":
    # `python -m agentctl.runtime.worker`: how the supervisor starts a worker.
    from agentctl.runtime.workermain import main

    sys.exit(main())
