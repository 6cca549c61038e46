"""Mailbox: Maildir moves that never lose, duplicate or overwrite a message."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agentctl.backends.file.workspace import Workspace
from agentctl.model.errors import DeliveryError, WorkspaceError
from agentctl.model.message import AgentMessage, parse_message
from agentctl.protocol.mailbox import Depth, Mailbox


def make(tmp_path: Path, *, max_message_bytes: int = 1 << 20) -> Mailbox:
    return Mailbox(
        tmp_path / "agent" / "inbox", fsync=False, max_message_bytes=max_message_bytes
    ).ensure()


def msg(**fields: object) -> AgentMessage:
    return AgentMessage(**{"from_agent": "user", "to_agent": "agent", **fields})  # type: ignore[arg-type]


def ls(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- layout ---------------------------------------------------------------------------------


def test_ensure_creates_the_maildir_with_private_modes(tmp_path: Path) -> None:
    mb = make(tmp_path)
    assert ls(mb.path) == ["dead", "done", "new", "processing", "tmp"]
    assert ls(mb.dead) == [".errors"]
    for d in (mb.path, mb.tmp, mb.new, mb.processing, mb.done, mb.dead, mb.errors):
        assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700
    mb.ensure()  # idempotent
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    path = mb.deliver(msg(), copies=(outbox / "copy.json",))
    assert path is not None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(outbox / "copy.json").st_mode) == 0o600
    mb.claim(path.name)
    mb.bury(path.name, {"error": "x"})
    for file in (mb.dead / path.name, mb.errors / path.name):
        assert stat.S_IMODE(os.stat(file).st_mode) == 0o600


def test_ensure_refuses_new_replaced_by_a_symlink(tmp_path: Path) -> None:
    mb = make(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rmdir(mb.new)
    os.symlink(elsewhere, mb.new)
    with pytest.raises(WorkspaceError, match=rf"^{mb.new}: is a symlink"):
        mb.ensure()
    assert ls(elsewhere) == []


def test_ensure_refuses_a_symlinked_inbox(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    Mailbox(elsewhere, fsync=False, max_message_bytes=4096).ensure()
    (tmp_path / "agent").mkdir()
    os.symlink(elsewhere, tmp_path / "agent" / "inbox")
    mb = Mailbox(tmp_path / "agent" / "inbox", fsync=False, max_message_bytes=4096)
    with pytest.raises(WorkspaceError, match="is a symlink"):
        mb.ensure()


def test_ensure_refuses_a_file_where_a_directory_belongs(tmp_path: Path) -> None:
    mb = make(tmp_path)
    os.rmdir(mb.errors)
    os.rmdir(mb.dead)
    mb.dead.write_text("not a dir")
    with pytest.raises(WorkspaceError, match=rf"^{mb.dead}: exists and is not a directory"):
        mb.ensure()


def test_workspace_refuses_an_agent_dir_that_is_a_symlink(tmp_path: Path) -> None:
    ws_root = tmp_path / "workspace"
    ws_root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, ws_root / "echo")
    ws = Workspace(ws_root, fsync=False)
    with pytest.raises(WorkspaceError, match=rf"^{ws_root / 'echo'}: is a symlink"):
        ws.ensure_agent("echo")
    assert ls(elsewhere) == []


# -- delivering -----------------------------------------------------------------------------


def test_deliver_publishes_complete_file_and_leaves_tmp_empty(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg(content={"a": 1})
    path = mb.deliver(m)
    assert path == mb.new / m.file_name
    assert parse_message(path.read_bytes()) == m
    assert ls(mb.tmp) == []


def test_deliver_never_overwrites(tmp_path: Path) -> None:
    mb = make(tmp_path)
    first = msg(id="same", content="first")
    path = mb.deliver(first)
    original = path.read_bytes()
    second = first.model_copy(update={"content": "second"})
    with pytest.raises(DeliveryError, match="a message with id same is waiting"):
        mb.deliver(second)
    assert path.read_bytes() == original
    assert ls(mb.new) == [first.file_name]
    assert ls(mb.tmp) == []


def test_deliver_makes_the_outbox_copy_as_a_hard_link(tmp_path: Path) -> None:
    mb = make(tmp_path)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    m = msg()
    path = mb.deliver(m, copies=(outbox / m.file_name,))
    assert path is not None
    assert os.path.samefile(path, outbox / m.file_name)
    # The copy survives the message moving on.
    mb.claim(m.file_name)
    mb.ack(m.file_name)
    assert parse_message((outbox / m.file_name).read_bytes()) == m


@pytest.mark.parametrize("where", ["new", "processing", "done", "dead"])
def test_dedupe_skips_a_message_already_anywhere_in_the_inbox(tmp_path: Path, where: str) -> None:
    mb = make(tmp_path)
    m = msg(id="req-reply", content="first")
    mb.deliver(m)
    if where != "new":
        mb.claim(m.file_name)
    if where == "done":
        mb.ack(m.file_name)
    if where == "dead":
        mb.bury(m.file_name, {"error": "x"})
    assert mb.locate(m.file_name) == where
    before = (mb.path / where / m.file_name).read_bytes()

    again = m.model_copy(update={"content": "second"})
    assert mb.deliver(again, dedupe=True) is None

    assert (mb.path / where / m.file_name).read_bytes() == before
    total = sum(len(ls(mb.path / d)) for d in ("new", "processing", "done"))
    total += len(mb.dead_names())
    assert total == 1
    assert ls(mb.tmp) == []


def test_dedupe_delivers_a_new_message(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg()
    assert mb.deliver(m, dedupe=True) == mb.new / m.file_name


# -- consuming ------------------------------------------------------------------------------


def test_list_new_sorts_and_skips_dot_files_and_directories(tmp_path: Path) -> None:
    mb = make(tmp_path)
    low, normal, high = msg(priority="low"), msg(), msg(priority="high")
    for m in (low, normal, high):
        mb.deliver(m)
    (mb.new / ".hidden").write_text("x")
    (mb.new / "subdir").mkdir()
    assert mb.list_new() == [high.file_name, normal.file_name, low.file_name]


def test_claim_moves_to_processing_once(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg()
    mb.deliver(m)
    path = mb.claim(m.file_name)
    assert path == mb.processing / m.file_name
    assert ls(mb.new) == [] and ls(mb.processing) == [m.file_name]
    assert mb.claim(m.file_name) is None
    assert mb.claim("1-never-existed.json") is None
    assert mb.read(path) == m.to_json_bytes()


def test_claim_has_exactly_one_winner_among_threads(tmp_path: Path) -> None:
    mb = make(tmp_path)
    names = [mb.deliver(msg(content=i)).name for i in range(300)]  # type: ignore[union-attr]
    wins: list[list[str]] = [[] for _ in range(12)]
    barrier = threading.Barrier(12)

    def claimer(out: list[str]) -> None:
        barrier.wait()
        for name in names:
            if mb.claim(name) is not None:
                out.append(name)

    threads = [threading.Thread(target=claimer, args=(out,)) for out in wins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [n for out in wins for n in out]
    assert sorted(claimed) == sorted(names)  # each exactly once
    assert ls(mb.new) == [] and ls(mb.processing) == sorted(names)


CLAIMER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from agentctl.protocol.mailbox import Mailbox
    mb = Mailbox(Path(sys.argv[1]), fsync=False, max_message_bytes=1 << 20)
    go, out = Path(sys.argv[2]), Path(sys.argv[3])
    Path(str(out) + ".ready").touch()
    while not go.exists():
        time.sleep(0.001)
    won = []
    while True:
        names = mb.list_new()
        if not names:
            break
        for name in names:
            path = mb.claim(name)
            if path is not None:
                mb.read(path)
                mb.ack(name)
                won.append(name)
    out.write_text(json.dumps(won))
    """
)


