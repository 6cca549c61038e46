"""Dead letters: list what was given up on, and bring it back (`agentctl dead`), on any backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentctl.backends.records import DeadLetter, DeadLetterError
from agentctl.model.constants import NOT_BEFORE_HEADER, REQUEUED_HEADER
from agentctl.model.vocab import Event
from agentctl.protocol.journal import content_digest

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.model.actor import Actor
    from agentctl.model.message import AgentMessage


def list_dead(backend: Backend, agents: list[str] | None = None) -> list[DeadLetter]:
    """Every dead letter of `agents` (every agent's with None), by agent, oldest first."""
    return backend.dead_letters(agents)


def find_dead(backend: Backend, agents: list[str] | None, ident: str) -> DeadLetter:
    """The dead letter whose message id or file name is `ident`."""
    return pick_dead(backend.dead_letters(agents), ident)


def pick_dead(letters: list[DeadLetter], ident: str) -> DeadLetter:
    """The one letter whose message id or file name is `ident` (DeadLetterError otherwise)."""
    matches = [letter for letter in letters if ident in (letter.message_id, letter.file)]
    if not matches:
        raise DeadLetterError(f"{ident}: no dead letter with this id (see `agentctl dead list`)")
    if len(matches) > 1:
        where = ", ".join(m.agent for m in matches)
        raise DeadLetterError(f"{ident}: dead in several inboxes ({where}); pass --agent")
    return matches[0]


def requeue(backend: Backend, letter: DeadLetter, *, by: Actor | None = None) -> str:
    """Put a dead letter back in its inbox with its attempts reset; its message id.

    A message that is not valid cannot be requeued: it would only die again.
    """
    revived = revive(backend.read_dead(letter))
    # Journaled before it becomes claimable, as a send is, so `requeued` precedes `claimed`;
    # with its digest, so `verify` finds the requeued copy as it finds a sent one.
    backend.record(
        Event.REQUEUED,
        revived,
        letter.agent,
        file=letter.file,
        sha256=content_digest(revived.to_json_bytes()),
        previous_error=letter.error,
        previous_attempts=letter.attempts,
        **(by.fields() if by else {}),
    )
    backend.restore_dead(letter, revived)
    return revived.id


def requeue_dead(
    backend: Backend, ident: str | None, agents: list[str] | None, *, by: Actor | None = None
) -> tuple[list[str], list[str]]:
    """`dead requeue`: the letter `ident` (every letter with None) back in its inbox. Each
    letter is tried: the message ids requeued, and why each of the others was not."""
    letters = backend.dead_letters(agents)
    chosen = letters if ident is None else [pick_dead(letters, ident)]
    requeued, failures = [], []
    for letter in chosen:
        try:
            requeued.append(requeue(backend, letter, by=by))
        except DeadLetterError as exc:
            failures.append(str(exc))
    return requeued, failures


def revive(message: AgentMessage) -> AgentMessage:
    """A dead message as it is requeued: attempts reset, requeue count up, no retry delay."""
    headers = {k: v for k, v in message.headers.items() if k != NOT_BEFORE_HEADER}
    headers[REQUEUED_HEADER] = str(message.requeued + 1)
    return message.model_copy(update={"attempt": 0, "headers": headers})
