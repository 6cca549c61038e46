"""`llm:`: an agent answered by any OpenAI-compatible chat-completions endpoint (Ollama, vLLM,
llama.cpp's server, hosted APIs), over plain HTTP with the standard library.

The system prompt is built from the agent's role and expertise unless one is given; the user
message holds the task and, in a pipeline, the earlier stages' results. An agent asked for a
verdict (`verdict: true`, or any pipeline stage) must answer a JSON object with a valid
`verdict`; an answer that does not parse fails the attempt, so it is retried, then escalated.

The response's token usage (and cost, when the server reports one) goes into the result, so
the worker journals it. A `budget:` (tokens, wall time) is kept in `<agent>/budget.json`: at
80 % used the result is flagged, at 100 % the agent answers HALT without calling the model.

An agent with `mcp_servers:` offers their tools to the model and runs the calls it makes
(toolloop.py, mcptools.py); each round's tokens are charged as it comes.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.config.agentspec import AgentSpec
from agentctl.config.envpolicy import LLM_KEY_ENV
from agentctl.model.clock import SYSTEM_CLOCK, Clock
from agentctl.model.constants import ENV_AGENT, STAGE_HEADER
from agentctl.model.errors import HandlerError, HandlerTimeoutError, NonRetryableError
from agentctl.model.task import context_of, task_of
from agentctl.model.verdict import Verdict
from agentctl.protocol.fsutil import write_atomic

if TYPE_CHECKING:
    from pydantic import JsonValue

    from agentctl.model.message import AgentMessage

FLAG_AT = 0.8  # share of a budget that flags the result
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost")  # kept, summed
VERDICT_INSTRUCTIONS = (
    "Answer with one JSON object only, no prose around it: "
    '{"verdict": "pass" | "flag" | "block" | "escalate" | "halt", "reason": "<one sentence>", '
    '"findings": [<strings>]}.'
)


class LlmHandler:
    """Calls the endpoint once per attempt (once per round of tool calls, with MCP servers).

    `record` (Transport.record) journals its tool calls; `withheld_env` are the variables its
    stdio MCP servers get only if its `env:` lists them.
    """

    def __init__(
        self,
        spec: AgentSpec,
        *,
        state_dir: Path,
        clock: Clock = SYSTEM_CLOCK,
        record: Callable[..., None] | None = None,
        withheld_env: Collection[str] = (LLM_KEY_ENV,),
    ) -> None:
        assert spec.llm is not None
        self.spec = spec
        self.clock = clock  # the wall-time budget is read on it
        self.llm = spec.llm
        self.budget = spec.budget
        self.budget_path = state_dir / "budget.json"
        self.api_key = os.environ.get(self.llm.api_key_env, "") if self.llm.api_key_env else ""
        self.record = record
        self.env = spec.env.build({ENV_AGENT: spec.name}, withheld=withheld_env)

    def handle(self, message: AgentMessage, *, timeout_s: float) -> JsonValue:
        """Ask the model about one message."""
        base_url = self.llm.resolved_base_url()
        if base_url is None:
            raise NonRetryableError(self.llm.disabled_because() or "no base URL")
        spent = self._spent()
        if self._share(spent) >= 1.0:
            return self._halt(f"budget exhausted ({self._describe(spent)})")
        wants_verdict = self.llm.verdict or STAGE_HEADER in message.headers
        messages = self._messages(message, wants_verdict)
        started = self.clock.monotonic()

        def ask(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                timeout_s: float) -> dict[str, Any]:  # fmt: skip
            reply = self._complete(base_url, messages, tools, timeout_s)
            # Charged at once: a round is paid for even if the attempt fails later.
            tokens = add_usage({}, reply).get("total_tokens", 0)
            spent["tokens"] = spent.get("tokens", 0) + int(tokens)
            self._save(spent)
            return reply

        def over_budget() -> bool:
            wall_s = spent.get("wall_s", 0.0) + (self.clock.monotonic() - started)
            return self._share({**spent, "wall_s": wall_s}) >= 1.0

        tool_calls = 0
        try:
            if self.llm.mcp_servers:
                from agentctl.runtime.handlers.toolloop import ask_with_tools

                outcome = ask_with_tools(
                    self.spec, message, messages, ask=ask, over_budget=over_budget,
                    record=self.record, env=self.env, timeout_s=timeout_s, clock=self.clock,
                )  # fmt: skip
                reply, usage, tool_calls = outcome.reply, outcome.usage, outcome.tool_calls
            else:
                reply = ask(messages, None, timeout_s)
                usage = add_usage({}, reply)
        finally:
            spent["wall_s"] = spent.get("wall_s", 0.0) + (self.clock.monotonic() - started)
            self._save(spent)
        if reply is None:  # the budget ran out between two rounds of tool calls
            halt = self._halt(f"budget exhausted after {tool_calls} tool call(s) "
                              f"({self._describe(spent)})")  # fmt: skip
            return {**halt, "tool_calls": tool_calls, "usage": usage}
        text = _text_of(reply)
        model = reply.get("model", self.llm.model)
        result: dict[str, Any] = {"agent": self.spec.name, "model": model}
        if wants_verdict:
            result.update(_verdict_answer(text))
        else:
            result["answer"] = text
        result["usage"] = usage
        if self.llm.mcp_servers:
            result["tool_calls"] = tool_calls
        share = self._share(spent)
        current = Verdict(result.get("verdict", "pass"))
        if share >= FLAG_AT and current.severity < Verdict.FLAG.severity:
            result["verdict"] = Verdict.FLAG.value
            result["reason"] = f"budget {share:.0%} used ({self._describe(spent)})"
        return result

    def close(self) -> None:
        """Nothing to release: MCP servers live for one attempt."""

    def _halt(self, reason: str) -> dict[str, Any]:
        return {"agent": self.spec.name, "verdict": Verdict.HALT.value, "reason": reason}

    # -- the request -----------------------------------------------------------------------

    def _messages(self, message: AgentMessage, wants_verdict: bool) -> list[dict[str, Any]]:
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
        self,
        base_url: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        timeout_s: float,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.llm.model,
            "messages": messages,
            "temperature": self.llm.temperature,
            "max_tokens": self.llm.max_tokens,
        }
        if tools:
            body["tools"] = tools
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


def add_usage(total: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """`total` with the numbers of the reply's usage (USAGE_KEYS) added to it."""
    usage = reply.get("usage")
    for key in USAGE_KEYS:
        value = usage.get(key) if isinstance(usage, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
    return total


def message_of(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply's choices[0].message; HandlerError (so: retried) when it has none."""
    try:
        said = reply["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        said = None
    if not isinstance(said, dict):
        raise HandlerError(f"the answer has no choices[0].message: {str(reply)[:200]}")
    return said


def _text_of(reply: dict[str, Any]) -> str:
    content = message_of(reply).get("content")
    if content is None:
        raise HandlerError(f"the answer has no choices[0].message.content: {str(reply)[:200]}")
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
