"""Score-based routing: the seed's TaskRouter, and `agentctl route` / `send --route|--fanout`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl import BaseAgent, TaskRouter
from agentctl.flow.routing import DEFAULT_CONFIDENCE_FLOOR, NoConfidentAgentError
from tests.conftest import run_cli, write_roster


class Reviewer(BaseAgent):
    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        return {"reviewed": task}


def agents() -> list[BaseAgent]:
    return [
        Reviewer("security", "holes", ["authentication", "authorization", "injection", "xss"]),
        Reviewer("perf", "finds slowness", ["latency", "caching"]),
        Reviewer("auth", "auth only", ["authentication", "injection"]),
    ]


def test_route_picks_the_best_scoring_agent() -> None:
    router = TaskRouter(agents())
    assert router.route({"keywords": ["authentication", "injection"]}).name == "auth"
    assert router.route({"keywords": ["caching"]}).name == "perf"


def test_route_refuses_below_the_floor_with_a_value_error_as_in_the_seed() -> None:
    router = TaskRouter(agents())
    with pytest.raises(ValueError, match="No agent confident enough"):
        router.route({"keywords": ["xss"]})  # security scores 0.25 < 0.3
    with pytest.raises(NoConfidentAgentError):
        TaskRouter([]).route({"keywords": ["x"]})
    assert TaskRouter(agents(), floor=0.25).route({"keywords": ["xss"]}).name == "security"


def test_route_multi_returns_every_agent_at_or_above_the_threshold() -> None:
    router = TaskRouter(agents())
    task = {"keywords": ["authentication", "injection"]}
    assert [a.name for a in router.route_multi(task)] == ["auth", "security"]  # 1.0, 0.5
    assert [a.name for a in router.route_multi(task, threshold=0.6)] == ["auth"]
    assert router.route_multi({"keywords": []}) == []


def test_an_agent_can_override_its_score() -> None:
    class Eager(Reviewer):
        def can_handle(self, task: dict[str, Any]) -> float:
            return 0.9 if "urgent" in str(task.get("content")) else 0.0

    router = TaskRouter([*agents(), Eager("eager", "", [])])
    assert router.route({"content": "urgent fix", "keywords": ["caching"]}).name == "eager"
    assert router.route({"content": "later", "keywords": ["caching"]}).name == "perf"


ROSTER = """\
    - name: security
      expertise: [authentication, authorization, injection, xss]
      python: agentctl.agents.echo:EchoAgent
    - name: perf
      expertise: [latency, caching]
      python: agentctl.agents.echo:EchoAgent
    - name: eager
      python: eager_agent:Eager
