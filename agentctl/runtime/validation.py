"""Checks `agentctl validate` makes beyond the schema: can each handler actually start?"""

from __future__ import annotations

import os
import shutil

from agentctl.config.agentspec import HandlerKind
from agentctl.config.roster import Roster
from agentctl.model.errors import ConfigError


def check_handlers(roster: Roster) -> None:
    """Raise ConfigError (one line per problem) if a python class cannot be imported or an
    exec/command program cannot be found."""
    from agentctl.runtime.handlers.python import allow_imports_from

    allow_imports_from(roster)
    problems = []
    base = roster.path.parent if roster.path else None
    for agent in roster.agents:
        kind = agent.handler_kind
        if kind is HandlerKind.PYTHON:
            from agentctl.runtime.handlers.python import load_agent

            try:
                load_agent(agent)
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
        else:
            argv = agent.exec if kind is HandlerKind.EXEC else agent.command
            assert argv is not None
            program = argv[0]
            local = base / program if base is not None and os.sep in program else None
            if shutil.which(program) is None and not (local is not None and local.is_file()):
                problems.append(
                    f"{roster.path}: agent {agent.name!r}: {kind.value} program "
                    f"{program!r} not found"
                )
    if problems:
        raise ConfigError("\n".join(problems))
