"""`agentctl mcp`: the workspace served to MCP clients (issue 16).

`server.serve` builds an MCP server over one Backend (files or NATS alike) with the tools in
`readtools` and `actiontools` and the resources in `resources`, and runs it over stdio or
streamable HTTP (`auth` guards the HTTP app with a bearer token). Every action is taken through
the same core functions as the CLI's, journaled `by: mcp` with the client's name.

This module imports no part of the SDK: a bad bind and a missing extra are refused with one
line before the SDK (slow to import) is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentctl.mcpserver.auth import check_bind
from agentctl.model.errors import AgentctlError

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster

MISSING_EXTRA = "the MCP server needs the mcp extra: pip install 'agentctl[mcp]'"


class MissingMcpError(AgentctlError):
    """The `mcp` SDK is not installed (the `mcp` extra)."""


@dataclass(frozen=True)
class Transport:
    """How the server is reached: stdio, or streamable HTTP at host:port (with a token)."""

    http: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None

    def __post_init__(self) -> None:
        # Refused before anything is opened or listens.
        if self.http:
            check_bind(self.host, self.token)


def serve(
    roster: Roster | None, backend: Backend, transport: Transport, *, read_only: bool = False
) -> None:
    """Serve `backend` (and `roster`'s pipelines and routing) until the client hangs up
    (stdio) or until interrupted (HTTP); `read_only` serves only the tools that look."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise MissingMcpError(MISSING_EXTRA) from None
    from agentctl.backends import require_workspace

    require_workspace(roster, backend.local.root)
    from agentctl.mcpserver.server import run_server
    from agentctl.mcpserver.surface import Served

    run_server(Served(roster, backend), transport, read_only=read_only)
