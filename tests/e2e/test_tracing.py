"""OpenTelemetry traces end to end: `agentctl run` exporting live to a real OTLP/HTTP receiver,
a pipeline across Python, Node (`exec:`), shell (`command:`) and an LLM, and `trace export`."""

from __future__ import annotations

import json
import re
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli, wait_until, write_roster
from tests.natsfix import NatsServer, nats_server  # noqa: F401 (a fixture)
from tests.otlpfix import OtlpReceiver, _from_json, otlp  # noqa: F401 (a fixture)
from tests.test_llm import FakeLlm, llm, llm_agent, send  # noqa: F401 (a fixture)

AGENTS_PY = """
from agentctl.model.agent import BaseAgent
from agentctl.model.errors import HandlerError


class First(BaseAgent):
    async def process(self, task, context):
        return {"verdict": "pass", "seen": task.get("content")}


class Flaky(BaseAgent):
    async def process(self, task, context):
        if context["attempt"] == 1:
            raise HandlerError("first attempts always fail")
        return {"ok": True}
"""

# An `exec:` agent in Node that continues the trace: its own span, posted as OTLP JSON under
# the TRACEPARENT agentctl gave it, and the TRACEPARENT itself in its result.
NODE_STAGE = """
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', async () => {
  JSON.parse(Buffer.concat(chunks).toString());
  const tp = process.env.TRACEPARENT || '';
  const [, traceId, parentSpanId] = tp.split('-');
  const now = BigInt(Date.now()) * 1000000n;
  const span = { traceId, parentSpanId, spanId: require('crypto').randomBytes(8).toString('hex'),
    name: 'reverse text', kind: 1, startTimeUnixNano: String(now),
    endTimeUnixNano: String(now + 1000n) };
  const body = { resourceSpans: [{
    resource: { attributes: [{ key: 'service.name', value: { stringValue: 'node-stage' } }] },
    scopeSpans: [{ scope: { name: 'node-stage' }, spans: [span] }] }] };
  await fetch(process.env.OTEL_EXPORTER_OTLP_ENDPOINT + '/v1/traces', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    .catch(() => {});  // a collector down costs the span, not the work
  process.stdout.write(JSON.stringify({ verdict: 'pass', traceparent: tp }));
});
"""

PIPELINE = "pipelines:\n  review:\n    stages: [first, nodey, shelly, judge]\n"


def _roster(tmp_path: Path) -> Path:
    (tmp_path / "tracing_agents.py").write_text(AGENTS_PY)
    (tmp_path / "node_stage.js").write_text(NODE_STAGE)
    shell_agent = REPO / "examples" / "shell_agent.sh"
    agents = textwrap.dedent(f"""\
        - name: first
          python: tracing_agents:First
        - name: nodey
          exec: [node, node_stage.js]
        - name: shelly
          command: [sh, {shell_agent}]
        - name: flaky
          python: tracing_agents:Flaky
          max_attempts: 2
          retry: {{backoff_s: 0}}
        - name: doomed
          exec: [sh, -c, "echo broken >&2; exit 3"]
          max_attempts: 1
        """) + llm_agent("judge", max_attempts=1)
    path = write_roster(tmp_path, agents, poll_interval_s=0.1)
    path.write_text(path.read_text() + PIPELINE)
    return tmp_path / "workspace"


