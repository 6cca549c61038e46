"""`agentctl validate` runs each python agent's constructor: whatever it does, validate names it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, write_roster


def test_validate_names_an_agent_whose_constructor_calls_sys_exit(tmp_path: Path) -> None:
    # Given an agent class whose constructor exits the process
    (tmp_path / "quitter.py").write_text(
        "import sys\n"
        "from agentctl import BaseAgent\n"
        "class Quitter(BaseAgent):\n"
        "    def __init__(self):\n"
        "        sys.exit(4)\n"
        "    async def process(self, task, context):\n"
        "        return task\n"
    )
    write_roster(tmp_path, """\
        - name: ok
          python: agentctl.agents.echo:EchoAgent
        - name: quitter
          python: quitter:Quitter
    """)
    # When the roster is validated
    result = run_cli("validate", cwd=tmp_path)
    # Then validate itself goes on, and says which agent did it
    assert result.returncode == 1
    assert result.stderr.startswith("error: "), result.stderr
    assert "agent 'quitter': quitter:Quitter() called sys.exit(4)" in result.stderr


def test_validate_warns_once_per_agent_whose_class_sets_a_name_or_expertise_it_loses(
    tmp_path: Path,
) -> None:
    # Given classes that set their own name and expertise (the seed's style), and agents that
    # take theirs from the roster
    (tmp_path / "greet.py").write_text(
        "from agentctl import BaseAgent\n"
        "class Greeter(BaseAgent):\n"
        "    def __init__(self):\n"
        "        super().__init__(name='greeter', role='Says hello', expertise=['greeting'])\n"
        "    async def process(self, task, context):\n"
        "        return task\n"
    )
    write_roster(tmp_path, """\
        - name: hello
          python: greet:Greeter
        - name: greeter
          python: greet:Greeter
          expertise: [hello]
        - name: same
          python: greet:Greeter
          expertise: [greeting]
        - name: echo
          python: agentctl.agents.echo:EchoAgent
          expertise: [echo]
    """)
    # When the roster is validated
    result = run_cli("validate", cwd=tmp_path)
    # Then it is valid, and each agent whose class values are not the ones used gets one line
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: agent 'hello': greet:Greeter sets name 'greeter', expertise ['greeting']; "
        "the roster's win: name 'hello', expertise [] (routing uses these)",
        "warning: agent 'greeter': greet:Greeter sets expertise ['greeting']; "
        "the roster's win: expertise ['hello'] (routing uses these)",
        "warning: agent 'same': greet:Greeter sets name 'greeter'; "
        "the roster's win: name 'same' (routing uses these)",
    ], result.stdout
