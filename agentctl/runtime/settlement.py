"""Settlement: how one attempt at a message ends, once the worker has claimed and run it.

Handled: the reply, then the ack. Failed: another attempt after the retry delay, or, after the
last one, the escalation reply and dead/. A file that is no message at all: dead/ at once. Each
step is journaled and counted in status; each write waits out a full disk (WriteRetry) instead
of failing the message, so every claimed message ends in exactly one of done/ or dead/.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agentctl.model.errors import AgentctlError, cap_error
from agentctl.model.message import AgentMessage, MessageKind
from agentctl.model.verdict import Verdict
from agentctl.model.verdict import stated_verdict as verdict_of  # the one rule: None when unstated
from agentctl.model.vocab import ErrorKind, Event
from agentctl.protocol.journal import content_digest
from agentctl.protocol.status import error_record
from agentctl.runtime.handlers import NO_REPLY

if TYPE_CHECKING:
    from pydantic import JsonValue

    from agentctl.backends.transport import Delivery, Inbox, Transport
    from agentctl.config.agentspec import AgentSpec
    from agentctl.protocol.writeretry import WriteRetry
    from agentctl.runtime.reporter import StatusReporter

log = logging.getLogger("agentctl.runtime.worker")  # the worker's log: settling is its work

__all__ = ["Settlement", "verdict_of"]


class Settlement:
    """Settles the attempts of one agent's worker: reply, ack, retry, bury, escalate, journal."""

    def __init__(
        self,
        transport: Transport,
        inbox: Inbox,
        spec: AgentSpec,
        *,
        writes: WriteRetry,
        reporter: StatusReporter,
    ) -> None:
        self.transport = transport
        self.inbox = inbox
        self.spec = spec
        self.writes = writes
        self.reporter = reporter

    def record(self, event: str, message: AgentMessage | None, **fields: Any) -> None:
        """Journal `event` about `message` by this agent, waiting out a full disk."""
        # A journal line is written whole or not at all, so a refused one is simply retried.
        self.writes.run(lambda: self.transport.record(event, message, self.spec.name, **fields))

    def succeed(
        self, delivery: Delivery, message: AgentMessage, result: JsonValue, duration_ms: float
    ) -> None:
        """The handler returned `result`: reply to a task, then ack."""
        # Reply before ack: a crash in between redelivers the request, and the reply's derived
        # id makes the second delivery a no-op.
        answer = message.kind is MessageKind.TASK and result is not NO_REPLY
        try:
            reply_id = self._reply(message, result) if answer else None
        except (AgentctlError, OSError) as exc:  # e.g. a result over max_message_bytes
            error = f"cannot deliver the result: {exc}"
            self.fail(delivery, message, error, ErrorKind.ERROR, duration_ms)
            return
        self.writes.run(lambda: self.inbox.ack(delivery))
        usage = result.get("usage") if isinstance(result, dict) else None
        self.record(
            Event.HANDLED,
            message,
            attempt=message.attempt,
            file=delivery.key,
            duration_ms=duration_ms,
            result_id=reply_id,
            verdict=verdict_of(result) if answer else None,
            # An llm: agent's token usage (and cost, when the endpoint reports one), and model.
            usage=usage,
            model=result.get("model") if usage is not None and isinstance(result, dict) else None,
        )
        self.reporter.count(handled=1)

    def fail(
        self,
        delivery: Delivery,
        message: AgentMessage,
        error: str,
        error_kind: ErrorKind,
        duration_ms: float | None = None,
        *,
        final: bool = False,
    ) -> None:
        """The attempt failed: retry after the spec's delay, or (last attempt, or `final`)
        escalate a task and bury the message in dead/."""
        error = cap_error(error)  # a handler's error can be megabytes; its start says enough
        log.warning(
            "%s attempt %d/%d failed: %s",
            message.id,
            message.attempt,
            self.spec.max_attempts,
            error,
        )
        self.reporter.count(failed=1, last_error=f"{message.id}: {error}")
        self.record(
            Event.FAILED,
            message,
            attempt=message.attempt,
            max_attempts=self.spec.max_attempts,
            error=error,
            error_kind=error_kind,
            duration_ms=duration_ms,
        )
        if message.attempt < self.spec.max_attempts and not final:
            delay_s = self.spec.retry.delay_s(message.attempt)
            data = self.writes.run(lambda: self.inbox.retry(delivery, message, delay_s))
            self.record(
                Event.RETRIED,
                message,
                attempt=message.attempt,
                file=delivery.key,
                sha256=content_digest(data) if data is not None else None,
                retry_in_s=delay_s,
            )
            return
        if message.kind is MessageKind.TASK:
            self._escalate(message, error)
        record = error_record(message.id, error, error_kind, message.attempt)
        buried = self.writes.run(lambda: self.inbox.bury(delivery, record, message))
        self.record(
            Event.DEAD,
            message,
            attempt=message.attempt,
            file=delivery.key,
            error=error,
            error_kind=error_kind,
            sha256=content_digest(buried) if buried else None,
        )
        self.reporter.count(dead=1)

    def bury_bad_file(self, delivery: Delivery, reason: str, data: bytes | None) -> None:
        """What was claimed is no message for this agent: into dead/ at once, no attempt run."""
        log.warning("bad message %s: %s", delivery.key, reason)
        error = f"{delivery.key}: {reason}"
        record = error_record(None, error, ErrorKind.BAD_MESSAGE, 0)
        self.writes.run(lambda: self.inbox.bury(delivery, record, None))
        self.record(
            Event.DEAD,
            None,
            file=delivery.key,
            error=error,
            error_kind=ErrorKind.BAD_MESSAGE,
            sha256=content_digest(data) if data is not None else None,
        )
        self.reporter.count(failed=1, dead=1, last_error=error)

    def _escalate(self, message: AgentMessage, error: str) -> None:
        # The seed's escalation result, so requesters (and `send --wait`) hear of it. Guarded
        # like succeed's reply: one the transport refuses (over max_message_bytes) must not
        # stop the worker before the message is in dead/, where the error is kept.
        content: JsonValue = {
            "agent": self.spec.name,
            "verdict": Verdict.ESCALATE,
            "error": error,
            "attempts": message.attempt,
        }
        try:
            self._reply(message, content)
        except (AgentctlError, OSError) as exc:
            log.error("%s: cannot deliver the escalation reply: %s", message.id, exc)

    def _reply(self, request: AgentMessage, content: JsonValue) -> str:
        reply = request.reply(content)
        # Retried as it is, not rebuilt: with dedupe, a reply that did land is not sent twice.
        self.writes.run(lambda: self.transport.deliver(reply, dedupe=True))
        return reply.id
