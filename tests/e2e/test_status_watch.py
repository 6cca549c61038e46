"""`agentctl status --watch`: the table refreshed until Ctrl-C, without `run` (issue 15)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
from pathlib import Path

from tests.conftest import AGENTCTL, run_cli, wait_until, write_roster


def test_watch_prints_a_table_each_interval_until_ctrl_c(tmp_path: Path) -> None:
    # Given a roster and no supervisor, and stdout a file (not a terminal)
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    out = tmp_path / "watch.txt"
    with open(out, "wb") as out_file:
        proc = subprocess.Popen(
            [*AGENTCTL, "status", "--watch", "--interval-s", "0.2"], cwd=tmp_path,
            stdout=out_file, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        try:
            # When the second table has appeared
            wait_until(lambda: out.read_text().count("supervisor: not running") >= 2)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Then Ctrl-C ends it quietly, exit 0, and each table shows the agent
    assert proc.returncode == 0, err
    assert "Traceback" not in err.decode() and "echo" in out.read_text()


def test_watch_interval_must_be_positive(tmp_path: Path) -> None:
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    result = run_cli("status", "--watch", "--interval-s", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--interval-s" in result.stderr, result.stderr


def test_watch_on_a_terminal_refreshes_in_place_until_ctrl_c(tmp_path: Path) -> None:
    # Given a roster, no supervisor, and stdout a terminal of 80 columns (the rich Live path)
    import pty

    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen(
        [*AGENTCTL, "status", "--watch", "--interval-s", "0.2"], cwd=tmp_path,
        stdin=child_fd, stdout=child_fd, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(child_fd)
    seen = bytearray()

    def read_some() -> bool:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if ready:
            seen.extend(os.read(main_fd, 65536))
        return seen.count(b"supervisor: not running") >= 2

    try:
        # When the table has been drawn and then redrawn in place
        wait_until(read_some)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main_fd)
    # Then Ctrl-C ends it quietly with exit 0, and the table showed the agent
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"echo" in seen
