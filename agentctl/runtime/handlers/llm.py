"""`llm:`: an agent answered by any OpenAI-compatible chat-completions endpoint (Ollama, vLLM,
llama.cpp's server, hosted APIs), over plain HTTP with the standard library.

The system prompt is built from the agent's role and expertise unless one is given; the user
message holds the task and, in a pipeline, the earlier stages' results. An agent asked for a
verdict (`verdict: true`, or any pipeline stage) must answer a JSON object with a valid
`verdict`; an answer that does not parse fails the attempt, so it is retried, then escalated.

The response's token usage (and cost, when the server reports one) goes into the result, so
the worker journals it. A `budget:` (tokens, wall time) is kept in `<agent>/budget.json`: at
80 % used the result is flagged, at 100 % the agent answers HALT without calling the model.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.config.agentspec import AgentSpec
from agentctl.model.clock import SYSTEM_CLOCK, Clock
from agentctl.model.constants import STAGE_HEADER
from agentctl.model.errors import HandlerError, HandlerTimeoutError, NonRetryableError
from agentctl.model.task import context_of, task_of
from agentctl.model.verdict import Verdict
from agentctl.protocol.fsutil import write_atomic

if TYPE_CHECKING:
    from pydantic import JsonValue

    from agentctl.model.message import AgentMessage

FLAG_AT = 0.8  # share of a budget that flags the result
VERDICT_INSTRUCTIONS = (
    "Answer with one JSON object only, no prose around it: "
    '{"verdict": "pass" | "flag" | "block" | "escalate" | "halt", "reason": "<one sentence>", '
    '"findings": [<strings>]}.'
)


class LlmHandler:
    """Calls the endpoint once per attempt."""

    def __init__(self, spec: AgentSpec, *, state_dir: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        assert spec.llm is not None
        self.spec = spec
        self.clock = clock  # the wall-time budget is read on it
        self.llm = spec.llm
        self.budget = spec.budget
        self.budget_path = state_dir / "budget.json"
        self.api_key = os.environ.get(self.llm.api_key_env, "") if self.llm.api_key_env else ""

    def handle(self, message: AgentMessage, *, timeout_s: float) -> JsonValue:
        """Ask the model about one message."""
        base_url = self.llm.resolved_base_url()
        if base_url is None:
            raise NonRetryableError(self.llm.disabled_because() or "no base URL")
        spent = self._spent()
        exhausted = self._share(spent)
        if exhausted >= 1.0:
            return {
                "agent": self.spec.name,
                "verdict": Verdict.HALT.value,
                "reason": f"budget exhausted ({self._describe(spent)})",
            }
        wants_verdict = self.llm.verdict or STAGE_HEADER in message.headers
        started = self.clock.monotonic()
        try:
            reply = self._complete(base_url, self._messages(message, wants_verdict), timeout_s)
        finally:
            spent["wall_s"] = spent.get("wall_s", 0.0) + (self.clock.monotonic() - started)
            self._save(spent)
        raw_usage = reply.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        spent["tokens"] = spent.get("tokens", 0) + int(usage.get("total_tokens") or 0)
        self._save(spent)
        text = _text_of(reply)
        model = reply.get("model", self.llm.model)
        result: dict[str, Any] = {"agent": self.spec.name, "model": model}
        if wants_verdict:
            result.update(_verdict_answer(text))
        else:
            result["answer"] = text
        kept = ("prompt_tokens", "completion_tokens", "total_tokens", "cost")
        result["usage"] = {k: usage[k] for k in kept if k in usage}
        share = self._share(spent)
        current = Verdict(result.get("verdict", "pass"))
        if share >= FLAG_AT and current.severity < Verdict.FLAG.severity:
            result["verdict"] = Verdict.FLAG.value
            result["reason"] = f"budget {share:.0%} used ({self._describe(spent)})"
        return result

    def close(self) -> None:
        """Nothing to release."""

    # -- the request -----------------------------------------------------------------------

    def _messages(self, message: AgentMessage, wants_verdict: bool) -> list[dict[str, str]]:
        system = self.llm.system_prompt or (
            f"You are {self.spec.name}, an agent in a team. Your role: "
            f"{self.spec.role or 'a helpful specialist'}."
            + (f" Your expertise: {', '.join(self.spec.expertise)}." if self.spec.expertise else "")
        )
        if wants_verdict:
            system += " " + VERDICT_INSTRUCTIONS
        context = context_of(message)
        user = "Task:\n" + json.dumps(task_of(message), indent=2, ensure_ascii=False)
        if context.get("results"):
            user += "\n\nResults of the earlier stages:\n" + json.dumps(
                context["results"], indent=2, ensure_ascii=False
            )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _complete(
        self, base_url: str, messages: list[dict[str, str]], timeout_s: float
    ) -> dict[str, Any]:
        body = {
            "model": self.llm.model,
            "messages": messages,
            "temperature": self.llm.temperature,
            "max_tokens": self.llm.max_tokens,
        }
        # The URL is the roster's (http or https), never a message's: no file: surprise.
        request = urllib.request.Request(  # noqa: S310
            base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})},
            method="POST",
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
            error = f"{base_url}: HTTP {exc.code} {exc.reason}: {detail}"
            if exc.code in (400, 401, 403, 404, 422):
                raise NonRetryableError(error) from None  # retrying the same request cannot help
            raise HandlerError(error) from None
        except TimeoutError:
            raise HandlerTimeoutError(f"{base_url}: no answer within {timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise HandlerTimeoutError(f"{base_url}: no answer within {timeout_s:g} s") from None
            raise HandlerError(f"{base_url}: {exc.reason}") from None
        except ValueError:
            raise HandlerError(f"{base_url}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise HandlerError(f"{base_url}: unexpected answer: {str(data)[:200]}")
        return data

    # -- the budget ------------------------------------------------------------------------

    def _spent(self) -> dict[str, Any]:
        try:
            data = json.loads(self.budget_path.read_bytes())
        except (OSError, ValueError):
            return {"tokens": 0, "wall_s": 0.0}
        return data if isinstance(data, dict) else {"tokens": 0, "wall_s": 0.0}

    def _save(self, spent: dict[str, Any]) -> None:
        write_atomic(self.budget_path, json.dumps(spent).encode() + b"\n")

    def _share(self, spent: dict[str, Any]) -> float:
        if self.budget is None:
            return 0.0
        return self.budget.share(spent.get("tokens", 0), spent.get("wall_s", 0.0))

    def _describe(self, spent: dict[str, Any]) -> str:
        parts = []
        if self.budget is not None and self.budget.tokens:
            parts.append(f"{spent.get('tokens', 0)}/{self.budget.tokens} tokens")
        if self.budget is not None and self.budget.wall_s:
            parts.append(f"{spent.get('wall_s', 0.0):.1f}/{self.budget.wall_s:g} s")
        return ", ".join(parts)


def _text_of(reply: dict[str, Any]) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise HandlerError(
            f"the answer has no choices[0].message.content: {str(reply)[:200]}"
        ) from None
    if not isinstance(content, str):
        raise HandlerError("the answer's content is not text")
    return content


def _verdict_answer(text: str) -> dict[str, Any]:
    """The model's JSON verdict, validated; HandlerError (so: retried) when it is not one."""
    candidate = text.strip()
    if candidate.startswith("```"):  # models like to fence JSON
        candidate = candidate.strip("`").removeprefix("json").strip()
    try:
        answer = json.loads(candidate)
    except ValueError:
        raise HandlerError(f"the model did not answer JSON: {text[:200]!r}") from None
    if not isinstance(answer, dict):
        raise HandlerError(f"the model's answer is not a JSON object: {text[:200]!r}")
    verdict = str(answer.get("verdict", "")).lower()
    if verdict not in {v.value for v in Verdict}:
        raise HandlerError(f"the model's verdict {answer.get('verdict')!r} is not one of "
                           "pass, flag, block, escalate, halt")  # fmt: skip
    answer["verdict"] = verdict
    return answer
