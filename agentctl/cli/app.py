"""The typer app. Commands are registered by name and imported only when needed: a typer app
builds every registered command on each start, so `agentctl status` builds just `status`.
`agentctl --help` (or no command, or an unknown one) needs only each command's one-line help,
so it lists stand-ins that carry the real docstrings without typer inspecting every option."""

from __future__ import annotations

import importlib
import os
from typing import Annotated

import typer

# name -> (module, function); the order is the order of `agentctl --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("agentctl.cli.project_cmds", "init"),
    "validate": ("agentctl.cli.project_cmds", "validate"),
    "schema": ("agentctl.cli.project_cmds", "schema"),
    "run": ("agentctl.cli.run_cmds", "run"),
    "stop": ("agentctl.cli.run_cmds", "stop"),
    "start": ("agentctl.cli.run_cmds", "start"),
    "restart": ("agentctl.cli.run_cmds", "restart"),
    "reload": ("agentctl.cli.run_cmds", "reload"),
    "send": ("agentctl.cli.send_cmd", "send"),
    "route": ("agentctl.cli.route_cmd", "route"),
    "status": ("agentctl.cli.status_cmd", "status"),
    "logs": ("agentctl.cli.logs_cmd", "logs"),
    "tail": ("agentctl.cli.journal_cmds", "tail"),
    "replay": ("agentctl.cli.journal_cmds", "replay"),
    "verify": ("agentctl.cli.journal_cmds", "verify"),
    "trace": ("agentctl.cli.trace_cmd", "app"),
    "dead": ("agentctl.cli.dead_cmds", "app"),
    "pipeline": ("agentctl.cli.pipeline_cmds", "app"),
    "escalations": ("agentctl.cli.pipeline_cmds", "escalations"),
    "resolve": ("agentctl.cli.pipeline_cmds", "resolve"),
    "halt": ("agentctl.cli.pipeline_cmds", "halt"),
    "resume": ("agentctl.cli.pipeline_cmds", "resume"),
    "mcp": ("agentctl.cli.mcp_cmd", "mcp"),
    "ui": ("agentctl.cli.ui_cmd", "ui"),
}


def make_app(only: str | None = None) -> typer.Typer:
    """The app with every command, or with just `only` (same usage text and behaviour)."""
    app = typer.Typer(
        name="agentctl",
        help="Run a team of agents over a file-based workspace you can read, trust and replay.",
        no_args_is_help=True,
        add_completion=True,  # --install-completion, --show-completion [SHELL]
        rich_markup_mode=None,  # plain help: rich costs ~25 ms of start-up for nothing here
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(
        _version: Annotated[
            bool,
            typer.Option(
                "--version",
                is_eager=True,
                callback=_print_version,
                help="Print agentctl's version and exit.",
            ),
        ] = False,
    ) -> None:
        # A callback keeps typer in multi-command mode even when one command is registered.
        pass

    # The shell asks for completions by running us with `_AGENTCTL_COMPLETE` set and the words
    # typed so far in the environment, not in argv: build the real commands, for their options.
    listed_only = only is None and not any(
        key.startswith("_") and key.endswith("_COMPLETE") for key in os.environ
    )
    for name, (module, attribute) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if listed_only:
            help_text = target.info.help if isinstance(target, typer.Typer) else target.__doc__
            app.command(name, help=help_text)(_listed_only)
        elif isinstance(target, typer.Typer):
            app.add_typer(target, name=name)  # a command with subcommands
        else:
            app.command(name)(target)
    return app


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"agentctl {version('agentctl')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print("agentctl (not installed)")
        raise typer.Exit()


def _listed_only() -> None:
    # Never runs: a known command name always builds the app with the real command.
    raise AssertionError("stand-in command called")
