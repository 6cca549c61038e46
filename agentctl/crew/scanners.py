"""The tools the review crew runs: bandit and ruff, as subprocesses, never through a shell.

They are the `crew` extra (`pip install 'agentctl[crew]'`, which `make run` installs); the core
does not depend on them. A missing tool is a NonRetryableError naming the extra, so the message
is dead-lettered with that reason at once instead of being retried.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentctl.model.errors import HandlerError, NonRetryableError

MISSING = "{tool} is not installed: install the crew extra (pip install 'agentctl[crew]')"
SCAN_TIMEOUT_S = 120.0


def run_bandit(paths: list[str]) -> list[dict[str, Any]]:
    """bandit's findings (its JSON `results`) for these files or folders."""
    if not _importable("bandit"):
        raise NonRetryableError(MISSING.format(tool="bandit"))
    argv = [sys.executable, "-m", "bandit", "-f", "json", "-q", "-r", *paths]
    out = _run(argv, ok_codes=(0, 1))  # 1: issues found
    results = out.get("results", []) if isinstance(out, dict) else []
    return [r for r in results if isinstance(r, dict)]


def run_ruff(
    paths: list[str], *, select: list[str] | None = None, config: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """ruff's diagnostics (JSON) for these files or folders, ignoring any project config."""
    ruff = shutil.which("ruff") or _venv_tool("ruff")
    if ruff is None:
        raise NonRetryableError(MISSING.format(tool="ruff"))
    argv = [ruff, "check", "--output-format", "json", "--no-cache", "--isolated", "--exit-zero"]
    if select:
        argv += ["--select", ",".join(select)]
    for setting in config:
        argv += ["--config", setting]
    out = _run([*argv, *paths], ok_codes=(0,))
    return [d for d in out if isinstance(d, dict)] if isinstance(out, list) else []


def _run(argv: list[str], *, ok_codes: tuple[int, ...]) -> Any:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=SCAN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise HandlerError(f"{Path(argv[0]).name} took longer than {SCAN_TIMEOUT_S:g} s") from None
    if done.returncode not in ok_codes:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HandlerError(f"{' '.join(argv[:3])} exited {done.returncode}: {detail[0]}")
    try:
        return json.loads(done.stdout or "null")
    except ValueError:
        raise HandlerError(f"{argv[2]}: output is not JSON") from None


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _venv_tool(name: str) -> str | None:
    # The console script beside this interpreter (a venv's bin/), when PATH does not have it.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def relative(path: str, root: Path) -> str:
    """A finding's file, relative to what was reviewed."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path
