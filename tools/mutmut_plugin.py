"""pytest plugin for `make mutate`: a test skips where it would start a Python process.

mutmut mutates its copy of agentctl in `mutants/`, in the pytest process. A Python child (a
worker under `agentctl run`, the CLI, a claimer script) imports agentctl afresh, from the
installed package, so it runs the code unmutated: whatever such a test checks through its
child cannot kill a mutant. Those tests are also the slow ones (seconds each), and mutmut runs
every test that reached a function once per mutant of it. So they stop there, skipped: what
they did in-process before the child still counts, and a mutant only a child reaches shows as
*no tests*, which is what it is. Loaded by [tool.mutmut] pytest_add_cli_args only; the normal
suite never sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

_popen_init = subprocess.Popen.__init__


def _is_python(argv: Any) -> bool:
    program = argv if isinstance(argv, str | bytes | os.PathLike) else next(iter(argv), "")
    name = os.path.basename(os.fsdecode(program)).split()[0] if program else ""
    return os.fsdecode(program) == sys.executable or name.startswith("python")


def _skip_python_children(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
    if _is_python(args):
        pytest.skip("starts a Python process, which runs agentctl unmutated (mutmut_plugin.py)")
    _popen_init(self, args, *rest, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    """Install the guard for the whole run."""
    subprocess.Popen.__init__ = _skip_python_children  # type: ignore[method-assign]
