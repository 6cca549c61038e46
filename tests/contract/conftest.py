"""The contract suite's fixtures: every test runs once on the file workspace and once on NATS.

One nats-server serves the whole session; each test gets a stream of its own, so tests do not
see each other's messages and no server restarts between them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_roster
from tests.natsfix import NatsServer, find_nats_server

_streams = itertools.count(1)


@pytest.fixture(scope="session")
def contract_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server for every contract test on NATS."""
    if find_nats_server() is None:
        pytest.skip("nats-server is not installed")
    server = NatsServer(tmp_path_factory.mktemp("contract-nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["file", "nats"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which backend the test runs on."""
    return str(request.param)


@pytest.fixture
def roster_dir(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A directory whose agents.yaml names the backend (agents given by the test's `agents`)."""
    agents = (
        getattr(request, "param", None) or "- name: a\n  python: agentctl.agents.echo:EchoAgent\n"
    )
    settings: dict[str, object] = {}
    if kind == "nats":
        server = request.getfixturevalue("contract_nats")
        settings["transport"] = (
            f"{{kind: nats, servers: [{server.url}], stream: C{next(_streams)}}}"
        )
    write_roster(tmp_path, agents, **settings)
    return tmp_path
