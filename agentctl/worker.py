"""The agent runtime: one worker process per agent, claiming and handling its messages.

    python -m agentctl.worker --config agents.yaml --workspace workspace --agent NAME

The loop: clear the wake-up, list new/, claim and handle each message in order, then wait for a
watchdog wake-up or the poll interval, whichever comes first (events can be lost; the rescan
cannot). One worker per agent is enforced with a lock file; a worker that starts settles what a
dead one left in processing/, counting the interrupted attempt.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from agentctl.constants import (
    CLAIM_BATCH,
    DEFAULT_STUCK_AFTER_S,
    HANDLER_OVERRUN_GRACE_S,
    INTERRUPTED_NOTE_FILE,
    NOT_BEFORE_HEADER,
    PIPELINE_AGENT,
    STALE_TMP_AGE_S,
    WORKER_LOCK_FILE,
    WORKER_RESTART_EXIT_CODE,
)
from agentctl.errors import (
    AgentctlError,
    BadMessageError,
    HandlerError,
    HandlerTimeoutError,
    NonRetryableError,
)
from agentctl.fsutil import write_atomic
from agentctl.handlers import NO_REPLY
from agentctl.journal import content_digest
from agentctl.message import AgentMessage, MessageKind, parse_message
from agentctl.overrun import OverrunGuard, take_note
from agentctl.proc import ProcessRef, die_with_parent
from agentctl.reporter import StatusReporter
from agentctl.roster import AgentSpec, HandlerKind, load_roster
from agentctl.status import (
    AgentState,
    AgentStatus,
    error_record,
    iso_after,
    iso_now,
    parse_iso,
    read_status,
)
from agentctl.watcher import DirectoryWatcher
from agentctl.workspace import Workspace

if TYPE_CHECKING:
    from pydantic import JsonValue

    from agentctl.handlers import Handler

log = logging.getLogger("agentctl.worker")


class Worker:
    """Claims, handles, replies to and acks the messages of one agent."""

    def __init__(
        self,
        workspace: Workspace,
        spec: AgentSpec,
        handler: Handler,
        *,
        poll_interval_s: float,
        stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
    ) -> None:
        self.workspace = workspace
        self.spec = spec
        self.handler = handler
        self.poll_interval_s = poll_interval_s
        self.mailbox = workspace.ensure_agent(spec.name)
        self.outbox = workspace.outbox(spec.name)
        self.stopping = threading.Event()
        # name -> time.monotonic() before which a retried message is not claimed again.
        self._delayed: dict[str, float] = {}
        self.watcher = DirectoryWatcher(self.mailbox.new)
        self.reporter = StatusReporter(
            workspace.status_path(spec.name), _initial_status(workspace, spec, stuck_after_s)
        )
        self.overrun = OverrunGuard(self._on_overrun)

    # -- life cycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until stop() or SIGTERM/SIGINT; return the exit code."""
        lock_fd = _acquire_worker_lock(self.workspace.agent_dir(self.spec.name))
        try:
            self.reporter.start()
            self.mailbox.clean_tmp(STALE_TMP_AGE_S)
            self.recover()
            on_start = getattr(self.handler, "on_start", None)
            if on_start is not None:
                on_start()  # e.g. the conductor takes up its unfinished runs
            self.watcher.start()
            if not self.watcher.native:
                log.warning(
                    "watching %s by polling every %s s", self.mailbox.new, self.poll_interval_s
                )
            self.reporter.update(state=AgentState.IDLE)
            log.info("agent %s ready (pid %d)", self.spec.name, os.getpid())
            self._loop()
            self.reporter.update(state=AgentState.STOPPING)
            return 0
        finally:
            self.overrun.close()
            self.watcher.stop()
            self.handler.close()
            self.reporter.close(AgentState.STOPPED)
            os.close(lock_fd)

    def stop(self) -> None:
        """Finish the message in hand, claim no more, and return from run()."""
        self.stopping.set()
        self.watcher.wake.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.watcher.clear()
            names = self._due(self.mailbox.list_new())
            halted = False
            for name in names[:CLAIM_BATCH]:
                if self.stopping.is_set():
                    return
                if self.workspace.is_halted():
                    halted = True  # the HALT verdict: claim nothing until `agentctl resume`
                    break
                self.process(name)
            if not names or halted:
                self.reporter.update(state=AgentState.IDLE, current_message_id=None)
                self.watcher.wait(self.poll_interval_s if halted else self._idle_wait_s())

    def _due(self, names: list[str]) -> list[str]:
        # Messages waiting out a retry delay stay in new/ (visible, in order) but are skipped.
        if not self._delayed:
            return names
        now = time.monotonic()
        present = set(names)
        for name in [n for n in self._delayed if n not in present]:
            del self._delayed[name]  # claimed by someone else, or requeued by hand
        return [n for n in names if self._delayed.get(n, 0.0) <= now]

    def _idle_wait_s(self) -> float:
        if not self._delayed:
            return self.poll_interval_s
        until_due_s = min(self._delayed.values()) - time.monotonic()
        return max(0.0, min(self.poll_interval_s, until_due_s))

    def recover(self) -> None:
        """Settle processing/ after a crash: each interrupted message has spent an attempt.

        If the last worker left a note (it gave up on a handler that overran its timeout), the
        message it names fails as a timeout; any other message left behind was interrupted.
        """
        note = take_note(self.workspace.agent_dir(self.spec.name) / INTERRUPTED_NOTE_FILE)
        for name in self.mailbox.recover():
            log.warning("recovering %s, interrupted when its worker died", name)
            path = self.mailbox.processing / name
            reason = note if note and note.get("file") == name else None
            self._handle_claimed(name, path, interrupted=True, reason=reason)

    def _on_overrun(self, name: str, message: AgentMessage, limit_s: float) -> None:
        # Runs on the guard's thread while the handler still holds the main thread: the only
        # way out of a handler that cannot be interrupted is a fresh process. Say why on disk
        # first, so the next worker fails the message as a timeout rather than a crash.
        error = (
            f"timed out after {self._timeout_s(message):g} s (still running {limit_s:g} s "
            "later, so the worker was restarted)"
        )
        log.error("%s: %s", message.id, error)
        note = {"file": name, "message_id": message.id, "error": error, "error_kind": "timeout"}
        try:
            write_atomic(
                self.workspace.agent_dir(self.spec.name) / INTERRUPTED_NOTE_FILE,
                json.dumps(note).encode(),
            )
        finally:
            logging.shutdown()
            os._exit(WORKER_RESTART_EXIT_CODE)

    # -- one message ---------------------------------------------------------------------

    def process(self, name: str) -> None:
        """Claim `name` from new/ and handle it; another claimer winning is not an error."""
        path = self.mailbox.claim(name)
        if path is not None:
            self._handle_claimed(name, path, interrupted=False)

    def _handle_claimed(
        self,
        name: str,
        path: Path,
        *,
        interrupted: bool,
        reason: dict[str, Any] | None = None,
    ) -> None:
        data: bytes | None = None
        try:
            data = self.mailbox.read(path)
            message = parse_message(data)
            if message.to_agent != self.spec.name:
                raise BadMessageError(f"addressed to {message.to_agent!r}, not {self.spec.name!r}")
        except (BadMessageError, OSError) as exc:
            self._bury_bad_file(name, str(exc), data)
            return
        except Exception as exc:  # a parser bug must not crash-loop the agent on one file
            self._bury_bad_file(name, f"unreadable: {type(exc).__name__}: {exc}", data)
            return
        wait_s = _seconds_until(message.headers.get(NOT_BEFORE_HEADER))
        if wait_s > 0 and not interrupted:
            # A retry whose delay is not over (we restarted since we scheduled it): put it back
            # untouched, without counting an attempt, and come back when it is due.
            self.mailbox.release(name)
            self._delayed[name] = time.monotonic() + wait_s
            return
        # The attempt is counted here, at claim time: whatever happens next, it was spent.
        message = message.model_copy(update={"attempt": message.attempt + 1})
        self._record(
            "claimed", message, attempt=message.attempt, file=name, sha256=content_digest(data)
        )
        if interrupted:
            if reason is not None:
                self._fail(name, message, str(reason["error"]), "timeout")
            else:
                self._fail(name, message, "worker died while handling it", "interrupted")
            return
        self.reporter.update(state=AgentState.BUSY, current_message_id=message.id)
        started = time.monotonic()
        timeout_s = self._timeout_s(message)
        self.overrun.arm(timeout_s + HANDLER_OVERRUN_GRACE_S, name, message)
        try:
            result = self.handler.handle(message, timeout_s=timeout_s)
        except HandlerTimeoutError as exc:
            self._fail(name, message, str(exc), "timeout", _ms_since(started))
        except NonRetryableError as exc:
            self._fail(name, message, str(exc), "non_retryable", _ms_since(started), final=True)
        except HandlerError as exc:
            self._fail(name, message, str(exc), "error", _ms_since(started))
        except Exception as exc:  # a bug must not stop the agent: count it as a failed attempt
            log.error("handler crashed on %s:\n%s", message.id, traceback.format_exc())
            error = f"{type(exc).__name__}: {exc}"
            self._fail(name, message, error, "error", _ms_since(started))
        else:
            self._succeed(name, message, result, _ms_since(started))
        finally:
            self.overrun.disarm()

    def _record(self, event: str, message: AgentMessage | None, **fields: Any) -> None:
        self.workspace.record(event, message, self.spec.name, **fields)

    def _timeout_s(self, message: AgentMessage) -> float:
        override = message.headers.get("timeout_s")
        try:
            return float(override) if override else self.spec.timeout_s
        except ValueError:
            return self.spec.timeout_s

    def _succeed(
        self, name: str, message: AgentMessage, result: JsonValue, duration_ms: float
    ) -> None:
        # Reply before ack: a crash in between redelivers the request, and the reply's derived
        # id makes the second delivery a no-op.
        answer = message.kind is MessageKind.TASK and result is not NO_REPLY
        try:
            reply_id = self._reply(message, result) if answer else None
        except (AgentctlError, OSError) as exc:  # e.g. a result over max_message_bytes
            self._fail(name, message, f"cannot deliver the result: {exc}", "error", duration_ms)
            return
        self.mailbox.ack(name)
        self._record(
            "handled",
            message,
            attempt=message.attempt,
            file=name,
            duration_ms=duration_ms,
            result_id=reply_id,
            verdict=verdict_of(result) if answer else None,
            # An llm: agent's token usage (and cost, when the endpoint reports one).
            usage=result.get("usage") if isinstance(result, dict) else None,
        )
        self.reporter.count(handled=1)

    def _fail(
        self,
        name: str,
        message: AgentMessage,
        error: str,
        error_kind: str,
        duration_ms: float | None = None,
        *,
        final: bool = False,
    ) -> None:
        log.warning(
            "%s attempt %d/%d failed: %s",
            message.id,
            message.attempt,
            self.spec.max_attempts,
            error,
        )
        self.reporter.count(failed=1, last_error=f"{message.id}: {error}")
        self._record(
            "failed",
            message,
            attempt=message.attempt,
            max_attempts=self.spec.max_attempts,
            error=error,
            error_kind=error_kind,
            duration_ms=duration_ms,
        )
        if message.attempt < self.spec.max_attempts and not final:
            delay_s = self.spec.retry.delay_s(message.attempt)
            if delay_s > 0:
                not_before = iso_after(delay_s)
                message = message.model_copy(
                    update={"headers": {**message.headers, NOT_BEFORE_HEADER: not_before}}
                )
                self._delayed[name] = time.monotonic() + delay_s
            data = self.mailbox.requeue(name, message)
            self._record(
                "retried",
                message,
                attempt=message.attempt,
                file=name,
                sha256=content_digest(data),
                retry_in_s=delay_s,
            )
            return
        if message.kind is MessageKind.TASK:
            # The seed's escalation result, so requesters (and `send --wait`) hear of it.
            self._reply(
                message,
                {
                    "agent": self.spec.name,
                    "verdict": "escalate",
                    "error": error,
                    "attempts": message.attempt,
                },
            )
        record = error_record(message.id, error, error_kind, message.attempt)
        buried = self.mailbox.bury(name, record, message)
        self._record(
            "dead",
            message,
            attempt=message.attempt,
            file=name,
            error=error,
            error_kind=error_kind,
            sha256=content_digest(buried) if buried else None,
        )
        self.reporter.count(dead=1)

    def _bury_bad_file(self, name: str, reason: str, data: bytes | None) -> None:
        log.warning("bad message file %s: %s", name, reason)
        error = f"{name}: {reason}"
        self.mailbox.bury(name, error_record(None, error, "bad_message", 0))
        self._record(
            "dead",
            None,
            file=name,
            error=error,
            error_kind="bad_message",
            sha256=content_digest(data) if data is not None else None,
        )
        self.reporter.count(failed=1, dead=1, last_error=error)

    def _reply(self, request: AgentMessage, content: JsonValue) -> str:
        reply = request.reply(content)
        self.workspace.deliver(reply, dedupe=True)
        return reply.id


