"""The roster (agents.yaml): what loads, and errors that name file, line and field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentctl.config.agentspec import HandlerKind, RestartPolicy
from agentctl.config.roster import Durability, load_roster
from agentctl.model.errors import ConfigError
from tests.conftest import run_cli

VALID = """\
workspace: ws
durability: none
poll_interval_s: 0.25
max_message_bytes: 4096
agents:
  - name: echo
    role: Echoes
    expertise: [testing, demos]
    python: agentctl.agents.echo:EchoAgent
    timeout_s: 5
    max_attempts: 2
    restart: always
  - name: shell
    exec: sh -c 'cat; echo done'
    restart: never
  - name: daemon
    command: [sh, -c, "sleep 1"]
"""


def write(tmp_path: Path, text: str, name: str = "agents.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_roster(path)
    return str(info.value)


def test_a_valid_roster_loads(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, VALID))
    assert roster.names == ["echo", "shell", "daemon"]
    assert roster.durability is Durability.NONE
    assert roster.poll_interval_s == 0.25 and roster.max_message_bytes == 4096
    echo = roster.agent("echo")
    assert echo.handler_kind is HandlerKind.PYTHON
    assert echo.python == "agentctl.agents.echo:EchoAgent"
    assert (echo.timeout_s, echo.max_attempts, echo.restart) == (5.0, 2, RestartPolicy.ALWAYS)
    assert echo.expertise == ["testing", "demos"] and echo.role == "Echoes"
    daemon = roster.agent("daemon")
    assert daemon.handler_kind is HandlerKind.COMMAND
    assert daemon.command == ["sh", "-c", "sleep 1"]
    assert daemon.restart is RestartPolicy.ON_FAILURE and daemon.max_attempts == 3
    assert roster.path == tmp_path / "agents.yaml"


def test_exec_string_is_split_like_words_never_run_by_a_shell(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, VALID))
    shell = roster.agent("shell")
    assert shell.handler_kind is HandlerKind.EXEC
    assert shell.exec == ["sh", "-c", "cat; echo done"]
    text = VALID.replace("exec: sh -c 'cat; echo done'", 'exec: "prog $HOME; rm -rf x"')
    assert load_roster(write(tmp_path, text)).agent("shell").exec == [
        "prog", "$HOME;", "rm", "-rf", "x",
    ]  # fmt: skip


def test_defaults(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, "agents:\n  - name: a\n    exec: [cat]\n"))
    assert roster.workspace == "workspace" and roster.durability is Durability.FSYNC
    a = roster.agent("a")
    assert (a.timeout_s, a.max_attempts, a.restart) == (300.0, 3, RestartPolicy.ON_FAILURE)


def test_unknown_agent_lookup_names_the_known_ones(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, VALID))
    with pytest.raises(ConfigError, match=r"no agent named 'nope' \(agents: echo, shell, daemon\)"):
        roster.agent("nope")


def test_workspace_resolves_relative_to_the_roster_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write(project, VALID)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    roster = load_roster(Path("../project/agents.yaml"))
    assert roster.workspace_path.resolve() == project / "ws"
    assert roster.workspace_path.is_absolute()

    absolute = VALID.replace("workspace: ws", f"workspace: {tmp_path / 'abs-ws'}")
    assert load_roster(write(project, absolute)).workspace_path == tmp_path / "abs-ws"


def test_validate_json_reports_the_workspace_relative_to_the_roster(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write(project, VALID)
    result = run_cli("validate", "--json", "--config", "project/agents.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert Path(data["workspace_path"]).resolve() == project / "ws"
    assert [a["name"] for a in data["agents"]] == ["echo", "shell", "daemon"]
    assert data["agents"][1]["exec"] == ["sh", "-c", "cat; echo done"]


# -- errors ---------------------------------------------------------------------------------

AGENT = "  - name: a\n    python: agentctl.agents.echo:EchoAgent\n"
EXEC = "  - name: a\n    exec: [cat]\n"


@pytest.mark.parametrize(
    ("text", "line", "field", "problem"),
    [
        # unknown keys, at the top and in an agent
        ("wrkspace: x\nagents:\n" + AGENT, 1, "wrkspace", "unknown key"),
        ("agents:\n" + AGENT + "    colour: red\n", 4, "agents[0].colour", "unknown key"),
        # handlers
        (
            "agents:\n" + AGENT + "  - name: b\n    python: m:C\n    exec: [x]\n",
            4, "agents[1]", "give exactly one of python, exec, command, llm (found: python, exec)",
        ),
        (
            "agents:\n  - name: a\n    role: nothing\n",
            2, "agents[0]", "give exactly one of python, exec, command, llm (found: none)",
        ),
        ("agents:\n  - name: a\n    python: not-a-ref\n", 3, "agents[0].python", "pattern"),
        ("agents:\n  - name: a\n    exec: []\n", 3, "agents[0].exec", "at least 1 item"),
        ("agents:\n  - name: a\n    exec: ''\n", 3, "agents[0].exec", "at least 1 item"),
        ("agents:\n  - name: a\n    exec: \"x 'open\"\n", 3, "agents[0].exec", "No closing"),
        # numbers
        ("agents:\n" + AGENT + "    timeout_s: 0\n", 4, "agents[0].timeout_s", "greater than 0"),
        ("agents:\n" + AGENT + "    timeout_s: -5\n", 4, "agents[0].timeout_s", "greater than 0"),
        (
            "agents:\n" + AGENT + "    max_attempts: 0\n",
            4, "agents[0].max_attempts", "greater than or equal to 1",
        ),
        (
            "agents:\n" + AGENT + "    restart: sometimes\n",
            4, "agents[0].restart", "Input should be 'always', 'on-failure' or 'never'",
        ),
        # the environment policy
        ("agents:\n" + EXEC + "    env: {pas: [X]}\n", 4, "agents[0].env.pas", "unknown key"),
        ("agents:\n" + EXEC + "    env: {pass_: [X]}\n", 4, "agents[0].env.pass_", "unknown key"),
        (
            "agents:\n" + EXEC + "    env: {inherit: some}\n",
            4, "agents[0].env.inherit", "Input should be 'all' or 'none'",
        ),
        (
            "agents:\n" + EXEC + "    env: {pass: [OK, BAD-NAME]}\n",
            4, "agents[0].env.pass", "'BAD-NAME' is not an environment variable name",
        ),
        (
            "agents:\n" + EXEC + "    env:\n      set: {'1X': v}\n",
            5, "agents[0].env.set", "'1X' is not an environment variable name",
        ),
        (
            "agents:\n" + EXEC + "    env: {set: {X: [1]}}\n",
            4, "agents[0].env.set.X", "Input should be a valid string",
        ),
        (
            "agents:\n" + AGENT + "    env: {inherit: none}\n",
            2, "agents[0]", "env: is for exec: and command: agents",
        ),
        ("durability: maybe\nagents:\n" + AGENT, 1, "durability", "'fsync' or 'none'"),
        ("poll_interval_s: 0\nagents:\n" + AGENT, 1, "poll_interval_s", "greater than 0"),
        ("max_message_bytes: 10\nagents:\n" + AGENT, 1, "max_message_bytes", "1024"),
        # the agents list itself
        ("workspace: x\n", 1, "agents", "Field required"),
        ("workspace: x\nagents: []\n", 2, "agents", "at least 1 item"),
        ("workspace: x\nagents:\n  - just-a-string\n", 3, "agents[0]", "valid dictionary"),
    ],
)  # fmt: skip
def test_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, problem: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    first = message.splitlines()[0]
    # An agent's field is followed by the agent's name: `agents[0].env.pas (agent 'a'): ...`.
    named = " (agent 'a')" if field.startswith("agents[0]") and "name: a" in text else ""
    named = " (agent 'b')" if field.startswith("agents[1]") else named
    assert first.startswith(f"{path}:{line}: {field}{named}: "), message
    assert problem in first


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "agents:\n"
        "  - name: a\n    python: m:C\n    timeout_s: 0\n"
        "  - name: b\n    exec: [x]\n    max_attempts: 0\n",
    )
    lines = error_of(path).splitlines()
    assert lines == [
        f"{path}:4: agents[0].timeout_s (agent 'a'): Input should be greater than 0",
        f"{path}:7: agents[1].max_attempts (agent 'b'): Input should be greater than or equal to 1",
    ]


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "agents:\n" + AGENT + AGENT)
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "'a' is already the name of agents[0]" in message


def test_duplicate_names_error_names_the_line_and_field_of_the_duplicate(tmp_path: Path) -> None:
    path = write(tmp_path, "workspace: ws\nagents:\n" + AGENT + AGENT)
    assert error_of(path).startswith(f"{path}:5: agents[1].name: ")


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "agents:\n" + AGENT + "agents:\n  - name: b\n    exec: [cat]\n")
    assert ":4:" in error_of(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("agents:\n  - name: a\n   python: m:C\n", 3),
        ("agents:\n\t- name: a\n", 2),
        ("workspace: ws\nagents:\n  - name: a\n    exec: [cat\n", 5),
        ("agents:\n  - name: 'a\n", 3),
    ],
)
def test_invalid_yaml_names_the_line_of_the_yaml_error(
    tmp_path: Path, text: str, line: int
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: invalid YAML: "), message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error_of(path) == f"{path}: no such roster file (create one with `agentctl init`)"


def test_unreadable_roster_bytes(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_bytes(b"agents:\n  - name: \xff\n")
    assert error_of(path).startswith(f"{path}: cannot read: ")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}:1: the roster must be a mapping with an `agents:` list"


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        f"agents: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    assert "invalid YAML" in error_of(path)
    assert not marker.exists()


# -- agentctl validate ----------------------------------------------------------------------


def test_validate_prints_the_agents(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("echo", "shell", "daemon"):
        assert name in result.stdout
    assert "3 agents" in result.stdout
    assert f"ok: {tmp_path / 'agents.yaml'} is valid" in result.stdout
    assert result.stderr == ""


def test_validate_reports_a_broken_roster_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "agents:\n"
        "  - name: a\n    python: agentctl.agents.echo:EchoAgent\n    max_attempts: 0\n"
        "  - name: a-b\n    exec: [cat]\n    restart: sometimes\n",
    )
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        f"error: {path}:4: agents[0].max_attempts (agent 'a'): Input should be greater than or "
        "equal to 1",
        f"error: {path}:7: agents[1].restart (agent 'a-b'): Input should be 'always', "
        "'on-failure' or 'never'",
    ]
    assert result.stdout == ""


def test_validate_reports_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "agents:\n  - name: a\n   python: m:C\n")
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {path}:3: invalid YAML")


def test_validate_without_a_roster(tmp_path: Path) -> None:
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no roster: ./agents.yaml does not exist")


def test_validate_catches_handlers_that_cannot_start(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "agents:\n"
        "  - name: ok\n    python: agentctl.agents.echo:EchoAgent\n"
        "  - name: noimport\n    python: no_such_module_zz:Agent\n"
        "  - name: noclass\n    python: agentctl.agents.echo:Nope\n"
        "  - name: noprog\n    exec: [no-such-program-zz, --flag]\n"
        "  - name: nolocal\n    command: ./bin/missing.sh\n"
        "  - name: good-exec\n    exec: [sh, -c, cat]\n",
    )
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr
    assert all(line.startswith(f"error: {path}: agent ") for line in lines)
    assert "'noimport': cannot import 'no_such_module_zz'" in lines[0]
    assert "'noclass': agentctl.agents.echo:Nope is not a BaseAgent subclass" in lines[1]
    assert "'noprog': exec program 'no-such-program-zz' not found" in lines[2]
    assert "'nolocal': command program './bin/missing.sh' not found" in lines[3]


def test_validate_finds_a_program_relative_to_the_roster(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "bin").mkdir(parents=True)
    tool = project / "bin" / "tool.sh"
    tool.write_text("#!/bin/sh\ncat\n")
    os.chmod(tool, 0o755)
    write(project, "agents:\n  - name: tool\n    exec: ./bin/tool.sh\n")
    result = run_cli("validate", "--config", "project/agents.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# -- hostile rosters ------------------------------------------------------------------------

# Ten lines whose aliases expand to 9**9 nodes (billion laughs): refused before anything walks
# the expansion.
ALIAS_BOMB = """\
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
agents: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _limit_memory() -> None:
    # A regression must fail fast with MemoryError, not eat the machine.
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", ["validate", "status"])
def test_an_alias_bomb_is_refused_in_one_line(tmp_path: Path, command: str) -> None:
    import subprocess
    import sys

    path = write(tmp_path, ALIAS_BOMB)
    result = subprocess.run(
        [sys.executable, "-m", "agentctl", command], cwd=tmp_path, capture_output=True,
        text=True, timeout=15, preexec_fn=_limit_memory,  # noqa: PLW1509 - one setrlimit call
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}: YAML aliases expand to over 100000 nodes; refused"
    ], result.stderr


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop: &loop [*loop]\nagents: []\n")
    assert error_of(path) == f"{path}: YAML aliases expand to over 100000 nodes; refused"


