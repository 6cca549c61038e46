"""Pipelines end to end (issue 5): the seed's in-process Pipeline, `pipelines:` validation, and
durable runs driven by the conductor under `agentctl run`: every verdict's effect, fan-out
stages, escalate -> resolve, HALT -> resume, and kill -9 of the conductor and of a stage's agent.

Real processes and real files in tmp_path. The stage agents (STAGE_AGENTS) do what the run's
task tells them (`{"plan": {AGENT: {...}}}`) and leave marks `marks/<message id>.<attempt>.start`
and `.end` (holding their pid), so a test can see which attempts ran and which completed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl import BaseAgent
from agentctl.backends.file.workspace import Workspace
from agentctl.flow.pipeline import Pipeline, Run, StageState, stage_verdict
from agentctl.model.message import AgentMessage, MessageKind
from agentctl.model.verdict import Verdict
from tests.conftest import AGENTCTL, run_cli, wait_until, write_roster

STAGE_AGENTS = textwrap.dedent("""
    import asyncio, os
    from pathlib import Path
    from agentctl.model.agent import BaseAgent

    HERE = Path(__file__).resolve().parent

    def mark(name, text):
        marks = HERE / "marks"
        marks.mkdir(exist_ok=True)
        (marks / name).write_text(text)

    class Judge(BaseAgent):
        async def process(self, task, context):
            prefix = f"{context['message']['id']}.{context['attempt']}"
            mark(prefix + ".start", str(os.getpid()))
            plan = {}
            content = task.get("content")
            if isinstance(content, str) and content.startswith("verdict:"):
                plan["verdict"] = content.partition(":")[2]  # every stage answers that
            plan.update((task.get("plan") or {}).get(self.name, {}))
            if "wait_for" in plan:
                while not (HERE / plan["wait_for"]).exists():
                    await asyncio.sleep(0.05)
            if plan.get("fail"):
                raise RuntimeError(f"{self.name} cannot do it")
            verdict = plan.get("verdict", "pass")
            result = {
                "agent": self.name,
                "verdict": verdict,
                "reason": f"{self.name} says {verdict}",
                "original_task": context.get("original_task"),
                "saw": sorted(context.get("results", {})),
            }
            if plan.get("halt"):
                result["halt"] = True
            mark(prefix + ".end", str(os.getpid()))
            return result