"""

EAGER = '''
from agentctl import BaseAgent

class Eager(BaseAgent):
    def __init__(self, name="eager", role="", expertise=None):
        super().__init__(name, role, expertise or [])

    def can_handle(self, task):
        return 0.95 if "urgent" in task.get("keywords", []) else 0.0

    async def process(self, task, context):
        return {"eager": task["content"]}
'''


def _journal(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "workspace" / ".agentctl" / "journal" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_route_explains_without_sending(tmp_path: Path) -> None:
    write_roster(tmp_path, ROSTER)
    (tmp_path / "eager_agent.py").write_text(EAGER)
    result = run_cli("route", "-k", "authentication,injection", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["candidates"][0] == {"agent": "security", "score": 0.5}
    assert decision["route"] == "security" and decision["fanout"] == ["security"]
    # A python agent's own can_handle is used (its class is loaded from the roster's folder).
    urgent = json.loads(run_cli("route", "-k", "urgent", "--json", cwd=tmp_path).stdout)
    assert urgent["route"] == "eager"
    table = run_cli("route", "-k", "nothing", cwd=tmp_path)
    assert table.returncode == 0 and "no agent reaches the floor" in table.stdout
    assert not (tmp_path / "workspace").exists() or not any(
        (tmp_path / "workspace").glob("*/inbox/new/*")
    )


def test_send_route_and_fanout_deliver_and_journal_the_decision(
    tmp_path: Path, supervised
) -> None:
    write_roster(tmp_path, ROSTER)
    (tmp_path / "eager_agent.py").write_text(EAGER)
    supervised(tmp_path).wait_ready(["security", "perf", "eager"])

    routed = run_cli("send", "--route", "-k", "caching", "fast?", "--wait", cwd=tmp_path)
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout)["agent"] == "perf"

    fanned = run_cli(
        "send", "--fanout", "--threshold", "0.25", "-k", "xss,latency", "look", "--wait",
        cwd=tmp_path,
    )  # fmt: skip
    assert fanned.returncode == 0, fanned.stderr
    assert sorted(json.loads(fanned.stdout)) == ["perf", "security"]

    decisions = [e for e in _journal(tmp_path) if e["event"] == "routed"]
    assert [d["mode"] for d in decisions] == ["route", "fanout"]
    assert decisions[0]["chosen"] == ["perf"]
    assert {c["agent"] for c in decisions[0]["candidates"]} == {"security", "perf", "eager"}
    assert decisions[1]["chosen"] == ["perf", "security"]
    # The fan-out's messages share the thread the decision was journaled under.
    sent = [e for e in _journal(tmp_path) if e["event"] == "sent" and e["agent"] == "user"]
    assert {e["thread_id"] for e in sent[-2:]} == {decisions[1]["thread_id"]}


def test_no_confident_agent_is_one_clear_error_and_nothing_is_sent(tmp_path: Path) -> None:
    write_roster(tmp_path, ROSTER)
    (tmp_path / "eager_agent.py").write_text(EAGER)
    for mode in ("--route", "--fanout"):
        result = run_cli("send", mode, "-k", "gardening", "help", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.count("error:") == 1, result.stderr
    assert not any((tmp_path / "workspace").glob("*/inbox/new/*"))
    usage = run_cli("send", "--route", "security", "two args", cwd=tmp_path)
    assert usage.returncode == 2 and "CONTENT only" in usage.stderr


# -- the floor, ties and the threshold, for any scores (issue 20) ------------------------------


class Scored(Reviewer):
    """An agent whose score is fixed, so a test chooses the scores exactly."""

    def __init__(self, name: str, score: float) -> None:
        super().__init__(name, "", [])
        self.score = score

    def can_handle(self, task: dict[str, Any]) -> float:
        return self.score


def test_the_seed_floor_is_0_3_and_an_agent_scoring_exactly_that_is_routed() -> None:
    assert DEFAULT_CONFIDENCE_FLOOR == 0.3
    assert TaskRouter([Scored("exact", 0.3)]).route({}).name == "exact"
    with pytest.raises(NoConfidentAgentError, match="floor 0.3; best: under at 0.30"):
        TaskRouter([Scored("under", 0.2999)]).route({})
    # The default scoring reaches it too: 3 of 10 declared keywords.
    expertise = [f"k{i}" for i in range(10)]
    assert TaskRouter([Reviewer("third", "", expertise)]).route({"keywords": expertise[:3]})


def test_ties_go_to_the_agent_listed_first() -> None:
    first, second = Scored("first", 0.7), Scored("second", 0.7)
    assert TaskRouter([first, second]).route({}) is first
    assert TaskRouter([second, first]).route({}) is second
    ranked = TaskRouter([Scored("low", 0.5), first, second]).route_multi({})
    assert [a.name for a in ranked] == ["first", "second", "low"]


SCORES = st.lists(
    st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0]) | st.floats(0, 1), max_size=6
)
LEVELS = st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]) | st.floats(0, 1)


@settings(max_examples=100, deadline=None)
@given(scores=SCORES, floor=LEVELS)
def test_route_takes_the_first_best_agent_or_refuses_below_the_floor(
    scores: list[float], floor: float
) -> None:
    agents = [Scored(f"a{i}", s) for i, s in enumerate(scores)]
    router = TaskRouter(agents, floor=floor)
    if not scores or max(scores) < floor:
        with pytest.raises(NoConfidentAgentError):
            router.route({})
        return
    best = max(scores)
    assert router.route({}) is agents[scores.index(best)]


@settings(max_examples=100, deadline=None)
@given(scores=SCORES, threshold=LEVELS)
def test_route_multi_is_everyone_at_or_above_the_threshold_best_first_ties_in_order(
    scores: list[float], threshold: float
) -> None:
    agents = [Scored(f"a{i}", s) for i, s in enumerate(scores)]
    chosen = TaskRouter(agents).route_multi({}, threshold=threshold)
    expected = sorted(
        (i for i, s in enumerate(scores) if s >= threshold), key=lambda i: (-scores[i], i)
    )
    assert chosen == [agents[i] for i in expected]


WORDS = st.text("abcdef", min_size=1, max_size=3)


@settings(max_examples=100, deadline=None)
@given(expertise=st.lists(WORDS, max_size=6, unique=True), keywords=st.lists(WORDS, max_size=8))
def test_the_default_score_is_the_share_of_expertise_the_task_names(
    expertise: list[str], keywords: list[str]
) -> None:
    score = Reviewer("r", "", expertise).can_handle({"keywords": keywords})
    assert 0.0 <= score <= 1.0
    assert score == len(set(expertise) & set(keywords)) / max(len(expertise), 1)
    assert (score == 1.0) == (bool(expertise) and set(expertise) <= set(keywords))


def test_no_agent_at_all_says_only_the_floor() -> None:
    with pytest.raises(NoConfidentAgentError) as info:
        TaskRouter([], floor=0.4).route({"keywords": ["x"]})
    assert str(info.value).endswith("(floor 0.4)")


def test_roster_candidates_score_by_expertise_or_by_their_own_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, what `route` and `send --route` do in theirs: the roster as candidates."""
    from agentctl.config.roster import load_roster
    from agentctl.flow.routing import Candidate, RosterAgent, explain, roster_candidates

    monkeypatch.setattr(sys, "path", list(sys.path))  # the roster's directory is added to it
    (tmp_path / "eager_here.py").write_text(EAGER)  # a module name no other test imports
    roster = load_roster(write_roster(tmp_path, ROSTER.replace("eager_agent:", "eager_here:")))

    candidates = roster_candidates(roster)

    assert [type(c).__name__ for c in candidates] == ["RosterAgent", "RosterAgent", "Eager"]
    assert candidates[0].expertise == ["authentication", "authorization", "injection", "xss"]
    assert isinstance(candidates[1], RosterAgent) and candidates[1].role == ""
    ranked = explain(TaskRouter(candidates), {"keywords": ["urgent", "injection", "caching"]})
    assert ranked == [Candidate("eager", 0.95), Candidate("perf", 0.5), Candidate("security", 0.25)]
    assert [c.to_json() for c in ranked][1:] == [
        {"agent": "perf", "score": 0.5}, {"agent": "security", "score": 0.25}]
    assert Candidate("a", 1 / 3).to_json() == {"agent": "a", "score": 0.3333}
    with pytest.raises(NotImplementedError):
        asyncio.run(candidates[0].process({}, {}))


