"""`python: package.module:ClassName`: a BaseAgent subclass run inside the worker."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from agentctl.config.agentspec import AgentSpec

# Loading a roster's class and shaping its task sit below the runtime (routing needs them too);
# named here as well, where the worker, conductor and validation have always found them.
from agentctl.flow.agentclass import load_agent
from agentctl.model.errors import HandlerError, HandlerTimeoutError, cap_error
from agentctl.model.task import context_of, task_of

if TYPE_CHECKING:
    from pydantic import JsonValue

    from agentctl.model.message import AgentMessage


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
