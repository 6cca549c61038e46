"""`escalations` and `resolve` on NATS: the `human` inbox subject and its answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentctl.backends.nats.client import INBOX_SUBJECT
from agentctl.backends.nats.reader import StreamReader

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.flow.escalation import Escalation


def stream_escalations(transport: NatsTransport, overdue_after_s: float) -> list[Escalation]:
    """`escalations` on NATS: messages on `agents.human.inbox` whose reply is not stored yet."""
    from datetime import UTC, datetime

    from agentctl.flow.escalation import escalation_of
    from agentctl.model.constants import HUMAN_AGENT
    from agentctl.model.errors import BadMessageError
    from agentctl.model.ids import reply_id
    from agentctl.model.message import parse_message

    reader = StreamReader(transport)
    asked = []
    for stored in reader.messages(INBOX_SUBJECT.format(agent=HUMAN_AGENT)):
        try:
            asked.append((stored.seq, parse_message(stored.data)))
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
    now = datetime.now(UTC)
    return [
        escalation_of(message, f"{transport.stream}:{seq}", now, overdue_after_s)
        for seq, message in asked
        if reply_id(message.id) not in answered
    ]


def resolve_stream_escalation(
    transport: NatsTransport, ident: str, verdict: str, note: str | None
) -> Escalation:
    """`resolve` on NATS: publish the person's verdict as the escalation's reply (stored once,
    by its derived id, however many people answer at the same time)."""
    from agentctl.flow.escalation import answer, pick_escalation
    from agentctl.model.message import parse_message

    escalation = pick_escalation(
        stream_escalations(transport, transport.workspace.escalation_overdue_s), ident
    )
    seq = int(escalation.file.rpartition(":")[2])
    stream = transport.stream
    raw = transport.call(lambda: transport.js.get_msg(stream, seq), f"read escalation {seq}")
    answer(transport, parse_message(bytes(raw.data or b"")), escalation, verdict, note)
    return escalation
