"""`dead list` and `dead requeue` on NATS: the agents' dead-letter subjects."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agentctl.backends.nats.reader import StreamReader
from agentctl.model.errors import AgentctlError
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.flow.deadletters import DeadLetter


def list_stream_dead(transport: NatsTransport, agents: list[str]) -> list[DeadLetter]:
    """`dead list` on NATS: the dead-letter subjects of `agents`, oldest first."""
    from agentctl.flow.deadletters import DeadLetter

    reader = StreamReader(transport)
    letters = []
    for agent in agents:
        for stored in reader.dead_letters(agent):
            try:
                error = json.loads(stored.headers.get("Agentctl-Error") or "{}")
            except ValueError:
                error = {"error": stored.headers.get("Agentctl-Error")}
            letters.append(
                DeadLetter(
                    agent=agent,
                    file=f"{transport.stream}:{stored.seq}",
                    message_id=error.get("message_id"),
                    attempts=error.get("attempts"),
                    error_kind=error.get("error_kind"),
                    error=error.get("error"),
                    dead_at=error.get("dead_at"),
                )
            )
    return letters


def requeue_stream_dead(transport: NatsTransport, letter: DeadLetter) -> str:
    """`dead requeue` on NATS: publish the message again with its attempts reset, then remove
    the dead letter (the journal keeps its `dead` and `requeued` events)."""
    from agentctl.flow.deadletters import DeadLetterError, revive
    from agentctl.model.errors import BadMessageError
    from agentctl.model.message import parse_message

    seq = int(letter.file.rpartition(":")[2])
    stream = transport.stream
    try:
        raw = transport.call(lambda: transport.js.get_msg(stream, seq), f"read dead letter {seq}")
        message = parse_message(bytes(raw.data or b""))
    except BadMessageError as exc:
        raise DeadLetterError(
            f"{letter.agent}/{letter.file}: not a valid message, cannot requeue ({exc})"
        ) from None
    except AgentctlError as exc:
        raise DeadLetterError(f"{letter.agent}/{letter.file}: no longer dead ({exc})") from None
    revived = revive(message)
    transport.record(
        Event.REQUEUED,
        revived,
        letter.agent,
        file=letter.file,
        previous_error=letter.error,
        previous_attempts=letter.attempts,
    )
    transport.deliver(revived)
    transport.call(lambda: transport.js.delete_msg(stream, seq), f"remove dead letter {seq}")
    return revived.id
