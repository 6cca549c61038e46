"""Pipelines: the seed's in-process Pipeline, and the state of a durable pipeline run.

A roster's `pipelines: {review: [researcher, [lint, security], reporter]}` declares stages; a
stage that is a list runs its agents in parallel and joins them (the worst verdict wins). A run's
state is one JSON file, rewritten atomically after every step, so the conductor process that
drives runs (agentctl/runtime/conductor.py) can be killed at any moment and resume where it was.

Ids are derived, never random, so every step can be repeated safely: the message to stage i's
agent A is `<run>.s<i>.<A>`, its reply `<run>.s<i>.<A>-reply`, a stage's escalation
`<run>.s<i>.escalation`; delivering one again finds it already there and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.model.constants import PIPELINE_AGENT
from agentctl.model.constants import PIPELINE_HEADER as PIPELINE_HEADER
from agentctl.model.constants import STAGE_HEADER as STAGE_HEADER
from agentctl.model.verdict import Verdict, verdict_of
from agentctl.model.vocab import RUN_OUTCOMES, RunStatus
from agentctl.protocol.fsutil import ensure_dir, write_atomic
from agentctl.protocol.status import iso_now

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace

RUNS_DIR = "runs"  # under the conductor's agent directory

# The verdict a stage result carries: the one rule every reader applies (model/verdict.py).
stage_verdict = verdict_of

_STAGE_ID_RE = re.compile(r"^(?P<run>[0-9A-Za-z_-]+)\.s(?P<stage>\d+)\.(?P<who>[a-z][a-z0-9_-]*)$")


class Pipeline:
    """The seed's in-process pipeline: each stage's agent sees the task and earlier results.

        pipeline = Pipeline(["researcher", "architect", "implementer", "reviewer", "qa"])
        context = await pipeline.execute(task, agents)   # {"original_task", "results"}

    A result with `halt: true` ends the run, as in the seed.
    """

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages

    async def execute(self, task: dict[str, Any], agents: Mapping[str, Any]) -> dict[str, Any]:
        """Run every stage in order; return the seed's context with every stage's result."""
        context: dict[str, Any] = {"original_task": task, "results": {}}
        for stage in self.stages:
            agent = agents[stage]
            result = await agent.process(task, context)
            context["results"][stage] = result
            if isinstance(result, dict) and result.get("halt"):
                break
        return context


def run_id_for(start_id: str) -> str:
    """The run a start message begins: its own id when that is short and dot-free (so a start
    message handled twice finds its run), else a digest of it."""
    if re.fullmatch(r"[0-9A-Za-z_-]{1,40}", start_id):
        return start_id
    return "r" + hashlib.sha256(start_id.encode()).hexdigest()[:25]


def stage_message_id(run_id: str, stage: int, agent: str) -> str:
    """The id of the task stage `stage` of run `run_id` sends to `agent`."""
    return f"{run_id}.s{stage}.{agent}"


def escalation_id(run_id: str, stage: int) -> str:
    """The id of the escalation a parked stage puts in the human inbox."""
    return f"{run_id}.s{stage}.escalation"


def parse_stage_id(message_id: str) -> tuple[str, int, str] | None:
    """(run, stage, agent or "escalation") from a stage or escalation message id."""
    match = _STAGE_ID_RE.fullmatch(message_id)
    if match is None:
        return None
    return match["run"], int(match["stage"]), match["who"]


@dataclass
class StageState:
    """One stage of a run: who runs it, what they answered, what it came to."""

    agents: list[str]
    results: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    resolution: dict[str, Any] | None = None  # a person's answer to its escalation

    @property
    def complete(self) -> bool:
        """Every agent of the stage has answered."""
        return all(agent in self.results for agent in self.agents)


@dataclass
class Run:
    """A pipeline run, as stored in `<workspace>/pipeline/runs/<run>.json`."""

    run_id: str
    pipeline: str
    requester: str
    request_id: str
    request_priority: str
    original_task: Any
    stages: list[StageState]
    thread_id: str
    status: str = RunStatus.RUNNING  # a RunStatus; read back as the plain string stored
    current: int = 0
    flags: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    started_at: str = field(default_factory=iso_now)
    finished_at: str | None = None
    # The `finally` stage: runs once the outcome is known (done, blocked, stopped), and sees it.
    final: StageState | None = None

    @property
    def final_pending(self) -> bool:
        """The outcome is known but the `finally` stage has not answered yet."""
        return self.final is not None and self.status in RUN_OUTCOMES and not self.final.complete

    @property
    def finished(self) -> bool:
        """The run has an outcome and its requester was told."""
        return self.status in {*RUN_OUTCOMES, RunStatus.HALTED}

    def context(self) -> dict[str, Any]:
        """The seed's context for the current stage: the task and the earlier results (for the
        `finally` stage, every stage's, and the outcome so far)."""
        final = self.final_pending
        results: dict[str, Any] = {}
        for stage in self.stages if final else self.stages[: self.current]:
            for agent in stage.agents:
                if agent in stage.results:
                    results[agent] = stage.results[agent]
        context: dict[str, Any] = {"original_task": self.original_task, "results": results}
        if final:
            context["outcome"] = {
                "outcome": self.status,
                "verdict": self.verdict().value,
                "reason": self.reason,
                "flags": self.flags,
            }
        return context

    def verdict(self) -> Verdict:
        """The worst verdict so far: of the stages, a flag (a budget's, a person's) counts as
        FLAG, and a run halted (by a verdict or its budget) is HALT."""
        stages = [*self.stages, self.final] if self.final is not None else self.stages
        verdicts = [Verdict(s.verdict) for s in stages if s is not None and s.verdict]
        if self.flags:
            verdicts.append(Verdict.FLAG)
        if self.status == RunStatus.HALTED:
            verdicts.append(Verdict.HALT)
        return Verdict.worst(verdicts)

    def outcome(self) -> dict[str, Any]:
        """What the requester receives when the run ends (and `pipeline show --json`)."""
        return {
            "run": self.run_id,
            "pipeline": self.pipeline,
            "outcome": self.status,
            "verdict": self.verdict().value,
            "reason": self.reason,
            "flags": self.flags,
            "stages": [
                {
                    "stage": index,
                    "agents": stage.agents,
                    "verdict": stage.verdict,
                    "results": stage.results,
                    "resolution": stage.resolution,
                }
                for index, stage in enumerate(self.stages)
            ]
            + (
                [
                    {
                        "stage": "finally",
                        "agents": self.final.agents,
                        "verdict": self.final.verdict,
                        "results": self.final.results,
                        "resolution": None,
                    }
                ]
                if self.final is not None
                else []
            ),
        }

    def summary(self) -> dict[str, Any]:
        """One line of `pipeline list --json` (and of the MCP server's `pipeline_runs`)."""
        return {
            "run": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "stage": self.current,
            "stages": len(self.stages),
            "verdict": self.verdict().value,
            "flags": len(self.flags),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "reason": self.reason,
        }

    def details(self) -> dict[str, Any]:
        """`pipeline show --json`: the outcome so far, stage by stage, with the run's state."""
        return {
            **self.outcome(),
            "status": self.status,
            "current_stage": self.current,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def to_json_bytes(self) -> bytes:
        """The on-disk form."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """Read back a stored run."""
        stages = [StageState(**stage) for stage in data.pop("stages")]
        final = data.pop("final", None)
        return cls(stages=stages, final=StageState(**final) if final else None, **data)


class RunStore:
    """The run files of a workspace: one JSON file per run, replaced atomically."""

    def __init__(self, directory: Path, *, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync

    @classmethod
    def of(cls, workspace: Workspace) -> RunStore:
        """The run files of a workspace: `<workspace>/pipeline/runs/`."""
        return cls(workspace.root / PIPELINE_AGENT / RUNS_DIR, fsync=workspace.fsync)

    def path(self, run_id: str) -> Path:
        """The file of one run."""
        return self.directory / f"{run_id}.json"

    def load(self, run_id: str) -> Run | None:
        """The run, or None if there is no such run."""
        try:
            data = json.loads(self.path(run_id).read_bytes())
        except FileNotFoundError:
            return None
        return Run.from_dict(data)

    def save(self, run: Run) -> None:
        """Write the run's state (atomically: a reader sees the old or the new state)."""
        ensure_dir(self.directory)
        write_atomic(self.path(run.run_id), run.to_json_bytes(), fsync=self.fsync)

    def all(self) -> list[Run]:
        """Every run, oldest first (run ids sort by creation time)."""
        try:
            names = sorted(n for n in self.directory.iterdir() if n.suffix == ".json")
        except FileNotFoundError:
            return []
        runs = []
        for path in names:
            try:
                runs.append(Run.from_dict(json.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError):
                continue  # a damaged file is reported by `pipeline show`, not here
        return runs
