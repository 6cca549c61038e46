"""What each page of the dashboard shows, built from the core functions through the Backend
seam (the same calls the CLI makes), so the pages read files and NATS alike.

Every view is bounded: the runs pages (runviews.py) read at most the newest `RUNS_SHOWN` run
files, the journal page the last `lines` events, a thread or a run the records the history finds
for one id; none reads the whole journal per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentctl.model.constants import USER_AGENT
from agentctl.ui.runviews import newest_runs, run_summary, seconds_between, usage_of

if TYPE_CHECKING:
    from agentctl.audit.history import MessageTrace, Thread
    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster
    from agentctl.flow.pipeline import RunStore

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
        wall_s = seconds_between(run.started_at, run.finished_at)
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
