"""The MCP servers of an `llm:` agent, connected for one attempt: a Toolbox of their tools.

The only runtime module that imports the MCP SDK (the `mcp` extra), and only when an agent with
`mcp_servers:` handles a message, so no other agent needs the extra; without it the attempt
fails at once with one line naming `pip install 'agentctl[mcp]'`.

Servers live for one attempt: each attempt starts its stdio servers afresh (and connects to its
HTTP ones), lists their tools, and closes them all when it ends. An attempt so never inherits a
server that crashed, hung, or kept state from another thread's message; a retry after a server
failure gets a new server, which is what makes "the attempt fails, so it is retried" useful; and
nothing has to watch a connection between messages. The price is a server's start-up on every
message (a Python server: about a second), small beside a model's answer.

A stdio server runs with the roster's directory as its working directory and in the
environment of the agent's `env:` policy (envpolicy.py: the LLM keys do not reach it unless
listed); its stderr goes to the agent's log, up to STDERR_MAX_BYTES per attempt, and its end is
kept for the error message when the server fails.

The model sees each tool as a function `<server>__<tool>`. A tool's own error (`isError`), and
an error response to a call (an unknown tool, bad arguments), are answers the model can act on;
a server that cannot start, closes the connection or does not answer in time fails the attempt
(McpServerError, a HandlerError; HandlerTimeoutError when the time is up).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentctl import __version__ as VERSION
from agentctl.model.constants import MCP_EXTRA_HINT
from agentctl.model.errors import HandlerError, HandlerTimeoutError, NonRetryableError
from agentctl.runtime.handlers.exec import StderrLog

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal
    from mcp import Client
    from mcp_types import CallToolResult

    from agentctl.config.mcpspec import McpServerSpec

log = logging.getLogger("agentctl.runtime.worker")

FUNCTION_SEPARATOR = "__"  # `<server>__<tool>`: the name the model calls a tool by
MAX_FUNCTION_NAME_CHARS = 64  # what chat-completions endpoints accept
MAX_RESULT_CHARS = 64 * 1024  # of one tool's answer, told to the model
STDERR_MAX_BYTES = 64 * 1024  # of one server's stderr, per attempt, into the agent's log
_STDERR_TAIL_CHARS = 300
_STDERR_DRAIN_S = 1.0  # how long a failed server's last words may take to arrive
_MAX_LIST_PAGES = 20  # tools/list pages read from one server


class McpServerError(HandlerError):
    """An MCP server could not start, closed the connection or broke the protocol."""

    def __init__(self, server: str, problem: str) -> None:
        super().__init__(f"MCP server {server!r}: {problem}")
        self.server = server
        self.problem = problem


class McpServerTimeoutError(HandlerTimeoutError):
    """An MCP server did not answer within the attempt's time."""


@dataclass(frozen=True)
class ToolAnswer:
    """What a tool said: the text for the model, its full size, and whether it is an error."""

    text: str
    size_bytes: int
    is_error: bool


