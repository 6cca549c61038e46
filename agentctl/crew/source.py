"""What the review crew reads: a confined, private copy of the code it was asked to review.

A `path` task names a file or folder inside the agent's working directory. Checking that path
alone is not enough: a symlink *inside* the folder (`code/linked.py -> /home/me/.secrets`) would
let the scanners read, and the report quote, a file from anywhere. So the crew never hands the
scanners the user's folder. It walks it without following links, opens each source file itself
and checks where the opened file really is (its `/proc/self/fd` path, which no symlink or
renamed parent can fake), and copies what is inside into a private temporary directory that the
scanners then read. Whatever leads outside is left out and reported as a finding, so a review
never passes silently over code it did not read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl.model.errors import NonRetryableError

# What bandit and ruff read in a folder; other files are not copied.
SOURCE_SUFFIXES = (".py", ".pyi", ".pyw", ".ipynb")
MAX_SOURCE_BYTES = 64 * 1024 * 1024
MAX_SOURCE_FILES = 20_000
_CHUNK_BYTES = 1024 * 1024


@dataclass
class Source:
    """The copy to scan (`paths`, inside `root`) and what was left out of it, and why."""

    paths: list[str]
    root: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


@contextlib.contextmanager
def source_of(task: dict[str, Any], base_dir: Path) -> Iterator[Source]:
    """The code to scan for a task: `content`/`code` as a `snippet.py`, or a `path` (a file or
    folder inside `base_dir`, the agent's working directory) copied with every file confined."""
    with tempfile.TemporaryDirectory(prefix="agentctl-review-") as tmp:
        copy_root = Path(tmp)
        path = task.get("path")
        if isinstance(path, str) and path:
            yield _confined_copy(path, base_dir.resolve(), copy_root)
            return
        code = task.get("code", task.get("content"))
        if not isinstance(code, str) or not code.strip():
            raise NonRetryableError('nothing to review: send code, or {"path": FILE_OR_FOLDER}')
        snippet = copy_root / "snippet.py"
        snippet.write_text(code, encoding="utf-8")
        yield Source([str(snippet)], copy_root)


def _confined_copy(path: str, root: Path, copy_root: Path) -> Source:
    resolved = (root / path).resolve()
    if not _inside(resolved, root):
        raise NonRetryableError(f"{path}: outside {root}; only code inside it is reviewed")
    if not resolved.exists():
        raise NonRetryableError(f"{path}: no such file or folder in {root}")
    top = resolved.relative_to(root)
    source = Source([str(copy_root / top)], copy_root)
    budget = _Budget()
    if resolved.is_dir():
        for dirpath, dirnames, filenames in os.walk(resolved, followlinks=False):
            here = Path(dirpath)
            for name in dirnames:
                if (here / name).is_symlink() and not _inside((here / name).resolve(), root):
                    source.skipped.append((_rel(here / name, root), "a symlink to a folder "
                                           "outside the reviewed directory: not read"))  # fmt: skip
            for name in sorted(filenames):
                if name.endswith(SOURCE_SUFFIXES):
                    _copy_one(here / name, root, copy_root, source, budget)
    else:
        _copy_one(resolved, root, copy_root, source, budget, explicit=True)
    return source


@dataclass
class _Budget:
    bytes_left: int = MAX_SOURCE_BYTES
    files_left: int = MAX_SOURCE_FILES


def _copy_one(
    file: Path,
    root: Path,
    copy_root: Path,
    source: Source,
    budget: _Budget,
    *,
    explicit: bool = False,
) -> None:
    rel = _rel(file, root)
    try:
        # O_NONBLOCK: a FIFO planted in the folder must not hang the reviewer on open().
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        source.skipped.append((rel, f"cannot be read: {exc.strerror or exc}"))
        return
    with os.fdopen(fd, "rb") as stream:
        where = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not _inside(where, root):
            source.skipped.append((rel, "a symlink to a file outside the reviewed directory: "
                                   "not read"))  # fmt: skip
            return
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            if explicit:
                raise NonRetryableError(f"{rel}: not a regular file")
            source.skipped.append((rel, "not a regular file: not read"))
            return
        budget.files_left -= 1
        if budget.files_left < 0:
            raise NonRetryableError(f"more than {MAX_SOURCE_FILES} source files to review")
        target = copy_root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            while chunk := stream.read(_CHUNK_BYTES):
                budget.bytes_left -= len(chunk)
                if budget.bytes_left < 0:
                    raise NonRetryableError(
                        f"more than {MAX_SOURCE_BYTES // (1024 * 1024)} MiB of source to review"
                    )
                out.write(chunk)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _rel(path: Path, root: Path) -> str:
    # The name the user knows (the link's, not its target's), relative to the working directory.
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
