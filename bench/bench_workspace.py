"""Benchmarks of agentctl's file workspace, each against a bare baseline measured in the same run.

    make bench                                   # or: .venv/bin/python bench/bench_workspace.py
    .venv/bin/python bench/bench_workspace.py --quick        # smaller counts, ~30 s
    .venv/bin/python bench/bench_workspace.py --markdown     # the table as Markdown

File creation on these VMs costs 2-6x more for minutes after many files were deleted (ext4
without a journal skips recently freed inodes), so absolute figures mean little: every row puts
agentctl beside a bare loop doing the same file operations in the same run, the targets are
ratios (except the p99 latency, which is an absolute budget), and the title gives the cost of a
file creation at the start and the end. The benchmark deletes nothing until it has measured.

Rows (see docs/PERFORMANCE.md for the reasoning):
  send (none / fsync)   WorkspaceRouter.send vs write-to-tmp + link into new/ (+ fsyncs)
  latency p50 / p99     send -> handler start in a real worker vs a bare watchdog consumer
  drain 10k             echo worker draining a pre-delivered burst vs a bare claim+reply+ack
                        loop (and, for information, vs the plain claim+ack loop)
  CLI start-up          `agentctl --help` / `agentctl status --json` vs `python -c "import typer"`

Everything runs in temporary directories; every subprocess is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from benchkit import (
    CHILDREN,
    Popen,
    log_tail,
    percentile,
    run_steps,
    stop_children_on_exit,
    wait_until,
)

import agentctl
from agentctl.flow.router import WorkspaceRouter
from agentctl.model.message import AgentMessage

# ~1 KB message files, the size the figures in MEASURED.md were taken with.
CONTENT = {"text": "x" * 700}
BIN_DIR = Path(sys.executable).parent  # .venv/bin when run as `make bench` does
READY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 300.0
SEND_CHUNK = 20  # messages per side between switches in the send rows
DEFAULT_BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench-tmp"
SLOW_CREATE_US = 150.0  # slower than this (settled ext4 here: 40-70): recent deletions nearby


@dataclass(frozen=True)
class Sizes:
    """How much work each row does; --quick shrinks everything."""

    send_none: int
    send_fsync: int
    latency_msgs: int
    latency_warmup: int
    latency_gap_s: float
    drain_msgs: int
    cli_runs: int


FULL = Sizes(4000, 400, 200, 10, 0.01, 10_000, 15)
QUICK = Sizes(1000, 100, 60, 5, 0.01, 2_000, 5)


@dataclass(frozen=True)
class Row:
    """One line of the result table: agentctl's figure, the baseline's, and the verdict."""

    name: str
    unit: str
    agentctl: float
    baseline: float
    target: str
    passed: bool | None  # None: an informational row, no target
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.agentctl / self.baseline if self.baseline else float("nan")


# -- subprocesses ---------------------------------------------------------------------------


def _child_env(extra_path: Path) -> dict[str, str]:
    # The agent module written into the temp dir must be importable by the worker.
    old = os.environ.get("PYTHONPATH")
    path = f"{extra_path}{os.pathsep}{old}" if old else str(extra_path)
    return {**os.environ, "PYTHONPATH": path}


# -- shared helpers -------------------------------------------------------------------------


def sample_bytes() -> bytes:
    """The exact bytes agentctl writes for one message, so the baselines write as much."""
    return AgentMessage(from_agent="user", to_agent="echo", content=CONTENT).to_json_bytes()


def make_inbox(root: Path) -> dict[str, Path]:
    """A bare Maildir-style inbox for the baselines."""
    dirs = {sub: root / sub for sub in ("tmp", "new", "processing", "done")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return dirs


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bare_deliver(dirs: dict[str, Path], name: str, data: bytes, *, fsync: bool) -> None:
    """The minimum correct delivery: write a tmp file, link it into new/, drop the tmp name."""
    tmp = dirs["tmp"] / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, dirs["new"] / name)
    os.unlink(tmp)
    if fsync:
        fsync_dir(dirs["new"])


def write_roster(directory: Path, agents_yaml: str, *, poll_interval_s: float = 0.5) -> Path:
    """A roster with durability none (temp dirs) and the default poll interval: wake-ups
    must come from inotify, not from polling, for the latency row to mean anything."""
    path = directory / "agents.yaml"
    head = f"workspace: workspace\ndurability: none\npoll_interval_s: {poll_interval_s}\n"
    path.write_text(head + "agents:\n" + textwrap.indent(textwrap.dedent(agents_yaml), "  "))
    return path


def read_status(workspace: Path, agent: str) -> dict[str, object]:
    try:
        data = json.loads((workspace / agent / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def start_worker(directory: Path, roster: Path, agent: str, env: dict[str, str]) -> Popen:
    """A real worker process, as `agentctl run` starts it; returns once it reports idle."""
    workspace = directory / "workspace"
    log = directory / f"{agent}.log"
    argv = [sys.executable, "-m", "agentctl.runtime.worker", "--config", str(roster)]
    argv += ["--workspace", str(workspace), "--agent", agent]
    proc = CHILDREN.spawn(argv, cwd=directory, log=log, env=env)
    wait_until(
        lambda: read_status(workspace, agent).get("state") in ("idle", "busy"),
        timeout_s=READY_TIMEOUT_S,
        what=f"worker {agent}",
        proc=proc,
        log=log,
    )
    return proc


def count_files(directory: Path) -> int:
    return sum(1 for n in os.listdir(directory) if not n.startswith("."))


# -- 1. send throughput ---------------------------------------------------------------------


def bench_send(tmp: Path, sizes: Sizes, *, fsync: bool) -> Row:
    """Messages/s through WorkspaceRouter.send vs the bare loop, interleaved in chunks of
    SEND_CHUNK into one bare inbox and one workspace: the cost of creating a file swings 2-6x
    within seconds here, and alternating small chunks gives both sides the same disk. The
    figures are total messages over total time per side; the note gives the spread of the
    per-chunk ratios."""
    total = sizes.send_fsync if fsync else sizes.send_none
    label = "fsync" if fsync else "none"
    data = sample_bytes()
    dirs = make_inbox(tmp / f"send-bare-{label}")
    router = WorkspaceRouter(tmp / f"send-ws-{label}", fsync=fsync)
    # The first send creates the inbox, outbox and journal: not what is being measured.
    router.send(AgentMessage(from_agent="user", to_agent="echo", content=CONTENT))
    bare_s = ours_s = 0.0
    ratios = []
    for chunk in range(max(1, total // SEND_CHUNK)):
        started = time.perf_counter()
        for i in range(SEND_CHUNK):
            bare_deliver(dirs, f"1-{chunk:06d}-{i:04d}.json", data, fsync=fsync)
        bare_done = time.perf_counter()
        for _ in range(SEND_CHUNK):
            # Building the message is part of sending it through the API.
            router.send(AgentMessage(from_agent="user", to_agent="echo", content=CONTENT))
        ours_done = time.perf_counter()
        bare_s += bare_done - started
        ours_s += ours_done - bare_done
        ratios.append((bare_done - started) / (ours_done - bare_done))
    count = max(1, total // SEND_CHUNK) * SEND_CHUNK
    ours, bare = count / ours_s, count / bare_s
    deciles = statistics.quantiles(ratios, n=10) if len(ratios) > 1 else ratios * 9
    return Row(
        name=f"send, durability {label}",
        unit="msg/s",
        agentctl=ours,
        baseline=bare,
        target=">= 0.5x",
        passed=ours >= 0.5 * bare,
        note=f"{count} msgs in chunks of {SEND_CHUNK}; chunk ratios p10-p90 "
        f"{deciles[0]:.2f}-{deciles[-1]:.2f}x",
    )


# -- 2. idle latency ------------------------------------------------------------------------

STAMP_AGENT = '''\
"""Records when process() starts, then answers like echo (a reply to `user`)."""
import os
import time

from agentctl.model.agent import BaseAgent


class StampAgent(BaseAgent):
    def __init__(self, name="stamp", role="", expertise=None):
        super().__init__(name=name, role=role or "stamps", expertise=expertise or [])
        self._out = open(os.environ["BENCH_STAMPS"], "a", buffering=1)

    async def process(self, task, context):
        started_ns = time.monotonic_ns()  # CLOCK_MONOTONIC is system-wide on Linux
        self._out.write(f"{context['message']['id']} {started_ns}\\n")
        return {"agent": self.name, "echo": task}
'''

BARE_CONSUMER = '''\
"""The baseline consumer: a default watchdog Observer that stamps each file's arrival."""
import ctypes
import os
import signal
import sys
import time

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the benchmark
watch_dir, stamps, ready = sys.argv[1:4]
out = open(stamps, "a", buffering=1)