class Toolbox:
    """The tools of an agent's MCP servers for one attempt (open it with open_toolbox)."""

    def __init__(self, portal: BlockingPortal, clients: dict[str, Client]) -> None:
        self._portal = portal
        self._clients = clients
        self.functions: list[dict[str, Any]] = []  # the `tools` of a chat-completions request
        self._routes: dict[str, tuple[str, str]] = {}  # function name -> (server, tool)

    def route(self, function: str) -> tuple[str, str] | None:
        """(server, tool) of a function the model called, None if it was never offered."""
        return self._routes.get(function)

    def call(self, function: str, arguments: dict[str, Any], *, timeout_s: float) -> ToolAnswer:
        """Call the tool behind `function`; McpServerError when its server fails."""
        server, tool = self._routes[function]
        client = self._clients[server]

        async def call() -> CallToolResult:
            import anyio

            with anyio.fail_after(timeout_s):
                return await client.call_tool(tool, arguments, read_timeout_seconds=timeout_s)

        try:
            result = self._portal.call(call)
        except Exception as exc:
            refused = _refusal(exc)
            if refused is None:
                raise _server_failure(server, exc) from None
            return ToolAnswer(refused, len(refused.encode()), is_error=True)
        return _answer_of(result)

    def offer(self, name: str, spec: McpServerSpec, remaining_s: Callable[[], float]) -> None:
        """List server `name`'s tools; offer those its `tools:` allows (default: all)."""
        client = self._clients[name]
        tools: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):

            async def page(cursor: str | None = cursor) -> Any:
                import anyio

                with anyio.fail_after(remaining_s()):
                    return await client.list_tools(cursor=cursor)

            try:
                listed = self._portal.call(page)
            except Exception as exc:
                raise _server_failure(name, exc) from None
            for tool in listed.tools:
                tools[tool.name] = {"description": tool.description or tool.title or "",
                                    "parameters": tool.input_schema}  # fmt: skip
            cursor = listed.next_cursor
            if cursor is None:
                break
        wanted = spec.tools if spec.tools is not None else sorted(tools)
        missing = [tool for tool in wanted if tool not in tools]
        if missing:
            offered = ", ".join(sorted(tools)) or "none"
            raise McpServerError(name, f"offers no tool {missing[0]!r} (its tools: {offered})")
        for tool in wanted:
            function = _function_name(name, tool)
            if function in self._routes:
                raise McpServerError(name, f"tool {tool!r} is offered as {function!r}, "
                                     "the name of another tool")  # fmt: skip
            self._routes[function] = (name, tool)
            self.functions.append({"type": "function",
                                   "function": {"name": function, **tools[tool]}})  # fmt: skip


@contextmanager
def open_toolbox(
    servers: Mapping[str, McpServerSpec],
    *,
    env: dict[str, str],
    remaining_s: Callable[[], float],
    client_name: str,
) -> Iterator[Toolbox]:
    """Start or connect to every server and list its tools; close them all on the way out.

    `env` is the environment of stdio servers; `remaining_s()` the time left to the attempt.
    Raises NonRetryableError without the MCP SDK, McpServerError when a server fails,
    HandlerTimeoutError when one does not answer in time.
    """
    try:
        from anyio.from_thread import start_blocking_portal
        from mcp import Client, Implementation
    except ImportError:
        raise NonRetryableError(f"mcp_servers need the MCP SDK: {MCP_EXTRA_HINT}") from None
    stderr: dict[str, _StderrPump] = {}
    with start_blocking_portal(name=f"mcp-{client_name}") as portal, ExitStack() as stack:
        try:
            clients: dict[str, Client] = {}
            for name, spec in servers.items():
                if spec.command is not None:
                    stderr[name] = _StderrPump(name)
                transport = _transport(spec, env, remaining_s(), stderr.get(name))
                client = Client(
                    transport,
                    read_timeout_seconds=remaining_s(),  # the handshake's
                    client_info=Implementation(name=f"agentctl {client_name}", version=VERSION),
                    cache=None,
                )
                try:
                    clients[name] = stack.enter_context(portal.wrap_async_context_manager(client))
                except Exception as exc:
                    raise _server_failure(name, exc) from None
                finally:
                    if name in stderr:
                        stderr[name].spawned()
            toolbox = Toolbox(portal, clients)
            for name, spec in servers.items():
                toolbox.offer(name, spec, remaining_s)
            yield toolbox
        except McpServerError as exc:
            # Stop the servers first: a server's last words reach its stderr as it dies.
            _close_quietly(stack)
            pump = stderr.get(exc.server)
            tail = pump.tail() if pump is not None else ""
            raise McpServerError(exc.server, exc.problem + tail) from None
        finally:
            # Closed without the exception in hand: the SDK would wrap it in exception groups.
            _close_quietly(stack)
            for pump in stderr.values():
                pump.spawned()


