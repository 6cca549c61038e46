"""The dashboard's routes: pages that show (GET) and actions that change something (POST,
each with the CSRF value), every one through the same core function as the CLI, `by: ui`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentctl.model.actor import Actor
from agentctl.model.errors import AgentctlError
from agentctl.ui import runviews, views
from agentctl.ui.events import Broadcaster
from agentctl.ui.security import CSRF_FIELD, Guard
from agentctl.ui.views import Dashboard

HERE = Path(__file__).parent
UI = Actor("ui")
RESEND_WAIT_S = 10.0  # how long "resend and compare" waits for the new reply
COMPARISONS_KEPT = 100  # resends whose comparison page stays available, in memory


def build_app(
    dash: Dashboard, guard: Guard, *, live: bool = True, broadcaster: Broadcaster | None = None
) -> Any:
    """The ASGI app: the routes behind the token check. With `live`, a thread follows the
    journal for the pages' server-sent events while the app runs (`broadcaster`, given so that
    the server can end the streams when it is asked to exit)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every message's content is shown as text, never as markup
        undefined=jinja2.StrictUndefined,
        finalize=_blank_if_none,  # a missing value shows as nothing, never as "None"
    )
    env.filters["who"] = views.who
    broadcaster = broadcaster or Broadcaster(dash.backend)

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        query = request.query_params
        done = query.get("done")
        html = env.get_template(template).render(
            csrf=guard.csrf, csrf_field=CSRF_FIELD, path=request.url.path,
            notice=views.linked(done, _links(query.getlist("thread"), query.getlist("run")))
            if done else None,
            error=context.pop("error", None) or query.get("error"),
            halted=dash.backend.halt_state(), **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    async def show(
        request: Request, template: str, build: Callable[[], dict[str, Any]]
    ) -> Response:
        try:
            context = await run_in_threadpool(build)
        except AgentctlError as exc:
            return await run_in_threadpool(render, request, "error.html", 400, error=str(exc))
        return await run_in_threadpool(render, request, template, **context)

    async def agents(request: Request) -> Response:
        return await show(request, "agents.html", lambda: views.agents(dash))

    async def runs(request: Request) -> Response:
        query = request.query_params
        filters = {k: query.get(k, "") for k in ("pipeline", "outcome", "search")}
        return await show(request, "runs.html", lambda: {
            "runs": runviews.list_runs(dash, **filters), "filters": filters,
            "pipelines": list(dash.roster.pipelines), "targets": views.send_targets(dash),
        })  # fmt: skip

    async def run(request: Request) -> Response:
        from agentctl.model.names import validate_message_id

        def build() -> dict[str, Any]:
            run_id = validate_message_id(request.path_params["run_id"])
            found = dash.runs().load(run_id)
            if found is None:
                raise AgentctlError(f"{run_id}: no such pipeline run")
            return {"run": runviews.run_detail(dash, found)}

        return await show(request, "run.html", build)

    async def thread(request: Request) -> Response:
        from agentctl.audit.diagram import mermaid
        from agentctl.audit.history import load_thread

        def build() -> dict[str, Any]:
            found = load_thread(dash.backend.history(), request.path_params["ident"])
            return {"thread": found, "tree": views.thread_tree(found),
                    "diagram": views.page_diagram(mermaid(found), found.thread_id)}  # fmt: skip

        return await show(request, "thread.html", build)

    async def journal(request: Request) -> Response:
        from agentctl.audit.diagram import describe
        from agentctl.audit.history import event_filter

        query = request.query_params
        filters = {k: query.get(k, "") for k in ("agent", "thread", "kind")}
        lines = _int(query.get("lines"), 100, views.JOURNAL_LINES_MAX)

        def build() -> dict[str, Any]:
            kinds = [k.strip() for k in filters["kind"].split(",") if k.strip()]
            keep = event_filter(agent=filters["agent"] or None, thread=filters["thread"] or None,
                                kinds=kinds, agents=dash.names)  # fmt: skip
            records = dash.backend.read_events(lines, keep)
            return {"events": [(r, describe(r)) for r in reversed(records)],
                    "filters": filters, "lines": lines}  # fmt: skip

        return await show(request, "journal.html", build)

    async def waiting(request: Request) -> Response:
        return await show(request, "waiting.html", lambda: views.waiting(dash))

    async def cost(request: Request) -> Response:
        return await show(request, "cost.html", lambda: views.cost(dash))

    async def events(request: Request) -> Response:
        return StreamingResponse(broadcaster.stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store"})  # fmt: skip

    # -- actions ----------------------------------------------------------------------------

    def action(act: Callable[[dict[str, str], Request], str | Done], back: str) -> Any:
        """A POST route: the CSRF value checked, `act` run with the form, then back to `back`
        (or to the `next` page the form names, or to the one `act` names) with what was done,
        or with the error."""

        async def endpoint(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"),
                                  keep_blank_values=True))  # fmt: skip
            if not guard.csrf_ok(form.get(CSRF_FIELD)):
                return Response("forbidden: missing or wrong CSRF value; reload the page\n",
                                status_code=403, media_type="text/plain")  # fmt: skip
            target = form.get("next") or back
            if not target.startswith("/") or target.startswith("//"):
                target = back  # only our own pages
            query: list[tuple[str, str]]
            try:
                done = await run_in_threadpool(act, form, request)
                if isinstance(done, str):
                    done = Done(done)
                target = done.page or target
                query = [("done", done.text), *(("thread", i) for i in done.threads),
                         *(("run", i) for i in done.runs)]  # fmt: skip
            except AgentctlError as exc:
                query = [("error", str(exc))]
            sep = "&" if "?" in target else "?"
            return RedirectResponse(target + sep + urlencode(query), status_code=303)

        return endpoint

    def resolve(form: dict[str, str], _: Request) -> str:
        from agentctl.flow.escalation import resolve_escalation

        verdict = form.get("verdict", "")
        if verdict not in ("pass", "flag", "block"):
            raise AgentctlError(f"verdict {verdict!r}: choose pass, flag or block")
        found = resolve_escalation(dash.backend, form.get("id", ""), verdict,
                                   form.get("note") or None, by=UI)  # fmt: skip
        return f"resolved {found.id} ({verdict}); run {found.run}"

    def requeue(form: dict[str, str], _: Request) -> str:
        from agentctl.flow.deadletters import requeue_dead

        agent = form.get("agent") or None
        done, failures = requeue_dead(dash.backend, form.get("id", ""),
                                      [agent] if agent else None, by=UI)  # fmt: skip
        if failures:
            raise AgentctlError("; ".join(failures))
        return f"requeued {', '.join(done)}"

    def halt(form: dict[str, str], _: Request) -> str:
        from agentctl.flow.halt import halt as enter_halt

        reason = form.get("reason", "").strip() or "halted from the dashboard"
        already = enter_halt(dash.backend, reason, by=UI)
        return f"halted: {reason}" if already is None else "already halted (kept)"

    def resume(form: dict[str, str], _: Request) -> str:
        from agentctl.flow.halt import resume as leave_halt

        lifted = leave_halt(dash.backend, by=UI)
        return "resumed" if lifted else "not halted"

    def send(form: dict[str, str], _: Request) -> Done:
        from agentctl.flow.send import SendRequest, send_message

        content = _content(form.get("content", ""))
        result = send_message(dash.backend, dash.roster,
                              SendRequest(content, to=form.get("to") or None, by=UI))  # fmt: skip
        if result.run:
            from agentctl.flow.pipeline import run_id_for

            run_id = run_id_for(result.messages[0].id)
            return Done(f"started run {run_id} of {result.run}", f"/runs?search={run_id}",
                        runs=(run_id,))  # fmt: skip
        return Done("sent " + ", ".join(f"{m.id} to {m.to_agent}" for m in result.messages),
                    threads=tuple(m.id for m in result.messages))  # fmt: skip

    def resend(form: dict[str, str], request: Request) -> Done:
        from agentctl.audit.resend import resend_and_compare

        ident = request.path_params["ident"]
        wait_s = RESEND_WAIT_S if form.get("compare") else None
        resent = resend_and_compare(dash.backend, dash.roster, ident, to=form.get("to") or None,
                                    wait_s=wait_s, by=UI)  # fmt: skip
        if len(compare) >= COMPARISONS_KEPT:
            compare.pop(next(iter(compare)))  # the oldest
        compare[resent.id] = resent.to_json()
        return Done(f"resent {resent.original_id} as {resent.id}", f"/resends/{resent.id}",
                    threads=(resent.original_id, resent.id))  # fmt: skip

    compare: dict[str, dict[str, Any]] = {}  # the comparisons made since start, by new id

    async def comparison(request: Request) -> Response:
        found = compare.get(request.path_params["ident"])
        if found is None:
            return await run_in_threadpool(render, request, "error.html", 404,
                                           error="no such resend since this start")  # fmt: skip
        return await run_in_threadpool(render, request, "compare.html", resent=found,
                                       recorded=views.pretty(found.get("recorded")),
                                       result=views.pretty(found.get("result")))  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        import asyncio

        if live:
            broadcaster.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            broadcaster.close()

    routes = [
        Route("/", agents),
        Route("/runs", runs),
        Route("/runs/{run_id}", run),
        Route("/threads/{ident}", thread),
        Route("/threads/{ident}/resend", action(resend, "/runs"), methods=["POST"]),
        Route("/resends/{ident}", comparison),
        Route("/journal", journal),
        Route("/waiting", waiting),
        Route("/cost", cost),
        Route("/events", events),
        Route("/escalations/resolve", action(resolve, "/waiting"), methods=["POST"]),
        Route("/dead/requeue", action(requeue, "/waiting"), methods=["POST"]),
        Route("/halt", action(halt, "/waiting"), methods=["POST"]),
        Route("/resume", action(resume, "/waiting"), methods=["POST"]),
        Route("/send", action(send, "/runs"), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return guard.middleware(app)


@dataclass(frozen=True)
class Done:
    """What an action did: the notice, the page that shows it (else the form's), and the ids
    in the notice that link to their thread or run."""

    text: str
    page: str | None = None
    threads: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()


def _links(threads: list[str], runs: list[str]) -> dict[str, str]:
    """The pages a notice's ids link to: only well-formed ids (the query can be anything)."""
    from agentctl.model.errors import InvalidNameError
    from agentctl.model.names import validate_message_id

    links = {}
    for prefix, idents in (("/threads/", threads), ("/runs/", runs)):
        for ident in idents:
            with contextlib.suppress(InvalidNameError):
                links[ident] = prefix + validate_message_id(ident)
    return links


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


def _int(text: str | None, default: int, most: int) -> int:
    try:
        return max(0, min(int(text or default), most))
    except ValueError:
        return default


def _content(text: str) -> Any:
    """A form's content as `send` reads CONTENT: JSON when it looks like JSON, else text."""
    from agentctl.model.errors import BadMessageError
    from agentctl.model.message import parse_json_strict

    if not text.strip():
        raise AgentctlError("content: empty; nothing sent")
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        return parse_json_strict(text.encode())
    except BadMessageError as exc:
        raise AgentctlError(f"content looks like JSON but is not ({exc}); nothing sent") from None
