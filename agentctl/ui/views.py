"""What each page of the dashboard shows, built from the core functions through the Backend
seam (the same calls the CLI makes), so the pages read files and NATS alike.

Every view is bounded: the runs pages read at most the newest `RUNS_SHOWN` run files, the
journal page the last `lines` events, a thread or a run the records the history finds for one
id; none reads the whole journal per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentctl.audit.history import event_time
from agentctl.model.constants import USER_AGENT
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.audit.history import MessageTrace, Thread
    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster
    from agentctl.flow.pipeline import Run, RunStore

RUNS_SHOWN = 200  # the newest run files a list reads; older ones are found by id
JOURNAL_LINES_MAX = 1000
# A sequence diagram is as wide as its longest labels: at `replay`'s 120 characters a pipeline
# thread was 4,000 px wide. The page cuts them (the content is one click away, in the tree).
DIAGRAM_LABEL_CHARS = 60
ID_SHOWN_CHARS = 6  # the thread's id, in a label: its first characters, then "…"


@dataclass
class Dashboard:
    """What every view needs: the roster and the backend it names."""

    roster: Roster
    backend: Backend
    names: list[str] = field(default_factory=list)
    disabled: dict[str, str] = field(default_factory=dict)  # agents that cannot run here, why

    def __post_init__(self) -> None:
        self.names = self.names or [agent.name for agent in self.roster.agents]
        self.disabled = self.disabled or self.roster.disabled_agents()

    def runs(self) -> RunStore:
        """The pipeline run files (beside the workspace on every backend)."""
        from agentctl.flow.pipeline import RunStore

        return RunStore.of(self.backend.local)


# -- agents ------------------------------------------------------------------------------------


def agents(dash: Dashboard) -> dict[str, Any]:
    """The `status` table, a disabled agent (an llm: one whose endpoint variable is unset here)
    shown so, with why, as `agentctl status` and `agentctl run` say it, on every backend."""
    from dataclasses import replace

    from agentctl.audit.overview import collect_overview

    overview = collect_overview(dash.backend, dash.names)
    rows = [
        replace(row, state="disabled") if row.name in dash.disabled and not row.alive else row
        for row in overview.agents
    ]
    return {"overview": replace(overview, agents=rows), "disabled": dash.disabled}


# -- runs --------------------------------------------------------------------------------------


def _seconds_between(start: str | None, end: str | None) -> float | None:
    first = event_time({"ts": start}) if start else None
    last = event_time({"ts": end}) if end else None
    if first is None or last is None:
        return None
    return max(0.0, (last - first).total_seconds())


def usage_of(run: Run) -> dict[str, Any]:
    """Tokens and cost the run's stages reported (llm: agents' `usage`), in all and by agent."""
    total = {"tokens": 0, "cost": 0.0}
    by_agent: dict[str, dict[str, Any]] = {}
    stages = [*run.stages, *([run.final] if run.final else [])]
    for stage in stages:
        for agent, result in stage.results.items():
            usage = result.get("usage") if isinstance(result, dict) else None
            if not isinstance(usage, dict):
                continue
            spent = by_agent.setdefault(agent, {"tokens": 0, "cost": 0.0})
            for key, source in (("tokens", "total_tokens"), ("cost", "cost")):
                amount = usage.get(source) or 0
                if isinstance(amount, int | float):
                    spent[key] += amount
                    total[key] += amount
    return {**total, "by_agent": by_agent}


def run_summary(run: Run) -> dict[str, Any]:
    """One row of the runs list (the fields of `pipeline list`, with duration and usage)."""
    usage = usage_of(run)
    return {
        "run": run.run_id,
        "pipeline": run.pipeline,
        "status": run.status,
        "stage": run.current,
        "stages": len(run.stages),
        "verdict": run.verdict().value,
        "flags": len(run.flags),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": _seconds_between(run.started_at, run.finished_at),
        "tokens": usage["tokens"],
        "cost": usage["cost"],
        "reason": run.reason,
        "thread_id": run.thread_id,
    }


def newest_runs(dash: Dashboard, limit: int = RUNS_SHOWN) -> list[Run]:
    """The newest `limit` runs, newest first (run ids sort by creation time)."""
    store = dash.runs()
    try:
        names = sorted(e.name for e in store.directory.iterdir() if e.suffix == ".json")
    except FileNotFoundError:
        return []
    found = []
    for name in reversed(names[-limit:]):
        try:
            run = store.load(name.removesuffix(".json"))
        except (OSError, ValueError, TypeError):
            continue  # a damaged run file: `pipeline show` says what is wrong with it
        if run is not None:
            found.append(run)
    return found


def list_runs(
    dash: Dashboard, *, pipeline: str = "", outcome: str = "", search: str = ""
) -> list[dict[str, Any]]:
    """The runs page: the newest runs, filtered by pipeline and outcome; a search by id reads
    that one run file, however old."""
    if search:
        from agentctl.model.errors import InvalidNameError
        from agentctl.model.names import validate_message_id

        try:
            run = dash.runs().load(validate_message_id(search.strip()))
        except (InvalidNameError, OSError, ValueError, TypeError):
            run = None
        runs = [run] if run is not None else []
    else:
        runs = newest_runs(dash)
    rows = [run_summary(run) for run in runs]
    return [
        row
        for row in rows
        if pipeline in ("", row["pipeline"]) and outcome in ("", row["status"])
    ]


def run_detail(dash: Dashboard, run: Run) -> dict[str, Any]:
    """A run's page: its stages (agents side by side), each agent's verdict, reason, attempts
    and duration, and a bar per attempt on a timeline."""
    from agentctl.audit.history import HistoryError, load_thread
    from agentctl.flow.pipeline import parse_stage_id, stage_verdict

    try:
        thread = load_thread(dash.backend.history(), run.thread_id)
    except HistoryError:
        thread = None
    traces: dict[tuple[int, str], MessageTrace] = {}
    for traced in thread.messages.values() if thread else []:
        parsed = parse_stage_id(traced.id)
        if parsed is not None and parsed[0] == run.run_id:
            traces[(parsed[1], parsed[2])] = traced
    stages = []
    all_stages = [*run.stages, *([run.final] if run.final else [])]
    for index, stage in enumerate(all_stages):
        cells = []
        for agent in stage.agents:
            result = stage.results.get(agent)
            trace = traces.get((index, agent))
            cells.append({
                "agent": agent,
                "answered": agent in stage.results,
                "verdict": stage_verdict(result).value if agent in stage.results else None,
                "reason": _reason_of(result),
                "attempts": trace.attempts if trace else 0,
                "duration_s": _handled_s(trace),
                "message_id": trace.id if trace else None,
            })  # fmt: skip
        stages.append({
            "index": "finally" if run.final is not None and stage is run.final else index,
            "verdict": stage.verdict,
            "resolution": stage.resolution,
            "duration_s": _seconds_between(stage.started_at, stage.finished_at),
            "agents": cells,
            "current": index == run.current and not run.finished,
        })  # fmt: skip
    return {
        "summary": run_summary(run),
        "flags": run.flags,
        "task": pretty(run.original_task),
        "stages": stages,
        "timeline": timeline(thread, run.run_id) if thread else {"bars": [], "span_s": 0.0},
    }


def _reason_of(result: Any) -> str | None:
    if isinstance(result, dict):
        for key in ("reason", "summary", "error"):
            if result.get(key):
                return str(result[key])
    return None


def _handled_s(trace: MessageTrace | None) -> float | None:
    for record in reversed(trace.events if trace else []):
        if record.get("event") == Event.HANDLED and record.get("duration_ms") is not None:
            return float(record["duration_ms"]) / 1000
    return None


def timeline(thread: Thread, run_id: str) -> dict[str, Any]:
    """A bar per attempt at a stage message: from its claim to its handling, failure or death,
    placed in percent of the run's span (the Gantt-like view of a run)."""
    from agentctl.flow.pipeline import parse_stage_id

    start = thread.started
    if start is None:
        return {"bars": [], "span_s": 0.0}
    bars: list[dict[str, Any]] = []
    open_at: dict[str, tuple[datetime, int]] = {}
    last = start
    for record in thread.events:
        when = event_time(record)
        message_id = str(record.get("message_id") or "")
        parsed = parse_stage_id(message_id)
        # The stage agent's own attempts (a reply's id parses too: the conductor claims it).
        mine = parsed is not None and (parsed[0], parsed[2]) == (run_id, record.get("agent"))
        if when is None or parsed is None or not mine:
            continue
        last = max(last, when)
        event = record.get("event")
        if event == Event.CLAIMED:
            open_at[message_id] = (when, int(record.get("attempt") or 0))
        elif event in (Event.HANDLED, Event.FAILED, Event.DEAD) and message_id in open_at:
            began, attempt = open_at.pop(message_id)
            bars.append({"stage": parsed[1], "agent": parsed[2], "attempt": attempt,
                         "outcome": str(event), "start": began, "end": when})  # fmt: skip
    for message_id, (began, attempt) in open_at.items():  # still in hand
        parsed = parse_stage_id(message_id)
        assert parsed is not None
        bars.append({"stage": parsed[1], "agent": parsed[2], "attempt": attempt,
                     "outcome": "in hand", "start": began, "end": last})  # fmt: skip
    span_s = max((last - start).total_seconds(), 0.001)
    for bar in bars:
        offset_s = (bar["start"] - start).total_seconds()
        length_s = (bar["end"] - bar["start"]).total_seconds()
        bar.update(offset_s=offset_s, length_s=length_s,
                   left_pct=round(100 * offset_s / span_s, 2),
                   width_pct=round(max(100 * length_s / span_s, 0.5), 2))  # fmt: skip
    return {"bars": bars, "span_s": span_s}


