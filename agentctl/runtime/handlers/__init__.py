"""Handlers: how an agent's work is done for one message.

A handler takes a message (its `attempt` already counts this attempt) and returns the result's
content (any JSON value), or raises HandlerError. `command:` agents have no handler: their
program speaks the file protocol itself and the supervisor only runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agentctl.config.agentspec import AgentSpec, HandlerKind

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from pydantic import JsonValue

    from agentctl.model.message import AgentMessage


class _NoReply:
    def __repr__(self) -> str:
        return "NO_REPLY"


# A handler returns this for a task it answers later itself (the pipeline conductor answers a
# start message when the run ends): the worker acks the message without replying.
NO_REPLY: Any = _NoReply()


class Handler(Protocol):
    """Does the work for one message."""

    def handle(self, message: AgentMessage, *, timeout_s: float) -> JsonValue:
        """Return the result content; raise HandlerError (or HandlerTimeoutError) on failure."""
        ...

    def close(self) -> None:
        """Release what the handler holds (event loop, child processes)."""
        ...


def build_handler(
    spec: AgentSpec, *, max_output_bytes: int, withheld_env: Collection[str]
) -> Handler:
    """The handler of a `python:` or `exec:` agent (an `exec:` program's stdout is bounded by
    `max_output_bytes`; it gets no variable of `withheld_env` its `env:` does not list)."""
    if spec.handler_kind is HandlerKind.PYTHON:
        from agentctl.runtime.handlers.python import PythonHandler

        return PythonHandler(spec)
    if spec.handler_kind is HandlerKind.EXEC:
        from agentctl.runtime.handlers.exec import ExecHandler

        return ExecHandler(spec, max_output_bytes=max_output_bytes, withheld_env=withheld_env)
    raise ValueError(f"agent {spec.name!r} is a command agent: it has no in-process handler")


def build_llm_handler(
    spec: AgentSpec,
    state_dir: Path,
    *,
    record: Callable[..., None] | None,
    withheld_env: Collection[str],
) -> Handler:
    """The handler of an `llm:` agent (it keeps its budget in `state_dir`, journals its tool
    calls with `record`, and its MCP servers get no variable of `withheld_env` its `env:` does
    not list)."""
    from agentctl.runtime.handlers.llm import LlmHandler

    return LlmHandler(spec, state_dir=state_dir, record=record, withheld_env=withheld_env)
