"""The dashboard's pipeline runs: the list with its filters, one run's stages and timeline, and
what each run used (tokens, cost, time). Bounded: the newest `RUNS_SHOWN` run files, or one by id.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentctl.audit.history import event_time
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.audit.history import MessageTrace, Thread
    from agentctl.flow.pipeline import Run
    from agentctl.ui.views import Dashboard

RUNS_SHOWN = 200  # the newest run files a list reads; older ones are found by id


def seconds_between(start: str | None, end: str | None) -> float | None:
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
        "duration_s": seconds_between(run.started_at, run.finished_at),
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
        row for row in rows if pipeline in ("", row["pipeline"]) and outcome in ("", row["status"])
    ]


def run_detail(dash: Dashboard, run: Run) -> dict[str, Any]:
    """A run's page: its stages (agents side by side), each agent's verdict, reason, attempts
    and duration, and a bar per attempt on a timeline."""
    from agentctl.audit.history import HistoryError, load_thread
    from agentctl.flow.pipeline import parse_stage_id, stage_verdict
    from agentctl.ui.views import pretty  # views imports this module

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
            "duration_s": seconds_between(stage.started_at, stage.finished_at),
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
