"""The seed's graduated verdicts: richer than pass/fail, so a system can degrade gracefully."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """What an agent concluded; the value is what results carry on disk (`"verdict": "flag"`)."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FLAG = "flag"  # proceed with caution; recorded for later review
    BLOCK = "block"  # prevent the action this task was about
    ESCALATE = "escalate"  # route to a human
    HALT = "halt"  # stop everything

    @property
    def severity(self) -> int:
        """Order from PASS (0) to HALT (4): the worst verdict of several wins."""
        return _SEVERITY[self]

    @classmethod
    def worst(cls, verdicts: list[Verdict]) -> Verdict:
        """The most severe of `verdicts` (PASS when there are none)."""
        return max(verdicts, key=lambda v: v.severity, default=cls.PASS)


_SEVERITY = {
    Verdict.PASS: 0,
    Verdict.FLAG: 1,
    Verdict.BLOCK: 2,
    Verdict.ESCALATE: 3,
    Verdict.HALT: 4,
}


def stated_verdict(result: object) -> Verdict | None:
    """The verdict a result states, or None when it states none.

    The one rule for every reader (the worker's `handled` event, the pipeline's stages, `tail`,
    `pipeline show`): a result dict's `verdict` in any case ("PASS" is PASS); a verdict string we
    do not know is FLAG, since it deserves a look, not a pass; without one, the seed's `passed`
    (`false` is BLOCK, `true` is PASS). Anything that is not a dict states nothing.
    """
    if not isinstance(result, dict):
        return None
    value = result.get("verdict")
    if isinstance(value, str):
        try:
            return Verdict(value.lower())
        except ValueError:
            return Verdict.FLAG
    passed = result.get("passed")
    if passed is False:
        return Verdict.BLOCK
    if passed is True:
        return Verdict.PASS
    return None


def verdict_of(result: object) -> Verdict:
    """The verdict of a result: the one it states, else PASS (as in the seed)."""
    return stated_verdict(result) or Verdict.PASS
