"""The roster (agents.yaml) as validated, immutable settings; errors name file, line, field."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from agentctl.config.agentspec import (
    ENV_REF,
    OWN_AGENT_CONTEXT,
    AgentSpec,
    Budget,
    RestartPolicy,
)
from agentctl.config.envpolicy import LLM_KEY_ENV
from agentctl.config.rosterfile import RosterSource, read_roster_file, workspace_of
from agentctl.model.constants import (
    CONDUCTOR_CLASS,
    DEFAULT_ESCALATION_OVERDUE_S,
    DEFAULT_JOURNAL_MAX_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_STUCK_AFTER_S,
    DEFAULT_WORKSPACE_DIR,
    HEARTBEAT_INTERVAL_S,
    PIPELINE_AGENT,
)
from agentctl.model.errors import ConfigError
from agentctl.model.names import validate_agent_name


class Durability(StrEnum):
    """Whether deliveries are fsynced (file and directory) before they count as sent."""

    FSYNC = "fsync"
    NONE = "none"


Stage = str | list[str]


class TransportKind(StrEnum):
    """How messages move: files in the workspace, or a NATS JetStream cluster."""

    FILE = "file"
    NATS = "nats"


class TransportSpec(BaseModel):
    """`transport:` in the roster. `{kind: nats, servers: [nats://host:4222]}` moves every
    agent, pipeline and command onto NATS JetStream (docs/NATS.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TransportKind = TransportKind.FILE
    # nats:// URLs, or `${ENV_VAR}` (credentials in a URL belong in the environment).
    servers: list[str] = Field(default_factory=list)
    stream: str = Field(default="AGENTCTL", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Copies of the stream and the status bucket kept by the cluster (1 on a single server).
    replicas: int = Field(default=1, ge=1, le=5)

    @model_validator(mode="after")
    def _servers_for_nats(self) -> TransportSpec:
        if self.kind is TransportKind.NATS and not self.servers:
            raise ValueError("kind: nats needs servers: [nats://HOST:4222, ...]")
        if self.kind is TransportKind.FILE and self.servers:
            raise ValueError("servers: are for kind: nats")
        return self

    def describe(self) -> str | None:
        """Where messages travel, for people; None on files (the workspace says it)."""
        if self.kind is TransportKind.FILE:
            return None
        servers = ", ".join(self.servers)
        where = f"{servers}; stream {self.stream}, replicas {self.replicas}"
        return f"transport {self.kind.value} ({where})"

    def resolved_servers(self) -> list[str]:
        """The server URLs, `${VAR}` read from the environment; ConfigError if one is unset."""
        urls = []
        for server in self.servers:
            match = ENV_REF.fullmatch(server)
            if match is None:
                urls.append(server)
                continue
            value = os.environ.get(match.group(1))
            if not value:
                raise ConfigError(f"transport.servers: {match.group(1)} is not set")
            urls.extend(url.strip() for url in value.split(",") if url.strip())
        return urls


class PipelineSpec(BaseModel):
    """A pipeline in its long form: stages, and an agent that runs once the outcome is known."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    stages: list[Stage] = Field(min_length=1)
    final: str | None = Field(default=None, alias="finally")
    budget: Budget | None = None  # tokens and wall time a run may spend


class Roster(BaseModel):
    """The whole roster: workspace settings and agents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: str = DEFAULT_WORKSPACE_DIR
    durability: Durability = Durability.FSYNC
    poll_interval_s: float = Field(default=DEFAULT_POLL_INTERVAL_S, gt=0, le=60)
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    journal_max_bytes: int = Field(default=DEFAULT_JOURNAL_MAX_BYTES, ge=4096)
    stuck_after_s: float = Field(default=DEFAULT_STUCK_AFTER_S, ge=2 * HEARTBEAT_INTERVAL_S)
    escalation_overdue_s: float = Field(default=DEFAULT_ESCALATION_OVERDUE_S, gt=0)
    transport: TransportSpec = Field(default_factory=TransportSpec)
    agents: list[AgentSpec] = Field(min_length=1)
    # name -> stages (a stage is an agent, or a list of agents that run in parallel), or
    # {stages: [...], finally: agent}.
    pipelines: dict[str, list[Stage] | PipelineSpec] = Field(default_factory=dict)

    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_names(self) -> Roster:
        seen: set[str] = set()
        for agent in self.agents:
            if agent.name in seen:
                raise ValueError(f"agent name {agent.name!r} is used twice")
            seen.add(agent.name)
        return self

    @model_validator(mode="after")
    def _fits_the_transport(self) -> Roster:
        if self.transport.kind is TransportKind.NATS:
            for agent in self.agents:
                if agent.command is not None:
                    raise ValueError(
                        f"agent {agent.name!r}: a command: agent speaks the file protocol, "
                        "which transport nats does not use; make it an exec: or python: agent"
                    )
            return self
        for agent in self.agents:
            if agent.replicas > 1:
                raise ValueError(
                    f"agent {agent.name!r}: replicas: {agent.replicas} needs transport: "
                    "{kind: nats} (on files, one worker owns an agent's inbox)"
                )
        return self

    @model_validator(mode="after")
    def _pipelines_name_agents(self) -> Roster:
        for name, definition in self.pipelines.items():
            raw = (
                definition.model_dump(by_alias=True)
                if isinstance(definition, PipelineSpec)
                else definition
            )
            problems = pipeline_problems(name, raw, self.names)
            if problems:
                raise ValueError(problems[0][1])
        return self

    def stages(self, pipeline: str) -> list[list[str]]:
        """The stages of a pipeline, each a list of agents; ConfigError if there is none."""
        if pipeline not in self.pipelines:
            known = ", ".join(self.pipelines) or "none"
            raise ConfigError(
                f"{self._path or 'the roster'}: no pipeline named {pipeline!r} (pipelines: {known})"
            )
        definition = self.pipelines[pipeline]
        stages = definition.stages if isinstance(definition, PipelineSpec) else definition
        return [[s] if isinstance(s, str) else list(s) for s in stages]

    def budget(self, pipeline: str) -> Budget | None:
        """A pipeline's per-run budget, if it has one."""
        definition = self.pipelines.get(pipeline)
        return definition.budget if isinstance(definition, PipelineSpec) else None

    def disabled_agents(self) -> dict[str, str]:
        """Agents that cannot run in this environment, and why (an LLM endpoint not set)."""
        return {
            agent.name: reason
            for agent in self.agents
            if agent.llm is not None and (reason := agent.llm.disabled_because())
        }

    def withheld_env(self) -> frozenset[str]:
        """agentctl's LLM keys and the MCP servers' header variables: no agent's program gets
        them unless its `env: pass:` lists them."""
        names = {LLM_KEY_ENV}
        for agent in self.agents:
            if agent.llm is not None:
                if agent.llm.api_key_env:
                    names.add(agent.llm.api_key_env)
                for server in agent.llm.mcp_servers.values():
                    names.update(variable for _, variable in server.env_refs())
        return frozenset(names)

    def settings_env(self, spec: AgentSpec) -> dict[str, str]:
        """The roster settings a `command:` agent must honour, as environment variables, so a
        program in any language needs no YAML parser to read them."""
        return {
            "AGENTCTL_DURABILITY": self.durability.value,
            "AGENTCTL_MAX_MESSAGE_BYTES": str(self.max_message_bytes),
            "AGENTCTL_POLL_INTERVAL_S": _number(self.poll_interval_s),
            "AGENTCTL_MAX_ATTEMPTS": str(spec.max_attempts),
            "AGENTCTL_TIMEOUT_S": _number(spec.timeout_s),
        }

    def final_agent(self, pipeline: str) -> str | None:
        """The agent of a pipeline's `finally` stage, if it has one."""
        definition = self.pipelines.get(pipeline)
        return definition.final if isinstance(definition, PipelineSpec) else None

    def conductor_spec(self) -> AgentSpec:
        """The conductor of pipeline runs, run by `agentctl run` like an agent."""
        return AgentSpec.model_validate(
            {
                "name": PIPELINE_AGENT,
                "role": "Conducts pipeline runs: dispatches stages, joins verdicts, escalates",
                "python": CONDUCTOR_CLASS,
                "restart": RestartPolicy.ALWAYS,
            },
            context={OWN_AGENT_CONTEXT: True},  # the one agent that may be named `pipeline`
        )

    @property
    def path(self) -> Path | None:
        """The file this roster was loaded from."""
        return self._path

    @property
    def workspace_path(self) -> Path:
        """The workspace directory, relative to the roster file's directory."""
        base = self._path if self._path is not None else Path.cwd() / "agents.yaml"
        return workspace_of(base, self.workspace)

    @property
    def names(self) -> list[str]:
        """Agent names in roster order."""
        return [agent.name for agent in self.agents]

    def agent(self, name: str) -> AgentSpec:
        """The spec of agent `name`; ConfigError naming the known agents if there is none."""
        for agent in self.agents:
            if agent.name == name:
                return agent
        if name == PIPELINE_AGENT and self.pipelines:
            return self.conductor_spec()
        where = self._path or "the roster"
        known = ", ".join(self.names)
        raise ConfigError(f"{where}: no agent named {name!r} (agents: {known})")


def pipeline_problems(
    name: str, definition: Any, agent_names: list[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with one pipeline's definition: (where in it, the problem) pairs."""
    from agentctl.model.errors import InvalidNameError

    problems: list[tuple[tuple[str | int, ...], str]] = []
    try:
        validate_agent_name(name)
    except InvalidNameError as exc:
        problems.append(((), f"pipeline name: {exc}"))
    stages_at: tuple[str | int, ...] = ("stages",) if isinstance(definition, dict) else ()
    stages = definition.get("stages") if isinstance(definition, dict) else definition
    if not isinstance(stages, list) or not stages:
        return [*problems, (stages_at, f"pipeline {name!r} has no stages")]
    final = definition.get("finally") if isinstance(definition, dict) else None
    if final is not None and final not in agent_names:
        problems.append((("finally",), f"pipeline {name!r}: finally: no agent named {final!r}"))
    for index, stage in enumerate(stages):
        agents = [stage] if isinstance(stage, str) else stage
        where = (*stages_at, index)
        if not isinstance(agents, list) or not agents:
            problems.append((where, f"pipeline {name!r}: stage {index} is an empty list"))
            continue
        for agent in agents:
            if agent not in agent_names:
                known = ", ".join(agent_names)
                problem = f"pipeline {name!r}: stage {index}: no agent named {agent!r} ({known})"
                problems.append((where, problem))
        if len(set(map(str, agents))) != len(agents):
            problems.append((where, f"pipeline {name!r}: stage {index} names an agent twice"))
    return problems


def load_roster(path: Path) -> Roster:
    """Load and validate a roster file; ConfigError names the file, line and field."""
    source = read_roster_file(path)
    return validate_roster(source)


def validate_roster(source: RosterSource) -> Roster:
    """Validate parsed roster data; errors carry `file:line: field: problem`."""
    if not isinstance(source.data, dict):
        raise ConfigError(f"{source.path}:1: the roster must be a mapping with an `agents:` list")
    _check_unique_names(source)
    _check_pipelines(source)
    try:
        roster = Roster.model_validate(source.data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    roster._path = source.path.absolute()
    return roster


def _check_unique_names(source: RosterSource) -> None:
    # Checked here as well as in the model so the error points at the second name's line.
    agents = source.data.get("agents")
    if not isinstance(agents, list):
        return
    first_index: dict[str, int] = {}
    for index, agent in enumerate(agents):
        name = agent.get("name") if isinstance(agent, dict) else None
        if not isinstance(name, str):
            continue
        if name in first_index:
            line = source.line_of(("agents", index, "name"))
            raise ConfigError(
                f"{source.path}:{line}: agents[{index}].name: {name!r} is already the name of "
                f"agents[{first_index[name]}]"
            )
        first_index[name] = index


def _check_pipelines(source: RosterSource) -> None:
    # Checked here as well as in the model so the error points at the stage's own line.
    pipelines = source.data.get("pipelines")
    agents = source.data.get("agents")
    if not isinstance(pipelines, dict) or not isinstance(agents, list):
        return
    names = [
        str(a["name"]) for a in agents if isinstance(a, dict) and isinstance(a.get("name"), str)
    ]
    for name, definition in pipelines.items():
        for where, problem in pipeline_problems(str(name), definition, names):
            loc = ("pipelines", name, *where)
            line = source.line_of(loc) or source.line_of(("pipelines", name))
            field = "pipelines." + ".".join(str(part) for part in (name, *where))
            raise ConfigError(f"{source.path}:{line}: {field}: {problem}")


def _describe(exc: ValidationError, source: RosterSource) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = source.line_of(loc)
        where = f"{source.path}:{line}" if line else str(source.path)
        field = (_field_path(loc) or "(roster)") + _agent_named(loc, source.data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see docs/ROSTER.md)"
        problems.append(f"{where}: {field}: {msg}")
    # One line per problem; the first is what a person fixes first.
    return "\n".join(problems)


def _agent_named(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    # `agents[3]` alone makes a reader count; the name says at once which agent is wrong.
    if len(loc) < 2 or loc[0] != "agents" or not isinstance(loc[1], int) or loc[2:3] == ("name",):
        return ""
    agent = data["agents"][loc[1]]
    name = agent.get("name") if isinstance(agent, dict) else None
    return f" (agent {name!r})" if isinstance(name, str) else ""


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _number(value: float) -> str:
    """`300` rather than `300.0`: what a shell's arithmetic and `sleep` accept."""
    return str(int(value)) if float(value).is_integer() else str(value)