# -- a thread ----------------------------------------------------------------------------------


def thread_tree(thread: Thread) -> list[dict[str, Any]]:
    """The replay tree: each message with its events, replies nested under their request."""
    shown: set[str] = set()

    def node(trace: MessageTrace) -> dict[str, Any]:
        shown.add(trace.id)
        children = [node(r) for r in thread.replies_to(trace.id) if r.id not in shown]
        return {"trace": trace, "content": pretty(trace.content), "children": children}

    return [node(root) for root in thread.roots() if root.id not in shown]


def who(record: dict[str, Any]) -> str:
    """Who an event's action was taken by: the person or program that asked for it (`by`,
    `client`: `ui`, `alice`, `mcp:claude-code`), else the agent that recorded it."""
    from agentctl.model.actor import Actor

    if record.get("by"):
        return Actor(str(record["by"]), record.get("client")).label
    return str(record.get("agent") or "?")


def page_diagram(source: str, thread_id: str) -> str:
    """`replay --format mermaid`'s text with short labels: the thread's id (a prefix of every
    id in a pipeline thread) abbreviated, then each label cut to `DIAGRAM_LABEL_CHARS`."""
    short_id = thread_id[:ID_SHOWN_CHARS] + "…"
    lines = []
    for line in source.splitlines():
        head, sep, label = line.partition(": ")
        if sep and not head.lstrip().startswith("participant"):
            label = label.replace(thread_id, short_id)
            if len(label) > DIAGRAM_LABEL_CHARS:
                label = label[: DIAGRAM_LABEL_CHARS - 1] + "…"
        lines.append(head + sep + label)
    return "\n".join(lines) + "\n"


