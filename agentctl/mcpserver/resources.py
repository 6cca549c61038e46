"""Resources: a message by id, a thread, a pipeline run and a review report, each as
`agentctl://<kind>/<id>`; the runs and reports there are (and the latest threads) are listed.

Ids are checked as the CLI checks them (they become parts of file names), and a report is read
only from the workspace's `reports/` folder, never through a link out of it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import Resource

from agentctl.model.errors import AgentctlError
from agentctl.model.names import validate_message_id
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace
    from agentctl.mcpserver.surface import Served

SCHEME = "agentctl://"
REPORTS_DIR = "reports"  # where the review crew's reporter writes `<run>.md`
LISTED_THREADS = 20  # the latest threads resources/list names
JSON = "application/json"


def run_summaries(workspace: Workspace) -> list[dict[str, Any]]:
    """One summary per pipeline run, oldest first."""
    from agentctl.flow.pipeline import RunStore

    return [
        {**run.summary(), "uri": f"{SCHEME}run/{run.run_id}"}
        for run in RunStore.of(workspace).all()
    ]


def report_ids(workspace: Workspace) -> list[str]:
    """The runs with a review report, by name."""
    try:
        names = sorted(p.stem for p in (workspace.root / REPORTS_DIR).iterdir()
                       if p.suffix == ".md" and p.is_file())  # fmt: skip
    except FileNotFoundError:
        return []
    return [n for n in names if _valid(n)]


def read_report(workspace: Workspace, run_id: str) -> str:
    """The Markdown report of `run_id`, read from inside `<workspace>/reports/` only."""
    folder = (workspace.root / REPORTS_DIR).resolve()
    path = (folder / f"{validate_message_id(run_id)}.md").resolve()
    if path.parent != folder:  # a link that leads out of the folder
        raise AgentctlError(f"{run_id}: no review report with this id")
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise AgentctlError(f"{run_id}: no review report with this id") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentctlError(f"{run_id}: cannot read its report: {exc}") from None


def read_run(workspace: Workspace, run_id: str) -> dict[str, Any]:
    """A run as `pipeline show --json` prints it."""
    from agentctl.flow.pipeline import RunStore

    run = RunStore.of(workspace).load(validate_message_id(run_id))
    if run is None:
        raise AgentctlError(f"{run_id}: no such pipeline run")
    return run.details()


def listed_resources(served: Served) -> list[Resource]:
    """The concrete resources there are now: every run and report, the latest threads."""
    local = served.backend.local
    found = [
        Resource(uri=f"{SCHEME}run/{r['run']}", name=f"run {r['run']}", mime_type=JSON,
                 description=f"pipeline {r['pipeline']} run: {r['status']}")
        for r in run_summaries(local)
    ]  # fmt: skip
    found += [
        Resource(uri=f"{SCHEME}report/{run}", name=f"report {run}", mime_type="text/markdown",
                 description="the review report of this run")
        for run in report_ids(local)
    ]  # fmt: skip
    threads: dict[str, None] = {}
    for record in reversed(served.backend.read_events(
        LISTED_THREADS * 10, lambda r: r.get("event") == Event.SENT
    )):  # fmt: skip
        thread = record.get("thread_id")
        if isinstance(thread, str) and _valid(thread):
            threads.setdefault(thread)
        if len(threads) >= LISTED_THREADS:
            break
    found += [
        Resource(uri=f"{SCHEME}thread/{t}", name=f"thread {t}", mime_type=JSON,
                 description="every message and event of this thread")
        for t in threads
    ]  # fmt: skip
    return found


def register_resources(server: MCPServer[Any], served: Served) -> None:
    """Add the resource templates (and the runs index) reading `served`."""
    backend = served.backend

    async def guarded(call: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(call)
        except (AgentctlError, ValueError) as exc:
            raise ResourceError(str(exc)) from None

    def thread_of(ident: str) -> Any:
        from agentctl.audit.history import load_thread

        return load_thread(backend.history(), ident)

    @server.resource(f"{SCHEME}message/{{message_id}}", name="message", mime_type=JSON,
                     description="One message: its envelope, content, state and events.")
    async def message(message_id: str) -> str:
        thread = await guarded(lambda: thread_of(message_id))
        trace = thread.messages.get(message_id)
        if trace is None:
            raise ResourceError(f"{message_id}: no message with this id")
        return json.dumps(trace.to_json(), ensure_ascii=False)

    @server.resource(f"{SCHEME}thread/{{thread_id}}", name="thread", mime_type=JSON,
                     description="A thread (or a message's thread): messages and events.")
    async def thread(thread_id: str) -> str:
        found = await guarded(lambda: thread_of(thread_id))
        return json.dumps(found.to_json(), ensure_ascii=False)

    @server.resource(f"{SCHEME}run/{{run_id}}", name="pipeline run", mime_type=JSON,
                     description="A pipeline run: each stage's agents, verdict and results.")
    async def run(run_id: str) -> str:
        data = await guarded(lambda: read_run(backend.local, run_id))
        return json.dumps(data, ensure_ascii=False)

    @server.resource(f"{SCHEME}report/{{run_id}}", name="review report",
                     mime_type="text/markdown",
                     description="The review crew's Markdown report of a run.")
    async def report(run_id: str) -> str:
        text: str = await guarded(lambda: read_report(backend.local, run_id))
        return text

    @server.resource(f"{SCHEME}runs", name="pipeline runs", mime_type=JSON,
                     description="Every pipeline run, oldest first, with its resource uri.")
    async def runs() -> str:
        data = await guarded(lambda: run_summaries(backend.local))
        return json.dumps(data, ensure_ascii=False)


def _valid(ident: str) -> bool:
    try:
        validate_message_id(ident)
    except AgentctlError:
        return False
    return True

