"""Where the floor of an echo drain is: the bare loop, then the same loop with each piece of work
the protocol requires added in turn, then agentctl's real worker, all in one run.

    .venv/bin/python bench/bench_floor.py [--count 4000] [--dir DIR]

Issue 19 asks the echo drain for >= 0.5x of the bare claim + read + reply + ack loop. This
benchmark measures how much of that gap is the protocol itself rather than agentctl's code
around it. Each rung is an in-process Python loop over the same pre-written burst (recycled
between rungs by rename, never deleted: see docs/PERFORMANCE.md on this disk), built from the
calls agentctl itself makes for that piece:

  bare              rename into processing/, read, reply (write tmp, link into new/), rename
                    into done/ (bench_workspace.py's drain baseline)
  + protocol files  claim by link + unlink (a claimer that wins must be the one whose unlink
                    succeeds), the reply's copy in the sender's outbox (one more link), the
                    reply's de-duplication lookup in the recipient's four folders
  + journal         the three events of a handled message (claimed, the reply's sent, handled)
                    through agentctl's Journal: flock, chain head, SHA-256, one write each
  + message model   parse_message (strict JSON, validation), message.reply(), the reply's
                    to_json_bytes, the SHA-256 of the request and of the reply the events carry

Each rung prints its rate and its ratio to the bare loop: the last rung's ratio is the most an
agentctl written this way could reach (no handler, no status, no scheduling). The real worker
(the bundled EchoAgent in `python -m agentctl.runtime.worker`, as bench_workspace.py measures
it) follows, beside the same bare loop. A second ladder does the same for a send (the bare
write + link of bench_workspace.py's send row, then the outbox copy, the `sent` event and the
message model), ending with WorkspaceRouter.send itself.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_workspace import (
    DEFAULT_BENCH_DIR,
    agentctl_drain_rate,
    bare_deliver,
    count_files,
    file_create_us,
    make_inbox,
)
from benchkit import stop_children_on_exit

from agentctl.model.constants import DEFAULT_JOURNAL_MAX_BYTES
from agentctl.model.message import AgentMessage, parse_message
from agentctl.protocol.journal import Journal

CONTENT = {"text": "x" * 700}  # as bench_workspace.py's drain
Step = Callable[[str, bytes], None]


class Burst:
    """One pre-written burst in agentctl's own file format, claimed and recycled per rung."""

    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        self.inbox = make_inbox(root / "echo")
        self.replies = make_inbox(root / "user")
        self.outbox = root / "outbox"
        self.outbox.mkdir()
        self.journal = Journal(root / "journal", max_bytes=DEFAULT_JOURNAL_MAX_BYTES)
        self.count = count
        for _ in range(count):
            message = AgentMessage(from_agent="user", to_agent="echo", content=CONTENT)
            data = message.to_json_bytes()
            bare_deliver(self.inbox, message.file_name, data, fsync=False)
        self._rungs = 0

    def run(self, claim_by_link: bool, step: Step) -> float:
        """Messages/s of one pass: claim each file, read it, `step` (the reply and the rest),
        ack into done/. Paths are joined as strings, as agentctl's hot paths do."""
        new, processing, done = (f"{self.inbox[sub]}/" for sub in ("new", "processing", "done"))
        start = time.perf_counter()
        for name in sorted(os.listdir(new)):
            if claim_by_link:
                os.link(new + name, processing + name)
                os.unlink(new + name)
            else:
                os.rename(new + name, processing + name)
            with open(processing + name, "rb") as f:
                data = f.read()
            step(name, data)
            os.rename(processing + name, done + name)
        elapsed_s = time.perf_counter() - start
        if count_files(self.inbox["done"]) != self.count:
            raise RuntimeError("a rung lost messages")
        self._recycle()
        return self.count / elapsed_s

    def _recycle(self) -> None:
        for name in os.listdir(self.inbox["done"]):
            os.rename(self.inbox["done"] / name, self.inbox["new"] / name)
        self._rungs += 1
        for folder in (self.replies["new"], self.outbox):
            folder.rename(folder.with_name(f"{folder.name}.{self._rungs}"))
            folder.mkdir()