def test_explain_route_in_process_says_who_route_and_fanout_pick_and_every_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `route --json` prints, built in process (the CLI test runs it in a child)."""
    from agentctl.config.roster import load_roster
    from agentctl.flow.routing import explain_route

    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "eager_there.py").write_text(EAGER)
    roster = load_roster(write_roster(tmp_path, ROSTER.replace("eager_agent:", "eager_there:")))

    decision = explain_route(roster, {"keywords": ["caching", "injection"]})
    assert decision.to_json() == {
        "keywords": ["caching", "injection"],
        "candidates": [{"agent": "perf", "score": 0.5}, {"agent": "security", "score": 0.25},
                       {"agent": "eager", "score": 0.0}],
        "excluded": {},
        "route": "perf",
        "floor": 0.3,
        "fanout": ["perf"],
        "threshold": 0.5,
    }  # fmt: skip
    # Below the floor nobody is routed; the threshold decides the fanout on its own.
    low = explain_route(roster, {"keywords": ["injection"]}, floor=0.3, threshold=0.25)
    assert low.route is None and low.fanout == ["security"]
    assert low.to_json()["floor"] == 0.3 and low.to_json()["threshold"] == 0.25
    assert explain_route(roster, {}).keywords == [] and explain_route(roster, {}).route is None
    urgent = explain_route(roster, {"keywords": ["urgent"]}, floor=0.95, threshold=0.95)
    assert urgent.route == "eager" and urgent.fanout == ["eager"]  # at the floor is enough