def race_claimers(base: Path, n_messages: int, n_procs: int) -> tuple[list[str], list[str]]:
    """Fill a shared new/, let n_procs processes claim+ack from it at once.

    Returns (names delivered, names each process says it won, concatenated)."""
    from tests.conftest import wait_until

    mb = Mailbox(base / "inbox", fsync=False, max_message_bytes=1 << 20).ensure()
    names = [mb.deliver(msg(content=i)).name for i in range(n_messages)]  # type: ignore[union-attr]
    go = base / "go"
    outs = [base / f"won{n}.json" for n in range(n_procs)]
    procs = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, str(mb.path), str(go), str(out)])
        for out in outs
    ]
    wait_until(lambda: all(Path(str(o) + ".ready").exists() for o in outs), timeout_s=30)
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    won = [n for out in outs for n in json.loads(out.read_text())]
    # Whatever else happens, nothing is lost and nothing is left behind.
    assert set(won) == set(names)
    assert ls(mb.new) == [] and ls(mb.processing) == []
    assert ls(mb.done) == sorted(names)
    return names, won


def test_claim_among_processes_loses_nothing(tmp_path: Path) -> None:
    names, won = race_claimers(tmp_path, 2000, 4)
    assert len(set(won)) == 2000


def test_claim_has_exactly_one_winner_among_processes(tmp_path: Path) -> None:
    # The race is rare per message; run rounds until it shows, within a time budget (not a
    # round count: 10 rounds took > 120 s on a loaded 2-CPU box and hit pytest-timeout).
    budget = time.monotonic() + 30
    for round_ in range(10):
        if round_ and time.monotonic() > budget:
            break
        names, won = race_claimers(tmp_path / f"round{round_}", 2000, 4)
        duplicated = sorted({n for n in won if won.count(n) > 1})
        assert duplicated == [], f"round {round_}: claimed twice: {duplicated}"
        assert len(won) == len(names)


