"""The README's examples stay true: its Python block runs as shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _python_block() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("```python", text.index("## Python API")) + len("```python")
    return text[start : text.index("```", start)]


def test_the_python_api_example_runs_as_shown(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(_python_block())
    result = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{'greeting': 'hello, Ada'}\n"
    # The router's send went through the safe protocol: a file in echo's new/, a copy in the
    # sender's outbox, and a journal line.
    ws = tmp_path / "workspace"
    assert len(list((ws / "echo" / "inbox" / "new").glob("*.json"))) == 1
    assert len(list((ws / "user" / "outbox").glob("*.json"))) == 1
    assert '"event":"sent"' in (ws / ".agentctl" / "journal" / "journal.jsonl").read_text()


def test_the_roster_example_validates(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    start = text.index("```yaml", text.index("## The roster")) + len("```yaml")
    (tmp_path / "agents.yaml").write_text(text[start : text.index("```", start)])
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "shell_agent.sh").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "agentctl", "validate"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_nats_roster_example_validates(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    start = text.index("```yaml", text.index("## Beyond one machine")) + len("```yaml")
    (tmp_path / "agents.yaml").write_text(text[start : text.index("```", start)])
    result = subprocess.run(
        [sys.executable, "-m", "agentctl", "validate"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={**os.environ, "NATS_URL": "nats://127.0.0.1:4222"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "reviewer" in result.stdout