def _transport(
    spec: McpServerSpec, env: dict[str, str], timeout_s: float, stderr: _StderrPump | None
) -> Any:
    if spec.command is not None:
        from mcp import StdioServerParameters, stdio_client

        assert stderr is not None
        program, *args = spec.command
        parameters = StdioServerParameters(command=program, args=args, env=env)
        return stdio_client(parameters, errlog=stderr.writer)
    assert spec.url is not None
    return _http_transport(spec.url, spec.resolved_headers(os.environ), timeout_s)


@asynccontextmanager
async def _http_transport(
    url: str, headers: dict[str, str], timeout_s: float
) -> AsyncIterator[Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    # Our own HTTP client, for the headers; the SDK closes only a client it made itself.
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout_s)) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


def _close_quietly(stack: ExitStack) -> None:
    try:
        stack.close()
    except Exception as exc:  # the answer is in hand, or the failure already said
        log.warning("closing the MCP servers: %s", _first_cause(exc))


def _function_name(server: str, tool: str) -> str:
    """`<server>__<tool>`, in the characters and length chat-completions function names allow."""
    name = server + FUNCTION_SEPARATOR + tool
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in name)
    return cleaned[:MAX_FUNCTION_NAME_CHARS]


def _answer_of(result: CallToolResult) -> ToolAnswer:
    from mcp_types import EmbeddedResource, ResourceLink, TextContent, TextResourceContents

    parts = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource) and isinstance(
            block.resource, TextResourceContents
        ):
            parts.append(block.resource.text)
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource {block.uri}]")
        else:  # an image, audio, a binary resource: a text model cannot take them
            parts.append(f"[{block.type} content, not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    size_bytes = len(text.encode())
    if len(text) > MAX_RESULT_CHARS:
        cut = len(text) - MAX_RESULT_CHARS
        text = text[:MAX_RESULT_CHARS] + f"\n[... {cut} more characters cut]"
    return ToolAnswer(text, size_bytes, result.is_error)


def _refusal(exc: Exception) -> str | None:
    """The text of an error response the model can act on (an unknown tool, bad arguments);
    None when the exception is the server failing."""
    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

    if isinstance(exc, MCPError) and exc.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
        return f"error {exc.code}: {exc.message}"
    return None


def _server_failure(server: str, exc: BaseException) -> HandlerError:
    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

    cause = _first_cause(exc)
    if isinstance(cause, TimeoutError) or (
        isinstance(cause, MCPError) and cause.code == REQUEST_TIMEOUT
    ):
        return McpServerTimeoutError(f"MCP server {server!r}: no answer in time")
    if isinstance(cause, MCPError) and cause.code == CONNECTION_CLOSED:
        return McpServerError(server, "closed the connection")
    if isinstance(cause, OSError) and cause.strerror:
        return McpServerError(server, f"cannot start or reach it: {cause.strerror}")
    return McpServerError(server, f"{type(cause).__name__}: {cause}")


def _first_cause(exc: BaseException) -> BaseException:
    # The SDK's task groups wrap what went wrong in exception groups, sometimes nested.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _StderrPump:
    """A stdio server's stderr: into the agent's log (bounded), its end kept for an error."""

    def __init__(self, server: str) -> None:
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")  # the server's stderr; ours is closed once spawned
        self._log = StderrLog(f"MCP server {server!r}", STDERR_MAX_BYTES)
        self._thread = threading.Thread(
            target=self._pump, args=(read_fd,), name=f"mcp-{server}-stderr", daemon=True
        )
        self._thread.start()

    def _pump(self, read_fd: int) -> None:
        try:
            while chunk := os.read(read_fd, 65536):
                self._log.write(chunk)
        finally:
            os.close(read_fd)

    def spawned(self) -> None:
        """The server holds its end now (or never will): ours must close for the pump to end."""
        self.writer.close()

    def tail(self) -> str:
        """`: <the end of what the server said>`, once it said it all (or empty)."""
        self._thread.join(_STDERR_DRAIN_S)
        text = self._log.tail.decode("utf-8", "replace").strip()[-_STDERR_TAIL_CHARS:]
        return f"; its stderr ends: {text}" if text else ""
