"""`agentctl ui` in a real browser: Debian's Chromium driven by Playwright, against real
`agentctl run` and `agentctl ui` processes, on files and on NATS.

A person sends a pipeline task that escalates, watches the run appear, resolves the escalation
with a note, watches the run finish, reads the thread as a sequence diagram, resends a task and
compares, requeues a dead letter, halts and resumes; then the journal says each was `by: ui`
and `verify` finds the audit trail intact. Screenshots of each view go to
tests/e2e/ui-screenshots/ (git-ignored).

Without Chromium or Playwright the test is skipped on a developer's machine, saying what to
install; CI (`.ci/run` sets CI_REQUIRE_BROWSER=1) makes that a failure instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AGENTCTL, JUDGE, run_cli, wait_until, write_roster
from tests.natsfix import NatsServer, nats_server  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "ui-screenshots"
WAIT_MS = 20_000

AGENTS = """\
- name: judge
  python: judge:Judge
- name: echo
  python: agentctl.agents.echo:EchoAgent
- name: failing
  exec: [sh, -c, "echo boom >&2; exit 3"]
  max_attempts: 1
"""


def _browser_or_skip() -> Any:
    required = os.environ.get("CI_REQUIRE_BROWSER") == "1"
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing: apt-get install chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is missing: pip install playwright (the dev extra has it)"
    if missing:
        if required:
            pytest.fail(f"the browser test must run here: {missing}")
        pytest.skip(missing)
    return sync_playwright


class Dashboard:
    """`agentctl ui --port 0` in the background; its URL read from its first line."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.log = cwd / "ui.log"
        self.proc = subprocess.Popen(
            [*AGENTCTL, "ui", "--port", "0", *args], cwd=cwd, stdout=subprocess.PIPE,
            stderr=open(self.log, "ab"), text=True, start_new_session=True,
        )  # fmt: skip
        self.url = self.base = ""

    def wait_url(self) -> None:
        """Read the URL it prints once it listens."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        assert match, line + self.log.read_text()
        self.url = match[1]
        self.base = self.url.split("/?")[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def dashboard() -> Iterator[Any]:
    started: list[Dashboard] = []

    def start(cwd: Path, *args: str) -> Dashboard:
        started.append(Dashboard(cwd, *args))
        return started[-1]

    yield start
    for ui in started:
        ui.stop()


def _journal(project: Path) -> list[dict[str, Any]]:
    out = run_cli("tail", "-n", "100000", "--json", cwd=project)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("transport", ["files", "nats"])
def test_a_person_drives_the_team_from_the_dashboard(
    tmp_path: Path, transport: str, supervised: Any, dashboard: Any, request: Any
) -> None:
    sync_playwright = _browser_or_skip()
    settings: dict[str, object] = {}
    if transport == "nats":
        server: NatsServer = request.getfixturevalue("nats_server")
        settings["transport"] = f"{{kind: nats, servers: [{server.url}]}}"
    roster = write_roster(tmp_path, AGENTS, **settings)
    roster.write_text(roster.read_text() + "pipelines:\n  gate: [judge]\n")
    (tmp_path / "judge.py").write_text(JUDGE)
    shots = SHOTS / transport
    shots.mkdir(parents=True, exist_ok=True)

    team = supervised(tmp_path)
    request.addfinalizer(team.stop)  # before the NATS server goes: else a slow stop
    wait_until(lambda: (tmp_path / "workspace").is_dir())  # the ui serves no missing one
    ui = dashboard(tmp_path)  # starts while the team does
    team.wait_ready(["judge", "echo", "failing"])
    ui.wait_url()

    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(WAIT_MS)
        try:
            _drive(page, ui, shots)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()

    # The journal says who did each of it; the audit trail is intact.
    events = _journal(tmp_path)
    by_ui = {(e["event"], e.get("agent")) for e in events if e.get("by") == "ui"}
    assert {("sent", "user"), ("resolved", "human"), ("requeued", "failing"), ("halted", "user"),
            ("resumed", "user")} <= by_ui, by_ui  # fmt: skip
    [resolved] = [e for e in events if e["event"] == "resolved"]
    assert resolved["note"] == "looks fine to me" and resolved["verdict"] == "pass"
    assert any(e["event"] == "sent" and e.get("resent_from") for e in events)
    ui.stop()
    assert team.stop() == 0
    verified = run_cli("verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _launch(p: Any) -> Any:
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"],
    )  # fmt: skip


def test_a_phone_sized_page_a_wide_diagram_and_a_stopped_server(
    tmp_path: Path, dashboard: Any
) -> None:
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    # Given a workspace with a thread whose diagram is wider than a phone (no team needed)
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    sent = run_cli("send", "echo", "a task with a fairly long text " * 4, "--json", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    thread_id = json.loads(sent.stdout)["thread_id"]
    token = "a-token-chosen-for-this-test"  # the same after a restart: the page's cookie holds
    ui = dashboard(tmp_path, "--token", token)
    ui.wait_url()
    port = ui.base.rsplit(":", 1)[1]
    shots = SHOTS / "narrow"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 420, "height": 800})
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        try:
            # The header wraps inside its dark band: every link is on it, none off the page.
            page.goto(ui.url)
            header = page.locator("header").bounding_box()
            for link in page.locator("header a").all():
                box = link.bounding_box()
                assert box["x"] + box["width"] <= header["x"] + header["width"], link
                assert box["y"] + box["height"] <= header["y"] + header["height"], link
            assert page.evaluate("document.documentElement.scrollWidth") <= 420  # no band ends
            page.screenshot(path=str(shots / "agents.png"), full_page=True)

            # The diagram keeps its natural size and scrolls sideways.
            page.goto(f"{ui.base}/threads/{thread_id}")
            svg = page.locator("#diagram svg")
            expect(svg).to_have_count(1)
            natural = svg.evaluate("s => s.viewBox.baseVal.width")
            drawn = svg.evaluate("s => s.getBoundingClientRect().width")
            assert abs(drawn - natural) < 1, (drawn, natural)
            frame = page.locator(".diagram")
            assert frame.evaluate("d => d.scrollWidth > d.clientWidth")
            page.screenshot(path=str(shots / "thread.png"), full_page=True)

            # A page whose server stopped says so; it is live again once the server is back.
            page.goto(ui.base + "/")
            expect(page.locator("body[data-live=yes]")).to_have_count(1)
            expect(page.locator("#disconnected")).to_have_count(0)
            ui.stop()
            expect(page.locator("#disconnected")).to_contain_text("disconnected")
            page.screenshot(path=str(shots / "disconnected.png"), full_page=True)
            again = dashboard(tmp_path, "--token", token, "--port", port)
            again.wait_url()
            expect(page.locator("#disconnected")).to_have_count(0)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def _send(page: Any, to: str, content: str) -> str:
    """Send from the runs page's form; the notice it comes back with."""
    page.select_option("#send select[name=to]", to)
    page.fill("#send textarea[name=content]", content)
    page.click("#send button")
    return str(page.locator(".notice").inner_text())


