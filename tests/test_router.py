"""WorkspaceRouter, the seed's API: atomic sends, ordered receives, nothing lost or doubled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentctl.flow.router import WorkspaceRouter, user_message
from agentctl.model.errors import BadMessageError, DeliveryError, InvalidNameError, WorkspaceError
from agentctl.model.message import AgentMessage, parse_message
from tests.conftest import wait_until


def seed_message(to: str = "reviewer", content: object = "hi", priority: str = "normal"):
    return AgentMessage(
        from_agent="coordinator", to_agent=to, content=content, priority=priority, timestamp=""
    )


def ls(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_send_returns_the_path_in_new_and_copies_to_the_outbox(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    m = seed_message()
    path = router.send(m)
    inbox = tmp_path / "workspace" / "reviewer" / "inbox"
    assert path == inbox / "new" / m.file_name
    assert parse_message(path.read_bytes()) == m
    outbox_copy = tmp_path / "workspace" / "coordinator" / "outbox" / m.file_name
    assert os.path.samefile(path, outbox_copy)
    assert ls(inbox / "tmp") == []
    # The sender got an inbox too, so it can be answered.
    assert (tmp_path / "workspace" / "coordinator" / "inbox" / "new").is_dir()


def test_send_with_fsync_default(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace")
    path = router.send(seed_message())
    assert path.exists()


def test_sending_the_same_message_twice_is_refused(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    m = seed_message(content="first")
    path = router.send(m)
    before = path.read_bytes()
    with pytest.raises(DeliveryError):
        router.send(m.model_copy(update={"content": "second"}))
    assert path.read_bytes() == before
    assert len(ls(path.parent)) == 1


def test_receive_returns_priority_order_and_moves_to_done(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    sent = [
        seed_message(content="low-1", priority="low"),
        seed_message(content="normal-1"),
        seed_message(content="high-1", priority="high"),
        seed_message(content="normal-2"),
        seed_message(content="high-2", priority="high"),
        seed_message(content="low-2", priority="low"),
    ]
    for m in sent:
        router.send(m)

    received = router.receive("reviewer")

    assert [m.content for m in received] == [
        "high-1", "high-2", "normal-1", "normal-2", "low-1", "low-2",
    ]  # fmt: skip
    inbox = tmp_path / "workspace" / "reviewer" / "inbox"
    assert ls(inbox / "new") == [] and ls(inbox / "processing") == []
    assert ls(inbox / "done") == sorted(m.file_name for m in sent)  # kept, not deleted
    assert router.receive("reviewer") == []


def test_receive_of_an_unknown_agent_is_empty(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    assert router.receive("nobody") == []


def test_receive_buries_a_bad_file_and_returns_the_good_ones(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    good = seed_message()
    router.send(good)
    inbox = tmp_path / "workspace" / "reviewer" / "inbox"
    (inbox / "new" / "0-broken.json").write_bytes(b'{"from_agent": "coordinator"')

    assert router.receive("reviewer") == [good]

    assert ls(inbox / "dead") == [".errors", "0-broken.json"]
    error = json.loads((inbox / "dead" / ".errors" / "0-broken.json").read_text())
    assert error["error"].startswith("0-broken.json: invalid JSON")
    assert error["error_kind"] == "bad_message"


def test_receive_respects_max_message_bytes(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False, max_message_bytes=1024)
    big = seed_message(content="x" * 2000)
    with pytest.raises(BadMessageError, match="over the limit of 1024"):
        router.send(big)  # its reader would refuse it, so the sender is told
    inbox = tmp_path / "workspace" / "reviewer" / "inbox"
    assert ls(inbox / "new") == [] and ls(inbox / "tmp") == []
    # One written by another program is refused by the reader, into dead/.
    (inbox / "new" / big.file_name).write_bytes(big.to_json_bytes())
    assert router.receive("reviewer") == []
    error = json.loads((inbox / "dead" / ".errors" / big.file_name).read_text())
    assert "over the limit of 1024" in error["error"]


def test_router_checks_names_even_if_the_message_did_not(tmp_path: Path) -> None:
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    sneaky = seed_message().model_copy(update={"to_agent": "../escape"})  # no validation
    with pytest.raises(InvalidNameError):
        router.send(sneaky)
    with pytest.raises(InvalidNameError):
        router.receive("../escape")
    assert not (tmp_path / "escape").exists()
    assert ls(tmp_path) == ["workspace"]


def test_router_refuses_a_symlinked_agent_dir(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "reviewer")
    router = WorkspaceRouter(root, fsync=False)
    with pytest.raises(WorkspaceError, match="is a symlink"):
        router.send(seed_message())
    with pytest.raises(WorkspaceError, match="is a symlink"):
        router.receive("reviewer")
    assert ls(elsewhere) == []


def test_user_message_comes_from_user(tmp_path: Path) -> None:
    m = user_message("echo", {"q": 1}, priority="high", keywords=["a"])
    assert (m.from_agent, m.to_agent, m.content, m.keywords) == ("user", "echo", {"q": 1}, ["a"])
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    router.send(m)
    assert router.receive("echo") == [m]


# -- concurrency ----------------------------------------------------------------------------

SENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agentctl.model.message import AgentMessage
    from agentctl.flow.router import WorkspaceRouter
    base, name, count, go, out = sys.argv[1:6]
    router = WorkspaceRouter(base, fsync=False)
    while not Path(go).exists():
        time.sleep(0.001)
    ids = []
    for i in range(int(count)):
        # Large enough that a torn read would be likely if files were written in place.
        m = AgentMessage(from_agent=name, to_agent="sink", content={"i": i, "pad": "x" * 3000})
        router.send(m)
        ids.append(m.id)
    Path(out).write_text("\\n".join(ids))
    """
)

