"""Build the MCP server over one backend and run it: stdio (stdout carries protocol messages
only; every log line goes to stderr) or streamable HTTP on loopback unless told otherwise."""

from __future__ import annotations

import logging
import socket
import sys
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult, Resource, TextContent
from pydantic import ValidationError

from agentctl.mcpserver.actiontools import register_action_tools
from agentctl.mcpserver.arguments import argument_error
from agentctl.mcpserver.auth import BearerTokenMiddleware
from agentctl.mcpserver.readtools import register_read_tools
from agentctl.mcpserver.resources import listed_resources, register_resources
from agentctl.mcpserver.surface import Served
from agentctl.model.errors import AgentctlError

if TYPE_CHECKING:
    from agentctl.mcpserver import Transport

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "agentctl runs a team of agents over a workspace. Start with `status`. `send` gives an "
    "agent a task (wait=true returns its reply); `start_pipeline` runs a declared pipeline; a "
    "stage that escalates waits for `resolve_escalation`. `tail` and `replay` read the audit "
    "trail, `verify` checks it. Every action you take is journaled with your client's name."
)


class AgentctlMCPServer(MCPServer[Any]):
    """The SDK's server, whose resource list also names the runs, reports and threads there
    are now (the SDK lists only fixed resources; these come and go)."""

    def __init__(self, served: Served, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.served = served

    async def list_resources(self) -> list[Resource]:
        """The fixed resources, then every run and report and the latest threads."""
        fixed = await super().list_resources()
        return [*fixed, *await anyio.to_thread.run_sync(lambda: listed_resources(self.served))]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """The SDK's call, except that a refused call is an error result whose text is one
        line (arguments that fail the schema: each named, with what is wrong) and whose
        structured content is `{"error": that line}` (and the `arguments` at fault)."""
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # a crash: the SDK logs it and tells the client nothing of it
        except ToolError as exc:
            said: dict[str, Any]
            if isinstance(exc.__cause__, ValidationError):
                line, names = argument_error(exc.__cause__)
                line = f"Error executing tool {name}: {line}"
                said = {"error": line, "arguments": names}
            else:
                line = " ".join(str(exc).split())  # one line, whatever a message holds
                said = {"error": line}
            log.info("tool %r refused: %r", name, said.get("arguments", line))
            return CallToolResult(content=[TextContent(type="text", text=line)],
                                  structured_content=said, is_error=True)  # fmt: skip


def build_server(served: Served, *, read_only: bool = False) -> AgentctlMCPServer:
    """The MCP server for `served`: the read tools, the action tools unless `read_only`, and
    the resources."""
    server = AgentctlMCPServer(
        served, name="agentctl", version=_version(), instructions=INSTRUCTIONS,
        log_level="WARNING",
    )  # fmt: skip
    register_read_tools(server, served)
    if not read_only:
        register_action_tools(server, served)
    register_resources(server, served)
    return server


def run_server(served: Served, transport: Transport, *, read_only: bool = False) -> None:
    """Serve until the client hangs up (stdio) or until interrupted (HTTP)."""
    _log_to_stderr()
    server = build_server(served, read_only=read_only)
    what = "read-only tools" if read_only else "tools"
    where = served.backend.local.root
    if not transport.http:
        print(f"agentctl mcp: serving {where} over stdio ({what})", file=sys.stderr)
        try:
            server.run("stdio")
        except KeyboardInterrupt:
            pass  # Ctrl-C in a terminal: the one way a hand-started server ends
        return
    import uvicorn

    app: Any = server.streamable_http_app(host=transport.host)
    if transport.token is not None:
        app = BearerTokenMiddleware(app, transport.token)
    listening = _listen(transport.host, transport.port)
    port = listening.getsockname()[1]  # the one the system chose for --port 0
    url = f"http://{transport.host}:{port}/mcp"
    guarded = ", bearer token required" if transport.token else ""
    print(f"agentctl mcp: serving {where} at {url} ({what}{guarded})", file=sys.stderr)
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """The bound socket uvicorn serves on: a port in use is one error line of ours, not a
    server's log."""
    address = host.strip("[]")
    listening = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        listening.bind((address, port))
    except OSError as exc:
        listening.close()
        why = exc.strerror or str(exc)
        raise AgentctlError(f"--host {host} --port {port}: cannot listen: {why}") from None
    return listening


def _log_to_stderr() -> None:
    # Before the SDK configures logging (it only does when nothing has): on stdio, stdout is
    # the protocol, so not one log line may reach it.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("agentctl mcp: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentctl")
    except PackageNotFoundError:
        return "0"