def _ours(spans: list[dict[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["trace_id"] == trace_id and s["service"] == "agentctl"]


def _by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


def test_a_pipeline_across_languages_is_one_trace_live_and_from_the_journal(
    tmp_path: Path, otlp: OtlpReceiver, llm: FakeLlm, supervised, monkeypatch  # noqa: F811
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
    ws = _roster(tmp_path)
    supervised(tmp_path).wait_ready(["first", "nodey", "shelly", "judge", "pipeline"])
    llm.verdict("pass", "looks right", 30)

    # When: a run of four stages (Python, Node exec, shell command, LLM), from the CLI.
    _, outcome = send(tmp_path, "pipeline:review", "ship it")
    assert outcome["outcome"] == "done", outcome
    thread = outcome["run"]  # a run is named after its start message, its thread's root
    run_span = otlp.wait_for("invoke_workflow review")
    trace_id = run_span["trace_id"]
    wanted = {"send pipeline", "invoke_workflow review", "chat test-model",
              *(f"stage {i} review" for i in range(4)),
              *(f"invoke_agent {a}" for a in ("first", "nodey", "judge"))}  # fmt: skip
    wait_until(lambda: wanted <= {s["name"] for s in _ours(otlp.received(), trace_id)})

    # Then: one trace, and each span under the one that caused it.
    live = _ours(otlp.received(), trace_id)
    spans = _by_name(live)
    assert len(live) == len(spans) == len(wanted), sorted(s["name"] for s in live)
    root = spans["send pipeline"]
    assert root["parent_id"] is None and root["kind"] == "producer"
    assert run_span["parent_id"] == root["span_id"]
    for index, agent in enumerate(["first", "nodey", None, "judge"]):
        stage = spans[f"stage {index} review"]
        assert stage["parent_id"] == run_span["span_id"]
        if agent is not None:
            attempt = spans[f"invoke_agent {agent}"]
            assert attempt["parent_id"] == stage["span_id"]
            assert attempt["attributes"]["gen_ai.agent.name"] == agent
            assert attempt["attributes"]["gen_ai.operation.name"] == "invoke_agent"
            assert attempt["attributes"]["agentctl.attempt"] == 1
    chat = spans["chat test-model"]
    assert chat["parent_id"] == spans["invoke_agent judge"]["span_id"]
    assert chat["kind"] == "client"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 15
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == 15
    assert chat["attributes"]["gen_ai.response.model"] == "served-model"

    # The Node program got its attempt's context, and its own span joined the trace there.
    traceparent = outcome["stages"][1]["results"]["nodey"]["traceparent"]
    assert traceparent == f"00-{trace_id}-{spans['invoke_agent nodey']['span_id']}-01"
    node_span = otlp.wait_for("reverse text")
    assert node_span["trace_id"] == trace_id and node_span["service"] == "node-stage"
    assert node_span["parent_id"] == spans["invoke_agent nodey"]["span_id"]
    # The shell agent found the stage's context in its message's headers.
    [task_file] = (ws / "shelly" / "inbox" / "done").glob("*.json")
    headers = json.loads(task_file.read_text())["headers"]
    assert headers["traceparent"] == f"00-{trace_id}-{spans['stage 2 review']['span_id']}-01"

    # And: `trace export` rebuilds the same spans from the journal (ids, parents, times).
    out = tmp_path / "trace.json"
    done = run_cli("trace", "export", thread, "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    exported = _from_json(json.loads(out.read_text()))

    def key(span: dict[str, Any]) -> tuple[Any, ...]:
        return (span["trace_id"], span["span_id"], span["parent_id"], span["name"],
                span["start_ns"], span["end_ns"], span["error"])  # fmt: skip

    assert sorted(map(key, exported)) == sorted(map(key, live))
    # Sent over OTLP/HTTP to another collector, they are the same again.
    other = OtlpReceiver()
    try:
        done = run_cli("trace", "export", thread, "--endpoint", other.url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert sorted(map(key, other.received())) == sorted(map(key, live))
    finally:
        other.close()
    # A collector that is not there: one error line.
    down = f"http://127.0.0.1:{_closed_port()}"
    done = run_cli("trace", "export", thread, "--endpoint", down, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("error:") == 1, done.stderr
    assert "connection refused" in done.stderr and "Traceback" not in done.stderr


def test_a_retried_attempt_and_a_dead_letter_show_as_such(
    tmp_path: Path, otlp: OtlpReceiver, llm: FakeLlm, supervised, monkeypatch  # noqa: F811
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
    _roster(tmp_path)
    supervised(tmp_path).wait_ready(["flaky", "doomed"])

    _, reply = send(tmp_path, "flaky", "go")
    assert reply["content"] == {"ok": True}, reply
    wait_until(lambda: len([s for s in otlp.received() if s["name"] == "invoke_agent flaky"]) == 2)
    first, second = sorted(
        (s for s in otlp.received() if s["name"] == "invoke_agent flaky"),
        key=lambda s: s["attributes"]["agentctl.attempt"],
    )
    assert first["error"] and first["events"] == ["retried"]
    assert first["attributes"]["error.type"] == "error"
    assert not second["error"] and second["attributes"]["agentctl.attempt"] == 2
    assert first["parent_id"] == second["parent_id"] == otlp.wait_for("send flaky")["span_id"]

    code, _ = send(tmp_path, "doomed", "go")
    assert code != 0
    dead = otlp.wait_for("invoke_agent doomed")
    assert dead["error"] and dead["events"] == ["dead"]
    assert dead["attributes"]["agentctl.dead"] is True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_with_the_collector_down_the_run_completes_and_stops(
    tmp_path: Path, llm: FakeLlm, supervised, monkeypatch  # noqa: F811
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    # Batches leave every 0.2 s and give up after 1 s: the SDK's retries are over quickly.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    _roster(tmp_path)
    sup = supervised(tmp_path)
    sup.wait_ready(["first", "nodey", "shelly", "judge", "pipeline"])
    llm.verdict("pass", "fine", 10)
    _, outcome = send(tmp_path, "pipeline:review", "ship it")
    assert outcome["outcome"] == "done", outcome
    unreachable = f"tracing: collector at {url} unreachable"
    wait_until(lambda: unreachable in sup.log.read_text())
    _, reply = send(tmp_path, "first", "and again")  # more batches, the same outage
    assert reply["content"]["verdict"] == "pass", reply
    assert sup.stop() == 0
    # Then: the SDK's own retry lines stay out of `run`'s output; the outage is one line of ours.
    log = sup.log.read_text()
    assert "tracing: spans go to" in log
    assert "Transient error" not in log and "Failed to export" not in log, log
    assert log.count(unreachable) == 1 and log.count("tracing:") == 2, log


def test_trace_export_without_the_otel_extra_says_which_to_install(tmp_path: Path) -> None:
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    sent = run_cli("send", "echo", "hi", "--json", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    thread = json.loads(sent.stdout)["thread_id"]
    # Given: an environment where `import opentelemetry` fails, as without the extra.
    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": f"{tmp_path / 'shadow'}:{REPO}"}
    done = run_cli("trace", "export", thread, "--endpoint", "http://127.0.0.1:9", cwd=tmp_path,
                   env=env)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("error:") == 1 and "pip install 'agentctl[otel]'" in done.stderr
    assert "Traceback" not in done.stderr
    # Writing OTLP JSON needs no SDK.
    out = tmp_path / "t.json"
    done = run_cli("trace", "export", thread, "--output", str(out), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    [span] = _from_json(json.loads(out.read_text()))
    assert span["name"] == "send echo" and re.fullmatch("[0-9a-f]{32}", span["trace_id"])


def test_a_send_within_an_outside_trace_links_to_it(tmp_path: Path) -> None:
    # Given: a CI job's trace context in the environment, as OpenTelemetry's carrier puts it
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    job_trace, job_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = {"TRACEPARENT": f"00-{job_trace}-{job_span}-01"}
    sent = run_cli("send", "echo", "hi", "--json", cwd=tmp_path, env=env)
    assert sent.returncode == 0, sent.stderr
    thread = json.loads(sent.stdout)["thread_id"]
    # And: one with a TRACEPARENT that is not W3C trace context (ignored, as W3C says)
    bad = run_cli("send", "echo", "hi", "--json", cwd=tmp_path, env={"TRACEPARENT": "00-xyz"})
    assert bad.returncode == 0, bad.stderr
    bad_thread = json.loads(bad.stdout)["thread_id"]

    # Then: the send span, in agentctl's own trace, links to the job's span: from the journal
    # as OTLP JSON, and sent over OTLP/HTTP through the SDK
    out = tmp_path / "t.json"
    assert run_cli("trace", "export", thread, "--output", str(out), cwd=tmp_path).returncode == 0
    [span] = _from_json(json.loads(out.read_text()))
    assert span["links"] == [(job_trace, job_span)] and span["trace_id"] != job_trace
    receiver = OtlpReceiver()
    try:
        done = run_cli("trace", "export", thread, "--endpoint", receiver.url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        [received] = receiver.received()
    finally:
        receiver.close()
    assert received["links"] == [(job_trace, job_span)]
    assert received["span_id"] == span["span_id"]
    done = run_cli("trace", "export", bad_thread, "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [unlinked] = _from_json(json.loads(out.read_text()))
    assert unlinked["links"] == []


@pytest.mark.parametrize("args", [[], ["THREAD", "--since", "1h"]])
def test_trace_export_needs_one_thread_or_since(tmp_path: Path, args: list[str]) -> None:
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    done = run_cli("trace", "export", *args, "--output", "x.json", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("error:") == 1 and "give a THREAD or --since" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_on_nats_the_context_rides_the_stream_and_the_trace_is_the_same(
    tmp_path: Path, otlp: OtlpReceiver, nats_server: NatsServer, supervised, monkeypatch  # noqa: F811
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
    echo = "python: agentctl.agents.echo:EchoAgent"
    transport = "{kind: nats, servers: [" + nats_server.url + "]}"
    roster = write_roster(tmp_path, f"- name: first\n  {echo}\n- name: second\n  {echo}\n",
                          transport=transport)  # fmt: skip
    roster.write_text(roster.read_text() + "pipelines:\n  two: [first, second]\n")
    supervised(tmp_path)
    done = run_cli("send", "pipeline:two", "review me", "--wait", "--json", "--timeout-s", "60",
                   cwd=tmp_path, timeout=90)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    thread = json.loads(done.stdout)["run"]
    run_span = otlp.wait_for("invoke_workflow two")
    wanted = {"send pipeline", "invoke_workflow two", "stage 0 two", "stage 1 two",
              "invoke_agent first", "invoke_agent second"}  # fmt: skip
    trace_id = run_span["trace_id"]
    wait_until(lambda: wanted <= {s["name"] for s in _ours(otlp.received(), trace_id)})
    live = _ours(otlp.received(), trace_id)
    spans = _by_name(live)
    assert len(live) == len(wanted)
    assert spans["invoke_agent second"]["parent_id"] == spans["stage 1 two"]["span_id"]
    assert spans["stage 1 two"]["parent_id"] == run_span["span_id"]
    assert run_span["parent_id"] == spans["send pipeline"]["span_id"]

    out = tmp_path / "trace.json"
    exported = run_cli("trace", "export", thread, "--output", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    again = _from_json(json.loads(out.read_text()))
    assert sorted((s["span_id"], s["parent_id"], s["start_ns"]) for s in again) == sorted(
        (s["span_id"], s["parent_id"], s["start_ns"]) for s in live
    )


@pytest.mark.parametrize("since", ["0m", "2999-01-01T00:00:00Z"])
def test_trace_export_since_a_time_no_thread_reaches_is_an_error(
    tmp_path: Path, since: str
) -> None:
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    sent = run_cli("send", "echo", "hi", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    # When: no thread has an event that recent: nothing to export is not a success.
    done = run_cli("trace", "export", "--since", since, "--output", "x.json", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert done.stderr.count("error:") == 1 and "no thread has an event since" in done.stderr
    assert not (tmp_path / "x.json").exists()
    # While a `--since` that reaches the send exports it.
    done = run_cli("trace", "export", "--since", "1h", "--output", "x.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    spans = _from_json(json.loads((tmp_path / "x.json").read_text()))
    assert [s["name"] for s in spans] == ["send echo"]


@pytest.mark.parametrize("transport", ["files", "nats"])
def test_agents_a_reload_adds_are_exported_live(
    tmp_path: Path, otlp: OtlpReceiver, llm: FakeLlm, monkeypatch,  # noqa: F811
    request: pytest.FixtureRequest, transport: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
    settings = {}
    if transport == "nats":
        server = request.getfixturevalue("nats_server")
        settings["transport"] = "{kind: nats, servers: [" + server.url + "]}"
    supervised = request.getfixturevalue("supervised")  # stopped before the server, not after
    echo = "python: agentctl.agents.echo:EchoAgent"
    write_roster(tmp_path, f"- name: first\n  {echo}\n", **settings)
    supervised(tmp_path)
    _, reply = send(tmp_path, "first", "before")
    assert reply["content"], reply
    otlp.wait_for("invoke_agent first")

    # When: the roster gains an echo agent, an LLM agent and a pipeline of both, and is reloaded.
    roster = write_roster(tmp_path, f"- name: first\n  {echo}\n- name: late\n  {echo}\n"
                          + llm_agent("thinker", max_attempts=1), **settings)  # fmt: skip
    roster.write_text(roster.read_text() + "pipelines:\n  grow: [late, thinker]\n")
    reloaded = run_cli("reload", cwd=tmp_path)
    assert reloaded.returncode == 0, reloaded.stderr
    assert "late: started" in reloaded.stdout and "pipeline: started" in reloaded.stdout
    llm.verdict("pass", "grown", 12)
    _, outcome = send(tmp_path, "pipeline:grow", "after")
    assert outcome["outcome"] == "done", outcome

    # Then: their spans leave live like the others, the LLM call under the roster's model.
    run_span = otlp.wait_for("invoke_workflow grow")
    wanted = {"send pipeline", "invoke_workflow grow", "stage 0 grow", "stage 1 grow",
              "invoke_agent late", "invoke_agent thinker", "chat test-model"}  # fmt: skip
    wait_until(lambda: wanted <= {s["name"] for s in _ours(otlp.received(), run_span["trace_id"])})
    spans = _by_name(_ours(otlp.received(), run_span["trace_id"]))
    assert spans["invoke_agent late"]["parent_id"] == spans["stage 0 grow"]["span_id"]
    assert spans["chat test-model"]["parent_id"] == spans["invoke_agent thinker"]["span_id"]
