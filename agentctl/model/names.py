"""Validation of names that become paths: agent names and message ids."""

from __future__ import annotations

from agentctl.model.constants import AGENT_NAME_PATTERN, AGENT_NAME_RE, MESSAGE_ID_RE
from agentctl.model.errors import InvalidNameError


def validate_agent_name(name: object, *, where: str = "") -> str:
    """Return `name` if it is a safe agent name, else raise InvalidNameError."""
    if not isinstance(name, str) or not AGENT_NAME_RE.fullmatch(name):
        prefix = f"{where}: " if where else ""
        raise InvalidNameError(
            f"{prefix}invalid agent name {name!r}: must match {AGENT_NAME_PATTERN} "
            "(lower case letter first, then lower case letters, digits, '_' or '-', at most 32)"
        )
    return name


def validate_message_id(message_id: object) -> str:
    """Return `message_id` if it is safe as part of a file name, else raise InvalidNameError."""
    if not isinstance(message_id, str) or not MESSAGE_ID_RE.fullmatch(message_id):
        raise InvalidNameError(
            f"invalid message id {message_id!r}: letters, digits, '_', '.', '-' only, "
            "starting with a letter or digit, at most 128"
        )
    return message_id