def rungs(burst: Burst) -> list[tuple[str, bool, Step]]:
    """The ladder: (name, claim by link + unlink, what follows the read)."""
    replies, journal = burst.replies, burst.journal
    tmp_dir, new_dir, outbox = f"{replies['tmp']}/", f"{replies['new']}/", f"{burst.outbox}/"
    lookups = [f"{replies['new'].parent}/{sub}/" for sub in ("new", "processing", "done", "dead")]

    def bare(name: str, data: bytes) -> None:
        fd = os.open(tmp_dir + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        os.link(tmp_dir + name, new_dir + name)
        os.unlink(tmp_dir + name)

    def protocol_files(name: str, data: bytes) -> None:
        for folder in lookups:
            os.path.lexists(folder + name)  # the reply's de-duplication lookup
        fd = os.open(tmp_dir + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        os.link(tmp_dir + name, outbox + name)
        os.link(tmp_dir + name, new_dir + name)
        os.unlink(tmp_dir + name)

    def events(name: str, request_id: str, reply_id: str, digest: str) -> None:
        journal.append("claimed", agent="echo", message_id=request_id, thread_id=request_id,
                       attempt=1, file=name, sha256=digest)  # fmt: skip
        journal.append("sent", agent="echo", message_id=reply_id, thread_id=request_id,
                       to="user", kind="result", priority="normal", in_reply_to=request_id,
                       sha256=digest, summary="{\"text\": \"xxxx...")  # fmt: skip
        journal.append("handled", agent="echo", message_id=request_id, thread_id=request_id,
                       attempt=1, duration_ms=0.05, result_id=reply_id)  # fmt: skip

    def with_journal(name: str, data: bytes) -> None:
        request_id = name[2:-5]
        events(name, request_id, f"{request_id}-reply", "0" * 64)
        protocol_files(name, data)

    def with_model(name: str, data: bytes) -> None:
        request = parse_message(data)
        reply = request.reply({"agent": "echo", "echo": request.content, "attempt": 1})
        reply_data = reply.to_json_bytes()
        digest = hashlib.sha256(data).hexdigest()
        hashlib.sha256(reply_data).hexdigest()
        events(name, request.id, reply.id, digest)
        protocol_files(reply.file_name, reply_data)

    return [
        ("bare claim+read+reply+ack", False, bare),
        ("+ protocol files (link claim, outbox copy, dedupe)", True, protocol_files),
        ("+ journal (3 chained events)", True, with_journal),
        ("+ message model (parse, validate, reply, JSON)", True, with_model),
    ]


def send_ladder(root: Path, count: int, rounds: int) -> dict[str, float]:
    """The same for a send: the bare write + link, then the sender's outbox copy, the `sent`
    event, the message model (building and validating the message, its JSON, the digest and
    summary the event carries), and WorkspaceRouter.send itself; median msg/s of each."""
    from agentctl.backends.records import sent_fields
    from agentctl.flow.router import WorkspaceRouter

    journal = Journal(root / "send-journal", max_bytes=DEFAULT_JOURNAL_MAX_BYTES)
    router = WorkspaceRouter(root / "send-ws", fsync=False)
    data = AgentMessage(from_agent="user", to_agent="echo", content=CONTENT).to_json_bytes()
    dirs = {sub: root / "send" / sub for sub in ("tmp", "new", "outbox")}
    for path in dirs.values():
        path.mkdir(parents=True)
    tmp_dir, new_dir, outbox = (f"{dirs[sub]}/" for sub in ("tmp", "new", "outbox"))

    def write(name: str, body: bytes, copy: bool) -> None:
        fd = os.open(tmp_dir + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, body)
        os.close(fd)
        if copy:
            os.link(tmp_dir + name, outbox + name)
        os.link(tmp_dir + name, new_dir + name)
        os.unlink(tmp_dir + name)

    def sent(message_id: str, name: str, fields: dict[str, object]) -> None:
        journal.append("sent", agent="user", message_id=message_id, thread_id=message_id,
                       file=name, **fields)  # fmt: skip

    fixed = {"to": "echo", "kind": "task", "priority": "normal", "sha256": "0" * 64,
             "summary": "{\"text\": \"xxxx..."}  # fmt: skip

    def model(i: int) -> None:
        message = AgentMessage(from_agent="user", to_agent="echo", content=CONTENT)
        body = message.to_json_bytes()
        sent(message.id, message.file_name, sent_fields(message, body))
        write(message.file_name, body, True)

    steps: dict[str, Callable[[int], None]] = {
        "bare write + link": lambda i: write(f"1-{i:08d}.json", data, False),
        "+ outbox copy (one more link)": lambda i: write(f"1-{i:08d}.json", data, True),
        "+ journal (the sent event)": lambda i: (
            sent(f"{i:08d}", f"1-{i:08d}.json", fixed), write(f"1-{i:08d}.json", data, True)
        ),
        "+ message model (build, validate, JSON, digest)": model,
        "agentctl WorkspaceRouter.send": lambda i: router.send(
            AgentMessage(from_agent="user", to_agent="echo", content=CONTENT)
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in steps}
    passes = 0
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for i in range(count):
                step(i)
            rates[name].append(count / (time.perf_counter() - start))
            passes += 1
            for folder in (dirs["new"], dirs["outbox"]):  # set aside, never deleted
                folder.rename(folder.with_name(f"{folder.name}.{passes}"))
                folder.mkdir()
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3, help="passes of the ladder (median)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_BENCH_DIR)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with stop_children_on_exit(), tempfile.TemporaryDirectory(prefix="floor-", dir=args.dir) as tmp:
        create_start_us = file_create_us(Path(tmp) / "probe-start")
        burst = Burst(Path(tmp) / "ladder", args.count)
        ladder = rungs(burst)
        rates: dict[str, list[float]] = {name: [] for name, _, _ in ladder}
        for _ in range(args.rounds):  # rungs interleaved, so a slower disk hits all alike
            for name, by_link, step in ladder:
                rates[name].append(burst.run(by_link, step))
        real, note = agentctl_drain_rate(Path(tmp), args.count)
        sends = send_ladder(Path(tmp), args.count, args.rounds)
        bare_after = burst.run(False, ladder[0][2])
        create_end_us = file_create_us(Path(tmp) / "probe-end")
        medians = {name: statistics.median(values) for name, values in rates.items()}
        bare = medians[ladder[0][0]]
        print(f"{args.count:,} messages, median of {args.rounds} interleaved rounds; file creation "
              f"{create_start_us:.0f} -> {create_end_us:.0f} us; load "
              f"{os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"{'rung':52} {'msg/s':>8} {'vs bare':>8}")
        for name, rate in medians.items():
            print(f"{name:52} {rate:8,.0f} {rate / bare:7.2f}x")
        print(f"{'agentctl worker, EchoAgent (' + note + ')':52} {real:8,.0f} "
              f"{real / bare:7.2f}x   (bare again after it: {bare_after:,.0f} msg/s)")  # fmt: skip
        bare_send = sends["bare write + link"]
        print(f"\n{'send':52} {'msg/s':>8} {'vs bare':>8}")
        for name, rate in sends.items():
            print(f"{name:52} {rate:8,.0f} {rate / bare_send:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
