"""The bearer token that guards `agentctl mcp --http`: required for a bind beyond loopback,
checked on every request when set."""

from __future__ import annotations

import hmac
from typing import Any

from agentctl.model.constants import ENV_MCP_TOKEN
from agentctl.model.errors import AgentctlError
from agentctl.model.loopback import MIN_TOKEN_CHARS, is_loopback


def check_bind(host: str, token: str | None) -> None:
    """AgentctlError unless the bind is loopback or guarded by a good enough token."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise AgentctlError(f"--token: at least {MIN_TOKEN_CHARS} characters")
    if token is None and not is_loopback(host):
        raise AgentctlError(
            f"--host {host} is reachable from other machines: give a bearer token with "
            f"--token or {ENV_MCP_TOKEN} (clients send `Authorization: Bearer <token>`)"
        )


class BearerTokenMiddleware:
    """ASGI middleware: an HTTP request without `Authorization: Bearer <token>` gets 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            await send({
                "type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="agentctl"')],
            })  # fmt: skip
            await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        given = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        # Constant time: how much of a guess matched must not show in the answer's timing.
        return hmac.compare_digest(given, self.expected)
