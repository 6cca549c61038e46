"""Checks `agentctl validate` makes beyond the schema: can each handler actually start?"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from agentctl.config.agentspec import AgentSpec, HandlerKind
from agentctl.config.roster import Roster
from agentctl.model.agent import BaseAgent
from agentctl.model.constants import MCP_EXTRA_HINT
from agentctl.model.errors import ConfigError


def check_handlers(roster: Roster) -> list[str]:
    """Raise ConfigError (one line per problem) if a python class cannot be imported or an
    exec/command program cannot be found; return warnings, one line per agent."""
    from agentctl.flow.agentclass import allow_imports_from

    allow_imports_from(roster)
    problems = []
    warnings = []
    base = roster.path.parent if roster.path else None
    for agent in roster.agents:
        kind = agent.handler_kind
        if kind is HandlerKind.PYTHON:
            from agentctl.flow.agentclass import construct_agent

            try:
                if (warning := _values_lost(agent, construct_agent(agent))) is not None:
                    warnings.append(warning)
            except ConfigError as exc:
                problems.append(f"{roster.path}: {exc}")
            except Exception as exc:  # the agent's own constructor failed
                problems.append(
                    f"{roster.path}: agent {agent.name!r}: {agent.python}() raised "
                    f"{type(exc).__name__}: {exc}"
                )
            except SystemExit as exc:  # a constructor calling sys.exit() must not end validate
                problems.append(
                    f"{roster.path}: agent {agent.name!r}: {agent.python}() called "
                    f"sys.exit({exc.code!r})"
                )
        elif kind is HandlerKind.LLM:
            assert agent.llm is not None
            url = agent.llm.resolved_base_url()
            if url is not None and not url.startswith(("http://", "https://")):
                problems.append(
                    f"{roster.path}: agent {agent.name!r}: llm base_url {url!r} is not an "
                    "http:// or https:// URL"
                )
            if agent.llm.mcp_servers and importlib.util.find_spec("mcp") is None:
                problems.append(
                    f"{roster.path}: agent {agent.name!r}: mcp_servers need the MCP SDK: "
                    f"{MCP_EXTRA_HINT}"
                )
            for name, server in agent.llm.mcp_servers.items():
                if server.command is not None and _not_found(server.command[0], base):
                    problems.append(
                        f"{roster.path}: agent {agent.name!r}: MCP server {name!r}: program "
                        f"{server.command[0]!r} not found"
                    )
        else:
            argv = agent.exec if kind is HandlerKind.EXEC else agent.command
            assert argv is not None
            if _not_found(argv[0], base):
                problems.append(
                    f"{roster.path}: agent {agent.name!r}: {kind.value} program "
                    f"{argv[0]!r} not found"
                )
    if problems:
        raise ConfigError("\n".join(problems))
    return warnings


def _not_found(program: str, base: Path | None) -> bool:
    """Whether `program` is neither on PATH nor (a path) relative to the roster's directory."""
    local = base / program if base is not None and os.sep in program else None
    return shutil.which(program) is None and not (local is not None and local.is_file())


def _values_lost(spec: AgentSpec, agent: BaseAgent) -> str | None:
    """What a class sets that the roster replaces (the seed's classes name themselves): said,
    since routing and `route` then go by the roster alone."""
    lost, used = [], []
    if agent.name != spec.name:
        lost.append(f"name {agent.name!r}")
        used.append(f"name {spec.name!r}")
    # The class's expertise survives only where the roster gives none and the class scores
    # tasks with its own can_handle (which reads it); default scoring reads the roster's.
    own_scoring = type(agent).can_handle is not BaseAgent.can_handle
    if list(agent.expertise) != list(spec.expertise) and (spec.expertise or not own_scoring):
        lost.append(f"expertise {list(agent.expertise)!r}")
        used.append(f"expertise {list(spec.expertise)!r}")
    if not lost:
        return None
    return (
        f"agent {spec.name!r}: {spec.python} sets {', '.join(lost)}; "
        f"the roster's win: {', '.join(used)} (routing uses these)"
    )
