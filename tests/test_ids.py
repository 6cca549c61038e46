"""Message ids: ULIDs unique across processes and threads, increasing within a process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentctl.model.constants import MESSAGE_ID_PATTERN, MESSAGE_ID_RE, REPLY_ID_SUFFIX
from agentctl.model.ids import new_id, reply_id
from agentctl.model.message import AgentMessage, MessageKind
from agentctl.model.names import validate_message_id
from agentctl.model.priority import Priority

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def decode_ms(ulid: str) -> int:
    value = 0
    for ch in ulid[:10]:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(ch)
    return value


def test_ids_are_26_crockford_chars_and_safe_file_names() -> None:
    for _ in range(1000):
        ulid = new_id()
        assert len(ulid) == 26
        assert set(ulid) <= CROCKFORD
        assert ":" not in ulid and "/" not in ulid
        assert validate_message_id(ulid) == ulid


def test_id_time_part_is_the_creation_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ulid = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= decode_ms(ulid) <= after


def test_ids_strictly_increase_within_a_process() -> None:
    ids = [new_id() for _ in range(50_000)]
    # Many fall in the same millisecond: the random part must be incremented, not redrawn.
    assert len({decode_ms(i) for i in ids}) < len(ids)
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))


def test_ids_are_unique_across_threads_and_increase_per_thread() -> None:
    per_thread: list[list[str]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def make(out: list[str]) -> None:
        barrier.wait()
        for _ in range(5000):
            out.append(new_id())

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(everything) == len(set(everything)) == 40_000
    for out in per_thread:
        assert out == sorted(out) and len(set(out)) == len(out)


GENERATOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agentctl.model.ids import new_id
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.001)
    ids = [new_id() for _ in range(int(sys.argv[3]))]
    Path(sys.argv[1]).write_text("\\n".join(ids))
    """
)


def test_ids_are_unique_across_four_processes(tmp_path: Path) -> None:
    go = tmp_path / "go"
    outs = [tmp_path / f"ids{n}.txt" for n in range(4)]
    procs = [
        subprocess.Popen([sys.executable, "-c", GENERATOR, str(out), str(go), "20000"])
        for out in outs
    ]
    go.touch()  # all four start generating at about the same moment
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    lists = [out.read_text().split("\n") for out in outs]
    for ids in lists:
        assert len(ids) == 20_000
        assert all(len(i) == 26 and ":" not in i for i in ids)
        assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    everything = {i for ids in lists for i in ids}
    assert len(everything) == 80_000


FORKER = textwrap.dedent(
    """
    import json, os, time
    import agentctl.model.ids
    from agentctl.model.ids import new_id
    # Freeze the clock: only same-millisecond trials can collide, and on a loaded machine a
    # fork rarely fits in one real millisecond (5000 trials then found none, or hit the timeout).
    FROZEN_NS = time.time_ns()
    agentctl.model.ids.time = type("FrozenTime", (), {"time_ns": staticmethod(lambda: FROZEN_NS)})
    same_ms = collisions = trials = 0
    while same_ms < 5 and trials < 50:
        trials += 1
        r, w = os.pipe()
        before = new_id()
        pid = os.fork()
        if pid == 0:
            os.write(w, new_id().encode())
            os._exit(0)
        parent = new_id()
        os.close(w)
        child = os.read(r, 100).decode()
        os.close(r)
        os.waitpid(pid, 0)
        if before[:10] == parent[:10] == child[:10]:
            same_ms += 1
            collisions += parent == child
    print(json.dumps({"same_ms": same_ms, "collisions": collisions}))
    """
)


def test_forked_processes_never_repeat_the_parents_ids() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORKER], capture_output=True, text=True, timeout=60, check=True
    )
    counts = json.loads(result.stdout)
    assert counts["same_ms"] > 0, counts  # else the case was never exercised
    assert counts["collisions"] == 0, counts


def test_reply_id_derives_from_the_request_id() -> None:
    request_id = new_id()
    assert reply_id(request_id) == request_id + REPLY_ID_SUFFIX == request_id + "-reply"
    assert validate_message_id(reply_id(request_id))
    assert reply_id(request_id) != request_id
    assert reply_id("abc") != reply_id("abd")


def test_message_reply_uses_the_derived_id_every_time() -> None:
    request = AgentMessage(
        from_agent="user", to_agent="echo", content={"q": 1}, priority=Priority.HIGH
    )
    first = request.reply({"a": 1})
    second = request.reply({"a": 2})
    assert first.id == second.id == reply_id(request.id)
    assert first.file_name == second.file_name == f"0-{request.id}-reply.json"
    assert first.in_reply_to == request.id
    assert first.thread_id == request.thread_id == request.id
    assert (first.from_agent, first.to_agent) == ("echo", "user")
    assert first.kind is MessageKind.RESULT
    assert first.priority is Priority.HIGH


# -- reply ids, for any request id (issue 20) ---------------------------------------------------

ANY_IDS = st.from_regex(MESSAGE_ID_PATTERN, fullmatch=True)
REQUEUES = st.integers(min_value=0, max_value=10_000)


@settings(max_examples=150, deadline=None)
@given(a=ANY_IDS, n=REQUEUES, b=ANY_IDS, m=REQUEUES)
def test_reply_ids_are_derived_and_distinct_for_distinct_requests_or_lives(
    a: str, n: int, b: str, m: int
) -> None:
    """One reply per request and per life (requeue); never the id of another's reply."""
    assert reply_id(a, n) == reply_id(a, n)
    assert reply_id(a, n).startswith(a + REPLY_ID_SUFFIX)
    assert reply_id(a, n) != a
    assert (reply_id(a, n) == reply_id(b, m)) == (a == b and n == m)
    assert reply_id(a, n).endswith(REPLY_ID_SUFFIX if n == 0 else f"{REPLY_ID_SUFFIX}.r{n}")


@settings(max_examples=150, deadline=None)
@given(request_id=ANY_IDS, requeued=st.integers(min_value=0, max_value=99))
@example(request_id="a" * 122, requeued=0)  # its reply id is 128 characters: the most there is
@example(request_id="a" * 123, requeued=0)
@example(request_id="a" * 119, requeued=1)  # `-reply.r1`
def test_a_task_is_accepted_exactly_when_its_reply_id_is_an_id(
    request_id: str, requeued: int
) -> None:
    headers = {"requeued": str(requeued)} if requeued else {}
    answerable = MESSAGE_ID_RE.fullmatch(reply_id(request_id, requeued)) is not None
    fields = {"id": request_id, "from_agent": "user", "to_agent": "echo", "headers": headers}
    if not answerable:
        with pytest.raises(ValueError, match="too long to be answered"):
            AgentMessage(**fields)  # type: ignore[arg-type]
        return
    request = AgentMessage(**fields)  # type: ignore[arg-type]
    reply = request.reply("done")
    assert reply.id == reply_id(request_id, requeued) and reply.in_reply_to == request_id
    # An event (never answered) needs no room for a reply id.
    assert AgentMessage(**fields, kind=MessageKind.EVENT).id == request_id  # type: ignore[arg-type]
