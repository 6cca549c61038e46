"""One agent of the roster: its handler, limits, retry and restart policies (`AgentSpec`)."""

from __future__ import annotations

import os
import re
import shlex
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentctl.config.envpolicy import EnvPolicy
from agentctl.config.mcpspec import McpServerSpec, check_server_names
from agentctl.model.constants import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_TOOL_CALLS,
    DEFAULT_RETRY_BACKOFF_S,
    DEFAULT_RETRY_FACTOR,
    DEFAULT_RETRY_MAX_S,
    DEFAULT_TIMEOUT_S,
    MAX_TOOL_CALLS_LIMIT,
    RESERVED_AGENT_NAMES,
    RESTART_BACKOFF_FACTOR,
    RESTART_BACKOFF_INITIAL_S,
    RESTART_BACKOFF_MAX_S,
    RESTART_COOLDOWN_MAX_S,
    RESTART_COOLDOWN_S,
    RESTART_MAX_QUICK_FAILURES,
    RESTART_STABLE_S,
)
from agentctl.model.names import validate_agent_name

# The validation context under which a spec may take a reserved name: agentctl's own agents.
OWN_AGENT_CONTEXT = "agentctl_own"


class RestartPolicy(StrEnum):
    """When the supervisor restarts an agent whose process exited."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class HandlerKind(StrEnum):
    """How an agent's work is done."""

    PYTHON = "python"  # a BaseAgent subclass, run by agentctl's worker
    EXEC = "exec"  # a program run once per message: JSON on stdin, JSON on stdout
    COMMAND = "command"  # a long-running program that speaks the file protocol itself
    LLM = "llm"  # an OpenAI-compatible chat-completions endpoint


def _argv(value: Any) -> Any:
    # A string is split like a shell would split words, but no shell ever runs it.
    if isinstance(value, str):
        return shlex.split(value)
    return value


