"""Reading agents.yaml: the only module that imports yaml.

`read_roster_file` gives the parsed data plus the line of every key, so validation errors can
name the line. `peek_roster` reads just the workspace path and agent names without pydantic,
for commands that must start fast (`status`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agentctl.constants import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_ESCALATION_OVERDUE_S,
    DEFAULT_WORKSPACE_DIR,
)
from agentctl.errors import ConfigError
from agentctl.names import validate_agent_name

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class RosterSource:
    """The parsed YAML of a roster and the 1-based line of each key or list item."""

    path: Path
    data: Any
    lines: dict[Location, int]

    def line_of(self, loc: Location) -> int | None:
        """The line of `loc`, or of its nearest parent that has one."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)


def read_roster_file(path: Path) -> RosterSource:
    """Parse a roster with `yaml.safe_load` (never the unsafe loader) and index its lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such roster file (create one with `agentctl init`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # for line numbers (~1 ms)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    lines: dict[Location, int] = {}
    if root is not None:
        duplicate = _index_lines(root, (), lines)
        if duplicate is not None:
            key, line = duplicate
            # YAML keeps the last of two equal keys silently; a roster must not lose a list.
            raise ConfigError(f"{path}:{line}: duplicate key {key!r}")
    return RosterSource(path=path, data=data, lines=lines)


def _index_lines(
    node: yaml.Node, loc: Location, lines: dict[Location, int]
) -> tuple[str, int] | None:
    """Record the line of every key and item under `node`; return the first duplicate key."""
    duplicate: tuple[str, int] | None = None
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen and duplicate is None:
                duplicate = (key, line)
            seen.add(key)
            lines[loc + (key,)] = line
            duplicate = _index_lines(value_node, loc + (key,), lines) or duplicate
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[loc + (index,)] = item.start_mark.line + 1
            duplicate = _index_lines(item, loc + (index,), lines) or duplicate
    return duplicate


@dataclass(frozen=True)
class RosterPeek:
    """What fast commands need from a roster: where the workspace is and who the agents are."""

    path: Path
    workspace: Path
    agent_names: list[str]
    escalation_overdue_s: float = DEFAULT_ESCALATION_OVERDUE_S
    disabled: frozenset[str] = frozenset()  # llm agents whose ${VAR} base_url is unset
    transport: str = "file"  # `transport.kind`: "nats" sends the commands to the cluster


def peek_roster(path: Path) -> RosterPeek:
    """Read the workspace path and agent names of a roster without full validation."""
    source = read_roster_file(path)
    data = source.data if isinstance(source.data, dict) else {}
    agents = data.get("agents")
    if not isinstance(agents, list):
        raise ConfigError(f"{path}: no `agents:` list (run `agentctl validate` for details)")
    names = []
    for index, item in enumerate(agents):
        name = item.get("name") if isinstance(item, dict) else None
        line = source.line_of(("agents", index))
        names.append(validate_agent_name(name, where=f"{path}:{line}: agents[{index}].name"))
    disabled = frozenset(
        str(item.get("name"))
        for item in agents
        if isinstance(item, dict) and _unset_env_url(item.get("llm"))
    )
    overdue = data.get("escalation_overdue_s")
    transport = data.get("transport")
    kind = transport.get("kind") if isinstance(transport, dict) else None
    return RosterPeek(
        path=path,
        workspace=workspace_of(path, data.get("workspace")),
        agent_names=names,
        escalation_overdue_s=float(overdue)
        if isinstance(overdue, int | float) and overdue > 0
        else DEFAULT_ESCALATION_OVERDUE_S,
        disabled=disabled,
        transport=str(kind) if kind else "file",
    )


def _unset_env_url(llm: object) -> bool:
    # The same rule as LlmSpec.disabled_because, without pydantic: `${VAR}` with VAR unset.
    url = llm.get("base_url") if isinstance(llm, dict) else None
    if not isinstance(url, str) or not (url.startswith("${") and url.endswith("}")):
        return False
    return not os.environ.get(url[2:-1])


def workspace_of(config_path: Path, value: object) -> Path:
    """The workspace a roster names, relative to the roster's own directory."""
    relative = value if isinstance(value, str) and value else DEFAULT_WORKSPACE_DIR
    return (config_path.parent / os.path.expanduser(relative)).absolute()


def find_config(config: Path | None) -> Path | None:
    """The roster to use: the one given (it must exist), else ./agents.yaml if present."""
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"{config}: no such roster file")
        return config.absolute()
    default = Path(DEFAULT_CONFIG_FILE)
    return default.absolute() if default.is_file() else None
