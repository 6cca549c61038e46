"""Starting the dashboard: check the address, open the roster's backend, print the URL with
this start's token, serve with uvicorn (its log on stderr) until Ctrl-C."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from agentctl.model.errors import AgentctlError
from agentctl.ui.security import TOKEN_PARAM, Guard, check_bind

if TYPE_CHECKING:
    from agentctl.config.roster import Roster

MISSING_EXTRA = "the dashboard needs the ui extra: pip install 'agentctl[ui]'"
EXTRA_MODULES = ("starlette", "uvicorn", "jinja2")
GRACEFUL_S = 2  # what a request still running at Ctrl-C gets to finish


def serve(
    roster: Roster,
    workspace: Path | None,
    *,
    host: str,
    port: int,
    token: str | None,
    open_browser: bool = False,
) -> None:
    """Serve the dashboard of `roster`'s workspace on `host:port` until interrupted."""
    try:
        import uvicorn

        from agentctl.ui.app import build_app
        from agentctl.ui.stopping import StoppingServer
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in EXTRA_MODULES:
            raise AgentctlError(MISSING_EXTRA) from None
        raise
    from agentctl.backends import open_backend, require_workspace
    from agentctl.ui.events import Broadcaster
    from agentctl.ui.views import Dashboard

    check_bind(host, token)
    require_workspace(roster, (workspace or roster.workspace_path).absolute())
    guard = Guard(token)
    sock = _listen(host, port)
    backend = open_backend(roster, workspace, client_name="agentctl-ui")
    try:
        broadcaster = Broadcaster(backend)
        app = build_app(Dashboard(roster, backend), guard, broadcaster=broadcaster)
        # Only uvicorn's warnings and errors (on stderr; no access log): the URL printed below
        # is all a person needs to see.
        config = uvicorn.Config(app, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=GRACEFUL_S)  # fmt: skip
        bound_port = sock.getsockname()[1]  # port 0 picks a free one
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}/?{TOKEN_PARAM}={quote(guard.token, safe='')}"
        print(f"agentctl ui: {url}", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        with contextlib.suppress(KeyboardInterrupt):
            StoppingServer(config, broadcaster).run(sockets=[sock])
    finally:
        backend.close()
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (AgentctlError saying why not): bound here, before
    uvicorn starts, so a port in use is one error line, and the URL names the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise AgentctlError(f"--host {host} --port {port}: cannot listen: {exc.strerror}") from None
    sock.listen(socket.SOMAXCONN)  # so the URL printed next works at once, uvicorn or not yet
    sock.set_inheritable(True)
    return sock