class RetryPolicy(BaseModel):
    """Delays between a failed attempt and the next: backoff_s, then x factor, up to max_s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_s: float = Field(default=DEFAULT_RETRY_BACKOFF_S, ge=0)
    factor: float = Field(default=DEFAULT_RETRY_FACTOR, ge=1)
    max_s: float = Field(default=DEFAULT_RETRY_MAX_S, ge=0)

    def delay_s(self, attempt: int) -> float:
        """How long to wait after failed attempt number `attempt` (1-based)."""
        return min(self.backoff_s * self.factor ** (attempt - 1), self.max_s)


class RestartBackoff(BaseModel):
    """How `agentctl run` restarts a crashed agent, and when it gives up (`fatal`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_s: float = Field(default=RESTART_BACKOFF_INITIAL_S, ge=0)
    factor: float = Field(default=RESTART_BACKOFF_FACTOR, ge=1)
    max_s: float = Field(default=RESTART_BACKOFF_MAX_S, ge=0)
    stable_s: float = Field(default=RESTART_STABLE_S, gt=0)
    max_quick_failures: int = Field(default=RESTART_MAX_QUICK_FAILURES, ge=1)
    # A fatal agent is tried again after this long (null: it waits for `agentctl restart`).
    cooldown_s: float | None = Field(default=RESTART_COOLDOWN_S, gt=0)
    cooldown_max_s: float = Field(default=RESTART_COOLDOWN_MAX_S, gt=0)

    def cooldown_after_s(self, times_fatal: int) -> float | None:
        """How long an agent that turned fatal `times_fatal` times in a row (1-based) stays
        down before its next try: cooldown_s, times factor each time, at most cooldown_max_s."""
        if self.cooldown_s is None:
            return None
        exponent = min(times_fatal - 1, 64)  # a float power overflows after ~1,000 doublings
        return min(self.cooldown_s * self.factor**exponent, self.cooldown_max_s)


ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class Budget(BaseModel):
    """Tokens and wall time an LLM agent, or a pipeline run, may spend: FLAG at 80 %, HALT at
    100 %."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(default=None, gt=0)
    wall_s: float | None = Field(default=None, gt=0)

    def share(self, tokens: int, wall_s: float) -> float:
        """How much of the budget is used: the larger of its shares (0 when neither is set)."""
        shares = [0.0]
        if self.tokens:
            shares.append(tokens / self.tokens)
        if self.wall_s:
            shares.append(wall_s / self.wall_s)
        return max(shares)


class LlmSpec(BaseModel):
    """An `llm:` handler: any OpenAI-compatible chat-completions endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    # A URL, or `${ENV_VAR}`: the agent is disabled while that variable is unset.
    base_url: str = Field(min_length=1)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int = Field(default=1024, gt=0)
    system_prompt: str | None = None
    verdict: bool = False  # ask for, and validate, a JSON answer with a verdict
    # MCP servers whose tools the model may call (mcpspec.py), and how many calls an attempt
    # may make before it fails.
    mcp_servers: dict[str, McpServerSpec] = Field(default_factory=dict)
    max_tool_calls: int = Field(default=DEFAULT_MAX_TOOL_CALLS, ge=1, le=MAX_TOOL_CALLS_LIMIT)

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, servers: dict[str, McpServerSpec]) -> dict[str, McpServerSpec]:
        check_server_names(servers)
        return servers

    @model_validator(mode="after")
    def _tools_need_servers(self) -> LlmSpec:
        if "max_tool_calls" in self.model_fields_set and not self.mcp_servers:
            raise ValueError("max_tool_calls limits the calls to mcp_servers' tools; none given")
        return self

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _not_a_key(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 40 and not value.isupper():
            raise ValueError("give the NAME of an environment variable, never the key itself")
        return value

    def resolved_base_url(self) -> str | None:
        """The endpoint, with `${VAR}` read from the environment (None while it is unset)."""
        match = ENV_REF.fullmatch(self.base_url)
        if match is None:
            return self.base_url
        return os.environ.get(match.group(1)) or None

    def disabled_because(self) -> str | None:
        """Why the agent cannot run here, if it cannot."""
        match = ENV_REF.fullmatch(self.base_url)
        if match is not None and not os.environ.get(match.group(1)):
            return f"disabled: {match.group(1)} is not set (the endpoint's base URL)"
        for name, server in self.mcp_servers.items():
            for header, variable in server.env_refs():
                if not os.environ.get(variable):
                    return (f"disabled: {variable} is not set (the {header} header of "
                            f"MCP server {name!r})")  # fmt: skip
        return None

    def stdio_servers(self) -> bool:
        """Whether the agent starts MCP servers of its own (they get its `env:`)."""
        return any(server.command is not None for server in self.mcp_servers.values())


class AgentSpec(BaseModel):
    """One agent of the roster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: str = ""
    expertise: list[str] = Field(default_factory=list)
    python: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    exec: list[str] | None = Field(default=None, min_length=1)
    command: list[str] | None = Field(default=None, min_length=1)
    # The environment of an exec: or command: agent's program, or of an llm: agent's stdio MCP
    # servers (envpolicy.py).
    env: EnvPolicy = Field(default_factory=EnvPolicy)
    llm: LlmSpec | None = None
    budget: Budget | None = None  # for `llm:` agents
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1)
    # Workers sharing the agent's messages (NATS: they share its durable consumer).
    replicas: int = Field(default=1, ge=1, le=64)
    # Keyword arguments for a `python:` agent's constructor (e.g. a complexity limit).
    options: dict[str, Any] = Field(default_factory=dict)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    restart_backoff: RestartBackoff = Field(default_factory=RestartBackoff)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str, info: ValidationInfo) -> str:
        validate_agent_name(value)
        # Only agentctl's own agents (the conductor) may take a reserved name.
        if value in RESERVED_AGENT_NAMES and not (info.context or {}).get(OWN_AGENT_CONTEXT):
            raise ValueError(f"{value!r} is reserved for agentctl's own use")
        return value

    @field_validator("exec", "command", mode="before")
    @classmethod
    def _split_strings(cls, value: Any) -> Any:
        return _argv(value)

    @model_validator(mode="after")
    def _one_handler(self) -> AgentSpec:
        given = [kind.value for kind in HandlerKind if getattr(self, kind.value) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of python, exec, command, llm (found: {found})")
        if self.budget is not None and self.llm is None:
            raise ValueError("budget: is for llm: agents (pipelines have their own)")
        if self.options and self.python is None:
            raise ValueError("options are given to a python: agent's constructor; this is not one")
        starts_programs = (
            self.exec is not None
            or self.command is not None
            or (self.llm is not None and self.llm.stdio_servers())
        )
        if "env" in self.model_fields_set and not starts_programs:
            raise ValueError(
                "env: is for exec: and command: agents, and llm: agents with a command in "
                "mcp_servers (their programs' environment)"
            )
        return self

    @property
    def handler_kind(self) -> HandlerKind:
        """Which of python / exec / command this agent uses."""
        for kind in HandlerKind:
            if getattr(self, kind.value) is not None:
                return kind
        raise AssertionError("validated to have one handler")
