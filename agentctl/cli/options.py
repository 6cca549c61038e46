"""Options every command shares, and the two ways a command finds its roster and workspace."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentctl.model.constants import DEFAULT_WORKSPACE_DIR, ENV_CONFIG, ENV_WORKSPACE, USER_AGENT
from agentctl.model.errors import AgentctlError, ConfigError

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.roster import Roster

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar=ENV_WORKSPACE,
        show_default=False,
        help="Workspace directory [default: the roster's `workspace`, else ./workspace].",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=ENV_CONFIG,
        show_default=False,
        help="Roster file [default: ./agents.yaml].",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable, documented).")]
KeywordsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--keywords",
        "-k",
        show_default=False,
        help="Keywords, comma-separated or repeated: -k auth,injection or -k auth -k injection.",
    ),
]


HeaderOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--header",
        "-H",
        metavar="KEY=VALUE",
        help="A message header (repeatable), e.g. timeout_s=5; the value is sent as a string.",
        show_default=False,
    ),
]


def positive_seconds(help_text: str, name: str = "--timeout-s") -> Any:
    """A seconds option (`--timeout-s` unless named) that refuses zero and negative values in
    one usage line."""
    return typer.Option(name, callback=_positive, help=help_text)


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"{value:g} is not a number of seconds above 0 (x>0)")
    return value


def keywords_of(values: list[str] | None) -> list[str]:
    """Every keyword given, in order: `-k a,b -k c` is a, b, c."""
    return [k.strip() for value in values or [] for k in value.split(",") if k.strip()]


def open_light(config: Path | None, workspace: Path | None) -> tuple[Workspace, list[str]]:
    """Workspace and agent names without pydantic (fast commands: status, stop)."""
    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.rosterfile import find_config, peek_roster

    config_path = find_config(config)
    if config_path is not None:
        peek = peek_roster(config_path)
        ws = Workspace(workspace or peek.workspace, escalation_overdue_s=peek.escalation_overdue_s)
        ws.disabled = peek.disabled
        return ws, peek.agent_names
    ws = Workspace(workspace or Path(DEFAULT_WORKSPACE_DIR))
    if not ws.root.is_dir():
        # Without either there is nothing to show: say so, rather than an empty table or "ok".
        raise ConfigError(
            f"no roster and no workspace: ./agents.yaml and {ws.root} do not exist; pass "
            f"--config or set {ENV_CONFIG}, pass --workspace, or create both with `agentctl init`"
        )
    return ws, [n for n in ws.agent_names() if n != USER_AGENT]


def open_full(config: Path | None, workspace: Path | None) -> tuple[Roster, Workspace]:
    """The validated roster and its workspace (run, validate, send)."""
    from agentctl.backends import open_workspace

    roster = load_config(config)
    return roster, open_workspace(roster, workspace)


def load_config(config: Path | None) -> Roster:
    """The validated roster (ConfigError with what to do when there is none)."""
    from agentctl.config.roster import load_roster
    from agentctl.config.rosterfile import find_config

    config_path = find_config(config)
    if config_path is None:
        raise ConfigError(
            f"no roster: ./agents.yaml does not exist; pass --config or set {ENV_CONFIG}, "
            "or create one with `agentctl init`"
        )
    return load_roster(config_path)


@contextlib.contextmanager
def opened_with_roster(
    config: Path | None, workspace: Path | None, *, required: bool = False
) -> Iterator[tuple[Roster | None, Backend]]:
    """The roster (None when there is none and none is `required`) and the backend it names,
    closed when the command is done."""
    from agentctl.backends import open_backend
    from agentctl.config.rosterfile import find_config

    if not required and find_config(config) is None:
        ws, _ = open_light(config, workspace)
        yield None, ws
        return
    roster = load_config(config)
    backend = open_backend(roster, workspace, client_name="agentctl-cli")
    try:
        yield roster, backend
    finally:
        backend.close()


@contextlib.contextmanager
def opened_backend(config: Path | None, workspace: Path | None) -> Iterator[Backend]:
    """The backend commands act on (the roster's; without a roster, the workspace's files),
    closed when the command is done."""
    with opened_with_roster(config, workspace) as (_, backend):
        yield backend


def read_content(content: str, *, as_text: bool) -> Any:
    """CONTENT as given: text, JSON, '-' (stdin), @FILE (its text) or @FOLDER (its path)."""
    if content == "-":
        content = sys.stdin.read()
    elif content.startswith("@"):
        path = Path(content[1:])
        if path.is_dir():
            # A folder is sent by reference: agents that read code (the review crew) take it.
            return {"path": str(path.absolute())}
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentctlError(f"{path}: cannot read: {exc}") from None
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise AgentctlError("CONTENT is not valid UTF-8") from None
    if not content.strip():
        # Usually an unset shell variable or an empty file; the MCP server and the dashboard
        # refuse it in the same words.
        raise AgentctlError("CONTENT is empty; nothing sent")
    if as_text or not content.lstrip().startswith(("{", "[")):
        return content
    from agentctl.model.errors import BadMessageError
    from agentctl.model.message import parse_json_strict

    try:
        return parse_json_strict(content.encode())
    except BadMessageError as exc:
        raise AgentctlError(
            f"CONTENT looks like JSON but is not ({exc}); use --text to send it as a string"
        ) from None


def ready_for_ctrl_c(*modules: str) -> None:
    """Import now what a wait that Ctrl-C ends would import at its start.

    A KeyboardInterrupt that lands while an import runs generated code (a dataclass's
    `__init__` is built by exec) marks CPython to end the process by SIGINT at exit, even though
    the command caught it: `send --wait` died by the signal instead of exiting 130 in 1 run of
    5 when Ctrl-C came right after its note, and `tail -f` would not exit 0.
    """
    import importlib

    for name in modules:
        importlib.import_module(name)
