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

    def fields(self) -> dict[str, str]:
        """The fields journaled with the action."""
        return {"by": self.by, **({"client": self.client} if self.client else {})}

    @property
    def label(self) -> str:
        """One word for a reply's `by` (`alice`, `mcp:claude-code`, `ui`)."""
        if self.by == "cli":
            return self.client or "human"
        return f"{self.by}:{self.client}" if self.client else self.by


def cli_actor() -> Actor:
    """The person at this terminal."""
    import getpass  # only acting needs it: `status` starts fast without it

    try:
        return Actor("cli", getpass.getuser())
    except (KeyError, OSError):
        return Actor("cli")