def verdict_of(result: object) -> str | None:
    """The verdict a handler's result carries, if any (`verdict`, or the seed's `passed`)."""
    if not isinstance(result, dict):
        return None
    verdict = result.get("verdict")
    if isinstance(verdict, str):
        return verdict.lower()
    passed = result.get("passed")
    if isinstance(passed, bool):
        return "pass" if passed else "block"
    return None


def _seconds_until(when: str | None) -> float:
    """Seconds from now until the ISO time `when` (0 when absent, past or unreadable)."""
    if not when:
        return 0.0
    moment = parse_iso(when)
    if moment is None:
        return 0.0
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def _initial_status(workspace: Workspace, spec: AgentSpec, stuck_after_s: float) -> AgentStatus:
    # Counters carry over from the previous worker, so `status` shows lifetime totals.
    previous = read_status(workspace.status_path(spec.name))
    me = ProcessRef.of(os.getpid())
    return AgentStatus(
        agent=spec.name,
        state=AgentState.STARTING,
        pid=os.getpid(),
        pid_start_ticks=me.start_ticks if me else 0,
        started_at=iso_now(),
        handled=previous.handled if previous else 0,
        failed=previous.failed if previous else 0,
        dead=previous.dead if previous else 0,
        stuck_after_s=stuck_after_s,
    )