def _drive(page: Any, ui: Dashboard, shots: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    # The token in the URL becomes a cookie; the agents' status table.
    page.goto(ui.url)
    assert page.url == ui.base + "/"
    expect(page.locator("#agents tr[data-agent=judge]")).to_contain_text("idle")
    page.screenshot(path=str(shots / "agents.png"), full_page=True)

    # Send a pipeline task whose stage escalates; the run appears, then waits for a person,
    # on the same page (live: it is never reloaded).
    page.goto(ui.base + "/runs")
    # A message for the agent that always fails: a dead letter to requeue later.
    dead_id = re.search(r"sent (\S+) to failing", _send(page, "failing", "doomed"))[1]
    run_id = re.search(r"started run (\S+)", _send(page, "pipeline:gate", "please escalate"))[1]
    page.evaluate("window.sameDocument = true")
    row = page.locator(f"#runs tr[data-run='{run_id}']")
    expect(row.locator(".outcome")).to_have_text("escalated")
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(shots / "runs.png"), full_page=True)

    # Resolve it with a note.
    page.goto(ui.base + "/waiting")
    escalation = page.locator("#escalations tr[data-escalation]").filter(has_text=run_id)
    escalation.locator("select[name=verdict]").select_option("pass")
    escalation.locator("input[name=note]").fill("looks fine to me")
    page.screenshot(path=str(shots / "waiting.png"), full_page=True)
    escalation.locator("button").click()
    expect(page.locator(".notice")).to_contain_text("resolved")

    # The run finishes, seen on its page.
    page.goto(f"{ui.base}/runs/{run_id}")
    expect(page.locator("#outcome")).to_have_text("done")
    expect(page.locator("#stages .node[data-agent=judge]")).to_contain_text("escalate")
    expect(page.locator("#timeline .bar")).to_have_count(1)
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    # Its thread, drawn as a sequence diagram with the agents' names; content one click away.
    page.click("text=the thread")
    svg = page.locator("#diagram svg")
    expect(svg).to_have_count(1)
    diagram = svg.text_content() or ""
    for name in ("user", "pipeline", "judge", "human"):
        assert name in diagram, (name, diagram)
    first = page.locator("#tree details.content").first
    first.locator("summary").click()
    expect(first.locator("pre")).to_contain_text("please escalate")
    page.screenshot(path=str(shots / "thread.png"), full_page=True)

    # Resend a task and compare with the recorded result.
    page.goto(ui.base + "/runs")
    echo_id = re.search(r"sent (\S+) to echo", _send(page, "echo", "say it twice"))[1]
    page.goto(f"{ui.base}/threads/{echo_id}")
    expect(page.locator(f"#tree li[data-message='{echo_id}-reply']")).to_have_count(1)
    page.locator(f"#tree li[data-message='{echo_id}'] form.resend button").first.click()
    expect(page.locator("#compare")).to_contain_text("say it twice")
    page.screenshot(path=str(shots / "resend.png"), full_page=True)

    # Requeue the dead letter; halt and resume.
    page.goto(ui.base + "/waiting")
    page.locator(f"#dead tr[data-dead='{dead_id}'] button").click()  # there by now, or live
    expect(page.locator(".notice")).to_contain_text(f"requeued {dead_id}")
    page.fill("#halt input[name=reason]", "a person looks first")
    page.click("#halt button")
    expect(page.locator("#halted .banner")).to_contain_text("HALTED: a person looks first")
    page.screenshot(path=str(shots / "halted.png"), full_page=True)
    page.click("#resume button")
    expect(page.locator(".notice")).to_contain_text("resumed")
    expect(page.locator("#halted .banner")).to_have_count(0)

    # The journal, filtered as `tail` filters; the cost page.
    page.goto(ui.base + "/journal?kind=resolved,halted,resumed,requeued")
    expect(page.locator("#journal tr[data-event=resolved]")).to_contain_text("ui")
    page.screenshot(path=str(shots / "journal.png"), full_page=True)
    page.goto(ui.base + "/cost")
    expect(page.locator(f"#cost-runs a:text('{run_id}')")).to_have_count(1)
    page.screenshot(path=str(shots / "cost.png"), full_page=True)
