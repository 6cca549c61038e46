"""The typer app: registers each command group. Command modules import only typer at the top;
the core is imported inside each command, so `agentctl --help` stays fast."""

from __future__ import annotations

import typer

from agentctl.cli import project_cmds, run_cmds, send_cmd, status_cmd

app = typer.Typer(
    name="agentctl",
    help="Run a team of agents over a file-based workspace you can read, trust and replay.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich costs ~25 ms of start-up for nothing here
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("init")(project_cmds.init)
app.command("validate")(project_cmds.validate)
app.command("schema")(project_cmds.schema)
app.command("run")(run_cmds.run)
app.command("stop")(run_cmds.stop)
app.command("send")(send_cmd.send)
app.command("status")(status_cmd.status)
