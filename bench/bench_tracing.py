"""The cost of live OpenTelemetry export: one echo agent draining a pre-delivered burst under
`agentctl run`, without tracing and with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a local
OTLP/HTTP receiver (in this process: it reads each request and answers 200), same run,
alternated so the noisy disk hits both alike.

    python bench/bench_tracing.py [--count 2000] [--rounds 3]

Prints the drain rate of each round and the median of each setting; the issue's bar is a
slowdown of at most 10 %. The receiver counts the requests it got, so a run whose spans never
left is not taken for a free one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory

from benchkit import CHILDREN, log_tail, stop_children_on_exit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agentctl.flow.router import WorkspaceRouter  # noqa: E402
from agentctl.model.message import AgentMessage  # noqa: E402
from agentctl.protocol.status import parse_iso, read_status  # noqa: E402

DRAIN_TIMEOUT_S = 600.0


class Receiver:
    """An OTLP/HTTP endpoint that takes every request and counts it."""

    def __init__(self) -> None:
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


def drain_rate(tmp: Path, count: int, endpoint: str | None) -> float:
    """Messages/s of `echo` under `agentctl run`, between two status snapshots (so start-up
    is not counted)."""
    directory = Path(tmp)
    directory.mkdir(parents=True)
    (directory / "agents.yaml").write_text(
        "workspace: workspace\ndurability: none\npoll_interval_s: 0.5\nagents:\n"
        "  - name: echo\n    python: agentctl.agents.echo:EchoAgent\n"
    )
    workspace = directory / "workspace"
    router = WorkspaceRouter(workspace, fsync=False)
    for _ in range(count):
        router.send(AgentMessage(from_agent="user", to_agent="echo", content={"n": 1}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(REPO)
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    log = directory / "run.log"
    proc = CHILDREN.spawn([sys.executable, "-m", "agentctl", "run"], cwd=directory, log=log,
                          env=env)  # fmt: skip
    first: tuple[int, float] | None = None
    last = (0, 0.0)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    try:
        while last[0] < count:
            status = read_status(workspace / "echo" / "status.json")
            if status is not None and status.handled > 0:
                moment = parse_iso(status.heartbeat_at)
                last = (status.handled, moment.timestamp() if moment else 0.0)
                first = first or last
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"drain stopped at {last[0]}/{count}\n{log_tail(log)}")
            time.sleep(0.05)
    finally:
        CHILDREN.stop(proc)
    assert first is not None and last[1] > first[1]
    return (last[0] - first[0]) / (last[1] - first[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receiver = Receiver()
    rates: dict[str, list[float]] = {"off": [], "live export": []}
    with stop_children_on_exit(), TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, endpoint in (("off", None), ("live export", receiver.url)):
                rate = drain_rate(Path(tmp) / f"{round_}-{name}", args.count, endpoint)
                rates[name].append(rate)
                print(f"round {round_ + 1} {name:12} {rate:8.0f} msg/s", flush=True)
    if not receiver.requests:
        raise RuntimeError("no span reached the receiver: live export did not run")
    off, live = (statistics.median(rates[k]) for k in ("off", "live export"))
    slower = (off - live) / off
    print(f"median: off {off:.0f} msg/s, live export {live:.0f} msg/s ({slower:+.1%} slower); "
          f"the receiver got {receiver.requests} requests")  # fmt: skip


if __name__ == "__main__":
    main()
