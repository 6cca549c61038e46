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
