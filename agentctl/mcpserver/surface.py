"""What every tool and resource shares: the backend being served, who is asking, and the
guards that treat everything arriving over MCP as untrusted input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from agentctl.mcpserver.arguments import argument_error
from agentctl.model.actor import Actor
from agentctl.model.constants import USER_AGENT
from agentctl.model.errors import AgentctlError
from agentctl.model.names import validate_message_id

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster

T = TypeVar("T")

MAX_WAIT_S = 300.0  # a tool call holds its client: no wait longer than this
MAX_EVENTS = 1000  # events one `tail` call returns at most
MAX_KEYWORDS = 32
MAX_KEYWORD_CHARS = 64
MAX_CLIENT_NAME_CHARS = 64
MAX_NOTE_CHARS = 2000


@dataclass(frozen=True)
class Served:
    """The roster (None when only a workspace is served) and the backend every tool acts on."""

    roster: Roster | None
    backend: Backend

    def agent_names(self) -> list[str]:
        """The agents a filter may name: the roster's, else the workspace's."""
        if self.roster is not None:
            return [agent.name for agent in self.roster.agents]
        return [n for n in self.backend.local.agent_names() if n != USER_AGENT]


def actor_of(ctx: Context[Any, Any]) -> Actor:
    """`mcp` with the client's name from its initialize request (or request envelope)."""
    params = ctx.session.client_params
    name = params.client_info.name if params is not None else None
    return Actor("mcp", clean_client_name(name))


def clean_client_name(name: object) -> str | None:
    """The client's self-chosen name as it may go into the journal: printable, one line,
    at most MAX_CLIENT_NAME_CHARS; None when nothing is left."""
    if not isinstance(name, str):
        return None
    kept = "".join(c for c in name if c.isprintable()).strip()
    return kept[:MAX_CLIENT_NAME_CHARS] or None


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking core call off the event loop; an agentctl error (bad input, a refusal,
    a timeout) becomes the tool's error result, which the model reads and can correct."""
    try:
        return await anyio.to_thread.run_sync(call)
    except ValidationError as exc:  # a ValueError too, but many lines of it
        raise ToolError(argument_error(exc)[0]) from None
    except (AgentctlError, ValueError) as exc:
        raise ToolError(str(exc)) from None
    except OSError as exc:
        from agentctl.protocol.writeretry import disk_error_line, is_disk_error

        if is_disk_error(exc):
            raise ToolError(disk_error_line(exc)) from None
        raise


def checked_content(content: Any) -> Any:
    """Content as given: text, a JSON object or an array, except an `@path` (over MCP nothing
    is read from a path)."""
    if not isinstance(content, str | dict | list):
        given = "null" if content is None else type(content).__name__
        raise ToolError(f"content: must be text, a JSON object or an array (got {given})")
    if isinstance(content, str) and not content.strip():
        raise ToolError("content: empty; nothing sent")  # as the dashboard says it
    if isinstance(content, str) and content.startswith("@"):
        raise ToolError(
            "content starting with '@' reads a file on the command line; over MCP nothing is "
            "read from a path: send the text itself (or a JSON object)"
        )
    return content


def checked_keywords(keywords: list[str]) -> list[str]:
    """At most MAX_KEYWORDS keywords of at most MAX_KEYWORD_CHARS each, blanks dropped."""
    kept = [k.strip() for k in keywords if k.strip()]
    if len(kept) > MAX_KEYWORDS or any(len(k) > MAX_KEYWORD_CHARS for k in kept):
        raise ToolError(
            f"keywords: at most {MAX_KEYWORDS}, each at most {MAX_KEYWORD_CHARS} characters"
        )
    return kept


def checked_id(ident: str, what: str = "id") -> str:
    """A message, thread, run or escalation id safe as part of a file name."""
    try:
        return validate_message_id(ident)
    except AgentctlError as exc:
        raise ToolError(f"{what}: {exc}") from None


def checked_note(note: str | None) -> str | None:
    """A person's (or model's) note, bounded."""
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise ToolError(f"note: at most {MAX_NOTE_CHARS} characters")
    return note
