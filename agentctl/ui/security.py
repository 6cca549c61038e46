"""Who may use the dashboard: a secret token per start, a CSRF value on every form, and the
addresses it agrees to listen on.

The token is printed in the URL at start (as Jupyter does); the first visit with `?token=`
sets it as a cookie and redirects to the same page without it, so it does not stay in the
address bar or the history. The CSRF value is derived from the token (an HMAC), so it needs no
state: a page on another site can make the browser send the cookie, but cannot read a page of
ours to learn the value a form must carry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from agentctl.model.errors import AgentctlError
from agentctl.model.loopback import MIN_TOKEN_CHARS, is_loopback

COOKIE = "agentctl_ui_token"
CSRF_FIELD = "csrf"
TOKEN_PARAM = "token"  # noqa: S105 - the name of a query parameter, not a secret

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BindError(AgentctlError):
    """A non-loopback address asked for without an explicit token, or a token too short."""



def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine unless the person chose the token themselves:
    a token printed on a terminal is not enough protection for a network. A token given
    must not be guessable, wherever it listens."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise BindError(f"--token: at least {MIN_TOKEN_CHARS} characters (a short one can be "
                        "guessed)")  # fmt: skip
    if not is_loopback(host) and not token:
        raise BindError(
            f"--host {host}: not a loopback address; the dashboard can act on the workspace "
            "(resolve, requeue, halt), so listening beyond this machine needs --token SECRET"
        )


class Guard:
    """The token of this start and the CSRF value derived from it."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.csrf = hmac.new(self.token.encode(), b"agentctl-ui-csrf", hashlib.sha256).hexdigest()

    def admits(self, cookie: str | None) -> bool:
        """Whether a request's cookie carries this start's token."""
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.token.encode())

    def csrf_ok(self, value: str | None) -> bool:
        """Whether a form carries this start's CSRF value."""
        return value is not None and hmac.compare_digest(value.encode(), self.csrf.encode())

    def middleware(self, app: App) -> App:
        """An ASGI wrapper: a request without the token gets 403; one that brings it in the
        URL gets the cookie and a redirect to the same URL without it."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
            given = next((v for k, v in query if k == TOKEN_PARAM), None)
            if given is not None and self.admits(given):
                rest = urlencode([(k, v) for k, v in query if k != TOKEN_PARAM])
                location = scope["path"] + (f"?{rest}" if rest else "")
                await _respond(send, 303, b"", [
                    (b"location", location.encode()),
                    (b"set-cookie", _cookie(self.token)),
                ])  # fmt: skip
                return
            if not self.admits(_cookie_of(scope)):
                await _respond(send, 403, b"forbidden: open the URL `agentctl ui` printed "
                               b"(it carries this start's token)\n", [])  # fmt: skip
                return
            await app(scope, receive, send)

        return guarded


def _cookie(token: str) -> bytes:
    # SameSite=Strict: another site's page cannot make the browser send it at all.
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()


def _cookie_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == COOKIE:
                    return str(val)
    return None


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