def test_a_roster_over_1_mib_is_refused_unparsed(tmp_path: Path) -> None:
    path = write(tmp_path, "agents:\n" + AGENT + "#" * (1024 * 1024) + "\n")
    assert error_of(path) == f"{path}: over 1048576 bytes; a roster is not that large, refused"


def test_aliases_within_the_limit_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "agents:\n"
        "  - &echo {name: a, python: 'agentctl.agents.echo:EchoAgent', expertise: &kw [x, y]}\n"
        "  - {name: b, python: 'agentctl.agents.echo:EchoAgent', expertise: *kw}\n",
    )
    roster = load_roster(path)
    assert [a.expertise for a in roster.agents] == [["x", "y"], ["x", "y"]]


def test_nesting_too_deep_for_the_parser_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "agents: " + "[" * 5000 + "]" * 5000 + "\n")
    assert error_of(path) == f"{path}: YAML nested too deeply; refused"


def test_a_roster_is_parsed_once_while_it_is_unchanged(tmp_path: Path) -> None:
    from agentctl.config.rosterfile import peek_roster, read_roster_file

    path = write(tmp_path, "agents:\n" + AGENT)
    first = read_roster_file(path)
    peek_roster(path)
    load_roster(path)
    assert read_roster_file(path) is first  # `send` peeks, then loads: one parse

    write(tmp_path, "agents:\n" + EXEC)
    assert read_roster_file(path).data["agents"][0]["exec"] == ["cat"]


def test_the_conductors_spec_is_validated_and_names_a_class_that_imports(tmp_path: Path) -> None:
    import importlib

    from agentctl.config.agentspec import AgentSpec
    from agentctl.runtime.conductor import ConductorHandler

    # Given a roster with a pipeline, whose conductor `agentctl run` starts as an agent
    roster = load_roster(write(tmp_path, (
        "agents:\n  - name: a\n    python: agentctl.agents.echo:EchoAgent\n"
        "pipelines:\n  p: [a]\n"
    )))  # fmt: skip
    spec = roster.agent("pipeline")
    # Then its spec is one validation accepts (model_construct let a reserved name through)
    given = spec.model_dump(by_alias=True, exclude_unset=True)
    assert AgentSpec.model_validate(given, context={"agentctl_own": True}) == spec
    # And its `python:` names the class the worker runs it with
    module, _, attr = (spec.python or "").partition(":")
    assert getattr(importlib.import_module(module), attr) is ConductorHandler
    assert spec.handler_kind is HandlerKind.PYTHON and spec.restart is RestartPolicy.ALWAYS
    # And the name stays reserved for everyone else
    with pytest.raises(ValueError, match="reserved"):
        AgentSpec.model_validate(given)
