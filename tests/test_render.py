"""The tables at 80 columns: ids, pids and names never break in the middle, no line is wider
than the terminal, and the live view of `run` fits the bundled roster in 80x24 (issue 15)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console
from rich.table import Table

from agentctl.audit.overview import collect_overview
from agentctl.backends.file.workspace import Workspace
from agentctl.backends.records import DeadLetter, Escalation
from agentctl.cli.render import roster_table, supervisor_table
from agentctl.cli.render_records import dead_table, escalations_table, runs_table
from agentctl.config.roster import load_roster
from agentctl.model.ids import new_id
from agentctl.runtime.agentprocess import ProcState
from agentctl.runtime.supervisor import Supervisor
from tests.conftest import REPO, write_roster

WIDTH = 80
LONG_TEXT = "the handler raised ValueError: " + "a reason that goes on and on " * 4
# Names as long as the bundled roster's longest, so the name column is as wide as it gets.
NAMES = ["complexity_reviewer", "security_reviewer", "echo"]


def render(table: Table) -> list[str]:
    """The lines `table` prints on an 80-column terminal."""
    out = Console(width=WIDTH, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    out.print(table)
    return out.export_text().splitlines()


def assert_fits_whole(lines: list[str], words: list[str]) -> None:
    text = "\n".join(lines)
    too_wide = [line for line in lines if len(line) > WIDTH]
    assert not too_wide, "\n".join(too_wide)
    for word in words:
        assert word in text, f"{word} broken or missing in:\n{text}"


def test_dead_list_keeps_message_ids_whole() -> None:
    letters = [
        DeadLetter(agent=name, file=f"{new_id()}.json", message_id=new_id(), attempts=3,
                   error_kind="handler_error", error=LONG_TEXT,
                   dead_at="2026-12-02T01:41:19.123456+00:00")
        for name in NAMES
    ]  # fmt: skip
    ids = [str(letter.message_id) for letter in letters]
    assert all(len(i) == 26 for i in ids)
    assert_fits_whole(render(dead_table(letters, width=WIDTH)), ids + NAMES)


def test_pipeline_list_keeps_run_ids_whole() -> None:
    runs = [
        {"run": new_id(), "pipeline": "review", "status": "running", "stage": 1, "stages": 2,
         "verdict": "approve", "flags": 0, "started_at": "2026-12-02T01:41:19.123456+00:00",
         "reason": LONG_TEXT}
        for _ in range(3)
    ]  # fmt: skip
    ids = [str(run["run"]) for run in runs]
    assert_fits_whole(render(runs_table(runs, width=WIDTH)), ids)


def test_escalations_keep_run_ids_whole() -> None:
    escalations = [
        Escalation(id=new_id(), file=f"{new_id()}.json", run=new_id(), pipeline="build",
                   stage=4, agents=NAMES, reason=LONG_TEXT,
                   created_at="2026-12-02T01:41:19+00:00", age_s=600.0, overdue=True)
        for _ in range(3)
    ]  # fmt: skip
    ids = [str(e.run) for e in escalations]
    assert_fits_whole(render(escalations_table(escalations, width=WIDTH)), ids + NAMES)


def test_validate_keeps_agent_names_whole(tmp_path: Path) -> None:
    # Given agents with long names, long handlers and many keywords
    agents = "".join(
        f"- name: {name}\n  python: agentctl.crew.reviewers:ComplexityReviewer\n"
        "  expertise: [complexity, maintainability, refactoring, authentication, owasp]\n"
        for name in NAMES
    )
    roster = load_roster(write_roster(tmp_path, agents))
    # Then at 80 columns the names stay whole; the handler and the keywords wrap
    assert_fits_whole(render(roster_table(roster, width=WIDTH)), NAMES)


def running_supervisor(roster_path: Path) -> Supervisor:
    """A Supervisor built but never started, its workers shown as running with 7-digit pids."""
    roster = load_roster(roster_path)
    supervisor = Supervisor(roster, Workspace(roster.workspace_path, fsync=False))
    for number, proc in enumerate(supervisor.agents.values()):
        # The live view reads only the pid of a process: no child is started for it.
        proc.popen = SimpleNamespace(pid=4_194_000 + number)  # type: ignore[assignment]
        proc.state = ProcState.RUNNING
    return supervisor


def live_view(supervisor: Supervisor) -> list[str]:
    names = list(dict.fromkeys(proc.spec.name for proc in supervisor.agents.values()))
    overview = collect_overview(supervisor.workspace, names)
    return render(supervisor_table(supervisor, overview, width=WIDTH))


def test_live_view_keeps_names_and_pids_whole(tmp_path: Path) -> None:
    agents = "".join(f"- name: {name}\n  python: agentctl.agents.echo:EchoAgent\n"
                     for name in NAMES)  # fmt: skip
    supervisor = running_supervisor(write_roster(tmp_path, agents))
    pids = [str(proc.pid) for proc in supervisor.agents.values()]
    assert all(len(pid) == 7 for pid in pids)
    assert_fits_whole(live_view(supervisor), NAMES + pids)


def test_live_view_of_the_bundled_roster_fits_80_by_24(tmp_path: Path) -> None:
    # Given the bundled roster (its disabled LLM agents are left out by `run`)
    shutil.copy(REPO / "agents.yaml", tmp_path / "agents.yaml")
    supervisor = running_supervisor(tmp_path / "agents.yaml")
    lines = live_view(supervisor)
    # Then every running agent and its pid is on a screen of 80x24
    assert len(lines) <= 24, "\n".join(lines)
    assert_fits_whole(
        lines, [*supervisor.agents, *(str(p.pid) for p in supervisor.agents.values())]
    )
