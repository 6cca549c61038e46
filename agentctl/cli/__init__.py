"""The `agentctl` command. Only this package imports typer and rich."""

from __future__ import annotations

import sys
from typing import Any

USAGE_EXIT_CODE = 2  # click's, kept: scripts tell a usage error from a failure by it
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def main() -> None:
    """Entry point: run the app; an AgentctlError, or a write the disk refused (full, read-only),
    becomes one red line and exit code 1; a usage error (an unknown option, a bad value) one
    red line and exit code 2; Ctrl-C exit code 130."""
    import typer

    from agentctl.cli.app import COMMANDS, make_app
    from agentctl.model.errors import AgentctlError

    usage_error, click_exception = _click_errors()
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
    try:
        # Not standalone: click would print its usage block and `Error:` for a usage error.
        code = make_app(only=command)(standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # `agentctl` alone: the list of commands, as before
            sys.exit(USAGE_EXIT_CODE)
        where = _command_of(getattr(exc, "ctx", None))
        _fail(f"{_one_line(exc.format_message())} (see {where} --help)", USAGE_EXIT_CODE)
    except click_exception as exc:
        _fail(_one_line(exc.format_message()), exc.exit_code)
    except typer.Abort:
        sys.exit(INTERRUPTED_EXIT_CODE)
    except AgentctlError as exc:
        _fail(str(exc))
    except OSError as exc:
        from agentctl.protocol.writeretry import disk_error_line, is_disk_error

        if not is_disk_error(exc):
            raise
        _fail(disk_error_line(exc))  # `no space left on device: <path>`
    # A command's `typer.Exit(n)` (and --help, --version) come back as the code.
    sys.exit(code if isinstance(code, int) else 0)


def _click_errors() -> tuple[Any, Any]:
    """click's UsageError and ClickException, as the typer in use has them: its own copy of
    click (0.28) or click itself (before), both above its BadParameter."""
    import typer

    ancestors = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
    return ancestors["UsageError"], ancestors["ClickException"]


def _one_line(message: str) -> str:
    """click's message in this CLI's voice: one line, lower case first, no closing stop."""
    line = " ".join(message.split()).removesuffix(".")
    if len(line) > 1 and line[0].isupper() and line[1].islower():
        line = line[0].lower() + line[1:]
    return line


def _command_of(ctx: Any) -> str:
    """`agentctl COMMAND [SUBCOMMAND]` for the click context at fault, however it was started
    (`python -m agentctl` too)."""
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["agentctl", *reversed(names)])


def _fail(line: str, exit_code: int = 1) -> None:
    from agentctl.cli.render import print_error

    print_error(line)
    sys.exit(exit_code)
