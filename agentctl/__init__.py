"""agentctl: run a team of agents over a file-based workspace.

The seed article's names, importable from the top:

    from agentctl import AgentMessage, WorkspaceRouter, BaseAgent

Names are loaded on first use, so `import agentctl` stays cheap for the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AgentMessage": "agentctl.message",
    "MessageKind": "agentctl.message",
    "Priority": "agentctl.priority",
    "WorkspaceRouter": "agentctl.router",
    "BaseAgent": "agentctl.agent",
    "Workspace": "agentctl.workspace",
    "Mailbox": "agentctl.mailbox",
    "load_roster": "agentctl.roster",
    "AgentctlError": "agentctl.errors",
    "NonRetryableError": "agentctl.errors",
    "Verdict": "agentctl.verdict",
    "ResilientOrchestrator": "agentctl.orchestrator",
    "TaskRouter": "agentctl.routing",
    "Pipeline": "agentctl.pipeline",
    "MessageBusRouter": "agentctl.bus",
}

if TYPE_CHECKING:
    from agentctl.agent import BaseAgent
    from agentctl.bus import MessageBusRouter
    from agentctl.errors import AgentctlError, NonRetryableError
    from agentctl.mailbox import Mailbox
    from agentctl.message import AgentMessage, MessageKind
    from agentctl.orchestrator import ResilientOrchestrator
    from agentctl.pipeline import Pipeline
    from agentctl.priority import Priority
    from agentctl.roster import load_roster
    from agentctl.router import WorkspaceRouter
    from agentctl.routing import TaskRouter
    from agentctl.verdict import Verdict
    from agentctl.workspace import Workspace

__all__ = [
    "AgentMessage",
    "AgentctlError",
    "BaseAgent",
    "Mailbox",
    "MessageBusRouter",
    "MessageKind",
    "NonRetryableError",
    "Pipeline",
    "Priority",
    "ResilientOrchestrator",
    "TaskRouter",
    "Verdict",
    "Workspace",
    "WorkspaceRouter",
    "load_roster",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentctl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
