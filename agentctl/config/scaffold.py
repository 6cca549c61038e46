"""`agentctl init`: a starter roster and workspace that run as they are."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agentctl.model.constants import DEFAULT_CONFIG_FILE, DEFAULT_WORKSPACE_DIR
from agentctl.model.errors import ConfigError
from agentctl.protocol.fsutil import ensure_dir

STARTER_ROSTER = """\
# agentctl roster: see docs/ROSTER.md for every key.
workspace: {workspace}        # relative to this file
durability: fsync           # fsync every delivery; `none` for tmpfs and tests
poll_interval_s: 0.5        # rescan inboxes this often even without file events

agents:
  - name: echo
    role: Echoes every task back
    expertise: [testing]
    python: agentctl.agents.echo:EchoAgent
    timeout_s: 30
    max_attempts: 3
    restart: on-failure

  - name: shout
    role: Upper-cases text with a plain program (JSON on stdin, JSON on stdout)
    exec:
      - python3
      - -c
      - import json,sys; print(json.dumps(str(json.load(sys.stdin)["content"]).upper()))
    timeout_s: 10
"""

WORKSPACE_README = """\
# workspace

Created by `agentctl init`. One folder per agent: `inbox/{tmp,new,processing,done,dead}`,
`outbox/`, `status.json`, `agent.log`; the journal of every event is in
`.agentctl/journal/`. See docs/PROTOCOL.md in the agentctl repository.
"""


def init_project(
    directory: Path, *, config: Path | None = None, workspace: Path | None = None
) -> list[Path]:
    """Write a roster and its workspace; refuse to overwrite. Returns the paths written.

    The roster is `config` (default `directory/agents.yaml`); the workspace is `workspace`
    (default `workspace/` beside the roster), recorded in the roster relative to it.
    """
    roster = config if config is not None else directory / DEFAULT_CONFIG_FILE
    if roster.exists():
        raise ConfigError(f"{roster}: already exists; not overwriting it")
    ensure_dir(roster.parent.absolute())
    workspace = workspace if workspace is not None else roster.parent / DEFAULT_WORKSPACE_DIR
    ensure_dir(workspace.absolute())
    relative = os.path.relpath(workspace.absolute(), roster.parent.absolute())
    readme = workspace / "README.md"
    written = [roster]
    with open(roster, "x", encoding="utf-8") as f:
        f.write(STARTER_ROSTER.replace("{workspace}", json.dumps(relative)))
    if not readme.exists():
        readme.write_text(WORKSPACE_README, encoding="utf-8")
        written.append(readme)
    return written
