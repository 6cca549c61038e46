"""Benchmark of the journal: append rate, and replay / tail on a one-million-event journal.

    .venv/bin/python bench/bench_journal.py [--events N] [--quick]

Each figure is printed beside a baseline measured in the same run, because this machine is
noisy and only ratios mean anything:
- append: Journal.append (flock, chain head, hash, one O_APPEND write) vs a bare os.write of a
  line of the same size to an O_APPEND file (no lock, no hash); and two appenders taking turns
  (each first reads the other's last line) vs one;
- replay of one thread and `tail -n 20` on a journal of N events (default one million), each in
  a fresh process so its peak RSS is its own: vs `grep -F ID` over the same files and
  coreutils `tail -n 20`. The journal is written with the journal's own line format;
- `verify` of that workspace (the chain, and each done/ file against its journaled SHA-256)
  vs a bare loop in Python over the same bytes: read, `json.loads` and SHA-256 of each line,
  read and SHA-256 of each done/ file. The messages' done/ files are hard links to a few files
  (all messages have the same bytes): no inode per message to create, or to free afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentctl.protocol.journal import ACTIVE_NAME, Head, Journal, format_line, segment_paths

AGENTS = ("researcher", "architect", "implementer", "reviewer", "qa")
SEGMENT_BYTES = 64 * 1024 * 1024  # the default rotation size


def append_one(journal: Journal, i: int) -> None:
    """The event both append rows write: a typical `handled` line."""
    journal.append(
        "handled",
        agent="reviewer",
        message_id=f"01M8A2P731H1W1HHAZ{i:08d}",
        thread_id="01M8A2P731H1W1HHAZ2NB5QN6J",
        attempt=1,
        duration_ms=1.234,
    )


def bench_append(directory: Path, count: int) -> tuple[float, float]:
    """Events/s through Journal.append, and bare O_APPEND writes/s of same-size lines."""
    journal = Journal(directory / "journal", max_bytes=SEGMENT_BYTES)
    started = time.perf_counter()
    for i in range(count):
        append_one(journal, i)
    journal_rate = count / (time.perf_counter() - started)
    journal.close()
    line_bytes = (directory / "journal" / ACTIVE_NAME).stat().st_size // count
    line = b"x" * (line_bytes - 1) + b"\n"
    fd = os.open(directory / "bare.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    started = time.perf_counter()
    for _ in range(count):
        os.write(fd, line)
    bare_rate = count / (time.perf_counter() - started)
    os.close(fd)
    return journal_rate, bare_rate


def bench_append_alternating(directory: Path, count: int) -> float:
    """Events/s when two appenders take turns, as agents and commands sharing a workspace do:
    each append finds its cached head stale and reads the other's last line first."""
    journals = [Journal(directory / "journal", max_bytes=SEGMENT_BYTES) for _ in range(2)]
    started = time.perf_counter()
    for i in range(count):
        append_one(journals[i % 2], i)
    rate = count / (time.perf_counter() - started)
    for journal in journals:
        journal.close()
    return rate


MESSAGE_BYTES = b'{"id":"bench","content":"review the authentication module"}\n'
LINKS_PER_FILE = 60_000  # ext4 allows 65,000 links to one inode


