"""Names that become paths: agent names and message ids, in the library, the roster and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentctl.backends.file.workspace import Workspace
from agentctl.config.roster import load_roster
from agentctl.config.rosterfile import peek_roster
from agentctl.model.constants import AGENT_NAME_PATTERN
from agentctl.model.errors import AgentctlError, BadMessageError, ConfigError, InvalidNameError
from agentctl.model.ids import new_id
from agentctl.model.message import AgentMessage, parse_message
from agentctl.model.names import validate_agent_name, validate_message_id
from tests.conftest import run_cli, write_roster

VALID_NAMES = ["a", "echo", "a-b_c9", "x0", "a" * 32, "security-reviewer"]
BAD_NAMES = [
    "../x",
    "a/b",
    ".h",
    "Upper",
    "",
    "a" * 33,
    "x y",
    "9lives",
    "-dash",
    "_under",
    "a\n",
    "a\x00b",
    "..",
    "é",
]
NON_STR = [None, 5, b"echo", ["echo"], 3.5]

ECHO_ROSTER = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
"""


def all_paths(root: Path) -> set[str]:
    """Every path under root, relative, as strings (directories included)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, n), root))
    return found


# -- validate_agent_name --------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_agent_names_are_returned_unchanged(name: str) -> None:
    assert validate_agent_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES + NON_STR)
def test_bad_agent_names_raise_invalid_name_error_naming_the_rule(name: object) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_agent_name(name)  # type: ignore[arg-type]
    text = str(info.value)
    assert "invalid agent name" in text
    assert repr(name) in text
    assert AGENT_NAME_PATTERN in text
    assert "at most 32" in text
    # One error family: callers catch AgentctlError (CLI) or ValueError (pydantic validators).
    assert isinstance(info.value, AgentctlError)
    assert isinstance(info.value, ValueError)


def test_where_prefix_is_put_in_front_of_the_message() -> None:
    with pytest.raises(InvalidNameError, match=r"^agents\.yaml:7: agents\[0\]\.name: invalid"):
        validate_agent_name("../x", where="agents.yaml:7: agents[0].name")


@pytest.mark.parametrize("name", ["../x", "a/b", ".h", "Upper", ""])
def test_workspace_refuses_to_build_a_path_from_a_bad_name(tmp_path: Path, name: str) -> None:
    ws = Workspace(tmp_path / "workspace", fsync=False)
    with pytest.raises(InvalidNameError):
        ws.agent_dir(name)
    with pytest.raises(InvalidNameError):
        ws.ensure_agent(name)
    # At most the (empty) workspace root exists; nothing for the name, inside or out.
    assert all_paths(tmp_path) <= {"workspace"}


# -- message ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message_id", ["01JD3X0000ABCDEFGHJKMNPQRS", "abc", "A.b-c_1", "0", "x" * 128, "a-reply"]
)
def test_valid_message_ids(message_id: str) -> None:
    assert validate_message_id(new_id())
    assert validate_message_id(message_id) == message_id
    # A result may use all 128 characters; a task must leave room for its reply id.
    assert AgentMessage(id=message_id, from_agent="a", to_agent="b", kind="result").id == message_id
    if len(message_id) <= 128 - len("-reply"):
        assert AgentMessage(id=message_id, from_agent="a", to_agent="b").id == message_id
    else:
        with pytest.raises(ValueError, match="too long to be answered"):
            AgentMessage(id=message_id, from_agent="a", to_agent="b")


@pytest.mark.parametrize(
    "message_id",
    ["a:b", "a/b", "../x", "..", ".hidden", "", "x" * 129, "-a", "a b", "a\\b", "a\nb", None, 7],
)
def test_bad_message_ids_are_refused(message_id: object) -> None:
    with pytest.raises(InvalidNameError, match="invalid message id"):
        validate_message_id(message_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["id", "thread_id", "in_reply_to"])
@pytest.mark.parametrize("bad", ["a:b", "a/b", "../../etc/passwd", ".x"])
def test_message_refuses_ids_with_colon_or_slash(field: str, bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        AgentMessage(from_agent="a", to_agent="b", **{field: bad})
    assert info.value.errors()[0]["loc"] == (field,)

    data = json.dumps({"from_agent": "a", "to_agent": "b", field: bad}).encode()
    with pytest.raises(BadMessageError, match=f"^{field}: String should match pattern"):
        parse_message(data)


@pytest.mark.parametrize("field", ["from_agent", "to_agent"])
@pytest.mark.parametrize("bad", ["../x", "a/b", ".h", "Upper", "", "a" * 33, "x y", "a\n"])
def test_message_refuses_bad_agent_names(field: str, bad: str) -> None:
    fields = {"from_agent": "a", "to_agent": "b", field: bad}
    with pytest.raises(ValidationError):
        AgentMessage(**fields)
    with pytest.raises(BadMessageError, match=f"^{field}: "):
        parse_message(json.dumps(fields).encode())


# -- in the roster --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/b", ".h", "Upper", "", "a" * 33, "x y"])
def test_roster_with_a_bad_name_names_file_line_and_field(tmp_path: Path, name: str) -> None:
    roster = write_roster(
        tmp_path,
        f"""\
        - name: good
          python: agentctl.agents.echo:EchoAgent
        - name: {json.dumps(name)}
          python: agentctl.agents.echo:EchoAgent
        """,
    )
    # write_roster writes 3 settings lines and `agents:`; the second name is on line 7.
    assert roster.read_text().splitlines()[6].strip().startswith("- name:")
    with pytest.raises(ConfigError) as info:
        load_roster(roster)
    text = str(info.value)
    assert text.startswith(f"{roster}:7: agents[1].name: ")
    assert "invalid agent name" in text
    assert repr(name) in text


def test_roster_name_that_is_not_a_string(tmp_path: Path) -> None:
    roster = write_roster(tmp_path, "- name: 123\n  python: agentctl.agents.echo:EchoAgent\n")
    with pytest.raises(ConfigError, match=r"agents\.yaml:5: agents\[0\]\.name: .*string"):
        load_roster(roster)


@pytest.mark.parametrize("name", ["user", "human"])
def test_reserved_names_are_refused_in_rosters(tmp_path: Path, name: str) -> None:
    roster = write_roster(tmp_path, f"- name: {name}\n  python: agentctl.agents.echo:EchoAgent\n")
    with pytest.raises(ConfigError) as info:
        load_roster(roster)
    assert str(info.value) == (
        f"{roster}:5: agents[0].name: {name!r} is reserved for agentctl's own use"
    )


def test_peek_roster_also_refuses_bad_names_with_file_and_line(tmp_path: Path) -> None:
    roster = write_roster(
        tmp_path,
        """\
        - name: ok
          python: agentctl.agents.echo:EchoAgent
        - name: ../escape
          python: agentctl.agents.echo:EchoAgent
        """,
    )
    with pytest.raises(InvalidNameError, match=rf"^{roster}:7: agents\[1\]\.name: invalid"):
        peek_roster(roster)


# -- in `agentctl send` ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../evil", "../../evil2", "a/b", ".h", "Upper", "", "a" * 33, "x y"]
)
def test_send_refuses_bad_names_and_writes_nothing(tmp_path: Path, name: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_roster(project, ECHO_ROSTER)

    result = run_cli("send", name, "hi", cwd=project)

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: invalid agent name")
    assert repr(name) in lines[0]
    assert result.stdout == ""
    # Nothing was created: no workspace, no directory for any part of the name.
    assert all_paths(tmp_path) == {"project", "project/agents.yaml"}
    assert not (tmp_path.parent / "evil2").exists()


def test_send_without_a_roster_refuses_bad_names_too(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    result = run_cli("send", "../evil", "hi", cwd=tmp_path / "project")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: invalid agent name '../evil'")
    assert all_paths(tmp_path) == {"project"}


@pytest.mark.parametrize("thread", ["a:b", "../x"])
def test_send_refuses_a_bad_thread_id_with_one_error_line(tmp_path: Path, thread: str) -> None:
    write_roster(tmp_path, ECHO_ROSTER)

    result = run_cli("send", "echo", "hi", "--thread", thread, cwd=tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "thread" in lines[0]
    assert all_paths(tmp_path) == {"agents.yaml"}
