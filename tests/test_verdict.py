"""The seed's graduated verdicts: their order, and the join where the worst one wins."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.model.verdict import Verdict

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