def pretty(content: Any) -> str:
    """A message's content as text: a string as it is, anything else as indented JSON."""
    if isinstance(content, str):
        return content
    return json.dumps(content, indent=2, ensure_ascii=False)


# -- waiting for a person ----------------------------------------------------------------------


def waiting(dash: Dashboard) -> dict[str, Any]:
    """Open escalations with their evidence, and dead letters."""
    from datetime import UTC

    from agentctl.backends.records import escalation_of
    from agentctl.flow.deadletters import list_dead

    backend = dash.backend
    now = datetime.now(UTC)
    escalations = []
    # `open_escalations` without dropping the messages: their evidence is shown too.
    for where, message in backend.escalation_requests():
        content = message.content if isinstance(message.content, dict) else {}
        escalations.append({
            "escalation": escalation_of(message, where, now, backend.local.escalation_overdue_s),
            "evidence": pretty(content.get("evidence")) if content.get("evidence") else None,
        })  # fmt: skip
    return {"escalations": escalations, "dead": list_dead(backend)}  # halted: on every page


# -- cost --------------------------------------------------------------------------------------


def cost(dash: Dashboard) -> dict[str, Any]:
    """Tokens and cost per run (against its pipeline's budget) and per agent (what its runs
    reported, and what an `llm:` agent's own budget file says it spent, against its budget)."""
    runs = []
    agents: dict[str, dict[str, Any]] = {}
    for run in newest_runs(dash):
        usage = usage_of(run)
        budget = dash.roster.budget(run.pipeline)
        wall_s = _seconds_between(run.started_at, run.finished_at)
        runs.append({
            **run_summary(run),
            "budget_tokens": budget.tokens if budget else None,
            "budget_wall_s": budget.wall_s if budget else None,
            "share": budget.share(usage["tokens"], wall_s or 0.0) if budget else None,
        })  # fmt: skip
        for agent, spent in usage["by_agent"].items():
            row = agents.setdefault(agent, {"tokens": 0, "cost": 0.0, "runs": 0})
            row["tokens"] += spent["tokens"]
            row["cost"] += spent["cost"]
            row["runs"] += 1
    rows = []
    for spec in dash.roster.agents:
        spent_file = _budget_file(dash, spec.name)
        row = agents.get(spec.name, {"tokens": 0, "cost": 0.0, "runs": 0})
        budget = spec.budget
        rows.append({
            "agent": spec.name,
            **row,
            "spent_tokens": spent_file.get("tokens"),
            "spent_wall_s": spent_file.get("wall_s"),
            "budget_tokens": budget.tokens if budget else None,
            "budget_wall_s": budget.wall_s if budget else None,
            "share": budget.share(int(spent_file.get("tokens") or 0),
                                  float(spent_file.get("wall_s") or 0.0)) if budget else None,
        })  # fmt: skip
    return {"runs": runs, "agents": rows}


