"""The NATS connection: subjects, stream and bucket set-up, and a loop thread for sync callers.

nats-py is asynchronous; agentctl's worker, conductor and commands are synchronous. A
`LoopThread` runs one asyncio loop in a daemon thread and `call()` runs a coroutine on it from
any thread, so one connection serves the worker's main thread, its status reporter and the
in-progress acks alike.

Subjects (all in one stream, which is the audit trail):
    agents.<agent>.inbox    messages to the agent (Nats-Msg-Id = message id: stored once)
    agents.<agent>.dead     messages given up on, with the reason in headers
    agents.<agent>.events   the journal: what the agent (or agentctl for it) did
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from agentctl.model.errors import AgentctlError

log = logging.getLogger(__name__)

STREAM = "AGENTCTL"
INBOX_SUBJECT = "agents.{agent}.inbox"
DEAD_SUBJECT = "agents.{agent}.dead"
EVENTS_SUBJECT = "agents.{agent}.events"
STREAM_SUBJECTS = ["agents.*.inbox", "agents.*.dead", "agents.*.events"]
# A redelivered request's reply is recognised by its derived id while the server remembers it.
DUPLICATE_WINDOW_S = 15 * 60.0
CONNECT_TIMEOUT_S = 5.0
# One request to the server. Short enough that a command retries a few times within its
# patience while a cluster elects a new leader (measured: 2-8 s after losing a node).
CALL_TIMEOUT_S = 5.0
STATUS_TTL_S = 24 * 3600.0
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # a host name as one key token
MISSING_EXTRA = "NATS support needs the nats extra: pip install 'agentctl[nats]'"

T = TypeVar("T")


class BusError(AgentctlError):
    """The message bus is unreachable or refused something."""


class MissingExtraError(BusError):
    """nats-py is not installed (the `nats` extra)."""


def nats_module() -> Any:
    """nats-py, or BusError naming the extra to install."""
    try:
        import nats
    except ImportError:
        raise MissingExtraError(MISSING_EXTRA) from None
    return nats


def status_bucket(stream: str) -> str:
    """The key-value bucket where workers publish their status (one per stream). Entries
    expire a day after their last write, so a worker gone for good does not stay for ever."""
    return f"{stream}_status"


def control_bucket(stream: str) -> str:
    """The key-value bucket of the halt record (kept until `resume`) and the conductor lease."""
    return f"{stream}_control"


def status_key(agent: str, host: str, replica: int) -> str:
    """A worker's key in the status bucket: `status.<agent>.<host>.<replica>`."""
    return f"status.{agent}.{_HOST_UNSAFE.sub('_', host) or 'host'}.{replica}"


class LoopThread:
    """An asyncio loop in a daemon thread; call() runs coroutines on it from other threads."""

    def __init__(self, name: str = "nats") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run `coro` on the loop and wait for its result (TimeoutError after `timeout_s`)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start `coro` on the loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Stop the loop and its thread."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


async def open_connection(
    servers: list[str],
    *,
    name: str,
    on_change: Callable[[bool], None] | None = None,
    patient: bool = False,
) -> Any:
    """Connect to the first server that answers.

    Once connected, the client reconnects for ever (a restarted server or a lost node must not
    stop an agent). The first connection fails in bounded time with one clear error, unless
    `patient` (workers: they wait for the cluster, showing `disconnected` meanwhile).
    """
    nats = nats_module()

    async def disconnected() -> None:
        if on_change is not None:
            on_change(False)

    async def reconnected() -> None:
        if on_change is not None:
            on_change(True)

    async def error(exc: Exception) -> None:
        log.debug("NATS: %s", exc)

    options: dict[str, Any] = {
        "name": name,
        "connect_timeout": 2,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        "allow_reconnect": True,
    }
    where = ", ".join(servers)
    if not patient:
        # nats-py keeps retrying a refused first connection until our timeout; a command
        # should say at once that nothing listens.
        await _probe(servers, where)
    delay_s = 0.2
    while True:
        try:
            return await asyncio.wait_for(
                nats.connect(servers, **options), timeout=CONNECT_TIMEOUT_S
            )
        except Exception as exc:  # nats-py raises several unrelated types for "cannot connect"
            if not patient:
                detail = (
                    f"no server answered in {CONNECT_TIMEOUT_S:g} s"
                    if isinstance(exc, TimeoutError)
                    else str(exc) or type(exc).__name__
                )
                raise BusError(f"{where}: cannot connect to NATS: {detail}") from None
            if on_change is not None:
                on_change(False)
            log.warning("cannot connect to NATS at %s (%s); retrying", where, exc)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


async def _probe(servers: list[str], where: str) -> None:
    """BusError unless a TCP connection to one of the servers opens."""
    from urllib.parse import urlsplit

    problems = []
    for server in servers:
        url = urlsplit(server if "://" in server else f"nats://{server}")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(url.hostname or "localhost", url.port or 4222), 2.0
            )
        except (OSError, TimeoutError, ValueError) as exc:
            problems.append(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
            continue
        writer.close()
        return
    detail = problems[-1] if problems else "no server given"
    raise BusError(f"{where}: cannot connect to NATS: {detail or 'timed out'}")


async def ensure_stream(js: Any, stream: str, replicas: int) -> None:
    """Create the stream if it does not exist (keeping everything: it is the audit trail)."""
    from nats.js.api import StorageType, StreamConfig

    config = StreamConfig(
        name=stream,
        subjects=STREAM_SUBJECTS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
    )
    await _create(lambda: js.add_stream(config), lambda: js.stream_info(stream), f"stream {stream}")
    await wait_for_leader(js, stream)


async def ensure_bucket(js: Any, bucket: str, replicas: int, *, ttl_s: float = 0.0) -> Any:
    """A key-value bucket (created if missing); entries expire `ttl_s` after their last write
    (0: never)."""
    from nats.js.api import KeyValueConfig

    config = KeyValueConfig(bucket=bucket, history=1, replicas=replicas, ttl=ttl_s or None)
    kv = await _create(
        lambda: js.create_key_value(config), lambda: js.key_value(bucket), f"bucket {bucket}"
    )
    await wait_for_leader(js, f"KV_{bucket}")
    return kv


async def wait_for_leader(js: Any, stream: str, timeout_s: float = 20.0) -> None:
    """Until the stream has a leader. Creating a replicated stream returns once the cluster
    has accepted it, before its leader is elected; until then requests to it (a KV get) go
    unanswered and time out (measured on a fresh three-node cluster)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            info = await js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                return
        except Exception as exc:
            log.debug("stream %s: %s", stream, exc)
        if asyncio.get_running_loop().time() > deadline:
            raise BusError(f"stream {stream} has no leader after {timeout_s:g} s")
        await asyncio.sleep(0.1)


async def _create(
    make: Callable[[], Awaitable[T]], existing: Callable[[], Awaitable[T]], what: str
) -> T:
    # A cluster that has just started (or lost a node) answers "no responders" or times out
    # until its JetStream leader is elected: a few seconds at most.
    from nats.js.errors import BadRequestError

    deadline = asyncio.get_running_loop().time() + 20.0
    while True:
        try:
            return await make()
        except BadRequestError as exc:
            if "already in use" not in str(exc) and "exists" not in str(exc):
                raise BusError(f"cannot create {what}: {exc}") from None
            # Made by someone else with other settings (say, another replica count): use it.
            log.info("%s exists with other settings; using it as it is", what)
            return await existing()
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise BusError(f"cannot create {what}: {exc or type(exc).__name__}") from None
            await asyncio.sleep(0.25)
