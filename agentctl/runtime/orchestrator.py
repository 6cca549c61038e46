"""ResilientOrchestrator: the seed's in-process retries, timeout and escalation, for library use.

For people who use agentctl's agents as plain Python objects, without processes or files:

    orchestrator = ResilientOrchestrator({"reviewer": SecurityReviewer()}, max_retries=2,
                                         timeout=30.0)
    result = await orchestrator.run_agent("reviewer", {"code": src}, {})

Each attempt runs under `timeout` seconds; a timeout or an exception is retried up to
`max_retries` more times, then the seed's escalation result is returned instead of raising:
`{"agent": name, "verdict": "escalate", "error": ...}`. A NonRetryableError escalates at once.
The file workspace's workers keep the same promises across processes and crashes (timeout_s,
max_attempts, the escalation reply).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from typing import Any

from agentctl.model.errors import NonRetryableError
from agentctl.model.verdict import Verdict

log = logging.getLogger(__name__)


class ResilientOrchestrator:
    """Runs agents' `process(task, context)` with a timeout, retries and escalation."""

    def __init__(
        self,
        agents: Mapping[str, Any],
        max_retries: int = 2,
        timeout: float = 30.0,
        *,
        retry_delay_s: float = 0.0,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.agents = agents
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_delay_s = retry_delay_s

    async def run_agent(
        self, name: str, task: dict[str, Any], context: dict[str, Any]
    ) -> dict[str, Any]:
        """The agent's result, or the seed's escalation result once every attempt failed."""
        agent = self.agents[name]  # an unknown name is a programming error: KeyError
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await asyncio.wait_for(_call(agent, task, context), timeout=self.timeout)
            except TimeoutError:
                error = f"Timed out after {attempts} attempts"
                log.warning(
                    "%s: attempt %d/%d timed out after %g s", name, attempt, attempts, self.timeout
                )
            except NonRetryableError as exc:
                return _escalation(name, str(exc), attempt)
            except Exception as exc:  # the seed's contract: any failure is retried, then escalated
                error = str(exc) or type(exc).__name__
                log.warning("%s: attempt %d/%d failed: %s", name, attempt, attempts, error)
            if attempt < attempts and self.retry_delay_s > 0:
                await asyncio.sleep(self.retry_delay_s * 2 ** (attempt - 1))
        return _escalation(name, error, attempts)


async def _call(agent: Any, task: dict[str, Any], context: dict[str, Any]) -> Any:
    # The seed's agents are async; a plain function runs in a thread, so the timeout still
    # returns control (the thread itself cannot be stopped, and finishes in the background).
    process = agent.process
    if inspect.iscoroutinefunction(process):
        return await process(task, context)
    result = await asyncio.to_thread(process, task, context)
    if inspect.isawaitable(result):
        return await result
    return result


def _escalation(name: str, error: str, attempts: int) -> dict[str, Any]:
    return {"agent": name, "verdict": Verdict.ESCALATE.value, "error": error, "attempts": attempts}
