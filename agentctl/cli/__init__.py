"""The `agentctl` command. Only this package imports typer and rich."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point: run the app; an AgentctlError, or a write the disk refused (full, read-only),
    becomes one red line and exit code 1."""
    from agentctl.cli.app import COMMANDS, make_app
    from agentctl.model.errors import AgentctlError

    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
    try:
        make_app(only=command)()
    except AgentctlError as exc:
        _fail(str(exc))
    except OSError as exc:
        from agentctl.protocol.writeretry import disk_error_line, is_disk_error

        if not is_disk_error(exc):
            raise
        _fail(disk_error_line(exc))  # `no space left on device: <path>`


def _fail(line: str) -> None:
    from agentctl.cli.render import print_error

    print_error(line)
    sys.exit(1)