def _budget_file(dash: Dashboard, agent: str) -> dict[str, Any]:
    # Where an llm: agent keeps what it spent (runtime/handlers/llm.py, `budget.json`).
    path = dash.backend.local.agent_dir(agent) / "budget.json"
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def send_targets(dash: Dashboard) -> list[str]:
    """What the send form offers: each pipeline (`pipeline:NAME`), then each agent; not those
    that cannot run here (a disabled agent, a pipeline needing one): sending would be refused."""
    from agentctl.flow.send import PIPELINE_PREFIX

    roster = dash.roster

    def runnable(pipeline: str) -> bool:
        final = roster.final_agent(pipeline)
        needed = [agent for stage in roster.stages(pipeline) for agent in stage]
        return not set(needed + ([final] if final else [])) & dash.disabled.keys()

    return [PIPELINE_PREFIX + name for name in roster.pipelines if runnable(name)] + [
        name for name in dash.names if name != USER_AGENT and name not in dash.disabled
    ]


def linked(text: str, links: dict[str, str]) -> list[tuple[str, str | None]]:
    """`text` in pieces, each id of `links` a piece with the page it links to (a notice whose
    ids are links: `sent ID to echo`)."""
    import re

    if not links:
        return [(text, None)]
    pattern = "|".join(re.escape(ident) for ident in sorted(links, key=len, reverse=True))
    pieces: list[tuple[str, str | None]] = []
    for piece in re.split(f"({pattern})", text):
        if piece:
            pieces.append((piece, links.get(piece)))
    return pieces
