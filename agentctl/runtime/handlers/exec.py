"""`exec: [argv...]`: a program run once per message, never through a shell.

The message JSON goes to its stdin; what it prints on stdout (JSON, or nothing for null) is the
result; a non-zero exit status is a failure. Its stderr goes to the agent's log. It runs in a
process group of its own, so a timeout kills everything it started, and in the environment its
`env:` policy gives it (envpolicy.py).

Nothing it prints can grow the worker without bound: stdout past `max_output_bytes` (the
roster's `max_message_bytes`, which the result must fit anyway) fails the attempt and kills the
group; stderr is passed to the log as it comes, up to the same bound per attempt, and only its
last few KiB are kept, for the error message.
"""

from __future__ import annotations

import codecs
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import IO, TYPE_CHECKING

from agentctl.config.agentspec import AgentSpec
from agentctl.config.envpolicy import LLM_KEY_ENV
from agentctl.model.constants import DEFAULT_MAX_MESSAGE_BYTES, ENV_AGENT
from agentctl.model.errors import BadMessageError, HandlerError, HandlerTimeoutError
from agentctl.model.message import parse_json_strict
from agentctl.model.tracecontext import attempt_env
from agentctl.protocol.proc import die_with_parent, prepare_die_with_parent

if TYPE_CHECKING:
    from collections.abc import Collection

    from pydantic import JsonValue

    from agentctl.model.message import AgentMessage

_STDERR_TAIL_CHARS = 500
_STDERR_TAIL_BYTES = 4096  # kept in memory for the error message (UTF-8: up to 4 per char)
_READ_CHUNK_BYTES = 65536


class _OutputTooLong(Exception):
    """The program printed more on stdout than a result may hold."""


class ExecHandler:
    """Runs the agent's program for each message."""

    def __init__(
        self,
        spec: AgentSpec,
        *,
        max_output_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        withheld_env: Collection[str] = (LLM_KEY_ENV,),
    ) -> None:
        assert spec.exec is not None
        self.argv = list(spec.exec)
        self.env = spec.env.build({ENV_AGENT: spec.name}, withheld=withheld_env)
        self.max_output_bytes = max_output_bytes
        prepare_die_with_parent()

    def handle(self, message: AgentMessage, *, timeout_s: float) -> JsonValue:
        """Run the program on one message."""
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # TRACEPARENT: the program's own spans join the thread's trace (TRACING.md).
                env={**self.env, "AGENTCTL_MESSAGE_ID": message.id, **attempt_env(message)},
                start_new_session=True,
                preexec_fn=_die_with_worker,  # noqa: PLW1509 - one prctl call, no locks
            )
        except OSError as exc:
            raise HandlerError(f"cannot run {self.argv[0]!r}: {exc.strerror}") from None
        try:
            out, err_tail = self._exchange(proc, message.to_json_bytes(), timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise HandlerTimeoutError(f"timed out after {timeout_s:g} s; killed") from None
        except _OutputTooLong:
            _kill_group(proc)
            raise HandlerError(
                f"{self.argv[0]}: stdout over {self.max_output_bytes} bytes, more than a result "
                "may hold (max_message_bytes); killed"
            ) from None
        finally:
            if proc.poll() is None:  # interrupted by an exception: leave nothing behind
                _kill_group(proc)
        if proc.returncode != 0:
            tail = err_tail.decode("utf-8", "replace").strip()[-_STDERR_TAIL_CHARS:]
            status = _describe_status(proc.returncode)
            raise HandlerError(f"{self.argv[0]} {status}" + (f": {tail}" if tail else ""))
        if not out.strip():
            return None
        try:
            return parse_json_strict(bytes(out))  # type: ignore[no-any-return]
        except BadMessageError as exc:
            raise HandlerError(f"{self.argv[0]} printed a result that is not JSON: {exc}") from None

    def _exchange(
        self, proc: subprocess.Popen[bytes], data: bytes, timeout_s: float
    ) -> tuple[bytearray, bytes]:
        """Feed `data` to stdin while reading stdout (bounded) and stderr (to the log) until
        both close and the program exits; return stdout and the tail of stderr."""
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        out = bytearray()
        log = StderrLog(self.argv[0], self.max_output_bytes)
        sent = 0
        with selectors.DefaultSelector() as selector:
            if data:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
            selector.register(proc.stdout, selectors.EVENT_READ)
            selector.register(proc.stderr, selectors.EVENT_READ)
            while selector.get_map():
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise subprocess.TimeoutExpired(self.argv, timeout_s)
                for key, _ in selector.select(remaining_s):
                    pipe: IO[bytes] = key.fileobj  # type: ignore[assignment]
                    if pipe is proc.stdin:
                        try:
                            sent += os.write(key.fd, data[sent : sent + _READ_CHUNK_BYTES])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:  # it stopped reading: it may answer anyway
                            sent = len(data)
                        if sent >= len(data):
                            selector.unregister(pipe)
                            pipe.close()
                        continue
                    size = _READ_CHUNK_BYTES
                    if pipe is proc.stdout:  # never more than one byte past the bound
                        size = min(size, self.max_output_bytes + 1 - len(out))
                    chunk = os.read(key.fd, size)
                    if not chunk:
                        selector.unregister(pipe)
                        pipe.close()
                    elif pipe is proc.stdout:
                        out += chunk
                        if len(out) > self.max_output_bytes:
                            raise _OutputTooLong
                    else:
                        log.write(chunk)
        # Both pipes are closed; the program may still run (it closed them itself).
        proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
        return out, log.tail

    def close(self) -> None:
        """Nothing to release: each message has its own process."""


class StderrLog:
    """A program's stderr on its way to the agent's log: up to `max_bytes` per attempt pass,
    the rest is counted and dropped; the last few KiB stay for the error message."""

    def __init__(self, program: str, max_bytes: int) -> None:
        self.program = program
        self.max_bytes = max_bytes
        self.logged_bytes = 0
        self.tail = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, chunk: bytes) -> None:
        """Pass `chunk` to the log while under the bound; keep the tail either way."""
        self.tail = (self.tail + chunk)[-_STDERR_TAIL_BYTES:]
        room = self.max_bytes - self.logged_bytes
        if room > 0:
            sys.stderr.write(self._decoder.decode(chunk[:room]))
        if room >= 0 and len(chunk) > room:  # crossing the bound now: say so, once
            sys.stderr.write(
                f"\n[agentctl: stderr of {self.program} over {self.max_bytes} bytes; "
                "the rest of this attempt's is not logged]\n"
            )
        sys.stderr.flush()
        self.logged_bytes += len(chunk)


def _die_with_worker() -> None:
    die_with_parent(signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _describe_status(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by signal {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"
