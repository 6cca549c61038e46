"""File primitives the protocol is built from: atomic publish, no-replace moves, safe reads.

Every move here is `link()` + `unlink()`, never `rename()`: link fails with EEXIST instead of
replacing, so exactly one of several movers wins, and moving a file out of a watched directory
by rename stalls watchdog for ~0.5 s (see docs/PERFORMANCE.md). A file is therefore briefly in
both places during a move; readers of the protocol treat that as "moved".
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from pathlib import Path

from agentctl.model.constants import DIR_MODE, FILE_MODE
from agentctl.model.errors import BadMessageError, WorkspaceError

_tmp_counter = itertools.count()

# Hot paths pass plain strings (cheaper than pathlib joins); everything else passes Paths.
StrPath = str | os.PathLike[str]


def ensure_dir(path: Path) -> None:
    """Create `path` (mode 0700) if missing; refuse a symlink or a non-directory in its place."""
    try:
        os.mkdir(path, DIR_MODE)
        return
    except FileExistsError:
        pass
    except FileNotFoundError:
        ensure_dir(path.parent)
        ensure_dir(path)
        return
    check_real_dir(path)


def check_real_dir(path: Path) -> None:
    """Raise WorkspaceError unless `path` is a real directory (not a symlink to one)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise WorkspaceError(f"{path}: does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise WorkspaceError(
            f"{path}: is a symlink; refusing to use it (inboxes must be real dirs)"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise WorkspaceError(f"{path}: exists and is not a directory")


def fsync_dir(path: StrPath) -> None:
    """Make a directory's entries (a new link, an unlink) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unique_tmp_name(base: str) -> str:
    """A name no other process or thread will pick: base, pid and a per-process counter."""
    return f"{base}.{os.getpid()}.{next(_tmp_counter)}.tmp"


def write_new_file(path: StrPath, data: bytes, *, fsync: bool) -> None:
    """Create `path` (0600, must not exist) with `data`; fsync the file if asked."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        # A full disk: leave no empty file behind at each retry, and name the file, which
        # os.write() on a descriptor cannot (`error: no space left on device: <path>`).
        _unlink_quietly(path)
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise
    finally:
        os.close(fd)


def overwrite_in_place(path: StrPath, data: bytes) -> None:
    """Rewrite an existing file with `data` in the space it already has (no new blocks).

    For a small file such as status.json when the disk is full. Not atomic: `data` is padded
    with spaces to the old size (valid JSON stays valid) and written with one pwrite(), so a
    reader sees the old or the new text but for a rare torn read, which status readers retry.
    ENOSPC, without writing, when `data` would need more room than the file holds.
    """
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        room = max(st.st_size, st.st_blocks * 512)
        if len(data) > room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        padded = data.rstrip(b"\n").ljust(max(st.st_size, len(data)) - 1) + b"\n"
        os.pwrite(fd, padded, 0)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Replace `path` with `data` so a reader sees the old or the new content, never a part."""
    tmp = path.with_name(unique_tmp_name("." + path.name))
    try:
        write_new_file(tmp, data, fsync=fsync)
    except OSError as exc:
        exc.filename = os.fspath(path)  # the file the user knows, not its temporary name
        raise
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def link_noreplace(src: StrPath, dst: StrPath) -> bool:
    """Hard-link src to dst. False if dst already exists; FileNotFoundError if src is gone."""
    try:
        os.link(src, dst, follow_symlinks=False)
        return True
    except FileExistsError:
        return False


def move_settle(src: StrPath, dst: StrPath) -> None:
    """Move src to dst; if dst already exists the move was done before (a crash in between
    left src behind), so src is simply removed."""
    try:
        link_noreplace(src, dst)
    except FileNotFoundError:
        return
    _unlink_quietly(src)


def _unlink_quietly(path: StrPath) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def unlink_quietly(path: StrPath) -> None:
    """Remove a file; a file already gone is fine."""
    _unlink_quietly(path)


def read_limited(path: StrPath, max_bytes: int, *, headroom_bytes: int = 0) -> bytes:
    """Read a regular file of at most max_bytes (+ headroom_bytes), never following a symlink.

    Errors name `max_bytes`, the limit writers know; the headroom is agentctl's own."""
    limit_bytes = max_bytes + headroom_bytes
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadMessageError("is a symlink; message files must be regular files") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadMessageError("is not a regular file")
        if st.st_size > limit_bytes:
            raise BadMessageError(f"is {st.st_size} bytes, over the limit of {max_bytes}")
        chunks = []
        remaining = limit_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit_bytes:  # grew while we read it
            raise BadMessageError(f"is over the limit of {max_bytes} bytes")
        return data
    finally:
        os.close(fd)
