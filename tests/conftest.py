"""Shared fixtures: real files in tmp_path, real processes, no fakes but clocks."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AGENTCTL = [sys.executable, "-m", "agentctl"]


def wait_until(predicate: Callable[[], object], timeout_s: float = 15.0, interval_s: float = 0.02):
    """Poll `predicate` until it is truthy; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s: {predicate}")
        time.sleep(interval_s)


def write_roster(directory: Path, agents_yaml: str, **settings: object) -> Path:
    """Write agents.yaml into `directory` (durability none, fast polling unless given)."""
    settings = {"workspace": "workspace", "durability": "none", "poll_interval_s": 0.2, **settings}
    head = "".join(f"{k}: {v}\n" for k, v in settings.items())
    path = directory / "agents.yaml"
    path.write_text(head + "agents:\n" + textwrap.indent(textwrap.dedent(agents_yaml), "  "))
    return path


def run_cli(
    *args: str,
    cwd: Path,
    input: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `agentctl ARGS` as a real subprocess in `cwd`."""
    return subprocess.run(
        [*AGENTCTL, *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


class Supervised:
    """`agentctl run` started in the background for a test, stopped afterwards."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.cwd = cwd
        self.log = cwd / "run.log"
        self.proc = subprocess.Popen(
            [*AGENTCTL, "run", "--grace-s", "5", *args],
            cwd=cwd,
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, names: list[str], workspace: Path | None = None) -> None:
        """Wait until every named agent reports idle in its status.json."""
        import json

        ws = workspace or self.cwd / "workspace"

        def ready() -> bool:
            for name in names:
                try:
                    state = json.loads((ws / name / "status.json").read_text())["state"]
                    if state not in ("idle", "running"):  # running: a command: agent
                        return False
                except (FileNotFoundError, ValueError):
                    return False
            return True

        wait_until(ready, timeout_s=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def supervised() -> Iterator[Callable[..., Supervised]]:
    """Start `agentctl run` in the background; everything started is stopped at the end."""
    started: list[Supervised] = []

    def start(cwd: Path, *args: str) -> Supervised:
        sup = Supervised(cwd, *args)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.stop()


# A stage agent for the escalation stories (write it as judge.py beside the roster, `python:
# judge:Judge`): it escalates a task whose content says "escalate" and passes the others.
JUDGE = """\
from agentctl.model.agent import BaseAgent


class Judge(BaseAgent):
    async def process(self, task, context):
        asks = "escalate" in str(task.get("content"))
        return {"verdict": "escalate" if asks else "pass", "reason": "a person must look"}
"""


# -- a small real disk, for the tests of a full or read-only one -----------------------------


def _mounted(disk: Path, mount_args: list[str], what: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip(f"mounting {what} needs root")
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", *mount_args, str(disk)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount {what} here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield disk
    finally:
        # Lazy: a process the test could not stop must not leave the mount behind.
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted inside tmp_path, unmounted at the end."""
    yield from _mounted(tmp_path / "disk", ["-t", "tmpfs", "-o", "size=2m", "tmpfs"], "a tmpfs")


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk refuses more; return it."""
    ballast = disk / "ballast"
    chunk = b"\0" * 65536
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    for size in (4096, 1):  # the last partial page too
        try:
            with open(ballast, "ab", buffering=0) as f:
                while True:
                    f.write(b"\0" * size)
        except OSError:
            pass
    return ballast


@pytest.fixture
def small_ext4(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB ext4 of 1 KiB blocks on a loop device: once full, a directory whose last block
    is full cannot grow, so even a link into it is refused (tmpfs always takes a link)."""
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "1024", "-m", "0", "-O", "^has_journal",
                           str(image)], capture_output=True, text=True, check=False)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot make an ext4 here: {made.stderr.strip() or made.returncode}")
    yield from _mounted(tmp_path / "ext4", ["-o", "loop", str(image)], "a loop device")


def fill_directory(directory: Path, anchor: Path) -> list[Path]:
    """On a full disk, add hidden links to `anchor` in `directory` until it takes no new name
    at all (long names first, then the shortest); return them, for the test to remove."""
    added: list[Path] = []
    for width in (60, 1):
        while True:
            link = directory / f".{len(added):0{width}d}"
            try:
                os.link(anchor, link)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
            added.append(link)
    return added
