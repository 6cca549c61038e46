"""`agentctl mcp`: the workspace served to MCP clients (issue 16).

`server.serve` builds an MCP server over one Backend (files or NATS alike) with the tools in
`readtools` and `actiontools` and the resources in `resources`, and runs it over stdio or
streamable HTTP (`auth` guards the HTTP app with a bearer token). Every action is taken through
the same core functions as the CLI's, journaled `by: mcp` with the client's name.
"""

from __future__ import annotations

from agentctl.model.errors import AgentctlError

MISSING_EXTRA = "the MCP server needs the mcp extra: pip install 'agentctl[mcp]'"


class MissingMcpError(AgentctlError):
    """The `mcp` SDK is not installed (the `mcp` extra)."""


def require_sdk() -> None:
    """MissingMcpError naming the extra when the MCP SDK cannot be imported."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise MissingMcpError(MISSING_EXTRA) from None
