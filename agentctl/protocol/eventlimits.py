"""How big one journal event may be: long fields are cut, and the event says what was cut.

A journal line is at most MAX_LINE_BYTES (16 KiB), so an appender always finds the chain's head
near the end of the file and a reader never holds a huge line. Two rules, cheapest first:

- a string field over MAX_TEXT_CHARS is cut to that many characters and an ellipsis;
- when the line is still too long, the fields are shared out: the smaller ones are kept whole
  and the largest share what is left, each cut to its share (a string to a prefix, a list to
  its first items, an object to the entries that fit; a number or a boolean is left out).

Each field cut is named in the event's `truncated` object with the size of its original JSON
value in bytes: `"truncated":{"usage":70042}`. The NATS transport applies the same limits to
its events (a server refuses a message over its `max_payload`).
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE_BYTES = 16 * 1024  # a whole line, newline included
MAX_TEXT_CHARS = 2000
TRUNCATED = "truncated"
# Never cut: they say what the event is, and the chain's own fields.
_CORE = frozenset({"seq", "ts", "event", "agent", "message_id", "thread_id", TRUNCATED, "prev"})
_CORE_TEXT_CHARS = 200  # the last resort for a core string (names and ids are shorter)
_ELLIPSIS = "…"
# Compact JSON, as the journal writes it.
ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def json_bytes(value: Any) -> int:
    """The size of `value` as compact JSON, in bytes."""
    return len(ENCODER.encode(value).encode())


def cut_long_text(record: dict[str, Any], key: str, value: Any) -> None:
    """Set record[key] to `value`, a string over MAX_TEXT_CHARS cut (and named in `truncated`)."""
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        record.setdefault(TRUNCATED, {})[key] = json_bytes(value)
        value = value[:MAX_TEXT_CHARS] + _ELLIPSIS
    record[key] = value


def fit_record(record: dict[str, Any], overhead_bytes: int = 0) -> dict[str, Any]:
    """`record` cut so that its JSON plus `overhead_bytes` fits in MAX_LINE_BYTES (a new dict).

    Keeps the keys' order, and `prev` last (the journal's hash follows it).
    """
    limit = MAX_LINE_BYTES - overhead_bytes
    size = json_bytes(record)
    if size <= limit:
        return record
    original = size
    budget = limit - json_bytes({k: v for k, v in record.items() if k in _CORE}) - 64
    for _ in range(4):  # the `truncated` object and separators are estimated: adjust, retry
        fitted = _share_out(record, max(budget, 0))
        size = json_bytes(fitted)
        if size <= limit:
            return fitted
        budget -= size - limit + 16
    return _last_resort(record, original)


def _share_out(record: dict[str, Any], budget: int) -> dict[str, Any]:
    # Water-filling: visit the fields smallest first; each may take an equal share of what
    # is left, so small fields stay whole and what they leave goes to the big ones.
    extra = {k: v for k, v in record.items() if k not in _CORE}
    sizes = {k: json_bytes(v) + len(json.dumps(k)) + 2 for k, v in extra.items()}
    kept: dict[str, Any] = {}
    truncated = dict(record.get(TRUNCATED) or {})
    left = budget
    for index, key in enumerate(sorted(extra, key=sizes.__getitem__)):
        share = left // (len(extra) - index)
        if sizes[key] <= share:
            kept[key] = extra[key]
            left -= sizes[key]
            continue
        truncated.setdefault(key, sizes[key] - len(json.dumps(key)) - 2)
        cut = _cut(extra[key], share - len(json.dumps(key)) - 2)
        if cut is not None:
            kept[key] = cut
            left -= json_bytes(cut) + len(json.dumps(key)) + 2
    fitted: dict[str, Any] = {}
    for key, value in record.items():
        if key in kept:
            fitted[key] = kept[key]
        elif key in _CORE and key not in (TRUNCATED, "prev"):
            fitted[key] = value
    fitted[TRUNCATED] = truncated
    if "prev" in record:
        fitted["prev"] = record["prev"]
    return fitted


def _cut(value: Any, target_bytes: int) -> Any:
    """`value` cut to at most `target_bytes` of JSON, or None to leave it out."""
    if target_bytes < 8:
        return None
    if isinstance(value, str):
        chars = min(len(value), target_bytes)
        while chars > 0:
            cut = value[:chars] + _ELLIPSIS
            size = json_bytes(cut)
            if size <= target_bytes:
                return cut
            chars = min(chars - 1, chars * target_bytes // size)
        return None
    if isinstance(value, list):
        items, used = [], 2
        for item in value:
            used += json_bytes(item) + 1
            if used > target_bytes:
                break
            items.append(item)
        return items
    if isinstance(value, dict):
        entries, used = {}, 2
        for key, item in value.items():
            size = json_bytes({key: item}) - 1  # `"key":value,` (the braces make up the comma)
            if used + size <= target_bytes:
                entries[key] = item
                used += size
        return entries
    return None


def _last_resort(record: dict[str, Any], original_bytes: int) -> dict[str, Any]:
    """Only what says what the event was, in case even its names are huge."""
    fitted: dict[str, Any] = {}
    for key, value in record.items():
        if key in _CORE and key not in (TRUNCATED, "prev"):
            short = isinstance(value, str) and len(value) > _CORE_TEXT_CHARS
            fitted[key] = value[:_CORE_TEXT_CHARS] + _ELLIPSIS if short else value
    fitted[TRUNCATED] = {"*": original_bytes}
    if "prev" in record:
        fitted["prev"] = record["prev"]
    return fitted
