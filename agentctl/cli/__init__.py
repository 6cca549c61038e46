"""The `agentctl` command. Only this package imports typer and rich."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point: run the app; an AgentctlError becomes one red line and exit code 1."""
    from agentctl.cli.app import COMMANDS, make_app
    from agentctl.errors import AgentctlError

    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
    try:
        make_app(only=command)()
    except AgentctlError as exc:
        from agentctl.cli.render import print_error

        print_error(str(exc))
        sys.exit(1)
