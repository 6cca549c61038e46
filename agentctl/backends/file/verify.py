"""`agentctl verify` on the file backend: is the audit trail intact?

Two checks. The journal's hash chain: every line's hash matches its text and names the line
before it, and sequence numbers have no gaps, so an edited, removed or inserted line is found.
The message files in every done/ and dead/: each must be the file the journal last recorded for
it (same SHA-256), and every file the journal says is done or dead must still be there, in
that folder and not in the other (a message ends in exactly one of them).

The chain is tamper-evident, not tamper-proof: someone who rewrites the journal from a point on
and recomputes every hash after it is only caught by comparing the head (printed here) with a
copy kept elsewhere.

A large journal is checked by several processes (`verifysplit`), with the same result.
"""

from __future__ import annotations

import os
from functools import partial

from agentctl.backends.file.verifychain import Chain, Problem, Report
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
from agentctl.backends.file.verifysplit import split_worth, verify_split
from agentctl.backends.file.workspace import Workspace
from agentctl.backends.records import Verification
from agentctl.model.constants import DEAD, DONE, INBOX_DIR
from agentctl.protocol.journal import segment_paths

__all__ = ["Problem", "Report", "verify_files", "verify_workspace"]


def verify_workspace(ws: Workspace, *, workers: int | None = 1) -> Report:
    """Check the journal's chain and the done/ and dead/ files against it, in `workers`
    processes (None: as many as pay off, one for a small journal and two for a large one).

    One by default: split, the journal's expectations exist in the workers and again in the
    parent, ~210 MB summed at a million events against ~90 MB in one process (PERFORMANCE.md).
    """
    segments = segment_paths(ws.journal_dir)
    if workers is None:
        workers = split_worth(segments)
    if workers > 1:
        return verify_split(ws, segments, workers)
    report = Report()
    expected = Expectations()
    chain = Chain(report, expected)
    for path in segments:
        if chain.check_segment(path, relative_name(path, ws.root)):
            report.segments += 1
    report.head = chain.head
    _check_files(ws, expected, report)
    return report


def _check_files(ws: Workspace, expected: Expectations, report: Report) -> None:
    # One buffer for every read, and each file opened relative to its folder (openat): the
    # cost is then the three system calls and the hash, a third of open()/read_bytes().
    buffer = bytearray(READ_BYTES)
    for agent in ws.agent_names():
        inbox = ws.root / agent / INBOX_DIR
        for sub in (DONE, DEAD):
            names = message_files(ws, agent, sub)
            if not names:
                continue
            folder_fd = open_folder(inbox / sub)
            try:
                for name in names:
                    report.files += 1
                    digest_of = partial(file_digest, name, folder_fd, buffer)
                    check_file(agent, sub, name, digest_of, expected, report)
            finally:
                if isinstance(folder_fd, int):
                    os.close(folder_fd)
    report_missing(expected, report)


def verify_files(ws: Workspace) -> Verification:
    """`verify` on the file backend, in the form every backend reports."""
    report = verify_workspace(ws)
    return Verification(
        [str(problem) for problem in report.problems],
        report.warnings,
        f"{report.events} events in {report.segments} journal file(s), {report.files} "
        f"message files in done/ and dead/; head seq {report.head.seq} hash "
        f"{report.head.hash or '-'}",
        report.to_json(),
    )