RECEIVER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from agentctl.flow.router import WorkspaceRouter
    base, total, ready, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    router = WorkspaceRouter(base, fsync=False)
    router.receive("sink")
    Path(ready).touch()
    got, batches = [], 0
    deadline = time.monotonic() + 90  # a safety net only; the test checks the counts
    while len(got) < total and time.monotonic() < deadline:
        batch = router.receive("sink")
        if batch:
            batches += 1
            for m in batch:
                assert m.content["pad"] == "x" * 3000
                got.append([m.id, m.from_agent, m.content["i"]])
    Path(out).write_text(json.dumps({"got": got, "batches": batches}))
    """
)


def test_concurrent_senders_and_a_receiver_lose_and_double_nothing(tmp_path: Path) -> None:
    base = tmp_path / "workspace"
    senders, per_sender = 4, 1000
    total = senders * per_sender
    go, ready, received = tmp_path / "go", tmp_path / "ready", tmp_path / "received.json"
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(base), str(total), str(ready), str(received)],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(ready.exists, timeout_s=30)
    outs = [tmp_path / f"sent{n}.txt" for n in range(senders)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, str(base), f"s{n}", str(per_sender), str(go), str(out)]
        )
        for n, out in enumerate(outs)
    ]
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    _, err = receiver.communicate(timeout=120)
    assert receiver.returncode == 0, err  # no BadMessageError, no torn content

    sent_ids = [i for out in outs for i in out.read_text().split("\n")]
    assert len(sent_ids) == len(set(sent_ids)) == total
    result = json.loads(received.read_text())
    got = result["got"]
    got_ids = [g[0] for g in got]
    assert len(got_ids) == len(set(got_ids)) == total  # each exactly once
    assert set(got_ids) == set(sent_ids)
    for n in range(senders):
        mine = [i for _, sender, i in got if sender == f"s{n}"]
        assert sorted(mine) == list(range(per_sender))
    assert result["batches"] >= 2  # the receiver really ran while senders were sending

    inbox = base / "sink" / "inbox"
    assert ls(inbox / "dead") == [".errors"]  # no partial file was ever read
    assert ls(inbox / "new") == [] and ls(inbox / "processing") == [] and ls(inbox / "tmp") == []
    assert len(ls(inbox / "done")) == total
    for n in range(senders):
        assert len(ls(base / f"s{n}" / "outbox")) == per_sender


REPLY_WAITER = """\
import sys
from agentctl.model.errors import AgentctlError
from agentctl.model.message import parse_message
from agentctl.flow.router import WorkspaceRouter

request = parse_message(open(sys.argv[2], "rb").read())
router = WorkspaceRouter(sys.argv[1], fsync=False)
print("waiting", flush=True)
try:
    reply = router.wait_for_reply(request, timeout_s=5)
except AgentctlError as exc:
    print(f"error: {exc}", flush=True)
    sys.exit(1)
print(f"got {reply.id}", flush=True)
"""


def test_two_waiters_on_one_reply_the_loser_says_another_took_it(tmp_path: Path) -> None:
    # Given two processes waiting, as `send --wait` does, for the reply to the same request
    workspace = tmp_path / "workspace"
    router = WorkspaceRouter(workspace, fsync=False)
    request = user_message("echo", "hi")
    path = router.send(request)
    receivers = [
        subprocess.Popen([sys.executable, "-c", REPLY_WAITER, str(workspace), str(path)],
                         stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for receiver in receivers:
        assert receiver.stdout is not None and receiver.stdout.readline() == "waiting\n"

    # When the reply arrives
    router.send(request.reply("hello"))

    # Then one gets it, and the other says at once who has it, and where it is now
    try:
        outputs = sorted(receiver.communicate(timeout=30)[0] for receiver in receivers)
    finally:
        for receiver in receivers:
            receiver.kill()
    codes = sorted(receiver.returncode for receiver in receivers)
    assert codes == [0, 1]
    done = workspace / "user" / "inbox" / "done" / request.reply("hello").file_name
    assert outputs[1] == f"got {request.reply('hello').id}\n"
    assert outputs[0] == (
        f"error: the reply to {request.id} arrived and was taken by another receiver: {done}\n"
    )
    assert done.exists()
