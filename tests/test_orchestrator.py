"""ResilientOrchestrator: the seed's retries, timeout and escalation, in process."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agentctl import BaseAgent, NonRetryableError, ResilientOrchestrator, Verdict


class Flaky(BaseAgent):
    """Fails `failures` times, then answers."""

    def __init__(self, failures: int) -> None:
        super().__init__(name="flaky", role="fails first", expertise=[])
        self.failures = failures
        self.calls = 0

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"boom {self.calls}")
        return {"ok": task["n"], "calls": self.calls, "context": context}


class Sleeper(BaseAgent):
    """Never answers in time: waits on an event nobody sets."""

    def __init__(self) -> None:
        super().__init__(name="sleeper", role="hangs", expertise=[])
        self.calls = 0

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def run(orchestrator: ResilientOrchestrator, name: str, task: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(orchestrator.run_agent(name, task, {"run": 1}))


def test_a_failure_is_retried_and_the_result_returned() -> None:
    agent = Flaky(failures=2)
    result = run(ResilientOrchestrator({"flaky": agent}, max_retries=2), "flaky", {"n": 7})
    assert result == {"ok": 7, "calls": 3, "context": {"run": 1}}


def test_the_last_failure_escalates_with_the_seeds_result() -> None:
    agent = Flaky(failures=5)
    result = run(ResilientOrchestrator({"flaky": agent}, max_retries=2), "flaky", {"n": 7})
    assert result == {"agent": "flaky", "verdict": "escalate", "error": "boom 3", "attempts": 3}
    assert result["verdict"] == Verdict.ESCALATE and agent.calls == 3


def test_a_timeout_is_retried_then_escalated() -> None:
    agent = Sleeper()
    orchestrator = ResilientOrchestrator({"sleeper": agent}, max_retries=1, timeout=0.05)
    result = run(orchestrator, "sleeper", {})
    assert result["verdict"] == "escalate"
    assert result["error"] == "Timed out after 2 attempts"
    assert agent.calls == 2


def test_a_non_retryable_error_escalates_at_once() -> None:
    class Refuser(BaseAgent):
        calls = 0

        async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
            Refuser.calls += 1
            raise NonRetryableError("this code is not Python")

    result = run(ResilientOrchestrator({"r": Refuser("r", "", [])}, max_retries=5), "r", {})
    assert result == {"agent": "r", "verdict": "escalate", "error": "this code is not Python",
                      "attempts": 1}
    assert Refuser.calls == 1


def test_a_synchronous_process_runs_in_a_thread_and_still_times_out() -> None:
    release = threading.Event()

    class Blocking:
        def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
            if task.get("block"):
                release.wait(10)
            return {"thread": threading.current_thread().name}

    orchestrator = ResilientOrchestrator({"b": Blocking()}, max_retries=0, timeout=0.05)
    # asyncio.run waits for its worker threads on the way out: release the blocked one once
    # the timeout has been seen (a timer, since the test's own thread is inside asyncio.run).
    timer = threading.Timer(0.5, release.set)
    timer.start()
    try:
        assert run(orchestrator, "b", {"block": True})["verdict"] == "escalate"
    finally:
        release.set()
        timer.cancel()
    answered = run(orchestrator, "b", {})
    assert answered["thread"] != threading.current_thread().name


def test_zero_retries_means_one_attempt_and_bad_settings_are_refused() -> None:
    agent = Flaky(failures=1)
    assert run(ResilientOrchestrator({"f": agent}, max_retries=0), "f", {})["attempts"] == 1
    assert agent.calls == 1
    with pytest.raises(ValueError):
        ResilientOrchestrator({}, max_retries=-1)
    with pytest.raises(ValueError):
        ResilientOrchestrator({}, timeout=0)
    with pytest.raises(KeyError):
        run(ResilientOrchestrator({}), "nobody", {})


def test_verdicts_order_by_severity() -> None:
    assert Verdict.worst([Verdict.PASS, Verdict.FLAG, Verdict.BLOCK]) is Verdict.BLOCK
    assert Verdict.worst([]) is Verdict.PASS
    assert [v.value for v in sorted(Verdict, key=lambda v: v.severity)] == [
        "pass", "flag", "block", "escalate", "halt",
    ]  # fmt: skip