""")

STAGES = ["research", "lint", "security", "report"]
PIPELINES = "pipelines:\n  review: [research, [lint, security], report]\n"


def agents_yaml(names: list[str]) -> str:
    return "".join(
        f"- name: {name}\n"
        "  python: stage_agents:Judge\n"
        "  max_attempts: 2\n"
        "  retry: {backoff_s: 0}\n"
        "  restart_backoff: {initial_s: 0.1}\n"
        for name in names
    )


def setup(tmp_path: Path, pipelines: str = PIPELINES, **settings: object) -> Path:
    """A roster of STAGE_AGENTS and `pipelines`; returns the workspace path."""
    path = write_roster(tmp_path, agents_yaml(STAGES), poll_interval_s=0.1, **settings)
    path.write_text(path.read_text() + pipelines)
    (tmp_path / "stage_agents.py").write_text(STAGE_AGENTS)
    return tmp_path / "workspace"


def start_supervised(supervised, tmp_path: Path) -> None:
    supervised(tmp_path).wait_ready([*STAGES, "pipeline"])


def journal(ws: Path) -> list[dict[str, Any]]:
    events = []
    for line in (ws / ".agentctl" / "journal" / "journal.jsonl").read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return events


def events(ws: Path, event: str, **match: object) -> list[dict[str, Any]]:
    return [
        e for e in journal(ws)
        if e["event"] == event and all(e.get(k) == v for k, v in match.items())
    ]  # fmt: skip


def run_file(ws: Path, run: str) -> dict[str, Any] | None:
    try:
        return json.loads((ws / "pipeline" / "runs" / f"{run}.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def wait_status(ws: Path, run: str, status: str, timeout_s: float = 60) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        state = run_file(ws, run)
        return state if state is not None and state["status"] == status else None

    return wait_until(reached, timeout_s=timeout_s)


def start(tmp_path: Path, task: object) -> str:
    """`send pipeline:review TASK` without waiting; the run's id."""
    sent = run_cli("send", "pipeline:review", json.dumps(task), "--json", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    return json.loads(sent.stdout)["run"]


def send_wait(tmp_path: Path, task: object) -> tuple[int, dict[str, Any]]:
    """`send pipeline:review TASK --wait --json`: its exit code and the outcome."""
    content = task if isinstance(task, str) else json.dumps(task)
    done = run_cli(
        "send", "pipeline:review", content, "--wait", "--json", "--timeout-s", "90",
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def show(tmp_path: Path, run: str) -> dict[str, Any]:
    shown = run_cli("pipeline", "show", run, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def status(tmp_path: Path) -> dict[str, Any]:
    result = run_cli("status", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stage_id(run: str, stage: int, agent: str) -> str:
    return f"{run}.s{stage}.{agent}"


def stage_ids(run: str) -> dict[str, str]:
    return {
        "research": stage_id(run, 0, "research"),
        "lint": stage_id(run, 1, "lint"),
        "security": stage_id(run, 1, "security"),
        "report": stage_id(run, 2, "report"),
    }


def marks(tmp_path: Path, message_id: str, kind: str) -> list[Path]:
    return sorted((tmp_path / "marks").glob(f"{message_id}.*.{kind}"))


def dispatched(ws: Path, agent: str, run: str) -> list[Path]:
    """Every file of `run`'s stage messages anywhere in `agent`'s inbox."""
    return [p for p in (ws / agent / "inbox").rglob(f"*{run}.s*") if p.is_file()]


def assert_ran_once_each(tmp_path: Path, ws: Path, run: str, agents: list[str]) -> None:
    """Each stage message was handled to completion exactly once (journal and marks)."""
    for agent in agents:
        mid = stage_ids(run)[agent]
        assert len(events(ws, "handled", agent=agent, message_id=mid)) == 1, mid
        assert len(marks(tmp_path, mid, "end")) == 1, mid


# -- the seed's in-process Pipeline --------------------------------------------------------------


class Recorder(BaseAgent):
    """Answers with what it saw; `halt: true` when its task says so."""

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "by": self.name,
            "task": task,
            "original_task": context["original_task"],
            "earlier": dict(context["results"]),
        }
        if task.get("halt_at") == self.name:
            result["halt"] = True
        return result


def test_seed_pipeline_runs_stages_in_order_with_context_and_stops_on_halt() -> None:
    team = {name: Recorder(name, "", []) for name in ("researcher", "architect", "qa")}
    pipeline = Pipeline(["researcher", "architect", "qa"])

    context = asyncio.run(pipeline.execute({"goal": "x"}, team))
    assert context["original_task"] == {"goal": "x"}
    assert list(context["results"]) == ["researcher", "architect", "qa"]
    results = context["results"]
    assert [r["task"] for r in results.values()] == [{"goal": "x"}] * 3
    assert all(r["original_task"] == {"goal": "x"} for r in results.values())
    assert list(results["researcher"]["earlier"]) == []
    assert list(results["architect"]["earlier"]) == ["researcher"]
    assert results["architect"]["earlier"]["researcher"]["by"] == "researcher"
    assert list(results["qa"]["earlier"]) == ["researcher", "architect"]

    halted = asyncio.run(pipeline.execute({"halt_at": "architect"}, team))
    assert list(halted["results"]) == ["researcher", "architect"]
    assert halted["results"]["architect"]["halt"] is True


# -- roster validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pipelines", "problem"),
    [
        ("review: [research, nobody]", "no agent named 'nobody'"),
        ("review: [research, []]", "stage 1 is an empty list"),
        ("review: [research, [lint, lint]]", "stage 1 names an agent twice"),
        ("Bad-Name: [research]", "invalid agent name 'Bad-Name'"),
        ("review: []", "pipeline 'review' has no stages"),
    ],
)
def test_validate_refuses_a_bad_pipeline_with_one_clear_line(
    tmp_path: Path, pipelines: str, problem: str
) -> None:
    setup(tmp_path, pipelines=f"pipelines:\n  {pipelines}\n")
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "agents.yaml" in lines[0]
    assert problem in lines[0]
    assert "Traceback" not in result.stderr


def test_a_bad_pipeline_error_names_its_line(tmp_path: Path) -> None:
    setup(tmp_path, pipelines="pipelines:\n  review: [research, nobody]\n")
    lines = (tmp_path / "agents.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("  review:"))
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert f"agents.yaml:{line}: pipelines.review" in result.stderr


def test_an_unknown_pipeline_is_one_clear_error_and_nothing_is_sent(tmp_path: Path) -> None:
    ws = setup(tmp_path)
    for args in (["send", "pipeline:nope", "x"], ["pipeline", "start", "nope", "x"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "no pipeline named 'nope'" in lines[0] and "review" in lines[0]
    assert not ws.exists() or not list(ws.glob("*/inbox/*/*"))


# -- verdicts in a real multi-process run -------------------------------------------------------


def test_pass_runs_every_stage_and_each_sees_the_task_and_earlier_results(
    tmp_path: Path, supervised
) -> None:
    ws = setup(tmp_path)
    start_supervised(supervised, tmp_path)

    code, outcome = send_wait(tmp_path, "please review")
    assert code == 0, outcome
    assert outcome["outcome"] == "done" and outcome["verdict"] == "pass"
    assert outcome["flags"] == [] and outcome["reason"] is None
    stages = outcome["stages"]
    assert [s["agents"] for s in stages] == [["research"], ["lint", "security"], ["report"]]
    assert [s["verdict"] for s in stages] == ["pass", "pass", "pass"]
    # The fan-out stage ran both of its agents.
    assert sorted(stages[1]["results"]) == ["lint", "security"]
    # Every stage got the original task, and the results of the stages before it.
    task = {"content": "please review", "keywords": []}
    results = {agent: r for s in stages for agent, r in s["results"].items()}
    assert all(r["original_task"] == task for r in results.values())
    assert results["research"]["saw"] == []
    assert results["lint"]["saw"] == results["security"]["saw"] == ["research"]
    assert results["report"]["saw"] == ["lint", "research", "security"]

    run = outcome["run"]
    assert_ran_once_each(tmp_path, ws, run, STAGES)
    listed = run_cli("pipeline", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [summary] = json.loads(listed.stdout)
    assert summary["run"] == run and summary["status"] == "done" and summary["stages"] == 3
    shown = show(tmp_path, run)
    assert shown["status"] == "done" and shown["finished_at"]
    assert len(events(ws, "run_ended", run=run)) == 1


def test_flag_goes_on_records_the_flag_and_the_worst_verdict_joins_a_fanout(
    tmp_path: Path, supervised
) -> None:
    ws = setup(tmp_path)
    start_supervised(supervised, tmp_path)

    # lint flags, security passes: the stage's verdict is the worse one, flag.
    code, outcome = send_wait(tmp_path, {"plan": {"lint": {"verdict": "flag"}}})
    assert code == 0, outcome
    run = outcome["run"]
    assert outcome["outcome"] == "done" and outcome["verdict"] == "flag"
    assert [s["verdict"] for s in outcome["stages"]] == ["pass", "flag", "pass"]
    assert outcome["stages"][2]["results"]["report"]["saw"] == ["lint", "research", "security"]

    shown = show(tmp_path, run)
    assert shown["status"] == "done"
    [flag] = shown["flags"]
    assert flag["stage"] == 1 and flag["agents"] == ["lint"]
    assert "lint says flag" in flag["reason"]
    [flagged] = events(ws, "flagged", run=run)
    assert flagged["stage"] == 1 and flagged["flagged"] == ["lint"]
    assert_ran_once_each(tmp_path, ws, run, STAGES)
    replayed = run_cli("replay", run, "--format", "json", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert "flagged" in [e["event"] for e in json.loads(replayed.stdout)["events"]]

    # The brief's form: every stage answers the verdict named in the task.
    code, outcome = send_wait(tmp_path, "verdict:flag")
    assert code == 0 and outcome["verdict"] == "flag", outcome
    assert [f["stage"] for f in outcome["flags"]] == [0, 1, 2]
    assert outcome["flags"][1]["agents"] == ["lint", "security"]  # in the stage's order

    # `status` lists the flagged runs for later review.
    status = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    assert status["pipelines"]["runs"] == {"done": 2}
    assert sorted(f["run"] for f in status["pipelines"]["flagged"]) == sorted(
        [run, outcome["run"]]
    )
    assert "2 flagged" in run_cli("status", cwd=tmp_path).stdout


def test_block_ends_the_run_and_later_stages_are_never_dispatched(
    tmp_path: Path, supervised
) -> None:
    ws = setup(tmp_path)
    start_supervised(supervised, tmp_path)

    # In the fan-out stage lint flags and security blocks: block wins.
    plan = {"lint": {"verdict": "flag"}, "security": {"verdict": "block"}}
    code, outcome = send_wait(tmp_path, {"plan": plan})
    assert code == 1
    run = outcome["run"]
    assert outcome["outcome"] == "blocked" and outcome["verdict"] == "block"
    assert outcome["reason"] == "block from security: security says block"
    assert outcome["stages"][1]["verdict"] == "block"
    assert sorted(outcome["stages"][1]["results"]) == ["lint", "security"]
    assert outcome["stages"][2]["verdict"] is None and outcome["stages"][2]["results"] == {}
    assert dispatched(ws, "report", run) == []
    assert events(ws, "sent", to="report") == []
    assert show(tmp_path, run)["status"] == "blocked"

    # `halt: true` in a result stops the run where it is, as in the seed.
    code, outcome = send_wait(tmp_path, {"plan": {"research": {"halt": True}}})
    assert code == 1
    stopped = outcome["run"]
    assert outcome["outcome"] == "stopped" and outcome["verdict"] == "pass"
    assert "research" in outcome["reason"]
    for agent in ("lint", "security", "report"):
        assert dispatched(ws, agent, stopped) == []
    assert status(tmp_path)["halted"] is None  # stopping one run halts nothing


def test_escalate_parks_the_run_until_a_person_resolves_it(tmp_path: Path, supervised) -> None:
    ws = setup(tmp_path)
    start_supervised(supervised, tmp_path)

    task = {"plan": {"lint": {"verdict": "escalate"}}}
    waiter = subprocess.Popen(
        [*AGENTCTL, "send", "pipeline:review", json.dumps(task), "--wait", "--json",
         "--timeout-s", "120"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: list((ws / "human" / "inbox" / "new").glob("*.json")), timeout_s=60)
        listed = run_cli("escalations", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        [escalation] = json.loads(listed.stdout)
        run = escalation["run"]
        assert escalation["id"] == f"{run}.s1.escalation"
        assert escalation["pipeline"] == "review" and escalation["stage"] == 1
        assert escalation["agents"] == ["lint", "security"]
        assert "lint says escalate" in escalation["reason"]
        assert escalation["overdue"] is False
        parked = wait_status(ws, run, "escalated")
        assert parked["current"] == 1
        assert dispatched(ws, "report", run) == []
        overview = status(tmp_path)
        assert overview["escalations"] == {"open": 1, "overdue": 0}
        assert overview["halted"] is None

        resolved = run_cli(
            "resolve", escalation["id"], "--verdict", "pass", "--note", "x", cwd=tmp_path
        )
        assert resolved.returncode == 0, resolved.stderr
        out, err = waiter.communicate(timeout=120)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    outcome = json.loads(out)
    assert outcome["run"] == run and outcome["outcome"] == "done"
    assert outcome["stages"][1]["verdict"] == "pass"
    assert outcome["stages"][1]["resolution"]["note"] == "x"
    assert outcome["stages"][2]["results"]["report"]["saw"] == ["lint", "research", "security"]
    [answer] = events(ws, "resolved", run=run)
    assert answer["verdict"] == "pass" and answer["note"] == "x"
    assert answer["message_id"] == escalation["id"]
    assert len(events(ws, "run_resumed", run=run)) == 1
    assert_ran_once_each(tmp_path, ws, run, STAGES)
    assert status(tmp_path)["escalations"]["open"] == 0

    # A stage that exhausts its attempts escalates too; resolving it (by run id) with block
    # ends the run, blocked, with the person's note as the reason.
    failing = start(tmp_path, {"plan": {"security": {"fail": True}}})
    wait_status(ws, failing, "escalated")
    [escalation] = json.loads(run_cli("escalations", "--json", cwd=tmp_path).stdout)
    assert escalation["run"] == failing and "cannot do it" in escalation["reason"]
    assert len(marks(tmp_path, stage_id(failing, 1, "security"), "start")) == 2
    resolved = run_cli("resolve", failing, "--verdict", "block", "--note", "too risky",
                       cwd=tmp_path)  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.strip().endswith(f"run {failing} ends blocked")
    blocked = wait_status(ws, failing, "blocked")
    assert "too risky" in blocked["reason"]
    assert blocked["finished_at"] is not None
    assert dispatched(ws, "report", failing) == []
    assert events(ws, "resolved", run=failing)[0]["verdict"] == "block"
    # The requester is told: the outcome waits in the user's inbox.
    assert list((ws / "user" / "inbox").rglob(f"*{failing}-reply*"))

    # Resolved with flag, the run goes on and the person's flag is recorded.
    late = start(tmp_path, {"plan": {"report": {"verdict": "escalate"}}})
    wait_status(ws, late, "escalated")
    resolved = run_cli("resolve", late, "--verdict", "flag", "--note", "check later",
                       cwd=tmp_path)  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.strip().endswith(f"run {late} goes on")
    flagged = wait_status(ws, late, "done")
    assert flagged["flags"] == [{"stage": 2, "by": "human", "note": "check later"}]
    assert show(tmp_path, late)["verdict"] == "flag"
    assert run_cli("escalations", "--json", cwd=tmp_path).stdout.strip() == "[]"


def test_halt_verdict_halts_the_workspace_until_resume(tmp_path: Path, supervised) -> None:
    ws = setup(tmp_path)
    start_supervised(supervised, tmp_path)

    code, outcome = send_wait(tmp_path, {"plan": {"research": {"verdict": "halt"}}})
    assert code == 1
    run = outcome["run"]
    assert outcome["outcome"] == "halted" and outcome["verdict"] == "halt"
    assert outcome["reason"] == "halt from research: research says halt"
    for agent in ("lint", "security", "report"):
        assert dispatched(ws, agent, run) == []
    halted = status(tmp_path)["halted"]
    assert halted is not None
    assert halted["reason"] == outcome["reason"] and halted["by"] == "pipeline"
    assert halted["run"] == run
    assert len(events(ws, "halted", run=run)) == 1

    # Meanwhile a message to an agent waits in new/, unclaimed.
    sent = run_cli("send", "research", "hello", "--json", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    message_id = json.loads(sent.stdout)["id"]
    status_path = ws / "research" / "status.json"
    beats: set[str] = set()

    def two_more_heartbeats() -> bool:  # >= 1 s of a live worker: many poll intervals
        beats.add(json.loads(status_path.read_text())["heartbeat_at"])
        return len(beats) >= 3

    wait_until(two_more_heartbeats, timeout_s=30)
    waiting = [p.name for p in (ws / "research" / "inbox" / "new").iterdir()]
    assert len(waiting) == 1 and message_id in waiting[0]
    assert events(ws, "claimed", message_id=message_id) == []
    assert "HALTED" in run_cli("status", cwd=tmp_path).stdout

    # A second halt keeps the first reason, and says so: it is the one resume lifts.
    again = run_cli("halt", "--reason", "second thoughts", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already halted since ")
    assert outcome["reason"] in again.stdout and "second thoughts" not in again.stdout
    resumed = run_cli("resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().endswith(f"(was halted: {outcome['reason']})")
    wait_until(lambda: events(ws, "handled", message_id=message_id), timeout_s=60)
    assert status(tmp_path)["halted"] is None
    assert len(events(ws, "resumed")) == 1


# -- durability ---------------------------------------------------------------------------------


def test_kill_9_of_the_conductor_mid_run_resumes_without_rerunning_stages(
    tmp_path: Path, supervised
) -> None:
    ws = setup(tmp_path)
    start_supervised(supervised, tmp_path)

    run = start(tmp_path, {"plan": {"lint": {"wait_for": "go-lint"}}})
    ids = stage_ids(run)
    # Mid-way: stage 0 is done, security has answered, lint is still at work.
    wait_until(lambda: marks(tmp_path, ids["lint"], "start"), timeout_s=60)

    def security_recorded() -> bool:
        state = run_file(ws, run)
        return state is not None and "security" in state["stages"][1]["results"]

    wait_until(security_recorded, timeout_s=60)
    conductor = json.loads((ws / "pipeline" / "status.json").read_text())["pid"]
    os.kill(conductor, signal.SIGKILL)
    (tmp_path / "go-lint").touch()  # lint answers while the conductor is dead

    done = wait_status(ws, run, "done", timeout_s=90)
    assert [s["verdict"] for s in done["stages"]] == ["pass", "pass", "pass"]
    restarted = json.loads((ws / "pipeline" / "status.json").read_text())["pid"]
    assert restarted != conductor
    assert events(ws, "restarted", agent="pipeline")
    assert_ran_once_each(tmp_path, ws, run, STAGES)
    for agent, mid in ids.items():
        assert len(events(ws, "sent", message_id=mid)) == 1, agent  # dispatched once each
    assert Counter(e["stage"] for e in events(ws, "stage_done", run=run)) == {0: 1, 1: 1, 2: 1}
    assert len(events(ws, "run_started", run=run)) == 1
    wait_until(lambda: list((ws / "user" / "inbox").rglob(f"*{run}-reply*")), timeout_s=30)
    assert len(list((ws / "user" / "inbox").rglob(f"*{run}-reply*"))) == 1
    assert show(tmp_path, run)["outcome"] == "done"


def test_kill_9_of_a_stage_agent_mid_handler_retries_the_attempt_and_completes(
    tmp_path: Path, supervised
) -> None:
    ws = setup(tmp_path)
    start_supervised(supervised, tmp_path)

    run = start(tmp_path, {"plan": {"security": {"wait_for": "go-security"}}})
    security = stage_id(run, 1, "security")
    [first] = wait_until(lambda: marks(tmp_path, security, "start"), timeout_s=60)
    os.kill(int(first.read_text()), signal.SIGKILL)  # the worker, in its handler
    # The restarted worker counts the interrupted attempt and tries again.
    wait_until(lambda: len(marks(tmp_path, security, "start")) == 2, timeout_s=60)
    (tmp_path / "go-security").touch()

    done = wait_status(ws, run, "done", timeout_s=90)
    assert [s["verdict"] for s in done["stages"]] == ["pass", "pass", "pass"]
    [interrupted] = events(ws, "failed", message_id=security)
    assert interrupted["error_kind"] == "interrupted" and interrupted["attempt"] == 1
    [handled] = events(ws, "handled", agent="security", message_id=security)
    assert handled["attempt"] == 2
    assert [p.name for p in marks(tmp_path, security, "end")] == [f"{security}.2.end"]
    assert_ran_once_each(tmp_path, ws, run, STAGES)


# -- overdue escalations ------------------------------------------------------------------------


def test_an_escalation_older_than_escalation_overdue_s_is_overdue(tmp_path: Path) -> None:
    ws_path = setup(tmp_path, escalation_overdue_s=60)
    ws = Workspace(ws_path, fsync=False)
    old = datetime.now(UTC) - timedelta(minutes=10)
    ws.deliver(
        AgentMessage(
            id="r1.s1.escalation", thread_id="t1", from_agent="pipeline", to_agent="human",
            kind=MessageKind.TASK, timestamp=old,
            content={"run": "r1", "pipeline": "review", "stage": 1, "agents": ["lint"],
                     "reason": "escalate from lint"},
        )
    )  # fmt: skip
    [escalation] = json.loads(run_cli("escalations", "--json", cwd=tmp_path).stdout)
    assert escalation["age_s"] > 60
    assert status(tmp_path)["escalations"] == {"open": 1, "overdue": 1}
    assert escalation["overdue"] is True


# -- verdicts: what a stage result comes to, and how a run joins them (issue 20) -----------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"verdict": "pass"}, Verdict.PASS),
        ({"verdict": "BLOCK"}, Verdict.BLOCK),  # any case, as people type it
        ({"verdict": "Escalate"}, Verdict.ESCALATE),
        ({"verdict": "aprove"}, Verdict.FLAG),  # a mistyped verdict is looked at, not waved on
        ({"verdict": ""}, Verdict.FLAG),
        ({"passed": False}, Verdict.BLOCK),  # the seed's reviewers
        ({"passed": True}, Verdict.PASS),
        ({"passed": 0}, Verdict.PASS),  # only the boolean blocks
        ({"verdict": "flag", "passed": False}, Verdict.FLAG),  # `verdict` says it first
        ({"verdict": 3, "passed": False}, Verdict.BLOCK),  # not a verdict: `passed` decides
        ({}, Verdict.PASS),
        ("looks fine", Verdict.PASS),
        (None, Verdict.PASS),
    ],
)
def test_stage_verdict_reads_verdict_then_the_seeds_passed(result: Any, expected: Verdict) -> None:
    assert stage_verdict(result) is expected


def _run(stage_verdicts: list[str | None], **fields: Any) -> Run:
    stages = [StageState(agents=[f"a{i}"], verdict=v) for i, v in enumerate(stage_verdicts)]
    return Run(run_id="r1", pipeline="review", requester="user", request_id="r1",
               request_priority="normal", original_task="t", stages=stages, thread_id="r1",
               **fields)  # fmt: skip


def test_a_run_flag_counts_in_its_verdict_and_outcome() -> None:
    """A flag the run itself raised (a budget's, a person's) is a FLAG though every stage passed."""
    run = _run(["pass", "pass"], flags=[{"by": "budget", "reason": "over time"}], status="done")
    assert run.verdict() is Verdict.FLAG
    assert run.outcome()["verdict"] == "flag"  # what `pipeline show` prints
    assert _run(["pass", "pass"], status="done").verdict() is Verdict.PASS
    assert _run(["pass"], flags=[{"by": "person"}], status="halted").verdict() is Verdict.HALT


def test_a_runs_summary_and_details_say_where_it_stands() -> None:
    # `pipeline list --json` / the MCP tool `pipeline_runs` (summary) and `pipeline show --json`
    # (details): the run file's state, each field from its own source.
    run = _run(["pass", "flag", None], flags=[{"by": "budget"}], status="running", current=2,
               reason="over time", started_at="2026-12-02T07:00:00.000000Z")  # fmt: skip
    assert run.summary() == {
        "run": "r1", "pipeline": "review", "status": "running", "stage": 2, "stages": 3,
        "verdict": "flag", "flags": 1, "started_at": "2026-12-02T07:00:00.000000Z",
        "finished_at": None, "reason": "over time",
    }  # fmt: skip
    run.finished_at, run.status = "2026-12-02T07:01:00.000000Z", "done"
    details = run.details()
    assert {k: v for k, v in details.items() if k not in run.outcome()} == {
        "status": "done", "current_stage": 2, "started_at": "2026-12-02T07:00:00.000000Z",
        "finished_at": "2026-12-02T07:01:00.000000Z",
    }  # fmt: skip
    assert details["outcome"] == "done" and details["run"] == "r1"
    assert [stage["verdict"] for stage in details["stages"]] == ["pass", "flag", None]
    assert run.summary()["finished_at"] == "2026-12-02T07:01:00.000000Z"


VERDICTS = st.sampled_from(list(Verdict))


@settings(max_examples=100, deadline=None)
@given(
    stages=st.lists(st.none() | VERDICTS, max_size=6),
    final=st.none() | VERDICTS,
    flagged=st.booleans(),
    status=st.sampled_from(["running", "done", "blocked", "halted"]),
)
def test_a_runs_verdict_is_the_worst_of_its_stages_flags_and_halt(
    stages: list[Verdict | None], final: Verdict | None, flagged: bool, status: str
) -> None:
    run = _run([v.value if v else None for v in stages], status=status,
               flags=[{"by": "budget"}] if flagged else [])  # fmt: skip
    if final is not None:
        run.final = StageState(agents=["reporter"], verdict=final.value)
    joined = [v for v in [*stages, final] if v is not None]
    joined += [Verdict.FLAG] * flagged + [Verdict.HALT] * (status == "halted")
    expected = max(joined, key=lambda v: v.severity, default=Verdict.PASS)
    assert run.verdict() is expected


# -- a run's state: what the requester receives, what a stage sees, what is stored (issue 20) ----


def test_a_runs_outcome_names_every_stage_and_the_finally_stage() -> None:
    run = _run(["pass", "flag"], status="done", flags=[{"by": "person"}], reason=None)
    run.stages[1].results = {"a1": {"verdict": "flag"}}
    resolution = {"by": "ann", "verdict": "flag"}
    run.stages[1].resolution = resolution
    run.final = StageState(agents=["reporter"], results={"reporter": {"ok": 1}}, verdict="pass")

    assert run.outcome() == {
        "run": "r1", "pipeline": "review", "outcome": "done", "verdict": "flag", "reason": None,
        "flags": [{"by": "person"}],
        "stages": [
            {"stage": 0, "agents": ["a0"], "verdict": "pass", "results": {}, "resolution": None},
            {"stage": 1, "agents": ["a1"], "verdict": "flag",
             "results": {"a1": {"verdict": "flag"}}, "resolution": resolution},
            {"stage": "finally", "agents": ["reporter"], "verdict": "pass",
             "results": {"reporter": {"ok": 1}}, "resolution": None},
        ],
    }  # fmt: skip
    run.final = None
    assert [s["stage"] for s in run.outcome()["stages"]] == [0, 1]


def test_a_stage_sees_the_task_and_the_results_before_it_and_finally_sees_all() -> None:
    run = _run(["pass", "pass", None])
    run.stages[0].results = {"a0": "first"}
    run.stages[1].results = {"a1": "second"}
    run.current = 1
    assert run.context() == {"original_task": "t", "results": {"a0": "first"}}

    run.status, run.reason = "blocked", "a1 blocked"
    run.final = StageState(agents=["reporter"])
    assert run.final_pending
    assert run.context() == {
        "original_task": "t", "results": {"a0": "first", "a1": "second"},
        "outcome": {"outcome": "blocked", "verdict": "pass", "reason": "a1 blocked", "flags": []},
    }  # fmt: skip
    run.final.results["reporter"] = "told"
    assert not run.final_pending


def test_a_run_is_stored_and_read_back_whole(tmp_path: Path) -> None:
    from agentctl.flow.pipeline import RunStore

    store = RunStore.of(Workspace(tmp_path / "ws", fsync=False))
    assert store.load("r1") is None and store.all() == []
    run = _run(["pass", None], flags=[{"by": "budget"}])
    run.stages[0].results = {"a0": {"verdict": "pass", "note": "é ✓"}}
    run.final = StageState(agents=["reporter"])
    other = _run([None])
    other.run_id = "r2"

    store.save(run)
    store.save(other)
    (store.directory / "r0.json").write_text("{torn")  # a damaged file is skipped by all()

    assert store.path("r1") == tmp_path / "ws" / "pipeline" / "runs" / "r1.json"
    assert "é ✓" in store.path("r1").read_text()  # people read these files
    assert store.load("r1") == run
    assert [r.run_id for r in store.all()] == ["r1", "r2"]


def test_a_run_file_from_before_the_finally_stage_reads_back(tmp_path: Path) -> None:
    # Run files written before `finally` existed have no "final" key: they still load.
    from agentctl.flow.pipeline import RunStore

    store = RunStore.of(Workspace(tmp_path / "ws", fsync=False))
    run = _run(["pass"])
    store.save(run)
    data = json.loads(store.path("r1").read_bytes())
    del data["final"]
    store.path("r1").write_text(json.dumps(data))
    loaded = store.load("r1")
    assert loaded == run and loaded is not None and loaded.final is None


def test_a_run_is_saved_durably_when_the_workspace_asks_for_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentctl.flow.pipeline import RunStore

    durable = RunStore.of(Workspace(tmp_path / "ws", fsync=True))
    fast = RunStore.of(Workspace(tmp_path / "fast", fsync=False))
    real_fsync = os.fsync
    synced: list[str] = []

    def spy(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", spy)
    fast.save(_run(["pass"]))
    assert synced == []
    durable.save(_run(["pass"]))
    assert str(durable.directory) in synced, synced  # the rename that replaced the run file


@settings(max_examples=100, deadline=None)
@given(
    run=st.from_regex(r"[0-9A-Za-z_-]{1,40}", fullmatch=True),
    stage=st.integers(0, 999),
    agent=st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True),
)
def test_stage_ids_are_derived_and_parsed_back(run: str, stage: int, agent: str) -> None:
    from agentctl.flow.pipeline import escalation_id, parse_stage_id, run_id_for, stage_message_id

    assert run_id_for(run) == run  # a short, dot-free start id is its own run
    assert parse_stage_id(stage_message_id(run, stage, agent)) == (run, stage, agent)
    assert parse_stage_id(escalation_id(run, stage)) == (run, stage, "escalation")
    long_id = run + "." + "x" * 40
    derived = run_id_for(long_id)
    assert derived == run_id_for(long_id) and derived != long_id
    assert re.fullmatch(r"r[0-9a-f]{25}", derived)
    assert parse_stage_id(run) is None and parse_stage_id(f"{run}.s{stage}.{agent}.x") is None
