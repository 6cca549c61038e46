"""`python: package.module:ClassName`: a BaseAgent subclass run inside the worker."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from agentctl.config.agentspec import AgentSpec
from agentctl.config.roster import Roster
from agentctl.model.agent import BaseAgent
from agentctl.model.constants import STAGE_HEADER
from agentctl.model.errors import ConfigError, HandlerError, HandlerTimeoutError, cap_error

if TYPE_CHECKING:
    from pydantic import JsonValue

    from agentctl.model.message import AgentMessage


def allow_imports_from(roster: Roster) -> None:
    """Make modules beside the roster importable, as its agents' `python:` handlers expect.

    Workers run in the roster's directory; commands run wherever the user is.
    """
    if roster.path is not None:
        directory = str(roster.path.parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)


def agent_class(spec: AgentSpec) -> type[BaseAgent]:
    """Import the BaseAgent subclass a `python:` spec names (ConfigError if it is not one)."""
    assert spec.python is not None
    module_name, _, class_name = spec.python.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"agent {spec.name!r}: cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, BaseAgent)):
        raise ConfigError(f"agent {spec.name!r}: {spec.python} is not a BaseAgent subclass")
    return cls


def load_agent(spec: AgentSpec) -> BaseAgent:
    """Import and construct the agent class a `python:` spec names.

    A class whose constructor takes `name`/`role`/`expertise` gets the roster's values; one
    that takes no arguments (like the seed's SecurityReviewer) sets its own. The roster's name
    always wins, and its role and expertise win when given.
    """
    agent = construct_agent(spec)
    agent.name = spec.name
    if spec.role:
        agent.role = spec.role
    if spec.expertise:
        agent.expertise = list(spec.expertise)
    return agent


def construct_agent(spec: AgentSpec) -> BaseAgent:
    """The agent class a `python:` spec names, constructed: with the name, role and expertise
    its constructor gave it, before the roster's replace them."""
    cls = agent_class(spec)
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for option in spec.options:
        if option not in params and not takes_any:
            raise ConfigError(
                f"agent {spec.name!r}: option {option!r} is not a parameter of {spec.python}"
            )
    offered: dict[str, Any] = {
        "name": spec.name,
        "role": spec.role,
        "expertise": list(spec.expertise),
    }
    kwargs = {k: v for k, v in offered.items() if k in params}
    return cls(**kwargs, **spec.options)


def task_of(message: AgentMessage) -> dict[str, Any]:
    """The seed's `task` dict: the content's fields (or `{"content": ...}`) plus keywords.

    A pipeline stage's message carries the seed's context (`original_task`, `results`) as its
    content: its task is the original task, as in the seed's Pipeline.
    """
    content = message.content
    if _is_stage(message):
        assert isinstance(content, dict)
        original = content["original_task"]
        return dict(original) if isinstance(original, dict) else {"content": original}
    task: dict[str, Any] = dict(content) if isinstance(content, dict) else {"content": content}
    task.setdefault("keywords", list(message.keywords))
    return task


def context_of(message: AgentMessage) -> dict[str, Any]:
    """The `context` dict handed to `process`: the message, its attempt, its thread, and for a
    pipeline stage the seed's `original_task` and earlier stages' `results`."""
    context: dict[str, Any] = {
        "message": message.model_dump(mode="json"),
        "attempt": message.attempt,
        "thread_id": message.thread_id,
    }
    if _is_stage(message):
        assert isinstance(message.content, dict)
        context["original_task"] = message.content["original_task"]
        context["results"] = message.content.get("results", {})
    return context


def _is_stage(message: AgentMessage) -> bool:
    return (
        STAGE_HEADER in message.headers
        and isinstance(message.content, dict)
        and "original_task" in message.content
    )


async def _bounded(coro: Coroutine[Any, Any, Any], timeout_s: float) -> Any:
    """`await asyncio.wait_for(coro, timeout_s)` in one task and two loop iterations, not five.

    Like wait_for, a coroutine that runs past `timeout_s` is cancelled and TimeoutError raised,
    and with a timeout of zero or less it never starts.
    """
    if timeout_s <= 0:
        coro.close()
        raise TimeoutError
    async with asyncio.timeout(timeout_s):
        return await coro


class PythonHandler:
    """Runs `agent.process(task, context)`; coroutines are cancelled at timeout_s."""

    def __init__(self, spec: AgentSpec) -> None:
        self.agent = load_agent(spec)
        self._loop = asyncio.new_event_loop()

    def handle(self, message: AgentMessage, *, timeout_s: float) -> JsonValue:
        """Run the agent on one message."""
        process = self.agent.process
        task, context = task_of(message), context_of(message)
        result: Any
        self.agent.status = "busy"
        try:
            if inspect.iscoroutinefunction(process):
                result = self._loop.run_until_complete(_bounded(process(task, context), timeout_s))
            else:
                # A synchronous handler cannot be interrupted from inside its process: it
                # runs to completion however long it takes (prefer `async def process`).
                result = process(task, context)
        except TimeoutError:
            raise HandlerTimeoutError(f"timed out after {timeout_s:g} s") from None
        except HandlerError:
            raise
        except Exception as exc:  # the agent's own bug: report it, the worker goes on
            raise HandlerError(cap_error(f"{type(exc).__name__}: {exc}")) from exc
        finally:
            self.agent.status = "idle"
        try:
            json.dumps(result, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise HandlerError(f"result is not JSON: {exc}") from None
        return result  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the event loop."""
        self._loop.close()
