"""`verify` of a large journal on every core: the work split across processes, the results
stitched into exactly the report one process would give.

Each worker checks a contiguous run of segments as if the chain entered it correctly: from the
first line it can parse, it takes that line's `seq - 1` and `prev` for the head before it. The
parent takes the runs in order and accepts a run's result only if its own head at the boundary
is exactly that entry; then every later decision is the one a single pass makes. Otherwise (the
journal was tampered with right at the boundary) the parent checks that run itself, so the
problem is reported at the same line, in the same words. The message files are hashed by the
workers folder by folder meanwhile, and judged by the parent against the merged expectations.

Workers are started with `spawn`, never `fork`: the MCP server and the dashboard call verify from
a threaded process.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from agentctl.backends.file.verifychain import Chain, Report, record_of
from agentctl.backends.file.verifyfiles import (
    READ_BYTES,
    Expectations,
    check_file,
    file_digest,
    message_files,
    open_folder,
    relative_name,
    report_missing,
)
from agentctl.backends.file.workspace import Workspace
from agentctl.model.constants import DEAD, DONE, INBOX_DIR
from agentctl.protocol.journal import Head
from agentctl.protocol.journalreader import line_batches

# Below this, starting the workers (~0.2-0.5 s: each imports agentctl) costs more than it saves:
# ~250,000 lines of the bench's ~380 bytes.
_SPLIT_MIN_BYTES = 96 * 1024 * 1024
# Each worker holds the expectations of its run and the parent all of them, each process with
# its own interpreter: the memory grows with the workers (~210 MB summed for two at 1M events).
_MAX_WORKERS = 2
_DIGEST_BYTES = hashlib.sha256().digest_size
_T = TypeVar("_T")
# A folder's message files, their SHA-256 digests end to end, and (errno, strerror) by index of
# each that could not be read.
_Hashed = tuple[list[str], bytes, dict[int, tuple[int, str]]]


def split_worth(segments: list[Path]) -> int:
    """How many processes should verify these segments: 1 unless they are large."""
    total_bytes = 0
    for path in segments:
        try:
            total_bytes += path.stat().st_size
        except FileNotFoundError:
            continue  # rotated away meanwhile
    if total_bytes < _SPLIT_MIN_BYTES:
        return 1
    return min(_MAX_WORKERS, len(os.sched_getaffinity(0)))


@dataclass
class _RunResult:
    """What a worker found in its run of segments, and the chain's state at both ends."""

    # (started, head) before the run, as the worker assumed it; None: the run has no line that
    # parses, so its result holds whatever the head; False: an entry no head can match.
    entry: tuple[bool, Head] | None | bool
    report: Report
    started: bool
    packed: dict[str, int] = field(default_factory=dict)


