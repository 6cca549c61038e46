"""Open escalations in `status`, and the roster's escalation_overdue_s."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentctl.flow.router import WorkspaceRouter
from agentctl.model.message import AgentMessage
from tests.conftest import run_cli, write_roster

ECHO = "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n"


def _escalate(tmp_path: Path, run: str, age_s: float) -> None:
    WorkspaceRouter(tmp_path / "workspace", fsync=False).send(
        AgentMessage(
            id=f"{run}.s1.escalation",
            from_agent="pipeline",
            to_agent="human",
            timestamp=datetime.now(UTC) - timedelta(seconds=age_s),
            content={"run": run, "pipeline": "review", "stage": 1, "agents": ["echo"],
                     "reason": "escalate from echo: unsure"},
        )
    )


def test_status_counts_open_and_overdue_escalations(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO, escalation_overdue_s=600)
    quiet = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    assert quiet["escalations"] == {"open": 0, "overdue": 0} and quiet["halted"] is None

    _escalate(tmp_path, "01OLDRUN", age_s=3600)
    _escalate(tmp_path, "01NEWRUN", age_s=5)
    status = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    assert status["escalations"] == {"open": 2, "overdue": 1}

    listed = json.loads(run_cli("escalations", "--json", cwd=tmp_path).stdout)
    assert [(e["run"], e["overdue"]) for e in listed] == [("01NEWRUN", False), ("01OLDRUN", True)]
    table = run_cli("status", cwd=tmp_path).stdout
    assert "2 open" in table and "1 overdue" in table


def test_resolving_an_unknown_escalation_is_one_clear_error(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    result = run_cli("resolve", "01NOPE", "--verdict", "pass", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("error:") == 1 and "no open escalation" in result.stderr
