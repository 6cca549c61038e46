"""agentctl: run a team of agents over a file-based workspace.

The seed article's names, importable from the top:

    from agentctl import AgentMessage, WorkspaceRouter, BaseAgent

Names are loaded on first use, so `import agentctl` stays cheap for the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AgentMessage": "agentctl.model.message",
    "MessageKind": "agentctl.model.message",
    "Priority": "agentctl.model.priority",
    "WorkspaceRouter": "agentctl.flow.router",
    "BaseAgent": "agentctl.model.agent",
    "Workspace": "agentctl.backends.file.workspace",
    "Mailbox": "agentctl.protocol.mailbox",
    "load_roster": "agentctl.config.roster",
    "AgentctlError": "agentctl.model.errors",
    "NonRetryableError": "agentctl.model.errors",
    "Verdict": "agentctl.model.verdict",
    "ResilientOrchestrator": "agentctl.runtime.orchestrator",
    "TaskRouter": "agentctl.flow.routing",
    "Pipeline": "agentctl.flow.pipeline",
    "MessageBusRouter": "agentctl.backends.nats.bus",
}

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace
    from agentctl.backends.nats.bus import MessageBusRouter
    from agentctl.config.roster import load_roster
    from agentctl.flow.pipeline import Pipeline
    from agentctl.flow.router import WorkspaceRouter
    from agentctl.flow.routing import TaskRouter
    from agentctl.model.agent import BaseAgent
    from agentctl.model.errors import AgentctlError, NonRetryableError
    from agentctl.model.message import AgentMessage, MessageKind
    from agentctl.model.priority import Priority
    from agentctl.model.verdict import Verdict
    from agentctl.protocol.mailbox import Mailbox
    from agentctl.runtime.orchestrator import ResilientOrchestrator

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