def test_a_claimer_whose_link_lands_after_the_winner_acked_loses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deterministic form of the race above: link() resolved new/x, then paused while another
    # claimer claimed and acked x; the paused link then creates processing/x.
    import agentctl.protocol.mailbox as mailbox_module

    mb = make(tmp_path)
    m = msg()
    mb.deliver(m)
    real_link = mailbox_module.link_noreplace

    def paused_link(src: Path, dst: Path) -> bool:
        monkeypatch.setattr(mailbox_module, "link_noreplace", real_link)
        other = Mailbox(mb.path, fsync=False, max_message_bytes=1 << 20)
        assert other.claim(m.file_name) is not None
        other.ack(m.file_name)
        os.link(mb.done / m.file_name, dst)  # the late link of the same inode
        return True

    monkeypatch.setattr(mailbox_module, "link_noreplace", paused_link)
    assert mb.claim(m.file_name) is None
    assert ls(mb.new) == [] and ls(mb.processing) == [] and ls(mb.done) == [m.file_name]


def test_ack_moves_to_done_and_keeps_it(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg()
    mb.deliver(m)
    mb.claim(m.file_name)
    mb.ack(m.file_name)
    assert ls(mb.processing) == [] and ls(mb.done) == [m.file_name]
    assert parse_message((mb.done / m.file_name).read_bytes()) == m
    mb.ack(m.file_name)  # a second ack (crash-retry) is harmless
    assert ls(mb.done) == [m.file_name]


def test_requeue_puts_the_new_attempt_back_in_new(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg(content="x")
    mb.deliver(m)
    mb.claim(m.file_name)
    mb.requeue(m.file_name, m.model_copy(update={"attempt": 1}))
    assert ls(mb.processing) == [] and ls(mb.new) == [m.file_name]
    back = parse_message((mb.new / m.file_name).read_bytes())
    assert back.attempt == 1 and back.id == m.id and back.content == "x"
    assert ls(mb.tmp) == []


def test_release_puts_it_back_unchanged(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg()
    mb.deliver(m)
    mb.claim(m.file_name)
    mb.release(m.file_name)
    assert ls(mb.processing) == [] and mb.list_new() == [m.file_name]
    assert parse_message((mb.new / m.file_name).read_bytes()) == m


def test_bury_a_bad_file_keeps_its_bytes_and_writes_the_reason(tmp_path: Path) -> None:
    mb = make(tmp_path)
    (mb.new / "garbage.json").write_bytes(b"\xff not json")
    mb.claim("garbage.json")
    mb.bury("garbage.json", {"error": "garbage.json: not UTF-8", "error_kind": "bad_message"})
    assert ls(mb.processing) == []
    assert ls(mb.dead) == [".errors", "garbage.json"] and ls(mb.errors) == ["garbage.json"]
    assert (mb.dead / "garbage.json").read_bytes() == b"\xff not json"
    error = json.loads((mb.errors / "garbage.json").read_text())
    assert error == {"error": "garbage.json: not UTF-8", "error_kind": "bad_message"}
    assert mb.read_error("garbage.json") == error
    assert mb.dead_names() == ["garbage.json"]


def test_bury_with_the_final_message_rewrites_it(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg(content="x")
    mb.deliver(m)
    mb.claim(m.file_name)
    final = m.model_copy(update={"attempt": 3})
    mb.bury(m.file_name, {"error": "boom"}, final)
    assert ls(mb.dead) == [".errors", m.file_name] and ls(mb.errors) == [m.file_name]
    assert mb.read_error(m.file_name) == {"error": "boom"}
    assert parse_message((mb.dead / m.file_name).read_bytes()).attempt == 3
    assert ls(mb.processing) == [] and ls(mb.tmp) == []


def test_bury_of_a_name_without_json_suffix(tmp_path: Path) -> None:
    mb = make(tmp_path)
    (mb.new / "README").write_text("hello")
    mb.claim("README")
    mb.bury("README", {"error": "nope"})
    assert ls(mb.dead) == [".errors", "README"] and ls(mb.errors) == ["README"]


def test_a_reason_never_replaces_a_dead_letter_whose_id_ends_in_error(tmp_path: Path) -> None:
    # `1-T1.error.json` is T1.error's file; it was also the name of T1's reason.
    mb = make(tmp_path)
    first, second = msg(id="T1.error", content="first"), msg(id="T1", content="second")
    for m in (first, second):
        mb.deliver(m)
        mb.claim(m.file_name)
        mb.bury(m.file_name, {"error": f"{m.id} failed"}, m)

    assert parse_message((mb.dead / first.file_name).read_bytes()) == first
    assert parse_message((mb.dead / second.file_name).read_bytes()) == second
    assert mb.dead_names() == sorted([first.file_name, second.file_name])
    assert mb.depth().dead == 2
    for m in (first, second):
        assert mb.read_error(m.file_name) == {"error": f"{m.id} failed"}
        assert mb.locate(m.file_name) == "dead"


def old_layout(mb: Mailbox, *messages: AgentMessage) -> None:
    """Dead letters as agentctl wrote them before dead/.errors/: `<stem>.error.json` beside."""
    for m in messages:
        (mb.dead / m.file_name).write_bytes(m.to_json_bytes())
        stem = m.file_name.removesuffix(".json")
        record = {"message_id": m.id, "error": f"{m.id} failed", "error_kind": "error",
                  "attempts": 1, "dead_at": "2025-01-01T00:00:00Z"}  # fmt: skip
        (mb.dead / f"{stem}.error.json").write_text(json.dumps(record, indent=2))


def test_old_reasons_beside_their_letters_are_told_apart_by_content(tmp_path: Path) -> None:
    mb = make(tmp_path)
    a, a_error = msg(id="A"), msg(id="A.error")  # a_error's file is named like a's reason
    old_layout(mb, a_error)
    (mb.dead / a.file_name).write_bytes(a.to_json_bytes())  # `A` died without a reason

    assert mb.dead_names() == sorted([a.file_name, a_error.file_name])
    assert mb.depth().dead == 2
    assert mb.read_error(a.file_name) is None  # A.error's file is a message, not A's reason
    assert mb.read_error(a_error.file_name)["error"] == "A.error failed"  # type: ignore[index]

    # Requeueing `A` leaves A.error alone; requeueing A.error takes its old reason along.
    mb.revive(a.file_name, a)
    assert mb.dead_names() == [a_error.file_name]
    mb.revive(a_error.file_name, a_error)
    assert ls(mb.dead) == [".errors"]
    assert mb.list_new() == sorted([a.file_name, a_error.file_name])


def test_an_old_reason_is_not_taken_for_a_message_of_the_same_name(tmp_path: Path) -> None:
    # Given T1 dead with its reason `1-T1.error.json` beside it (the old layout)
    mb = make(tmp_path)
    t1, t1_error = msg(id="T1"), msg(id="T1.error")
    old_layout(mb, t1)
    assert mb.dead_names() == [t1.file_name]

    # Then T1.error is delivered even with dedupe, and recovering its claim keeps it
    assert mb.locate(t1_error.file_name) is None
    assert mb.deliver(t1_error, dedupe=True) is not None
    mb.claim(t1_error.file_name)
    assert mb.recover() == [t1_error.file_name]
    assert ls(mb.processing) == [t1_error.file_name]
    assert mb.read_error(t1.file_name)["error"] == "T1 failed"  # type: ignore[index]


def test_read_is_size_limited(tmp_path: Path) -> None:
    from agentctl.model.errors import BadMessageError

    mb = make(tmp_path, max_message_bytes=1024)
    m = msg(content="x" * 2000)
    mb.deliver(m)
    path = mb.claim(m.file_name)
    assert path is not None
    size = path.stat().st_size
    with pytest.raises(BadMessageError, match=f"is {size} bytes, over the limit of 1024"):
        mb.read(path)


def test_read_refuses_a_symlink_and_never_touches_its_target(tmp_path: Path) -> None:
    from agentctl.model.errors import BadMessageError

    mb = make(tmp_path)
    secret = tmp_path / "secret.json"
    content = msg().to_json_bytes()
    secret.write_bytes(content)
    os.symlink(secret, mb.new / "1-link.json")
    path = mb.claim("1-link.json")
    assert path is not None and path.is_symlink()
    with pytest.raises(BadMessageError, match="symlink"):
        mb.read(path)
    mb.bury("1-link.json", {"error": "symlink"})
    assert (mb.dead / "1-link.json").is_symlink()
    assert secret.read_bytes() == content
    assert not secret.is_symlink() and ls(tmp_path) == ["agent", "secret.json"]


# -- recovery -------------------------------------------------------------------------------


@pytest.mark.parametrize("other", ["new", "done", "dead"])
def test_recover_settles_a_move_that_crashed_between_link_and_unlink(
    tmp_path: Path, other: str
) -> None:
    mb = make(tmp_path)
    m = msg()
    mb.deliver(m)
    if other != "new":
        mb.claim(m.file_name)
        os.link(mb.processing / m.file_name, mb.path / other / m.file_name)
    else:
        os.link(mb.new / m.file_name, mb.processing / m.file_name)
    assert os.path.samefile(mb.processing / m.file_name, mb.path / other / m.file_name)

    assert mb.recover() == []

    assert ls(mb.processing) == []
    assert [n for n in ls(mb.path / other) if n != ".errors"] == [m.file_name]
    assert parse_message((mb.path / other / m.file_name).read_bytes()) == m


def test_recover_reports_files_only_in_processing_as_interrupted(tmp_path: Path) -> None:
    mb = make(tmp_path)
    a, b, c = msg(priority="low"), msg(priority="high"), msg()
    for m in (a, b, c):
        mb.deliver(m)
        mb.claim(m.file_name)
    leftover = msg()
    mb.deliver(leftover)
    mb.claim(leftover.file_name)
    os.link(mb.processing / leftover.file_name, mb.done / leftover.file_name)

    assert mb.recover() == [b.file_name, c.file_name, a.file_name]

    # The interrupted ones stay in processing/ for the caller to count and settle.
    assert ls(mb.processing) == sorted([a.file_name, b.file_name, c.file_name])


# -- tmp/ and depth -------------------------------------------------------------------------


def test_clean_tmp_removes_only_old_files(tmp_path: Path) -> None:
    mb = make(tmp_path)
    old, fresh = mb.tmp / "old.tmp", mb.tmp / "fresh.tmp"
    old.write_text("dead writer")
    fresh.write_text("live writer")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    assert mb.clean_tmp(3600) == 1

    assert ls(mb.tmp) == ["fresh.tmp"]
    assert mb.clean_tmp(3600) == 0


def test_clean_tmp_survives_an_old_directory_in_tmp(tmp_path: Path) -> None:
    mb = make(tmp_path)
    (mb.tmp / "stray").mkdir()
    os.utime(mb.tmp / "stray", (0, 0))
    # An old directory is not a writer's leftover: neither removed nor counted, and no error.
    assert mb.clean_tmp(3600) == 0
    assert (mb.tmp / "stray").is_dir()


SENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agentctl.protocol.mailbox import Mailbox
    from agentctl.model.message import AgentMessage
    mb = Mailbox(Path(sys.argv[1]), fsync=False, max_message_bytes=1 << 20)
    for i in range(int(sys.argv[2])):
        mb.deliver(AgentMessage(from_agent="user", to_agent="agent", content=i))
    """
)


def test_clean_tmp_while_senders_deliver(tmp_path: Path) -> None:
    mb = make(tmp_path)
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(mb.path), "4000"])
    errors = []
    try:
        while sender.poll() is None:
            try:
                mb.clean_tmp(3600)
            except OSError as exc:
                errors.append(exc)
    finally:
        sender.wait(timeout=60)
    assert sender.returncode == 0
    assert len(ls(mb.new)) == 4000
    assert errors == []


def test_a_directory_in_new_is_neither_listed_nor_counted(tmp_path: Path) -> None:
    mb = make(tmp_path)
    (mb.new / "1-x.json").mkdir()  # no worker claims it: it must not wait forever in status
    assert mb.list_new() == [] and mb.depth().new == 0


def test_depth_counts_new_processing_and_dead(tmp_path: Path) -> None:
    mb = make(tmp_path)
    assert mb.depth() == Depth(new=0, processing=0, dead=0)
    ms = [msg(content=i) for i in range(5)]
    for m in ms:
        mb.deliver(m)
    mb.claim(ms[0].file_name)
    mb.claim(ms[1].file_name)
    mb.claim(ms[2].file_name)
    mb.ack(ms[2].file_name)
    mb.bury(ms[1].file_name, {"error": "x"})
    assert mb.depth() == Depth(new=2, processing=1, dead=1)  # error file not counted
    assert mb.dead_names() == [ms[1].file_name]


def test_a_message_at_the_size_limit_survives_its_retry_rewrite(tmp_path: Path, supervised) -> None:
    # Given a message of exactly max_message_bytes for an agent that always fails
    from tests.conftest import wait_until, write_roster

    write_roster(tmp_path, """\
        - name: failing
          exec: [sh, -c, "exit 3"]
          max_attempts: 3
          retry: {backoff_s: 0.05, factor: 1, max_s: 0.05}
    """, max_message_bytes=4096)
    ws = Workspace(tmp_path / "workspace", max_message_bytes=4096)
    message = msg(from_agent="user", to_agent="failing", content="")
    message = message.model_copy(
        update={"content": "x" * (4096 - len(message.to_json_bytes()))}
    )
    assert len(message.to_json_bytes()) == 4096
    ws.deliver(message)
    # When its attempts (each rewrite adds the attempt count and a not_before header) run out
    supervised(tmp_path)
    dead = tmp_path / "workspace" / "failing" / "inbox" / "dead"
    wait_until(lambda: message.file_name in ls(dead), timeout_s=30)
    # Then it is dead as itself, with its id and attempts, and the sender has its escalation
    reason = json.loads((dead / ".errors" / message.file_name).read_text())
    assert reason["message_id"] == message.id and reason["error_kind"] != "bad_message"
    assert reason["attempts"] == 3
    replies = tmp_path / "workspace" / "user" / "inbox" / "new"
    wait_until(lambda: ls(replies) == [f"1-{message.id}-reply.json"])


# -- durability: what `durability: fsync` promises (issue 20) ---------------------------------


def test_deliver_with_fsync_makes_the_link_in_new_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new/ directory is fsynced after the link that publishes the message.

    Observed, not faked: every real fsync still runs; the spy notes what each descriptor is
    and whether the message was already in new/ when its directory was synced.
    """
    mb = Mailbox(tmp_path / "agent" / "inbox", fsync=True, max_message_bytes=1 << 20).ensure()
    m = msg(content="keep me")
    real_fsync = os.fsync
    synced: list[tuple[str, bool]] = []

    def spy(fd: int) -> None:
        real_fsync(fd)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), (mb.new / m.file_name).exists()))

    monkeypatch.setattr(os, "fsync", spy)
    mb.deliver(m)
    monkeypatch.undo()

    # The message's own bytes were synced (in tmp/), and new/ after the link.
    assert any(path.startswith(f"{mb.tmp}/") for path, _ in synced), synced
    assert (str(mb.new), True) in synced, synced


def fsync_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of what os.fsync syncs from now on (every real fsync still runs)."""
    real_fsync = os.fsync
    synced: list[str] = []

    def spy(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", spy)
    return synced


def durable(tmp_path: Path) -> Mailbox:
    return Mailbox(tmp_path / "agent" / "inbox", fsync=True, max_message_bytes=1 << 20).ensure()


def test_requeue_with_fsync_syncs_the_rewritten_file_and_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mb = durable(tmp_path)
    m = msg(content="again")
    mb.deliver(m)
    mb.claim(m.file_name)
    synced = fsync_spy(monkeypatch)
    mb.requeue(m.file_name, m.model_copy(update={"attempt": 1}))
    assert any(path.startswith(f"{mb.tmp}/") for path in synced), synced  # the new bytes, in tmp/
    assert synced[-1] == str(mb.new), synced  # then the rename that put them in new/


def test_bury_with_fsync_syncs_the_reason_and_the_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mb = durable(tmp_path)
    m = msg(content="doomed")
    mb.deliver(m)
    mb.claim(m.file_name)
    synced = fsync_spy(monkeypatch)
    mb.bury(m.file_name, {"error": "boom"}, m)
    assert str(mb.errors) in synced, synced  # the reason is durable before the letter moves
    assert synced.index(str(mb.errors)) < synced.index(str(mb.dead)), synced
    assert synced[-1] == str(mb.dead), synced


def test_revive_with_fsync_syncs_new_before_dead_loses_the_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mb = durable(tmp_path)
    m = msg(content="back")
    mb.deliver(m)
    mb.claim(m.file_name)
    mb.bury(m.file_name, {"error": "boom"}, m)
    synced = fsync_spy(monkeypatch)
    mb.revive(m.file_name, m)
    assert synced.index(str(mb.new)) < synced.index(str(mb.dead)), synced
    assert ls(mb.dead) == [".errors"] and ls(mb.errors) == [] and mb.list_new() == [m.file_name]


def test_without_fsync_nothing_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mb = make(tmp_path)  # durability: none (fast); fsync costs most of a delivery
    synced = fsync_spy(monkeypatch)
    a, b = msg(content="a"), msg(content="b")
    mb.deliver(a, copies=(tmp_path / "copy.json",))
    mb.deliver(b)
    for m in (a, b):
        mb.claim(m.file_name)
    mb.requeue(a.file_name, a)
    mb.claim(a.file_name)
    mb.bury(a.file_name, {"error": "x"}, a)
    mb.revive(a.file_name, a)
    mb.bury(b.file_name, {"error": "x"})
    assert synced == []


def test_deliver_with_fsync_syncs_the_outbox_copy_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mb = durable(tmp_path)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    synced = fsync_spy(monkeypatch)
    mb.deliver(msg(), copies=(str(outbox / "copy.json"),))
    assert str(outbox) in synced, synced


def test_read_allows_the_retry_headroom_and_no_more(tmp_path: Path) -> None:
    from agentctl.model.constants import REWRITE_HEADROOM_BYTES
    from agentctl.model.errors import BadMessageError

    mb = make(tmp_path, max_message_bytes=1024)
    within = mb.processing / "within.json"
    within.write_bytes(b"x" * (1024 + REWRITE_HEADROOM_BYTES))
    assert len(mb.read(within)) == 1024 + REWRITE_HEADROOM_BYTES  # a rewrite's headers fit
    over = mb.processing / "over.json"
    over.write_bytes(b"x" * (1024 + REWRITE_HEADROOM_BYTES + 1))
    with pytest.raises(BadMessageError, match="over the limit of 1024"):
        mb.read(over)


def test_recover_finishes_a_revive_that_crashed_after_new_got_the_message(tmp_path: Path) -> None:
    # Given a revive that wrote the message into new/ and died before dropping the dead copy
    mb = make(tmp_path)
    m, other = msg(content="revived"), msg(content="still dead")
    for each in (m, other):
        mb.deliver(each)
        mb.claim(each.file_name)
        mb.bury(each.file_name, {"error": "boom"}, each)
    os.link(mb.dead / m.file_name, mb.new / m.file_name)
    # When the next worker recovers
    assert mb.recover() == []
    # Then the message is waiting once, its dead copy and reason are gone, the other stays dead
    assert mb.list_new() == [m.file_name] and mb.dead_names() == [other.file_name]
    assert ls(mb.errors) == [other.file_name]


def test_recover_drops_the_processing_copy_of_a_letter_already_dead(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg()
    mb.deliver(m)
    mb.claim(m.file_name)
    mb.bury(m.file_name, {"error": "boom"}, m)
    os.link(mb.dead / m.file_name, mb.processing / m.file_name)  # bury crashed before unlink
    assert mb.recover() == []
    assert ls(mb.processing) == [] and mb.dead_names() == [m.file_name]


def test_clean_tmp_counts_every_old_file(tmp_path: Path) -> None:
    mb = make(tmp_path)
    for name in ("a.tmp", "b.tmp", "c.tmp"):
        (mb.tmp / name).write_text("dead writer")
        os.utime(mb.tmp / name, (0, 0))
    assert mb.clean_tmp(3600) == 3 and ls(mb.tmp) == []


def test_clean_tmp_keeps_a_file_exactly_as_old_as_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentctl.protocol.mailbox as mailbox_module

    mb = make(tmp_path)
    (mb.tmp / "edge.tmp").write_text("x")
    os.utime(mb.tmp / "edge.tmp", (1_000_000.0, 1_000_000.0))
    monkeypatch.setattr(mailbox_module.time, "time", lambda: 1_000_000.0 + 3600)
    assert mb.clean_tmp(3600) == 0  # "older than", strictly
    monkeypatch.setattr(mailbox_module.time, "time", lambda: 1_000_000.0 + 3600.5)
    assert mb.clean_tmp(3600) == 1


def test_clean_tmp_goes_on_past_a_file_published_while_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sender links its tmp/ file into new/ and unlinks it between our listing and our stat.
    mb = make(tmp_path)
    for name in ("a.tmp", "b.tmp", "c.tmp"):
        (mb.tmp / name).write_text("x")
        os.utime(mb.tmp / name, (0, 0))
    real_scandir = os.scandir

    class PublishFirst:
        def __init__(self, path: object) -> None:
            self.entries = real_scandir(path)  # type: ignore[call-overload]

        def __enter__(self) -> PublishFirst:
            return self

        def __exit__(self, *exc: object) -> None:
            self.entries.close()

        def __iter__(self):  # type: ignore[no-untyped-def]
            for i, entry in enumerate(self.entries):
                if i == 0:
                    os.unlink(entry.path)
                yield entry

    monkeypatch.setattr(os, "scandir", PublishFirst)
    assert mb.clean_tmp(3600) == 2
    assert ls(mb.tmp) == []


def test_clean_tmp_goes_on_past_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mb = make(tmp_path)
    (mb.tmp / "a-dir").mkdir()
    for name in ("b.tmp", "c.tmp"):
        (mb.tmp / name).write_text("x")
    for name in ("a-dir", "b.tmp", "c.tmp"):
        os.utime(mb.tmp / name, (0, 0))
    real_scandir = os.scandir

    class InNameOrder:  # the directory comes first, whatever order the file system lists
        def __init__(self, path: object) -> None:
            with real_scandir(path) as entries:  # type: ignore[call-overload]
                self.entries = sorted(entries, key=lambda e: e.name)

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(os, "scandir", InNameOrder)
    assert mb.clean_tmp(3600) == 2
    assert ls(mb.tmp) == ["a-dir"]


def test_clean_tmp_removes_old_symlinks_without_following_them(tmp_path: Path) -> None:
    mb = make(tmp_path)
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    os.symlink(target_dir, mb.tmp / "to-dir")
    os.symlink(tmp_path / "missing", mb.tmp / "dangling")
    for name in ("to-dir", "dangling"):
        os.utime(mb.tmp / name, (0, 0), follow_symlinks=False)
    assert mb.clean_tmp(3600) == 2
    assert ls(mb.tmp) == [] and target_dir.is_dir()


def test_a_symlink_to_a_directory_in_new_is_listed_and_refused_when_read(tmp_path: Path) -> None:
    # Unlike a directory, a symlink can be claimed: it is listed, so it ends in dead/, not
    # unseen in new/ forever.
    from agentctl.model.errors import BadMessageError

    mb = make(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", mb.new / "1-link.json")
    assert mb.list_new() == ["1-link.json"] and mb.depth().new == 1
    path = mb.claim("1-link.json")
    assert path is not None
    with pytest.raises(BadMessageError, match="symlink"):
        mb.read(path)


def test_a_reason_with_values_json_cannot_hold_is_written_as_text(tmp_path: Path) -> None:
    mb = make(tmp_path)
    m = msg()
    mb.deliver(m)
    mb.claim(m.file_name)
    mb.bury(m.file_name, {"error": "boom", "where": tmp_path / "x", "kinds": {"a"}})
    reason = mb.read_error(m.file_name)
    assert reason == {"error": "boom", "where": str(tmp_path / "x"), "kinds": "{'a'}"}


def test_an_old_reason_of_a_letter_without_the_json_suffix_is_found(tmp_path: Path) -> None:
    mb = make(tmp_path)
    (mb.dead / "README").write_text("hello")
    (mb.dead / "README.error.json").write_text(json.dumps({"error": "not a message"}))
    assert mb.dead_names() == ["README"]
    assert mb.read_error("README") == {"error": "not a message"}


def test_a_reason_that_is_not_a_json_object_reads_as_none(tmp_path: Path) -> None:
    mb = make(tmp_path)
    for i, text in enumerate(['["error", "boom"]', '"boom"', "{not json", "null"]):
        m = msg(content=i)
        (mb.dead / m.file_name).write_bytes(m.to_json_bytes())
        (mb.errors / m.file_name).write_text(text)
        assert mb.read_error(m.file_name) is None, text
        assert m.file_name in mb.dead_names()


def test_an_old_reason_needs_an_error_field_and_no_from_agent(tmp_path: Path) -> None:
    # Only an object with `error` and without `from_agent` is a reason written beside its letter.
    mb = make(tmp_path)
    cases = {
        "1-A.error.json": ({"error": "A failed"}, True),
        "1-B.error.json": ({"message_id": "B", "error_kind": "error"}, False),
        "1-C.error.json": ({"error": "C failed", "from_agent": "user"}, False),
        "1-D.error.json": (["error"], False),
        "1-E.json": ({"error": "not .error.json"}, False),
    }
    for name, (record, _) in cases.items():
        (mb.dead / name).write_text(json.dumps(record))
    reasons = {name for name, (_, is_reason) in cases.items() if is_reason}
    assert mb.dead_names() == sorted(set(cases) - reasons)
    assert mb.depth().dead == len(cases) - len(reasons)
    assert mb.read_error("1-A.json") == {"error": "A failed"}
    assert mb.read_error("1-B.json") is None and mb.read_error("1-C.json") is None
    assert mb.locate("1-A.error.json") is None  # a reason is not a message
    assert mb.locate("1-B.error.json") == "dead"
