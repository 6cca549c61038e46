"""Reading agents.yaml: the only module that imports yaml.

`read_roster_file` gives the parsed data plus the line of every key, so validation errors can
name the line; it refuses oversized files and alias bombs first. `peek_roster` reads just the
workspace path and agent names without pydantic, for commands that must start fast (`status`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agentctl.model.constants import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_ESCALATION_OVERDUE_S,
    DEFAULT_WORKSPACE_DIR,
)
from agentctl.model.errors import ConfigError
from agentctl.model.names import validate_agent_name

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


# A roster is a few KiB; anything near these limits is a mistake or an attack (a "billion
# laughs" of nested aliases is ten lines that expand to 9**9 nodes).
MAX_ROSTER_BYTES = 1024 * 1024
MAX_ROSTER_NODES = 100_000

# The last roster parsed, by path and bytes: a command that peeks, then loads, parses it once.
_last_parsed: tuple[Path, bytes, RosterSource] | None = None


def read_roster_file(path: Path) -> RosterSource:
    """Parse a roster with the safe loader and index its lines (once per process while the
    file is unchanged); refuse a file over MAX_ROSTER_BYTES or whose aliases expand to over
    MAX_ROSTER_NODES nodes."""
    global _last_parsed
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_ROSTER_BYTES + 1)
        if len(raw) > MAX_ROSTER_BYTES:
            raise ConfigError(
                f"{path}: over {MAX_ROSTER_BYTES} bytes; a roster is not that large, refused"
            )
        if _last_parsed is not None and _last_parsed[:2] == (path, raw):
            return _last_parsed[2]
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such roster file (create one with `agentctl init`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    loader = yaml.SafeLoader(text)  # never the unsafe loader
    try:
        root = loader.get_single_node()
        if root is not None and _expanded_size(root, {}, set()) > MAX_ROSTER_NODES:
            raise ConfigError(
                f"{path}: YAML aliases expand to over {MAX_ROSTER_NODES} nodes; refused"
            )
        # Constructed from the nodes just composed: the text is parsed once.
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:  # the composer and the walks below recurse once per level
        raise ConfigError(f"{path}: YAML nested too deeply; refused") from None
    finally:
        loader.dispose()
    lines: dict[Location, int] = {}
    if root is not None:
        duplicate = _index_lines(root, (), lines)  # composed within the limits above
        if duplicate is not None:
            key, line = duplicate
            # YAML keeps the last of two equal keys silently; a roster must not lose a list.
            raise ConfigError(f"{path}:{line}: duplicate key {key!r}")
    source = RosterSource(path=path, data=data, lines=lines)
    _last_parsed = (path, raw, source)
    return source


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many nodes `node` stands for once every alias is expanded (capped just past the
    limit); each distinct node is counted once, so a bomb costs as little as its text."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:  # an alias to an enclosing node: endless when expanded
        return MAX_ROSTER_NODES + 1
    open_nodes.add(id(node))
    size = 1
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    for child in children:
        size += _expanded_size(child, sizes, open_nodes)
        if size > MAX_ROSTER_NODES:
            break
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size


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


_ENV_IN_TEXT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # mcpspec.py's, without pydantic


def _unset_env_url(llm: object) -> bool:
    # The same rule as LlmSpec.disabled_because, without pydantic: `${VAR}` with VAR unset, in
    # the base URL or in a header of an MCP server.
    if not isinstance(llm, dict):
        return False
    url = llm.get("base_url")
    if isinstance(url, str) and url.startswith("${") and url.endswith("}"):
        if not os.environ.get(url[2:-1]):
            return True
    servers = llm.get("mcp_servers")
    for server in servers.values() if isinstance(servers, dict) else ():
        headers = server.get("headers") if isinstance(server, dict) else None
        for value in headers.values() if isinstance(headers, dict) else ():
            for variable in _ENV_IN_TEXT.findall(value if isinstance(value, str) else ""):
                if not os.environ.get(variable):
                    return True
    return False


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
