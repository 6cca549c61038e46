"""The tool loop of an `llm:` agent with `mcp_servers:`: ask the model, run the tools it calls,
give it their answers, and ask again, until it answers in words.

Within three limits: `max_tool_calls` per attempt (a model asking for one more fails the
attempt, so it is retried, then escalated: a model that keeps calling tools would otherwise
spend its whole budget); the attempt's `timeout_s`, which also leaves the servers time to close;
and the agent's budget, read before each question to the model: once it is spent the model is
not asked again and the agent answers HALT, as it does when an attempt starts with none left.

Every call the model asks for is journaled as a `tool_call` event (server, tool, the
arguments' size and SHA-256, the answer's size, duration, error). The model gets each answer as
a `role: tool` message; a tool's own error, a function it was never offered, or arguments that
are not a JSON object come back as `error: ...`, so it can correct itself. A failing server
fails the attempt (mcptools.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentctl.model.errors import HandlerError, HandlerTimeoutError
from agentctl.model.vocab import Event
from agentctl.runtime.handlers.llm import add_usage, message_of
from agentctl.runtime.handlers.mcptools import ToolAnswer, Toolbox, open_toolbox

if TYPE_CHECKING:
    from agentctl.config.agentspec import AgentSpec
    from agentctl.model.clock import Clock
    from agentctl.model.message import AgentMessage

# Of an attempt's timeout_s, kept for closing its servers (a stdio server that does not exit
# when its stdin closes is signalled 2 s later), at most a quarter of it.
CLOSE_RESERVE_S = 5.0
_ERROR_CHARS = 500  # of a tool's error, in its journal event

Ask = Callable[[list[dict[str, Any]], list[dict[str, Any]], float], dict[str, Any]]


@dataclass
class LoopOutcome:
    """How the loop ended: the model's answer (None: the budget ran out before it answered),
    the usage of every round summed, and how many tool calls were made."""

    reply: dict[str, Any] | None
    usage: dict[str, Any]
    tool_calls: int


def ask_with_tools(
    spec: AgentSpec,
    message: AgentMessage,
    messages: list[dict[str, Any]],
    *,
    ask: Ask,
    over_budget: Callable[[], bool],
    record: Callable[..., None] | None,
    env: dict[str, str],
    timeout_s: float,
    clock: Clock,
) -> LoopOutcome:
    """Open the agent's MCP servers, then ask the model about `message` until it answers.

    `messages` is the conversation so far; `ask(messages, tools, timeout_s)` one
    chat-completions round, charged to the budget; `record` journals (Transport.record); `env`
    the environment of stdio servers.
    """
    assert spec.llm is not None
    deadline = clock.monotonic() + timeout_s - min(CLOSE_RESERVE_S, timeout_s / 4)

    def remaining_s() -> float:
        return deadline - clock.monotonic()

    def record_call(**fields: Any) -> None:
        if record is not None:
            record(Event.TOOL_CALL, message, spec.name, attempt=message.attempt, **fields)

    servers, env = spec.llm.mcp_servers, {**env, "AGENTCTL_MESSAGE_ID": message.id}
    with open_toolbox(servers, env=env, remaining_s=remaining_s, client_name=spec.name) as toolbox:
        loop = _Loop(toolbox, ask=ask, record=record_call, remaining_s=remaining_s, clock=clock)
        return loop.run(messages, over_budget=over_budget, max_tool_calls=spec.llm.max_tool_calls)


class _Loop:
    def __init__(
        self,
        toolbox: Toolbox,
        *,
        ask: Ask,
        record: Callable[..., None],
        remaining_s: Callable[[], float],
        clock: Clock,
    ) -> None:
        self.toolbox = toolbox
        self.ask = ask
        self.record = record
        self.remaining_s = remaining_s
        self.clock = clock
        self.calls = 0

    def run(
        self,
        messages: list[dict[str, Any]],
        *,
        over_budget: Callable[[], bool],
        max_tool_calls: int,
    ) -> LoopOutcome:
        """Ask, run the calls asked for, and ask again, until the model answers in words."""
        usage: dict[str, Any] = {}
        while True:
            if over_budget():
                return LoopOutcome(None, usage, self.calls)
            reply = self.ask(messages, self.toolbox.functions, self._time_left_s())
            add_usage(usage, reply)
            said = message_of(reply)
            requested = said.get("tool_calls") or []
            if not isinstance(requested, list):
                raise HandlerError(f"the answer's tool_calls is not a list: {str(requested)[:200]}")
            if not requested:
                return LoopOutcome(reply, usage, self.calls)
            if self.calls + len(requested) > max_tool_calls:
                raise HandlerError(
                    f"the model asked for more tool calls than max_tool_calls ({max_tool_calls}) "
                    f"allows in one attempt ({self.calls} made, {len(requested)} more asked for)"
                )
            # The model's turn goes back as it came, so its next round sees its own calls.
            messages.append({"role": "assistant", "content": said.get("content"),
                             "tool_calls": requested})  # fmt: skip
            for request in requested:
                self.calls += 1
                messages.append(self._call(request))

    def _time_left_s(self) -> float:
        left_s = self.remaining_s()
        if left_s <= 0:
            raise HandlerTimeoutError(f"out of time after {self.calls} tool call(s)")
        return left_s

    def _call(self, request: Any) -> dict[str, Any]:
        """Run one call the model asked for; journal it; the `role: tool` message answering it."""
        call_id, function, raw = _parse_request(request)
        route = self.toolbox.route(function)
        server, tool = route if route is not None else (None, function)
        fields: dict[str, Any] = {
            "call_index": self.calls,  # 1, 2, ... within the attempt
            "call_id": call_id,
            "server": server,
            "tool": tool,
            "arguments_bytes": len(raw.encode()),
            "arguments_sha256": hashlib.sha256(raw.encode()).hexdigest(),
        }
        started = self.clock.monotonic()
        arguments = _arguments_of(raw)
        if route is None:
            offered = ", ".join(f["function"]["name"] for f in self.toolbox.functions)
            answer = _error(f"there is no tool {function!r}; the tools: {offered}")
        elif arguments is None:
            answer = _error("the arguments are not a JSON object")
        else:
            try:
                answer = self.toolbox.call(function, arguments, timeout_s=self._time_left_s())
            except HandlerError as exc:
                self._record(fields, started, None, str(exc))
                raise
        error = answer.text[:_ERROR_CHARS] if answer.is_error else None
        self._record(fields, started, answer.size_bytes, error)
        content = f"error: {answer.text}" if answer.is_error else answer.text
        return {"role": "tool", "tool_call_id": call_id, "content": content}

    def _record(
        self, fields: dict[str, Any], started: float, result_bytes: int | None, error: str | None
    ) -> None:
        duration_ms = round((self.clock.monotonic() - started) * 1000, 3)
        self.record(**fields, result_bytes=result_bytes, duration_ms=duration_ms, error=error)


def _parse_request(request: Any) -> tuple[str, str, str]:
    """(id, function name, arguments as sent) of one of the model's tool calls."""
    try:
        call_id, function = request["id"], request["function"]
        name, raw = function["name"], function.get("arguments") or ""
    except (KeyError, TypeError):
        raise HandlerError(f"a tool call without id or function: {str(request)[:200]}") from None
    if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(raw, str)):
        raise HandlerError(f"a tool call with a malformed id or function: {str(request)[:200]}")
    return call_id, name, raw


def _arguments_of(raw: str) -> dict[str, Any] | None:
    if not raw.strip():
        return {}  # a call without arguments
    try:
        arguments = json.loads(raw)
    except ValueError:
        return None
    return arguments if isinstance(arguments, dict) else None


def _error(text: str) -> ToolAnswer:
    return ToolAnswer(text, len(text.encode()), is_error=True)
