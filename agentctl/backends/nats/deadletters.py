"""Dead letters and escalations on NATS: the agents' dead-letter subjects, and the `human`
inbox subject with the answers stored on the requesters' subjects."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agentctl.backends.nats.client import INBOX_SUBJECT
from agentctl.backends.nats.reader import StreamReader
from agentctl.backends.records import DeadLetter, DeadLetterError
from agentctl.model.errors import AgentctlError, BadMessageError

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.model.message import AgentMessage


def list_stream_dead(transport: NatsTransport, agents: list[str] | None) -> list[DeadLetter]:
    """The dead-letter subjects of `agents` (every agent's with None), oldest first."""
    reader = StreamReader(transport)
    letters = []
    for agent in ["*"] if agents is None else agents:
        for stored in reader.dead_letters(agent):
            try:
                error = json.loads(stored.headers.get("Agentctl-Error") or "{}")
            except ValueError:
                error = {"error": stored.headers.get("Agentctl-Error")}
            owner = stored.subject.split(".")[1]  # agents.<name>.dead
            letters.append(DeadLetter.of(owner, f"{transport.stream}:{stored.seq}", error, None))
    return letters


def read_stream_dead(transport: NatsTransport, letter: DeadLetter) -> AgentMessage:
    """The message of a dead letter (DeadLetterError if gone or not a valid message)."""
    from agentctl.model.message import parse_message

    seq = _seq(letter.file)
    stream = transport.stream
    try:
        raw = transport.call(lambda: transport.js.get_msg(stream, seq), f"read dead letter {seq}")
        return parse_message(bytes(raw.data or b""))
    except BadMessageError as exc:
        raise DeadLetterError(
            f"{letter.agent}/{letter.file}: not a valid message, cannot requeue ({exc})"
        ) from None
    except AgentctlError as exc:
        raise DeadLetterError(f"{letter.agent}/{letter.file}: no longer dead ({exc})") from None


def restore_stream_dead(
    transport: NatsTransport, letter: DeadLetter, message: AgentMessage
) -> None:
    """Publish `message` again on its inbox subject, then remove the dead letter."""
    seq = _seq(letter.file)
    stream = transport.stream
    transport.publish_message(message, message.to_json_bytes())
    transport.call(lambda: transport.js.delete_msg(stream, seq), f"remove dead letter {seq}")


def stream_escalation_requests(transport: NatsTransport) -> list[tuple[str, AgentMessage]]:
    """Messages on `agents.human.inbox` whose reply is not stored yet."""
    from agentctl.model.constants import HUMAN_AGENT
    from agentctl.model.ids import reply_id
    from agentctl.model.message import parse_message

    reader = StreamReader(transport)
    asked = []
    for stored in reader.messages(INBOX_SUBJECT.format(agent=HUMAN_AGENT)):
        try:
            asked.append((f"{transport.stream}:{stored.seq}", parse_message(stored.data)))
        except BadMessageError:
            continue  # not an escalation: not ours to judge here
    if not asked:
        return []
    # Escalations come from the conductor: their answers are stored on its inbox subject.
    answered = {
        m.headers.get("Nats-Msg-Id")
        for requester in {message.from_agent for _, message in asked}
        for m in reader.messages(INBOX_SUBJECT.format(agent=requester), headers_only=True)
    }
    return [(where, message) for where, message in asked if reply_id(message.id) not in answered]


def _seq(where: str) -> int:
    return int(where.rpartition(":")[2])
