"""Reading agents.yaml: the only module that imports yaml.

`read_roster_file` gives the parsed data plus the line of every key, so validation errors can
name the line. `peek_roster` reads just the workspace path and agent names without pydantic,
for commands that must start fast (`status`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agentctl.constants import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_WORKSPACE_DIR,
)
from agentctl.errors import ConfigError
from agentctl.names import validate_agent_name

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class RosterSource:
    """The parsed YAML of a roster; `line_of` finds the 1-based line of a key or list item."""

    path: Path
    text: str
    data: Any

    @functools.cached_property
    def lines(self) -> dict[Location, int]:
        """Line of every key and item; built on first use, since only errors need it."""
        lines: dict[Location, int] = {}
        root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        if root is not None:
            _index_lines(root, (), lines)
        return lines

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
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    return RosterSource(path=path, text=text, data=data)


def _index_lines(node: yaml.Node, loc: Location, lines: dict[Location, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _index_lines(value_node, loc + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[loc + (index,)] = item.start_mark.line + 1
            _index_lines(item, loc + (index,), lines)


@dataclass(frozen=True)
class RosterPeek:
    """What fast commands need from a roster: where the workspace is and who the agents are."""

    path: Path
    workspace: Path
    agent_names: list[str]


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
    return RosterPeek(
        path=path, workspace=workspace_of(path, data.get("workspace")), agent_names=names
    )


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
