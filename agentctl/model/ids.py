"""Message ids: ULIDs (time-sortable, unique across processes, no ':')."""

from __future__ import annotations

import os
import threading
import time

from agentctl.model.constants import REPLY_ID_SUFFIX

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _forget_after_fork() -> None:
    # A forked child must not continue its parent's sequence: both would make the same ids.
    global _last_ms, _last_rand, _lock
    _lock = threading.Lock()
    _last_ms, _last_rand = -1, 0


os.register_at_fork(after_in_child=_forget_after_fork)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


# Every pair of Crockford digits (10 bits), indexed by its value: a ULID is 13 table look-ups.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)


def _encode_ulid(now_ms: int, rand: int) -> str:
    """`_encode(now_ms, 10) + _encode(rand, 16)`, the 128 bits as 13 pairs of digits."""
    v = (now_ms << 80) | rand
    p = _PAIRS
    return (
        p[(v >> 120) & 1023]
        + p[(v >> 110) & 1023]
        + p[(v >> 100) & 1023]
        + p[(v >> 90) & 1023]
        + p[(v >> 80) & 1023]
        + p[(v >> 70) & 1023]
        + p[(v >> 60) & 1023]
        + p[(v >> 50) & 1023]
        + p[(v >> 40) & 1023]
        + p[(v >> 30) & 1023]
        + p[(v >> 20) & 1023]
        + p[(v >> 10) & 1023]
        + p[v & 1023]
    )


def new_id() -> str:
    """Return a new 26-character ULID: 48 bits of milliseconds, 80 bits of randomness.

    Ids from one process are strictly increasing even within one millisecond (the random part
    is incremented), so messages sent in a loop keep their order on disk.
    """
    global _last_ms, _last_rand
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_rand = now_ms, rand
    return _encode_ulid(now_ms, rand)


def reply_id(request_id: str, requeued: int = 0) -> str:
    """Return the id of the one reply a request may have.

    A dead letter brought back by `dead requeue` lives again and may answer again: each
    requeue gets its own reply id (`<id>-reply.r1`, ...), so its new answer is not mistaken for
    the reply its first life already sent.
    """
    suffix = f".r{requeued}" if requeued > 0 else ""
    return request_id + REPLY_ID_SUFFIX + suffix
