"""How the supervisor starts an agent: its command line, environment and working directory."""

from __future__ import annotations

import os
import sys

from agentctl.backends.file.workspace import Workspace
from agentctl.config.agentspec import HandlerKind
from agentctl.config.roster import Roster
from agentctl.model.constants import ENV_AGENT, ENV_CONFIG, ENV_INBOX, ENV_WORKSPACE
from agentctl.runtime.agentprocess import AgentProcess


def command_of(
    roster: Roster, workspace: Workspace, proc: AgentProcess
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of one worker (or `command:` program) of an agent."""
    spec = proc.spec
    own = {
        ENV_AGENT: spec.name,
        ENV_WORKSPACE: str(workspace.root),
        ENV_INBOX: str(workspace.mailbox(spec.name).path),
        "PYTHONUNBUFFERED": "1",
    }
    if roster.path is not None:
        own[ENV_CONFIG] = str(roster.path)
    if spec.handler_kind is HandlerKind.COMMAND:
        assert spec.command is not None
        own |= roster.settings_env(spec)  # so it needs no YAML parser to honour them
        return list(spec.command), spec.env.build(own, withheld=roster.withheld_env())
    argv = [
        sys.executable,
        "-m",
        "agentctl.runtime.worker",
        "--config",
        str(roster.path),
        "--workspace",
        str(workspace.root),
        "--agent",
        spec.name,
    ]
    if proc.replica:
        argv += ["--replica", str(proc.replica)]
    # A worker is agentctl itself: it needs the LLM keys, and applies exec: agents' policy.
    return argv, {**os.environ, **own}


def cwd_of(roster: Roster) -> str:
    """Where agents run: relative paths in a roster (exec scripts, python modules) mean the
    roster's directory."""
    return str(roster.path.parent) if roster.path is not None else os.getcwd()
