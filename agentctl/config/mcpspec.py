"""`mcp_servers:` of an `llm:` agent: the MCP servers whose tools its model may call.

    llm:
      mcp_servers:
        files: {command: [python, tools/files.py]}             # stdio: started for each attempt
        search:                                                # streamable HTTP
          url: https://mcp.example.com/mcp
          headers: {Authorization: "Bearer ${SEARCH_TOKEN}"}   # ${VAR}: from the environment
          tools: [search]                                      # offer only these (default: all)
      max_tool_calls: 8

A header's `${VAR}` is read when the agent runs, never written down: while a variable is unset
the agent is disabled (like an unset `${VAR}` base_url), and `validate` names the variable, the
header and the server.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SERVER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
# A header name is an RFC 9110 token; this is the part of it anyone uses.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_ENV_IN_TEXT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# MCP tool names: 1-128 of these (the 2025-11-25 specification).
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class McpServerSpec(BaseModel):
    """One MCP server: a `command` to start (stdio) or a `url` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # url only; values may hold ${VAR}
    tools: list[str] | None = Field(default=None, min_length=1)  # offer only these

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # A string is split like a shell would split words, but no shell ever runs it.
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names_and_refs(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
            if "${" in _ENV_IN_TEXT.sub("", value):
                raise ValueError(
                    f"header {name}: a ${{...}} that is not ${{VAR}} with VAR a variable name"
                )
        return headers

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, names: list[str] | None) -> list[str] | None:
        for name in names or ():
            if not _TOOL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an MCP tool name")
        if names is not None and len(set(names)) != len(names):
            raise ValueError("a tool is listed twice")
        return names

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.headers and self.url is None:
            raise ValueError("headers are for a url server (a command gets env: instead)")
        return self

    def env_refs(self) -> list[tuple[str, str]]:
        """(header, variable) for every `${VAR}` in the headers."""
        return [
            (header, match.group(1))
            for header, value in self.headers.items()
            for match in _ENV_IN_TEXT.finditer(value)
        ]

    def resolved_headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The headers with each `${VAR}` replaced from `environ` (unset: empty)."""
        return {
            name: _ENV_IN_TEXT.sub(lambda match: environ.get(match.group(1), ""), value)
            for name, value in self.headers.items()
        }

    def describe(self) -> str:
        """What it is, for an error message: the program, or the URL."""
        return self.command[0] if self.command else str(self.url)


def check_server_names(servers: dict[str, McpServerSpec]) -> None:
    """ValueError for a server name that cannot prefix a model's function name."""
    for name in servers:
        if not SERVER_NAME.fullmatch(name):
            raise ValueError(f"MCP server name {name!r} does not match {SERVER_NAME.pattern}")
