"""What both benchmarks need: their subprocesses (stopped however the run ends), polling with a
deadline, and percentiles. Imported by bench_workspace.py and bench_nats.py, which run as
scripts from this directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TypeVar

Popen = subprocess.Popen[bytes]
R = TypeVar("R")
POLL_S = 0.01


class Children:
    """Every subprocess a benchmark starts, stopped however it ends."""

    def __init__(self) -> None:
        self._procs: list[Popen] = []

    def spawn(
        self, argv: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None
    ) -> Popen:
        """Start `argv` in a new session, output appended to `log`."""
        # A new session: Ctrl-C in the terminal reaches only us, and we stop the children in
        # order (a worker finishing its message, agents before their server) instead of
        # racing them.
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def stop(self, proc: Popen, timeout_s: float = 15.0) -> None:
        """SIGTERM to its process group, SIGKILL after `timeout_s`."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        """Stop every child, newest first (the agents before the server they talk to)."""
        for proc in reversed(list(self._procs)):
            self.stop(proc, timeout_s=5.0)


CHILDREN = Children()


def _signal_group(proc: Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


@contextmanager
def stop_children_on_exit() -> Iterator[None]:
    """SIGTERM becomes an exception like Ctrl-C, so the `finally` stops every child."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        CHILDREN.stop_all()
        signal.signal(signal.SIGTERM, previous)


def log_tail(log: Path, lines: int = 20) -> str:
    """The last lines of a child's log, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: Popen,
    log: Path,
    interval_s: float = POLL_S,
) -> None:
    """Poll until `predicate`; fail loudly if the child died or the time is up."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s:g} s\n{log_tail(log)}")
        time.sleep(interval_s)


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def run_steps(steps: Sequence[tuple[str, Callable[[], list[R]]]], only: set[str]) -> list[R]:
    """Run each named step (all, or those in `only`), saying on stderr how long each took."""
    rows: list[R] = []
    for key, step in steps:
        if only and key not in only:
            continue
        started_s = time.monotonic()
        print(f"running {key} ...", file=sys.stderr, flush=True)
        rows += step()
        print(f"  {key}: {time.monotonic() - started_s:.1f} s", file=sys.stderr, flush=True)
    return rows
