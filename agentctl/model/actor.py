"""Who took an action: journaled beside every send, resolve, requeue, resend, halt and resume
that a person or a program asked for, so the audit trail says which surface did it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """`by` is the surface (`cli`, `mcp`, `ui`); `client` names who drove it (the user's login
    on the command line, the MCP client's name from its initialize request)."""

    by: str
    client: str | None = None
    # The W3C `traceparent` of the work it acted within (a CI job's TRACEPARENT): a `send`
    # span links to it. agentctl's trace ids stay its own (model/tracecontext.py).
    context: str | None = None

    def fields(self) -> dict[str, str]:
        """The fields journaled with the action."""
        fields = {"by": self.by}
        if self.client:
            fields["client"] = self.client
        if self.context:
            fields["link"] = self.context
        return fields

    @property
    def label(self) -> str:
        """One word for a reply's `by` (`alice`, `mcp:claude-code`, `ui`)."""
        if self.by == "cli":
            return self.client or "human"
        return f"{self.by}:{self.client}" if self.client else self.by


def cli_actor() -> Actor:
    """The person at this terminal, within the trace in `TRACEPARENT` if a valid one is set
    (as OpenTelemetry's environment carrier has it; an invalid one is ignored, as W3C says)."""
    import getpass  # only acting needs it: `status` starts fast without it
    import os

    from agentctl.model.tracecontext import TRACEPARENT_ENV, parse_traceparent

    outside = parse_traceparent(os.environ.get(TRACEPARENT_ENV))
    context = outside.format() if outside else None
    try:
        return Actor("cli", getpass.getuser(), context)
    except (KeyError, OSError):
        return Actor("cli", context=context)