def generate(workspace: Path, events: int) -> str:
    """Write a chained journal of `events` lines in 64 MiB segments and the done/ file of each
    message it handled; return one thread's id.

    Each message is sent, claimed and handled (the fields agentctl journals), three messages
    to a thread (a task through agents), so one thread is a needle in a million-line haystack.
    """
    directory = workspace / ".agentctl" / "journal"
    directory.mkdir(parents=True)
    sha = hashlib.sha256(MESSAGE_BYTES).hexdigest()
    for agent in AGENTS:
        (workspace / agent / "inbox" / "done").mkdir(parents=True)
    head = Head()
    segment = 1
    out = open(directory / f"journal.{segment:06d}.jsonl", "wb")
    written = 0
    target = ""
    for i in range(events):
        number, step = divmod(i, 3)
        thread = f"01M8TH{number // 3:020d}"
        if i == events // 2:
            target = thread
        minute, second, milli = (i // 60000) % 60, (i // 1000) % 60, i % 1000
        message_id = f"01M8MS{number:020d}"
        sender, recipient = AGENTS[number % 5], AGENTS[(number + 1) % 5]
        record = {
            "seq": 0,
            "ts": f"2026-11-25T12:{minute:02d}:{second:02d}.{milli:03d}000Z",
            "event": ("sent", "claimed", "handled")[step],
            "agent": sender if step == 0 else recipient,
            "message_id": message_id,
            "thread_id": thread,
        }
        name = f"5-{message_id}.json"
        if step == 0:
            record.update(
                to=recipient,
                kind="task",
                priority="normal",
                file=name,
                sha256=sha,
                summary="review the authentication module for injection risks",
            )
        else:
            record.update(attempt=1, file=name)
        if step == 2:
            record.update(duration_ms=1.234, result_id=f"{message_id}.r", verdict="pass")
            original = workspace / f"message.{number // LINKS_PER_FILE}.json"
            if number % LINKS_PER_FILE == 0:
                original.write_bytes(MESSAGE_BYTES)
            os.link(original, workspace / recipient / "inbox" / "done" / name)
        line, head = format_line(record, head)
        out.write(line)
        written += len(line)
        if written >= SEGMENT_BYTES and i < events - 1:
            out.close()
            segment += 1
            out = open(directory / f"journal.{segment:06d}.jsonl", "wb")
            written = 0
    out.close()
    last = directory / f"journal.{segment:06d}.jsonl"
    last.rename(directory / ACTIVE_NAME)
    return target


_CHILD = """
import resource, sys, time
from pathlib import Path
what, workspace, ident = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if what == "bare":
    import hashlib, json, os
    from agentctl.protocol.journal import segment_paths
else:
    from agentctl.audit.history import load_thread
    from agentctl.protocol.journalreader import read_last
    from agentctl.backends.file.verify import verify_workspace
    from agentctl.backends.file.workspace import Workspace
started = time.perf_counter()
if what == "replay":
    found = len(load_thread(Workspace(workspace).history(), ident).events)
elif what in ("verify", "verify-split"):
    workers = None if what == "verify-split" else 1
    report = verify_workspace(Workspace(workspace), workers=workers)
    assert report.ok, report.problems[:3]
    found = report.events
elif what == "bare":  # what verify cannot do without: every line parsed and hashed, every file
    found = 0
    for path in segment_paths(workspace / ".agentctl" / "journal"):
        with open(path, "rb") as f:
            for line in f:
                json.loads(line)
                hashlib.sha256(line[: line.rfind(b',"hash":"')]).hexdigest()
                found += 1
    for agent in os.listdir(workspace):
        done = workspace / agent / "inbox" / "done"
        if done.is_dir():
            for name in os.listdir(done):
                hashlib.sha256((done / name).read_bytes()).hexdigest()
else:
    found = len(read_last(workspace / ".agentctl" / "journal", 20))
elapsed = time.perf_counter() - started
# verify's workers (two at most): the summed peak is at most the parent's + twice the largest's.
workers_kib = 2 * resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(found, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + workers_kib)
"""


def run_child(what: str, workspace: Path, ident: str) -> tuple[int, float, float, float]:
    """Events found, seconds in the call, seconds of the whole process (interpreter start and
    imports included), and peak RSS (MiB) of one replay/tail/verify in a fresh process."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, what, str(workspace), ident],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    whole_s = time.perf_counter() - started
    return int(out[0]), float(out[1]), whole_s, int(out[2]) / 1024


def timed_baseline(argv: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of a command-line tool doing the raw equivalent."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(after, before) / 1024


def _target(met: bool, target: str, events: int) -> str:
    """The target of a row (absolute, for one million events) and whether this run met it."""
    if events != 1_000_000:
        return f"{target} at 1M events"
    return f"{target} {'PASS' if met else 'MISS'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="100k events, 5k appends")
    args = parser.parse_args()
    if args.quick:
        args.events, args.appends = 100_000, 5_000
    with tempfile.TemporaryDirectory(prefix="agentctl-bench-journal-") as tmp:
        root = Path(tmp)
        journal_rate, bare_rate = bench_append(root / "append", args.appends)
        alternating_rate = bench_append_alternating(root / "alternating", args.appends)
        workspace = root / "ws"
        started = time.perf_counter()
        ident = generate(workspace, args.events)
        generate_s = time.perf_counter() - started
        segments = segment_paths(workspace / ".agentctl" / "journal")
        size_mib = sum(p.stat().st_size for p in segments) / 2**20
        run_child("tail", workspace, ident)  # warm the page cache and the imports once
        found, replay_s, replay_whole_s, replay_mib = run_child("replay", workspace, ident)
        _, tail_s, tail_whole_s, tail_mib = run_child("tail", workspace, ident)
        verified, verify_s, verify_whole_s, verify_mib = run_child("verify", workspace, ident)
        _, split_s, _, split_mib = run_child("verify-split", workspace, ident)
        _, bare_s, _, bare_mib = run_child("bare", workspace, ident)
        assert verified == args.events, verified
        grep = shutil.which("grep") or "grep"
        grep_s, _ = timed_baseline([grep, "-F", "-c", ident, *map(str, segments)])
        coreutils_tail = shutil.which("tail") or "tail"
        ctail_s, _ = timed_baseline([coreutils_tail, "-n", "20", str(segments[-1])])
        rows = [
            (
                "journal append (events/s)",
                f"{journal_rate:,.0f}",
                f"{bare_rate:,.0f} bare write",
                f"{journal_rate / bare_rate:.2f}x",
                "",
            ),
            (
                "  two appenders taking turns",
                f"{alternating_rate:,.0f}",
                f"{journal_rate:,.0f} one appender",
                f"{alternating_rate / journal_rate:.2f}x",
                "",
            ),
            (
                f"replay one thread of {args.events:,} events",
                f"{replay_s * 1000:.0f} ms",
                f"{grep_s * 1000:.0f} ms grep -F",
                f"{replay_s / grep_s:.1f}x",
                _target(replay_s <= 0.3, "<= 0.3 s", args.events),
            ),
            ("  whole process, imports included", f"{replay_whole_s * 1000:.0f} ms", "-", "", ""),
            ("  peak memory of replay", f"{replay_mib:.0f} MiB", "-", "", ""),
            (
                "tail -n 20",
                f"{tail_s * 1000:.1f} ms",
                f"{ctail_s * 1000:.1f} ms coreutils tail",
                f"{tail_s / ctail_s:.1f}x",
                _target(tail_s <= 0.1, "<= 0.1 s", args.events),
            ),
            ("  whole process, imports included", f"{tail_whole_s * 1000:.0f} ms", "-", "", ""),
            ("  peak memory of tail", f"{tail_mib:.0f} MiB", "-", "", ""),
            (
                f"verify of {args.events:,} events, {args.events // 3:,} done/ files",
                f"{verify_s:.2f} s",
                f"{bare_s:.2f} s read+loads+sha256",
                f"{verify_s / bare_s:.1f}x",
                _target(verify_s <= 5, "<= 5 s", args.events),
            ),
            ("  whole process, imports included", f"{verify_whole_s:.2f} s", "-", "", ""),
            (
                "  peak memory of verify",
                f"{verify_mib:.0f} MiB",
                f"{bare_mib:.0f} MiB",
                "",
                _target(verify_mib * 2**20 <= 100e6, "<= 100 MB", args.events),
            ),
            (
                "  split over the cores (workers=None)",
                f"{split_s:.2f} s",
                f"{verify_s:.2f} s in one process",
                f"{split_s / verify_s:.2f}x",
                _target(split_s <= 5, "<= 5 s", args.events),
            ),
            (
                "  its peak memory (+ 2 x its largest worker)",
                f"{split_mib:.0f} MiB",
                f"{verify_mib:.0f} MiB",
                "",
                _target(split_mib * 2**20 <= 100e6, "<= 100 MB", args.events),
            ),
        ]
        print(
            f"journal of {args.events:,} events, {len(segments)} segments, {size_mib:.0f} MiB "
            f"(generated in {generate_s:.1f} s); replay found {found} events of thread {ident}"
        )
        widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
        header = ("measurement", "agentctl", "baseline (same run)", "ratio", "target (issue 19)")
        widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
        for row in (header, *rows):
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        print(
            "\nreplay, tail and verify each run in a fresh process; the first row is the call, "
            "the second the whole process; peak memory is its whole RSS."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
