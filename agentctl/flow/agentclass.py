"""A roster's `python:` agents as classes: imported from beside the roster and constructed.

Below the runtime because routing scores with a class's own `can_handle` too (docs/ROSTER.md).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from agentctl.config.agentspec import AgentSpec
from agentctl.config.roster import Roster
from agentctl.model.agent import BaseAgent
from agentctl.model.errors import ConfigError


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
