"""The dashboard in process (Starlette's TestClient over a real file workspace): the token,
CSRF on every action, escaping of message content, the bind rules, and the actions journaled
`by: ui`. The browser end to end is tests/e2e/test_ui_browser.py."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import AGENTCTL, run_cli, write_roster

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    roster = tmp_path / "agents.yaml"
    roster.write_text(roster.read_text() + "pipelines:\n  gate: [echo]\n")
    (tmp_path / "workspace").mkdir()  # as `agentctl run` leaves it
    return tmp_path


def _client(project: Path, token: str = "s3cret-token") -> TestClient:
    from agentctl.backends import open_backend
    from agentctl.config.roster import load_roster
    from agentctl.ui.app import build_app
    from agentctl.ui.security import Guard
    from agentctl.ui.views import Dashboard

    roster = load_roster(project / "agents.yaml")
    backend = open_backend(roster, project / "workspace")
    app = build_app(Dashboard(roster, backend), Guard(token), live=False)
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


def _admitted(project: Path) -> TestClient:
    client = _client(project)
    first = client.get("/?token=s3cret-token")
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return client


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]


def _journal(project: Path) -> list[dict]:
    out = run_cli("tail", "-n", "1000", "--json", cwd=project).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_every_page_needs_the_token(project: Path) -> None:
    client = _client(project)
    for path in ("/", "/runs", "/journal", "/waiting", "/cost", "/events", "/static/ui.js"):
        assert client.get(path).status_code == 403, path
    assert client.get("/?token=wrong").status_code == 403
    client.cookies.set("agentctl_ui_token", "wrong")
    assert client.get("/").status_code == 403


def test_the_token_in_the_url_becomes_a_cookie_and_every_view_renders(project: Path) -> None:
    client = _admitted(project)
    for path in ("/", "/runs", "/journal", "/waiting", "/cost", "/runs?pipeline=gate&outcome=done",
                 "/runs?search=nosuchrun"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
    assert client.get("/static/mermaid.min.js").status_code == 200


def test_an_action_without_the_csrf_value_is_refused_and_changes_nothing(project: Path) -> None:
    client = _admitted(project)
    refused = client.post("/halt", data={"reason": "no csrf"})
    assert refused.status_code == 403
    refused = client.post("/halt", data={"reason": "bad csrf", "csrf": "0" * 64})
    assert refused.status_code == 403
    assert not (project / "workspace" / ".agentctl" / "halted.json").exists()
    # Without the token cookie, even the right CSRF value is refused.
    csrf = _csrf(client.get("/waiting").text)
    stranger = _client(project)
    assert stranger.post("/halt", data={"reason": "x", "csrf": csrf}).status_code == 403
    assert not (project / "workspace" / ".agentctl" / "halted.json").exists()


def test_halt_and_resume_are_journaled_by_ui(project: Path) -> None:
    client = _admitted(project)
    csrf = _csrf(client.get("/waiting").text)
    done = client.post("/halt", data={"reason": "maintenance", "csrf": csrf})
    assert done.status_code == 303 and done.headers["location"].startswith("/waiting?done=")
    page = client.get("/").text
    assert "HALTED" in page and "maintenance" in page
    assert client.post("/resume", data={"csrf": csrf}).status_code == 303
    assert "HALTED" not in client.get("/").text
    events = [e for e in _journal(project) if e["event"] in ("halted", "resumed")]
    assert [(e["event"], e.get("by")) for e in events] == [("halted", "ui"), ("resumed", "ui")]


def test_message_content_is_escaped_everywhere(project: Path) -> None:
    client = _admitted(project)
    csrf = _csrf(client.get("/runs").text)
    sent = client.post("/send", data={"to": "echo", "content": SCRIPT, "csrf": csrf})
    assert sent.status_code == 303 and "error" not in sent.headers["location"]
    [event] = [e for e in _journal(project) if e["event"] == "sent"]
    assert event.get("by") == "ui"
    pages = [client.get("/journal").text, client.get(f"/threads/{event['thread_id']}").text]
    for page in pages:
        assert SCRIPT not in page
        assert "&lt;script&gt;" in page


def test_a_bad_send_is_one_error_and_sends_nothing(project: Path) -> None:
    client = _admitted(project)
    csrf = _csrf(client.get("/runs").text)
    sent = client.post("/send", data={"to": "nobody", "content": "hi", "csrf": csrf})
    assert sent.status_code == 303 and "error=" in sent.headers["location"]
    assert "nobody" in client.get(sent.headers["location"]).text
    assert not [e for e in _journal(project) if e["event"] == "sent"]


def test_an_unknown_thread_or_run_is_a_page_with_the_error(project: Path) -> None:
    client = _admitted(project)
    assert client.get("/threads/nosuchthread").status_code == 400
    assert client.get("/runs/nosuchrun").status_code == 400
    assert client.get("/journal?kind=nonsense").status_code == 400


def test_a_non_loopback_bind_is_refused_without_a_token(project: Path) -> None:
    from agentctl.ui.security import BindError, check_bind

    with pytest.raises(BindError, match="--token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "a-chosen-secret-of-16+")
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, None)
    result = run_cli("ui", "--host", "0.0.0.0", "--port", "0", cwd=project)
    assert result.returncode == 1
    assert result.stderr.count("error:") == 1 and "--token" in result.stderr


def test_without_the_ui_extra_one_error_line_names_it(project: Path, tmp_path: Path) -> None:
    # Given a Python where starlette cannot be imported (a module in front of it says so)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "starlette.py").write_text("raise ModuleNotFoundError(name='starlette')\n")
    import os

    path = os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])
    result = run_cli("ui", "--port", "0", cwd=project, env={"PYTHONPATH": path})
    assert result.returncode == 1
    assert result.stderr.count("error:") == 1, result.stderr
    assert "pip install 'agentctl[ui]'" in result.stderr and "Traceback" not in result.stderr


def test_the_event_stream_pushes_each_new_journal_event(project: Path) -> None:
    from agentctl.backends import open_backend
    from agentctl.config.roster import load_roster
    from agentctl.flow.halt import halt, resume
    from agentctl.model.actor import Actor
    from agentctl.ui.events import Broadcaster

    roster = load_roster(project / "agents.yaml")
    backend = open_backend(roster, project / "workspace")
    broadcaster = Broadcaster(backend)
    import asyncio

    async def first_event() -> str:
        broadcaster.start(asyncio.get_running_loop())
        stream = broadcaster.stream()
        assert await anext(stream) == "retry: 1000\n\n"  # subscribed from here on
        # When something is journaled after the page subscribed (again and again: the
        # follower thread starts at the journal's end, at a moment the test cannot see)
        heard = asyncio.ensure_future(anext(stream))
        for _ in range(100):
            await asyncio.to_thread(halt, backend, "pushed", by=Actor("ui"))
            await asyncio.to_thread(resume, backend, by=Actor("ui"))
            done, _ = await asyncio.wait({heard}, timeout=0.2)
            if done:
                return heard.result()
        raise AssertionError("no event pushed")

    try:
        line = asyncio.run(first_event())
    finally:
        broadcaster.close()
    # Then the page hears it: what happened, not the content.
    assert line.startswith("event: journal\ndata: ")
    assert json.loads(line.split("data: ", 1)[1])["event"] in ("halted", "resumed")


def test_a_short_token_is_refused_in_one_line(project: Path) -> None:
    from agentctl.model.loopback import MIN_TOKEN_CHARS
    from agentctl.ui.security import BindError, check_bind

    with pytest.raises(BindError, match=f"at least {MIN_TOKEN_CHARS} characters"):
        check_bind("127.0.0.1", "a" * (MIN_TOKEN_CHARS - 1))
    check_bind("0.0.0.0", "a" * MIN_TOKEN_CHARS)
    result = run_cli("ui", "--host", "0.0.0.0", "--port", "0", "--token", "a", cwd=project)
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.count("error:") == 1 and "--token" in result.stderr, result.stderr


@contextmanager
def _serving(project: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`agentctl ui --port 0` in the background: the process, its base URL and token."""
    proc = subprocess.Popen([*AGENTCTL, "ui", "--port", "0", *args], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"agentctl ui: (http://[^/]+)/\?token=(\S+)\n", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        yield proc, match[1], match[2]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _connect(base: str, path: str, token: str) -> http.client.HTTPResponse:
    """GET `path` with the token's cookie, as the browser does after its first visit."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.request("GET", path, headers={"Cookie": f"agentctl_ui_token={token}"})
    return conn.getresponse()


def _stopped(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGINT (Ctrl-C), then its exit code, the rest of its stdout, and its stderr."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_the_printed_url_is_all_it_says_from_start_to_stop(project: Path) -> None:
    with _serving(project) as (proc, base, token):
        page = _connect(base, "/", token)  # serving (and a request is not logged either)
        assert page.status == 200 and "Agents" in page.read().decode()
        code, out, err = _stopped(proc)
    assert (code, out, err) == (0, "", "")



def test_ctrl_c_ends_open_event_streams_at_once_and_quietly(project: Path) -> None:
    # Given a page listening to the event stream
    with _serving(project) as (proc, base, token):
        stream = _connect(base, "/events", token)
        assert stream.status == 200 and stream.readline() == b"retry: 1000\n"
        # When the person presses Ctrl-C
        proc.send_signal(signal.SIGINT)
        # Then the stream ends as a stream ends (no cut connection), the server exits 0,
        # and nothing on stderr says something went wrong.
        rest = stream.read()
        _, err = proc.communicate(timeout=30)
        code = proc.returncode
    assert rest in (b"", b"\n")
    assert code == 0, err
    assert "Traceback" not in err and "ERROR" not in err, err


def test_a_workspace_that_does_not_exist_is_refused_and_not_created(project: Path) -> None:
    typo = project / "typo"
    result = run_cli("ui", "--port", "0", "-w", str(typo), cwd=project, timeout=30)
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.count("error:") == 1, result.stderr
    assert f"no workspace at {typo}" in result.stderr and "--workspace" in result.stderr
    assert not typo.exists()


def test_a_disabled_agent_shows_disabled_and_why(project: Path) -> None:
    # Given an llm: agent whose endpoint variable is not set here
    roster = project / "agents.yaml"
    roster.write_text(roster.read_text().replace("pipelines:", (
        "  - name: writer\n    llm:\n      model: m\n      base_url: ${AGENTCTL_TEST_UNSET_URL}\n"
        "pipelines:"
    )))  # fmt: skip
    page = _admitted(project).get("/").text
    row = re.search(r'<tr data-agent="writer">(.*?)</tr>', page, re.S)[1]
    assert '<td class="disabled">disabled</td>' in row, row
    assert "AGENTCTL_TEST_UNSET_URL is not set" in row and "absent" not in row


def test_the_send_form_offers_what_can_run_and_links_what_it_sent(project: Path) -> None:
    # Given a disabled agent, and a pipeline that needs it
    roster = project / "agents.yaml"
    roster.write_text(roster.read_text().replace("pipelines:", (
        "  - name: writer\n    llm:\n      model: m\n      base_url: ${AGENTCTL_TEST_UNSET_URL}\n"
        "pipelines:\n  write: [writer]"
    )))  # fmt: skip
    client = _admitted(project)
    page = client.get("/runs").text
    form = re.search(r'<form method="post" action="/send".*?</form>', page, re.S)[0]
    assert re.findall(r'<option value="([^"]*)"', form) == ["pipeline:gate", "echo"]
    assert re.search(r'<textarea name="content"[^>]*>', form), form  # code can be pasted
    # When a task is sent, the notice links its id to its thread
    code = "def f():\n    return 1\n"
    sent = client.post("/send", data={"to": "echo", "content": code, "csrf": _csrf(page)})
    back = client.get(sent.headers["location"]).text
    notice = re.search(r'<div class="notice"[^>]*>(.*?)</div>', back, re.S)[1]
    [event] = [e for e in _journal(project) if e["event"] == "sent"]
    assert notice == (f'sent <a href="/threads/{event["message_id"]}" class="mono">'
                      f'{event["message_id"]}</a> to echo'), notice  # fmt: skip
    assert "return 1" in client.get(f"/threads/{event['message_id']}").text


def test_a_missing_value_never_shows_as_none(project: Path) -> None:
    # Given a run a person flagged without a note (as the conductor records it)
    from agentctl.backends.file.workspace import Workspace
    from agentctl.flow.pipeline import Run, RunStore, StageState

    stage = StageState(["echo"], results={"echo": {"verdict": "escalate"}}, verdict="flag",
                       started_at=None, resolution={"verdict": "flag"})  # fmt: skip
    flag = {"stage": 0, "by": "human", "note": None}
    run = Run("run-flagged", "gate", "user", "m1", "normal", "a task", [stage], "m1",
              status="done", current=1, flags=[flag])  # fmt: skip
    RunStore.of(Workspace(project / "workspace")).save(run)
    client = _admitted(project)
    page = client.get("/runs/run-flagged").text
    assert "flag (stage 0) by human" in page
    for path in ("/runs/run-flagged", "/runs", "/cost", "/", "/waiting", "/journal"):
        assert not re.search(r"\bNone\b", client.get(path).text), path


def test_the_thread_says_who_requeued_a_message(project: Path) -> None:
    # Given a message sent to echo that died there
    from agentctl.backends.file.workspace import Workspace

    client = _admitted(project)
    csrf = _csrf(client.get("/runs").text)
    client.post("/send", data={"to": "echo", "content": "doomed", "csrf": csrf})
    [sent] = [e for e in _journal(project) if e["event"] == "sent"]
    mailbox = Workspace(project / "workspace").mailbox("echo")
    [name] = mailbox.list_new()
    assert mailbox.claim(name) is not None
    mailbox.bury(name, {"error_kind": "crash", "error": "boom", "attempts": 1})
    # When a person requeues it from the dashboard
    done = client.post("/dead/requeue", data={"id": sent["message_id"], "agent": "echo",
                                              "csrf": csrf})  # fmt: skip
    assert "error" not in done.headers["location"], done.headers["location"]
    # Then the thread says the dashboard did it, not the agent whose inbox it is
    page = client.get(f"/threads/{sent['message_id']}").text
    assert re.search(r"requeued by ui</li>", page), page
    assert "requeued by echo" not in page


def test_the_page_draws_a_thread_with_short_labels(project: Path) -> None:
    # Given a thread whose task is long
    from agentctl.ui.views import DIAGRAM_LABEL_CHARS

    client = _admitted(project)
    csrf = _csrf(client.get("/runs").text)
    client.post("/send", data={"to": "echo", "content": "word " * 100, "csrf": csrf})
    [sent] = [e for e in _journal(project) if e["event"] == "sent"]
    page = client.get(f"/threads/{sent['thread_id']}").text
    # Then each arrow's and note's label is short (the diagram stays readable when scrolled
    # sideways): the thread's id is abbreviated in it, and the rest cut.
    source = re.search(r'<pre class="mermaid" id="diagram">(.*?)</pre>', page, re.S)[1]
    labels = [line.split(": ", 1)[1] for line in source.splitlines() if ": " in line]
    assert labels and all(len(label) <= DIAGRAM_LABEL_CHARS for label in labels), labels
    assert sent["thread_id"] not in source and "word word" in source
