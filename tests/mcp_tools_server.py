"""A real MCP server for the tests of `llm:` agents' MCP tools, built with the SDK's server API.

    python tests/mcp_tools_server.py                    # stdio
    python tests/mcp_tools_server.py --crash            # says why on stderr, exits 2 at once
    python tests/mcp_tools_server.py --http PORT        # streamable HTTP on 127.0.0.1:PORT/mcp

Tools: `add`, `lookup` (a tool error for an unknown key), `env` (what the server's
environment holds), `die` (the server exits mid-call, once per marker file), `whoami` (the
Authorization header an HTTP request carried).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

CAPITALS = {"france": "Paris", "peru": "Lima"}

server = MCPServer("agentctl-test-tools", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def lookup(country: str) -> str:
    """The capital of a country."""
    if country.lower() not in CAPITALS:
        raise ToolError(f"no capital known for {country!r}")
    return CAPITALS[country.lower()]


@server.tool()
def env(name: str) -> str:
    """The value of an environment variable of this server, or <unset>."""
    return os.environ.get(name, "<unset>")


@server.tool()
def die(marker: str) -> str:
    """Exit the server in the middle of the call, unless `marker` exists (it is created)."""
    path = Path(marker)
    if path.exists():
        return "still alive"
    path.write_text("died once\n")
    print("tool server: dying on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
def whoami(ctx: Context) -> str:
    """The Authorization header this request carried (HTTP only)."""
    headers = ctx.headers or {}
    return headers.get("authorization", "<none>")


if __name__ == "__main__":
    if "--crash" in sys.argv:
        print("tool server: cannot start: no config here", file=sys.stderr, flush=True)
        sys.exit(2)
    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run("stdio")
