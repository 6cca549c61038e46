"""Score-based routing: the seed's TaskRouter, and the same scoring over a roster.

Each agent scores a task with `can_handle(task)` (by default the share of its declared
`expertise` found in the task's `keywords`); `route` picks the best agent if it is confident
enough, `route_multi` every agent at or above a threshold, for parallel review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentctl.flow.agentclass import agent_class, allow_imports_from, load_agent
from agentctl.model.agent import BaseAgent
from agentctl.model.errors import AgentctlError

if TYPE_CHECKING:
    from agentctl.config.agentspec import AgentSpec
    from agentctl.config.roster import Roster

DEFAULT_CONFIDENCE_FLOOR = 0.3
DEFAULT_FANOUT_THRESHOLD = 0.5


class NoConfidentAgentError(AgentctlError, ValueError):
    """No agent scored a task at or above the floor (a ValueError, as in the seed)."""


@dataclass(frozen=True)
class Candidate:
    """An agent and its score for one task."""

    name: str
    score: float

    def to_json(self) -> dict[str, Any]:
        """The form journaled and printed by `route --json`."""
        return {"agent": self.name, "score": round(self.score, 4)}


class TaskRouter:
    """Routes tasks to the agents whose `can_handle` scores them highest (the seed's API)."""

    def __init__(self, agents: Sequence[BaseAgent], *, floor: float = DEFAULT_CONFIDENCE_FLOOR):
        self.agents = list(agents)
        self.floor = floor

    def scores(self, task: dict[str, Any]) -> list[tuple[BaseAgent, float]]:
        """Every agent with its score, best first (ties keep the agents' order)."""
        scored = [(agent, float(agent.can_handle(task))) for agent in self.agents]
        return sorted(scored, key=lambda pair: pair[1], reverse=True)

    def route(self, task: dict[str, Any]) -> BaseAgent:
        """The best agent; NoConfidentAgentError if even it scores below the floor."""
        scored = self.scores(task)
        if not scored or scored[0][1] < self.floor:
            best = f"; best: {scored[0][0].name} at {scored[0][1]:.2f}" if scored else ""
            raise NoConfidentAgentError(
                f"No agent confident enough for task: {task} (floor {self.floor:g}{best})"
            )
        return scored[0][0]

    def route_multi(
        self, task: dict[str, Any], threshold: float = DEFAULT_FANOUT_THRESHOLD
    ) -> list[BaseAgent]:
        """Every agent scoring at or above `threshold`, for parallel review."""
        return [agent for agent, score in self.scores(task) if score >= threshold]


class RosterAgent(BaseAgent):
    """A roster entry as a router candidate: its name, role and expertise, default scoring."""

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError("a routing stand-in: the agent runs in its own process")


def roster_candidates(roster: Roster) -> list[BaseAgent]:
    """The roster's agents that can answer, as router candidates (disabled ones never are).

    A `python:` agent whose class overrides `can_handle` scores with its own method (its class
    is loaded for that); every other agent scores by its declared expertise.
    """
    allow_imports_from(roster)
    disabled = roster.disabled_agents()
    return [_candidate(spec) for spec in roster.agents if spec.name not in disabled]


@dataclass(frozen=True)
class RouteExplanation:
    """Who `send --route` and `--fanout` would pick for some keywords, every score, and the
    agents left out with why."""

    keywords: list[str]
    candidates: list[Candidate]
    excluded: dict[str, str]
    floor: float
    threshold: float

    @property
    def route(self) -> str | None:
        """The agent `--route` sends to, or None when nobody reaches the floor."""
        best = self.candidates[0] if self.candidates else None
        return best.name if best is not None and best.score >= self.floor else None

    @property
    def fanout(self) -> list[str]:
        """The agents `--fanout` sends to."""
        return [c.name for c in self.candidates if c.score >= self.threshold]

    def to_json(self) -> dict[str, Any]:
        """The stable form of `route --json`."""
        return {
            "keywords": self.keywords,
            "candidates": [c.to_json() for c in self.candidates],
            "excluded": self.excluded,
            "route": self.route,
            "floor": self.floor,
            "fanout": self.fanout,
            "threshold": self.threshold,
        }


def explain_route(
    roster: Roster,
    task: dict[str, Any],
    *,
    floor: float = DEFAULT_CONFIDENCE_FLOOR,
    threshold: float = DEFAULT_FANOUT_THRESHOLD,
) -> RouteExplanation:
    """Score `task` for every agent that can answer; say why the others are left out."""
    candidates = explain(TaskRouter(roster_candidates(roster), floor=floor), task)
    return RouteExplanation(
        keywords=list(task.get("keywords") or []),
        candidates=candidates,
        excluded=roster.disabled_agents(),
        floor=floor,
        threshold=threshold,
    )


def _candidate(spec: AgentSpec) -> BaseAgent:
    if spec.python is not None:
        if agent_class(spec).can_handle is not BaseAgent.can_handle:
            return load_agent(spec)
    return RosterAgent(name=spec.name, role=spec.role, expertise=list(spec.expertise))


def explain(router: TaskRouter, task: dict[str, Any]) -> list[Candidate]:
    """Every candidate's score for `task`, best first."""
    return [Candidate(agent.name, score) for agent, score in router.scores(task)]
