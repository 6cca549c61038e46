"""What `send --wait` says when no reply comes in time: what actually holds the reply, read from
the files and the status, never a blanket "still queued" (issue 15, item 3).

Real `agentctl run` (or none), real files; the foreign agents are small `sh` programs.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli, wait_until, write_roster

ECHO = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
"""


def _error_line(result) -> str:
    """The one `error:` line of a failed wait (exit 1)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "still queued" not in errors[0]
    return errors[0]


def _state(ws: Path, agent: str) -> str | None:
    try:
        return json.loads((ws / agent / "status.json").read_text())["state"]
    except (FileNotFoundError, ValueError):
        return None


def _wait(tmp_path: Path, to: str, timeout_s: str = "1", content: str = "hi"):
    return run_cli("send", to, content, "--wait", "--timeout-s", timeout_s, cwd=tmp_path)


def test_no_supervisor_says_so_and_where_the_request_waits(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    error = _error_line(_wait(tmp_path, "echo"))
    assert "no supervisor is running" in error and "new/" in error, error


def test_halted_workspace_says_since_when_and_why(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, ECHO)
    supervised(tmp_path).wait_ready(["echo"])
    assert run_cli("halt", "--reason", "disk maintenance", cwd=tmp_path).returncode == 0
    error = _error_line(_wait(tmp_path, "echo"))
    assert "halted since" in error and "disk maintenance" in error, error
    assert "agentctl resume" in error, error


def test_fatal_agent_says_since_its_error_and_next_try(tmp_path: Path, supervised) -> None:
    # Given an agent that exits at once, every time, until the supervisor leaves it down
    write_roster(tmp_path, """\
        - name: broken
          command: [sh, -c, "exit 2"]
          restart_backoff: {initial_s: 0.05, max_quick_failures: 2, cooldown_s: 600}
        """)
    supervised(tmp_path)
    wait_until(lambda: _state(tmp_path / "workspace", "broken") == "fatal")
    error = _error_line(_wait(tmp_path, "broken"))
    assert "broken is fatal since" in error and "exit" in error, error
    assert "next try at" in error and "new/" in error, error


def test_agent_added_after_run_started_is_not_run_by_it(tmp_path: Path, supervised) -> None:
    roster = write_roster(tmp_path, ECHO)
    supervised(tmp_path).wait_ready(["echo"])
    late = "  - name: late\n    python: agentctl.agents.echo:EchoAgent\n"
    roster.write_text(roster.read_text() + late)
    error = _error_line(_wait(tmp_path, "late"))
    assert "does not run late" in error and "new/" in error, error


def test_request_acked_without_a_reply_says_done(tmp_path: Path, supervised) -> None:
    # Given a foreign agent that acks every task into done/ and answers nowhere
    write_roster(tmp_path, """\
        - name: mute
          command: [sh, -c, 'while sleep 0.05; do for f in "$AGENTCTL_INBOX"/new/*.json; do [ -e "$f" ] && mv "$f" "$AGENTCTL_INBOX/done/"; done; done']
        """)  # noqa: E501
    supervised(tmp_path).wait_ready(["mute"])
    error = _error_line(_wait(tmp_path, "mute", timeout_s="2"))
    assert "done/" in error and "mute" in error, error


def test_request_in_dead_says_why(tmp_path: Path, supervised) -> None:
    # Given a foreign agent that buries every task in dead/ with its reason
    write_roster(tmp_path, """\
        - name: grim
          command: [sh, -c, 'while sleep 0.05; do for f in "$AGENTCTL_INBOX"/new/*.json; do [ -e "$f" ] || continue; n=${f##*/}; mkdir -p "$AGENTCTL_INBOX/dead/.errors"; echo "{\\"error\\": \\"no such skill\\", \\"error_kind\\": \\"handler\\"}" > "$AGENTCTL_INBOX/dead/.errors/$n"; mv "$f" "$AGENTCTL_INBOX/dead/"; done; done']
        """)  # noqa: E501
    supervised(tmp_path).wait_ready(["grim"])
    error = _error_line(_wait(tmp_path, "grim", timeout_s="2"))
    assert "dead/" in error and "no such skill" in error, error


def test_request_in_hand_says_which_agent_has_it(tmp_path: Path, supervised) -> None:
    # Given a foreign agent that claims every task and never finishes it
    write_roster(tmp_path, """\
        - name: slow
          command: [sh, -c, 'while sleep 0.05; do for f in "$AGENTCTL_INBOX"/new/*.json; do [ -e "$f" ] && mv "$f" "$AGENTCTL_INBOX/processing/"; done; done']
        """)  # noqa: E501
    supervised(tmp_path).wait_ready(["slow"])
    error = _error_line(_wait(tmp_path, "slow", timeout_s="2"))
    assert "slow has the request in hand" in error and "processing/" in error, error


JUDGE = """\
from agentctl.model.agent import BaseAgent

class Judge(BaseAgent):
    async def process(self, task, context):
        return {"verdict": "escalate", "reason": "needs a person"}
"""


def test_pipeline_run_waiting_for_a_person_says_escalations(tmp_path: Path, supervised) -> None:
    roster = write_roster(tmp_path, "- name: judge\n  python: judge:Judge\n")
    roster.write_text(roster.read_text() + "pipelines:\n  gate: [judge]\n")
    (tmp_path / "judge.py").write_text(JUDGE)
    supervised(tmp_path).wait_ready(["judge", "pipeline"])
    # The wait outlasts the one stage: the run is escalated when it gives up.
    error = _error_line(_wait(tmp_path, "pipeline:gate", timeout_s="5"))
    assert "waits for a person" in error and "agentctl escalations" in error, error
