"""The seed's graduated verdicts: one rule for reading them (the worker's journaled verdict and a
pipeline stage's agree on every result), and the join where the worst one wins."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.flow.pipeline import stage_verdict
from agentctl.model.verdict import Verdict, stated_verdict, verdict_of
from agentctl.runtime.settlement import verdict_of as worker_verdict

# (result, what it states (the `handled` event's `verdict`, None: the field is left out), verdict)
CASES: list[tuple[str, Any, Verdict | None, Verdict]] = [
    ("missing", {"answer": 42}, None, Verdict.PASS),
    ("unknown", {"verdict": "maybe"}, Verdict.FLAG, Verdict.FLAG),
    ("empty", {"verdict": ""}, Verdict.FLAG, Verdict.FLAG),
    ("upper case", {"verdict": "PASS"}, Verdict.PASS, Verdict.PASS),
    ("mixed case", {"verdict": "Block"}, Verdict.BLOCK, Verdict.BLOCK),
    ("passed false", {"passed": False}, Verdict.BLOCK, Verdict.BLOCK),
    ("passed true", {"passed": True}, Verdict.PASS, Verdict.PASS),
    ("verdict wins over passed", {"verdict": "flag", "passed": True}, Verdict.FLAG, Verdict.FLAG),
    ("passed not a bool", {"passed": 0}, None, Verdict.PASS),
    ("verdict not a string", {"verdict": 3, "passed": False}, Verdict.BLOCK, Verdict.BLOCK),
    ("non-dict", "looks fine", None, Verdict.PASS),
    ("list", [{"verdict": "halt"}], None, Verdict.PASS),
    ("none", None, None, Verdict.PASS),
]


@pytest.mark.parametrize(
    ("result", "stated", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_worker_and_pipeline_read_one_verdict(
    result: Any, stated: Verdict | None, verdict: Verdict
) -> None:
    # Given one result, when the worker journals it and a pipeline stage judges it,
    # then both say the same: the journal leaves out only what the rule reads as PASS.
    journaled = worker_verdict(result)
    assert journaled == stated
    assert stage_verdict(result) is verdict
    assert Verdict(journaled or Verdict.PASS) is stage_verdict(result)
    assert stated_verdict(result) == stated and verdict_of(result) is verdict


VERDICTS = st.sampled_from(list(Verdict))


@settings(max_examples=100, deadline=None)
@given(verdicts=st.lists(VERDICTS, max_size=8), data=st.data())
def test_the_worst_verdict_wins_for_any_list_in_any_order(
    verdicts: list[Verdict], data: st.DataObject
) -> None:
    worst = Verdict.worst(verdicts)
    assert all(worst.severity >= v.severity for v in verdicts)
    assert worst in verdicts or (not verdicts and worst is Verdict.PASS)
    assert Verdict.worst(data.draw(st.permutations(verdicts))) is worst
    # Joining in steps gives the same as joining at once (a fan-out stage, then the run).
    cut = data.draw(st.integers(0, len(verdicts)))
    assert Verdict.worst([Verdict.worst(verdicts[:cut]), Verdict.worst(verdicts[cut:])]) is worst
    # Adding a PASS never changes the outcome.
    assert Verdict.worst([*verdicts, Verdict.PASS]) is worst
