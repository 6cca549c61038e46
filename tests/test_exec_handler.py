"""`exec:` agents: a program per message, its stdin, stdout and stderr; real worker processes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl.flow.router import WorkspaceRouter
from agentctl.model.message import AgentMessage
from tests.conftest import write_roster

MEMORY_LIMIT_BYTES = 2**30


def _limit_memory() -> None:
    # An unbounded read must fail fast with MemoryError, not eat the machine.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _worker(cwd: Path, agent: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentctl.runtime.worker", "--config", str(cwd / "agents.yaml"),
         "--workspace", str(cwd / "workspace"), "--agent", agent],
        cwd=cwd, stdout=open(cwd / f"{agent}.log", "ab"), stderr=subprocess.STDOUT,
        preexec_fn=_limit_memory,  # noqa: PLW1509 - one setrlimit call
    )


def _ask(cwd: Path, agent: str, content: object) -> AgentMessage:
    router = WorkspaceRouter(cwd / "workspace", fsync=False)
    request = AgentMessage(from_agent="user", to_agent=agent, content=content)
    router.send(request)
    worker = _worker(cwd, agent)
    try:
        return router.wait_for_reply(request, timeout_s=30)
    finally:
        worker.terminate()
        worker.wait(timeout=30)  # a stop on a loaded machine (CI: 2 cores) can take seconds


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.timeout(60)
def test_a_program_flooding_stdout_and_stderr_fails_at_the_bound_and_is_killed(
    tmp_path: Path,
) -> None:
    # Given: a program printing without end on stdout, and a child of it doing so on stderr.
    write_roster(tmp_path, """\
        - name: flood
          exec: [sh, -c, "yes >&2 & echo $! > child.pid; exec yes"]
          max_attempts: 1
    """)

    # When: it handles a message, in a worker that may not grow past 1 GiB.
    reply = _ask(tmp_path, "flood", "x")

    # Then: the attempt fails with what happened, the whole group is gone, the log is bounded.
    assert reply.content["verdict"] == "escalate"
    assert "sh: stdout over 1048576 bytes" in reply.content["error"]
    assert _gone(int((tmp_path / "child.pid").read_text()))
    assert (tmp_path / "flood.log").stat().st_size < 2 * 1024 * 1024


def test_a_result_is_bounded_by_the_roster_max_message_bytes(tmp_path: Path) -> None:
    write_roster(tmp_path, f"""\
        - name: big
          exec: [{sys.executable}, -c, "import json; print(json.dumps('x' * 100_000))"]
          max_attempts: 1
    """, max_message_bytes=65536)

    reply = _ask(tmp_path, "big", "x")

    assert "stdout over 65536 bytes" in reply.content["error"]


def test_a_large_message_reaches_a_program_and_one_that_ignores_stdin(tmp_path: Path) -> None:
    write_roster(tmp_path, """\
        - name: cat
          exec: [cat]
        - name: deaf
          exec: [sh, -c, "echo 7"]
    """)
    content = "y" * 500_000  # far over a pipe's buffer

    echoed = _ask(tmp_path, "cat", content)
    ignored = _ask(tmp_path, "deaf", content)

    assert echoed.content["content"] == content
    assert ignored.content == 7


def test_a_failure_reports_the_end_of_stderr(tmp_path: Path) -> None:
    write_roster(tmp_path, """\
        - name: fails
          exec: [sh, -c, "cat > /dev/null; seq 1 100000 >&2; echo 'last words' >&2; exit 3"]
          max_attempts: 1
    """)

    reply = _ask(tmp_path, "fails", "x")

    assert reply.content["error"].startswith("sh exited with status 3: ")
    assert reply.content["error"].endswith("100000\nlast words")
    log = (tmp_path / "fails.log").read_text()
    assert "99999\n100000\nlast words" in log
    assert json.dumps(reply.content)  # the reply is a valid message
    assert os.path.getsize(tmp_path / "fails.log") < 1024 * 1024