def verify_split(ws: Workspace, segments: list[Path], workers: int) -> Report:
    """`verify_workspace` with the work spread over `workers` processes; the same report."""
    runs = _split_runs(segments, workers)
    named = [[(str(path), relative_name(path, ws.root)) for path in run] for run in runs]
    folders = [(agent, sub) for agent in ws.agent_names() for sub in (DONE, DEAD)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        run_futures = [
            pool.submit(_check_run, run, first=index == 0) for index, run in enumerate(named)
        ]
        hashing = _Hashing(pool, str(ws.root), folders, ahead=workers)
        report = Report()
        expected = Expectations()
        chain = Chain(report, expected)
        for run, run_future in zip(runs, _in_order(run_futures), strict=True):
            _stitch(run_future.result(), run, chain, ws.root)
        report.head = chain.head
        for agent, sub in folders:
            names, digests, errors = hashing.next_folder()
            for index, name in enumerate(names):
                report.files += 1
                digest_of = partial(_digest_at, digests, errors, index)
                check_file(agent, sub, name, digest_of, expected, report)
    report_missing(expected, report)
    return report


class _Hashing:
    """The folders hashed by the workers in order, at most `ahead` of them held at once: a
    done/ of 66,000 files is ~8 MB of names and digests, and the runs of the journal take
    longer than the folders, whose results would pile up meanwhile."""

    def __init__(
        self, pool: ProcessPoolExecutor, root: str, folders: list[tuple[str, str]], *, ahead: int
    ) -> None:
        self.pool, self.root = pool, root
        self.waiting = deque(folders)
        self.submitted: deque[Future[_Hashed]] = deque()
        self._top_up(ahead)

    def next_folder(self) -> _Hashed:
        """The next folder's names, digests and errors; and one more folder submitted."""
        hashed = self.submitted.popleft().result()
        self._top_up(len(self.submitted) + 1)
        return hashed

    def _top_up(self, count: int) -> None:
        while self.waiting and len(self.submitted) < count:
            agent, sub = self.waiting.popleft()
            self.submitted.append(self.pool.submit(_hash_folder, self.root, agent, sub))


def _in_order(futures: list[Future[_T]]) -> Iterator[Future[_T]]:
    """The futures in order, each let go of once taken: their results are large."""
    futures.reverse()
    while futures:
        yield futures.pop()


def _split_runs(segments: list[Path], workers: int) -> list[list[Path]]:
    """The segments in at most `workers` contiguous runs of about the same size."""
    sizes = []
    for path in segments:
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            sizes.append(0)
    share = sum(sizes) / workers
    runs: list[list[Path]] = [[]]
    done_bytes = 0
    for path, size in zip(segments, sizes, strict=True):
        if runs[-1] and done_bytes + size / 2 > share * len(runs) and len(runs) < workers:
            runs.append([])
        runs[-1].append(path)
        done_bytes += size
    return runs


def _stitch(result: _RunResult, run: list[Path], chain: Chain, root: Path) -> None:
    """Add a worker's run to the parent's chain, or check the run here if it entered wrong."""
    report = chain.report
    if result.entry is None or result.entry == (chain.started, chain.head):
        found = result.report
        report.events += found.events
        report.segments += found.segments
        report.problems += found.problems
        report.warnings += found.warnings
        if result.entry is not None:
            chain.head, chain.started = found.head, result.started
        chain.expected.merge(result.packed)
        return
    for path in run:
        if chain.check_segment(path, relative_name(path, root)):
            report.segments += 1


def _check_run(run: list[tuple[str, str]], *, first: bool) -> _RunResult:
    """(In a worker.) Check a run of segments, entering the chain as its first line says."""
    report = Report()
    expected = Expectations()
    chain = Chain(report, expected)
    entry: tuple[bool, Head] | None | bool = (False, Head())
    if not first:
        record = _first_record([Path(path) for path, _ in run])
        if record is None:
            entry = None
        elif isinstance(prev := record.get("prev"), str):
            chain.started, chain.head = True, Head(record["seq"] - 1, prev)
            entry = (True, chain.head)
        else:
            entry = False  # no head is a non-string: the parent checks this run itself
    for path, name in run:
        if chain.check_segment(Path(path), name):
            report.segments += 1
    report.head = chain.head
    return _RunResult(entry, report, chain.started, expected.packed)


def _first_record(paths: list[Path]) -> dict[str, Any] | None:
    for path in paths:
        for _, lines, _ in line_batches(path):
            for raw in lines:
                if (record := record_of(raw)) is not None:
                    return record
    return None


def _hash_folder(root: str, agent: str, sub: str) -> _Hashed:
    """(In a worker.) Hash every message file of one folder."""
    ws = Workspace(root, fsync=False)
    names = message_files(ws, agent, sub)
    digests = bytearray(len(names) * _DIGEST_BYTES)
    errors: dict[int, tuple[int, str]] = {}
    if not names:
        return names, bytes(digests), errors
    buffer = bytearray(READ_BYTES)
    folder_fd = open_folder(Path(root) / agent / INBOX_DIR / sub)
    try:
        for index, name in enumerate(names):
            try:
                digest = file_digest(name, folder_fd, buffer)
            except OSError as exc:
                errors[index] = (exc.errno or 0, exc.strerror or str(exc))
                continue
            start = index * _DIGEST_BYTES
            digests[start : start + _DIGEST_BYTES] = bytes.fromhex(digest)
    finally:
        if isinstance(folder_fd, int):
            os.close(folder_fd)
    return names, bytes(digests), errors


def _digest_at(digests: bytes, errors: dict[int, tuple[int, str]], index: int) -> str:
    if index in errors:
        raise OSError(*errors[index])
    return digests[index * _DIGEST_BYTES : (index + 1) * _DIGEST_BYTES].hex()
