"""`exec: [argv...]`: a program run once per message, never through a shell.

The message JSON goes to its stdin; what it prints on stdout (JSON, or nothing for null) is the
result; a non-zero exit status is a failure. Its stderr goes to the agent's log. It runs in a
process group of its own, so a timeout kills everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from agentctl.agentspec import AgentSpec
from agentctl.constants import ENV_AGENT
from agentctl.errors import BadMessageError, HandlerError, HandlerTimeoutError
from agentctl.message import parse_json_strict
from agentctl.proc import die_with_parent, prepare_die_with_parent

if TYPE_CHECKING:
    from pydantic import JsonValue

    from agentctl.message import AgentMessage

_STDERR_TAIL_CHARS = 500


class ExecHandler:
    """Runs the agent's program for each message."""

    def __init__(self, spec: AgentSpec) -> None:
        assert spec.exec is not None
        self.argv = list(spec.exec)
        self.env = {**os.environ, ENV_AGENT: spec.name}
        prepare_die_with_parent()

    def handle(self, message: AgentMessage, *, timeout_s: float) -> JsonValue:
        """Run the program on one message."""
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**self.env, "AGENTCTL_MESSAGE_ID": message.id},
                start_new_session=True,
                preexec_fn=_die_with_worker,  # noqa: PLW1509 - one prctl call, no locks
            )
        except OSError as exc:
            raise HandlerError(f"cannot run {self.argv[0]!r}: {exc.strerror}") from None
        try:
            out, err = proc.communicate(message.to_json_bytes(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise HandlerTimeoutError(f"timed out after {timeout_s:g} s; killed") from None
        finally:
            if proc.poll() is None:  # interrupted by an exception: leave nothing behind
                _kill_group(proc)
        if err:
            sys.stderr.write(err.decode("utf-8", "replace"))
            sys.stderr.flush()
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip()[-_STDERR_TAIL_CHARS:]
            status = _describe_status(proc.returncode)
            raise HandlerError(f"{self.argv[0]} {status}" + (f": {tail}" if tail else ""))
        if not out.strip():
            return None
        try:
            return parse_json_strict(out)  # type: ignore[no-any-return]
        except BadMessageError as exc:
            raise HandlerError(f"{self.argv[0]} printed a result that is not JSON: {exc}") from None

    def close(self) -> None:
        """Nothing to release: each message has its own process."""


def _die_with_worker() -> None:
    die_with_parent(signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _describe_status(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by signal {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"