class Stamp(FileSystemEventHandler):
    def on_created(self, event):
        now_ns = time.monotonic_ns()
        out.write(f"{os.path.basename(event.src_path)} {now_ns}\\n")

    def on_moved(self, event):
        now_ns = time.monotonic_ns()
        out.write(f"{os.path.basename(event.dest_path)} {now_ns}\\n")


observer = Observer()
observer.schedule(Stamp(), watch_dir, recursive=False)
observer.start()
open(ready, "w").close()
signal.sigwait({signal.SIGTERM, signal.SIGINT})
observer.stop()
observer.join()
'''


class StampReader:
    """Follows the stamps file a consumer appends `key monotonic_ns` lines to."""

    def __init__(self, path: Path) -> None:
        path.touch()
        self._file: IO[str] = open(path)  # closed by close()
        self._partial = ""

    def next_stamp(self, timeout_s: float = 10.0) -> tuple[str, int]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._partial += self._file.readline()
            if self._partial.endswith("\n"):
                key, stamp = self._partial.split()
                self._partial = ""
                return key, int(stamp)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no handler stamp within {timeout_s:g} s")
            # Polling costs the sender CPU, not the measurement: the consumer takes the stamp.
            time.sleep(0.0005)

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class Latencies:
    """Per message: send call start -> handler start, and how long the send call itself took
    (the part a consumer cannot help: file creation on a busy disk)."""

    to_handler_ms: list[float]
    send_call_ms: list[float]


def measure_latencies(
    send_one: Callable[[int], tuple[str, int]], reader: StampReader, sizes: Sizes
) -> Latencies:
    """Send one message at a time, wait for its stamp, pause; keep those after the warm-up."""
    to_handler_ms, send_call_ms = [], []
    for i in range(sizes.latency_warmup + sizes.latency_msgs):
        key, sent_ns = send_one(i)
        returned_ns = time.monotonic_ns()
        got_key, started_ns = reader.next_stamp()
        if got_key != key:
            raise RuntimeError(f"expected a stamp for {key}, got {got_key}")
        if i >= sizes.latency_warmup:
            to_handler_ms.append((started_ns - sent_ns) / 1e6)
            send_call_ms.append((returned_ns - sent_ns) / 1e6)
        time.sleep(sizes.latency_gap_s)  # let the consumer go idle again
    return Latencies(to_handler_ms, send_call_ms)


def agentctl_latencies(tmp: Path, sizes: Sizes) -> Latencies:
    directory = tmp / "latency-agentctl"
    directory.mkdir()
    (directory / "bench_stamp_agent.py").write_text(STAMP_AGENT)
    roster = write_roster(directory, "- name: stamp\n  python: bench_stamp_agent:StampAgent\n")
    stamps = directory / "stamps.txt"
    reader = StampReader(stamps)
    env = {**_child_env(directory), "BENCH_STAMPS": str(stamps)}
    proc = start_worker(directory, roster, "stamp", env)
    router = WorkspaceRouter(directory / "workspace", fsync=False)

    def send_one(i: int) -> tuple[str, int]:
        message = AgentMessage(from_agent="user", to_agent="stamp", content=CONTENT)
        sent_ns = time.monotonic_ns()
        router.send(message)
        return message.id, sent_ns

    try:
        return measure_latencies(send_one, reader, sizes)
    finally:
        reader.close()
        CHILDREN.stop(proc)


def bare_latencies(tmp: Path, sizes: Sizes) -> Latencies:
    directory = tmp / "latency-bare"
    dirs = make_inbox(directory / "inbox")
    script = directory / "bare_consumer.py"
    script.write_text(BARE_CONSUMER)
    stamps, ready = directory / "stamps.txt", directory / "ready"
    reader = StampReader(stamps)
    log = directory / "consumer.log"
    argv = [sys.executable, str(script), str(dirs["new"]), str(stamps), str(ready)]
    proc = CHILDREN.spawn(argv, cwd=directory, log=log, env=dict(os.environ))
    wait_until(ready.exists, timeout_s=READY_TIMEOUT_S, what="bare consumer", proc=proc, log=log)
    data = sample_bytes()

    def send_one(i: int) -> tuple[str, int]:
        name = f"1-{i:08d}.json"
        sent_ns = time.monotonic_ns()
        bare_deliver(dirs, name, data, fsync=False)
        return name, sent_ns

    try:
        return measure_latencies(send_one, reader, sizes)
    finally:
        reader.close()
        CHILDREN.stop(proc)


def bench_latency(tmp: Path, sizes: Sizes) -> list[Row]:
    bare, ours = bare_latencies(tmp, sizes), agentctl_latencies(tmp, sizes)
    p50, bare_p50 = percentile(ours.to_handler_ms, 50), percentile(bare.to_handler_ms, 50)
    p99, bare_p99 = percentile(ours.to_handler_ms, 99), percentile(bare.to_handler_ms, 99)
    send_p50, bare_send_p50 = percentile(ours.send_call_ms, 50), percentile(bare.send_call_ms, 50)
    note = (
        f"{len(ours.to_handler_ms)} msgs; send call alone p50 {send_p50:.2f} ms "
        f"(bare {bare_send_p50:.2f}); max {max(ours.to_handler_ms):.2f} ms"
    )
    return [
        Row("latency send->handler, p50", "ms", p50, bare_p50, "<= 2x", p50 <= 2 * bare_p50, note),
        Row("latency send->handler, p99", "ms", p99, bare_p99, "< 10 ms", p99 < 10.0, note),
    ]


# -- 3. burst drain -------------------------------------------------------------------------


def parse_iso_s(value: object) -> float:
    text = str(value).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def agentctl_drain_rate(tmp: Path, count: int) -> tuple[float, str]:
    """Messages/s of the echo worker over a pre-delivered burst, measured between two status
    snapshots (each pairs a `handled` count with the worker's own clock), so the worker's
    start-up (interpreter, imports) is not counted as draining."""
    directory = tmp / "drain-agentctl"
    directory.mkdir()
    roster = write_roster(directory, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    workspace = directory / "workspace"
    router = WorkspaceRouter(workspace, fsync=False)
    for _ in range(count):
        router.send(AgentMessage(from_agent="user", to_agent="echo", content=CONTENT))
    spawned_s = time.monotonic()
    log = directory / "echo.log"
    proc = CHILDREN.spawn(
        [sys.executable, "-m", "agentctl.runtime.worker", "--config", str(roster)]
        + ["--workspace", str(workspace), "--agent", "echo"],
        cwd=directory,
        log=log,
        env=_child_env(directory),
    )
    first: tuple[int, float] | None = None
    last: tuple[int, float] = (0, 0.0)
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while last[0] < count:
            status = read_status(workspace, "echo")
            handled = int(str(status.get("handled", 0)))
            if handled > 0:
                last = (handled, parse_iso_s(status["heartbeat_at"]))
                first = first or last
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"drain stopped at {handled}/{count}\n{log_tail(log)}")
            # Coarse polling: reading status.json is cheap, but this machine has 2 cores.
            time.sleep(0.05)
        wall_s = time.monotonic() - spawned_s
    finally:
        CHILDREN.stop(proc)
    inbox = workspace / "echo" / "inbox"
    done, replies = count_files(inbox / "done"), count_files(workspace / "user" / "inbox" / "new")
    if done != count or replies != count:
        raise RuntimeError(f"drain: {done} in done/, {replies} replies, expected {count}")
    assert first is not None
    rate = (last[0] - first[0]) / (last[1] - first[1])
    return rate, f"{count} msgs, {wall_s:.1f} s incl. start-up"


class BareDrain:
    """A bare consumer over one pre-written burst: list once, then claim (rename to
    processing/), read, ack (rename to done/).

    The burst is written once and recycled (done/ back to new/ by rename, which is cheap next
    to creating files), so the baselines can be run both before and after agentctl's drain.
    """

    def __init__(self, tmp: Path, count: int) -> None:
        self.count = count
        self.dirs = make_inbox(tmp / "drain-bare")
        self.replies = make_inbox(tmp / "drain-bare-replies")
        self._passes = 0
        data = sample_bytes()
        for i in range(count):
            bare_deliver(self.dirs, f"1-{i:08d}.json", data, fsync=False)

    def rate(self, *, reply: bool) -> float:
        """Messages/s of one pass. With `reply`, each message also gets a reply file written
        the bare way (tmp + link), as the echo agent must: a file creation per message."""
        new, processing, done = self.dirs["new"], self.dirs["processing"], self.dirs["done"]
        start = time.perf_counter()
        for name in sorted(os.listdir(new)):
            os.rename(new / name, processing / name)
            with open(processing / name, "rb") as f:
                body = f.read()
            if reply:
                bare_deliver(self.replies, name, body, fsync=False)
            os.rename(processing / name, done / name)
        elapsed_s = time.perf_counter() - start
        if count_files(done) != self.count:
            raise RuntimeError("bare drain lost messages")
        self._recycle()
        return self.count / elapsed_s

    def _recycle(self) -> None:
        for name in os.listdir(self.dirs["done"]):
            os.rename(self.dirs["done"] / name, self.dirs["new"] / name)
        # Set the replies aside rather than delete them: on ext4 without a journal (this VM's
        # disk) a new inode skips every inode freed in the last 1-6 minutes, so deleting 10k
        # files here would slow every file creation that follows, agentctl's replies included.
        self._passes += 1
        self.replies["new"].rename(self.replies["new"].with_name(f"new.{self._passes}"))
        self.replies["new"].mkdir()


def bench_drain(tmp: Path, sizes: Sizes) -> list[Row]:
    """The echo worker's drain rate between two runs of each baseline (their mean is used), so
    a change in the machine's load during the long agentctl run hits both sides."""
    bare = BareDrain(tmp, sizes.drain_msgs)
    plain_rates, reply_rates = [bare.rate(reply=False)], [bare.rate(reply=True)]
    ours, note = agentctl_drain_rate(tmp, sizes.drain_msgs)
    plain_rates.append(bare.rate(reply=False))
    reply_rates.append(bare.rate(reply=True))
    plain, with_reply = statistics.mean(plain_rates), statistics.mean(reply_rates)
    burst = f"drain {sizes.drain_msgs // 1000}k burst (echo)"
    return [
        # The target (issue 19): the bare loop doing the file work an echo agent must do,
        # reply file included (a file creation per message).
        Row(
            burst,
            "msg/s",
            ours,
            with_reply,
            ">= 0.5x",
            ours >= 0.5 * with_reply,
            f"{note}; bare+reply before/after {reply_rates[0]:,.0f}/{reply_rates[1]:,.0f}",
        ),
        # Not a target: the plain claim+ack loop, which writes no reply (out of reach).
        Row(
            f"{burst} vs bare claim+ack",
            "msg/s",
            ours,
            plain,
            "(info)",
            None,
            f"bare before/after {plain_rates[0]:,.0f}/{plain_rates[1]:,.0f}",
        ),
    ]


# -- 4. CLI start-up ------------------------------------------------------------------------


def run_s(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    elapsed_s = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{argv} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return elapsed_s


def bench_cli(tmp: Path, sizes: Sizes) -> list[Row]:
    directory = tmp / "cli"
    directory.mkdir()
    roster = write_roster(
        directory,
        "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n"
        "- name: shout\n  exec: [python3, -c, 'print(1)']\n",
    )
    workspace = directory / "workspace"
    router = WorkspaceRouter(workspace, fsync=False)
    for _ in range(5):  # a few waiting messages, so status has depths to count
        router.send(AgentMessage(from_agent="user", to_agent="echo", content=CONTENT))
    command = str(BIN_DIR / "agentctl")
    commands = {
        "typer": [sys.executable, "-c", "import typer"],
        "help": [command, "--help"],
        "status": [command, "status", "--json", "-c", str(roster), "-w", str(workspace)],
    }
    times_s: dict[str, list[float]] = {key: [] for key in commands}
    # Compile agentctl's bytecode first, as installing a package does (typer's is compiled):
    # with PYTHONDONTWRITEBYTECODE set, as on these VMs, an editable checkout would otherwise
    # compile every module it imports on every run (+20-35 ms).
    compileall.compile_dir(Path(agentctl.__file__).parent, quiet=1)
    # One discarded warm-up round (cold page cache), then round-robin so noise lands on all
    # three commands alike.
    for round_no in range(sizes.cli_runs + 1):
        for key, argv in commands.items():
            elapsed_s = run_s(argv, directory)
            if round_no:
                times_s[key].append(elapsed_s)
    typer_ms = statistics.median(times_s["typer"]) * 1000
    help_ms = statistics.median(times_s["help"]) * 1000
    status_ms = statistics.median(times_s["status"]) * 1000
    note = f"median of {sizes.cli_runs}"
    return [
        Row(
            "CLI `agentctl --help`",
            "ms",
            help_ms,
            typer_ms,
            "<= 1.3x",
            help_ms <= 1.3 * typer_ms,
            note,
        ),
        Row(
            "CLI `agentctl status --json`",
            "ms",
            status_ms,
            typer_ms,
            "<= 1.6x",
            status_ms <= 1.6 * typer_ms,
            note,
        ),
    ]


# -- report ---------------------------------------------------------------------------------

BASELINES = {
    "send": "write tmp + link new/ (+fsync file, dir)",
    "latency": "watchdog Observer, same write+link",
    "drain": "rename new->processing, read, rename->done (+ write tmp, link reply)",
    "CLI": 'python -c "import typer"',
}


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def file_create_us(directory: Path, count: int = 300) -> float:
    """Median microseconds to create, write and close a 1 KB file in a fresh directory.

    On ext4 without a journal (these VMs) a new inode skips every inode freed in the last 1-6
    minutes, so this cost swings 2-6x with what was deleted lately (a test run, a previous
    benchmark): it is printed in the title, because every ratio below depends on it.
    """
    directory.mkdir()
    data = sample_bytes()
    times = []
    for i in range(count):
        start = time.perf_counter()
        fd = os.open(directory / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def machine_line(load_start: float, create_us: tuple[float, float], base: Path) -> str:
    fs = subprocess.run(
        ["df", "--output=fstype", str(base)], capture_output=True, text=True
    ).stdout.split()
    # The load average says whether something else was running (this run adds ~1-2).
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"load {load_start:.1f} -> {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}, "
        f"temp dir on {fs[-1] if fs else '?'}, "
        f"file create {create_us[0]:.0f} -> {create_us[1]:.0f} us"
    )


def print_rich(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("measurement", "unit", "agentctl", "baseline", "ratio", "target", "result"):
        table.add_column(column, justify="right" if column in ("agentctl", "baseline") else None)
    table.add_column("note")
    for row in rows:
        verdict = {True: "[green]PASS[/]", False: "[red]MISS[/]", None: "info"}[row.passed]
        table.add_row(
            row.name,
            row.unit,
            fmt(row.agentctl),
            fmt(row.baseline),
            f"{row.ratio:.2f}x",
            row.target,
            verdict,
            row.note,
        )
    # Piped output (make bench | tee) would otherwise be squeezed into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    for key, text in BASELINES.items():
        console.print(f"  baseline of {key}: {text}")


VERDICTS = {True: "PASS", False: "MISS", None: "info"}


def print_markdown(rows: list[Row], title: str) -> None:
    print(f"{title}\n")
    print("| measurement | agentctl | baseline | ratio | target | result | note |")
    print("|---|---:|---:|---:|---|---|---|")
    for row in rows:
        print(
            f"| {row.name} | {fmt(row.agentctl)} {row.unit} | {fmt(row.baseline)} {row.unit} "
            f"| {row.ratio:.2f}x | {row.target} | {VERDICTS[row.passed]} "
            f"| {row.note} |"
        )
    print()
    for key, text in BASELINES.items():
        print(f"- baseline of {key}: {text}")


# -- main -----------------------------------------------------------------------------------


def run_all(sizes: Sizes, only: set[str], base: Path) -> tuple[list[Row], tuple[float, float]]:
    """The rows, and the file-creation cost at the start and at the end (microseconds)."""
    rows: list[Row] = []
    # Write back the inode tables of earlier deletions: a deleted inode counts as recent for
    # 6 minutes while its table block is dirty, 1 minute once it is clean.
    os.sync()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="agentctl-bench-", dir=base) as name:
        tmp = Path(name)
        create_start_us = file_create_us(tmp / "probe-start")
        if create_start_us > SLOW_CREATE_US:
            print(
                f"warning: creating a file takes {create_start_us:.0f} us here (40-70 on a "
                "settled disk): many files were deleted nearby in the last minutes, which "
                "slows the baselines more than agentctl; run again in a minute",
                file=sys.stderr,
            )
        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            (
                "send",
                lambda: [bench_send(tmp, sizes, fsync=False), bench_send(tmp, sizes, fsync=True)],
            ),
            ("latency", lambda: bench_latency(tmp, sizes)),
            ("drain", lambda: bench_drain(tmp, sizes)),
            ("cli", lambda: bench_cli(tmp, sizes)),
        ]
        rows += run_steps(steps, only)
        create_end_us = file_create_us(tmp / "probe-end")
    os.sync()  # so the next run pays for these deletions 1 minute, not 6
    return rows, (create_start_us, create_end_us)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (~30 s)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument(
        "--only",
        action="append",
        choices=["send", "latency", "drain", "cli"],
        default=[],
        help="run only these rows (repeatable)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_BENCH_DIR,
        help="where the temporary files go (default: .bench-tmp/ in the checkout, on the disk "
        "of the default workspace and away from /tmp's churn)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    # PYTHONPATH can point the benchmark (and its children) at another checkout: say which.
    print(f"measuring agentctl from {Path(agentctl.__file__).parent}", file=sys.stderr)
    started_s = time.monotonic()
    load_start = os.getloadavg()[0]
    try:
        with stop_children_on_exit():
            rows, create_us = run_all(sizes, set(args.only), args.dir)
    except KeyboardInterrupt:
        print("interrupted; all subprocesses stopped", file=sys.stderr)
        return 130
    quick = " --quick" if args.quick else ""
    title = f"agentctl bench{quick}: {machine_line(load_start, create_us, args.dir)}"
    if args.markdown:
        print_markdown(rows, title)
    else:
        print_rich(rows, title)
    print(f"total {time.monotonic() - started_s:.0f} s", file=sys.stderr)
    missed = any(row.passed is False for row in rows)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
