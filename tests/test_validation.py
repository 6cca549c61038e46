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