def _acquire_worker_lock(agent_dir: Path) -> int:
    fd = os.open(agent_dir / WORKER_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AgentctlError(
            f"{agent_dir.name}: another worker is already running for this agent"
        ) from None
    return fd


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process (started by `agentctl run`)."""
    parser = argparse.ArgumentParser(prog="agentctl-worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--agent", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {args.agent}[%(process)d] %(levelname)s %(message)s",
    )
    die_with_parent(signal.SIGTERM)
    try:
        roster = load_roster(args.config)
        spec = roster.agent(args.agent)
        from agentctl.handlers import build_handler
        from agentctl.handlers.python import allow_imports_from

        allow_imports_from(roster)
        workspace = roster.open_workspace(args.workspace)
        handler: Handler
        if spec.name == PIPELINE_AGENT:
            from agentctl.conductor import ConductorHandler

            handler = ConductorHandler(roster, workspace)
        elif spec.handler_kind is HandlerKind.LLM:
            from agentctl.handlers import build_llm_handler

            handler = build_llm_handler(spec, workspace.ensure_agent_dir(spec.name))
        else:
            handler = build_handler(spec)
        worker = Worker(
            workspace,
            spec,
            handler,
            poll_interval_s=roster.poll_interval_s,
            stuck_after_s=roster.stuck_after_s,
        )
    except AgentctlError as exc:
        log.error("%s", exc)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the message in hand", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return worker.run()
    except AgentctlError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
