"""AgentMessage: construction, immutability, time, file names and strict parsing."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentctl.model.constants import AGENT_NAME_PATTERN, MESSAGE_ID_PATTERN
from agentctl.model.errors import AgentctlError, BadMessageError
from agentctl.model.message import AgentMessage, MessageKind, parse_message
from agentctl.model.priority import Priority
from tests.conftest import run_cli, write_roster


def msg(**fields: object) -> AgentMessage:
    return AgentMessage(**{"from_agent": "user", "to_agent": "echo", **fields})  # type: ignore[arg-type]


def raw(**fields: object) -> bytes:
    return json.dumps({"from_agent": "user", "to_agent": "echo", **fields}).encode()


# -- construction ---------------------------------------------------------------------------


def test_seed_style_construction() -> None:
    before = datetime.now(UTC)
    m = AgentMessage(
        from_agent="coordinator",
        to_agent="security-reviewer",
        content={"code": "x = 1"},
        priority="normal",
        timestamp="",
    )
    after = datetime.now(UTC)
    assert m.priority is Priority.NORMAL
    assert m.kind is MessageKind.TASK
    assert m.content == {"code": "x = 1"}
    assert m.timestamp.tzinfo is not None and m.timestamp.utcoffset() == timedelta(0)
    assert before <= m.timestamp <= after
    assert m.attempt == 0 and m.keywords == [] and m.headers == {} and m.in_reply_to is None


def test_two_messages_get_different_ids() -> None:
    assert msg().id != msg().id


def test_messages_are_frozen() -> None:
    m = msg(content="hi")
    with pytest.raises(ValidationError, match="frozen"):
        m.content = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        m.to_agent = "other"  # type: ignore[misc]
    assert m.content == "hi" and m.to_agent == "echo"


def test_unknown_constructor_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        msg(colour="red")


def test_model_copy_changes_the_copy_only() -> None:
    m = msg(content="hi")
    m2 = m.model_copy(update={"attempt": 2, "content": "bye", "priority": Priority.HIGH})
    assert (m.attempt, m.content, m.priority) == (0, "hi", Priority.NORMAL)
    assert (m2.attempt, m2.content, m2.priority) == (2, "bye", Priority.HIGH)
    assert m2.id == m.id and m2.thread_id == m.thread_id
    assert m2.file_name == f"0-{m.id}.json"
    assert parse_message(m2.to_json_bytes()) == m2


def test_model_copy_with_a_seed_style_priority_string() -> None:
    m2 = msg().model_copy(update={"priority": "high"})
    assert m2.file_name.startswith("0-")


# -- time -----------------------------------------------------------------------------------


def test_naive_timestamp_is_taken_as_utc() -> None:
    m = msg(timestamp=datetime(2024, 5, 6, 7, 8, 9, 123456))
    assert m.timestamp == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert m.timestamp.tzinfo is UTC


def test_naive_timestamp_string_is_taken_as_utc() -> None:
    m = parse_message(raw(timestamp="2024-05-06T07:08:09"))
    assert m.timestamp == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_aware_timestamps_are_converted_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    m = msg(timestamp=datetime(2024, 5, 6, 7, 8, 9, tzinfo=plus2))
    assert m.timestamp.utcoffset() == timedelta(0)
    assert m.timestamp == datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)
    parsed = parse_message(raw(timestamp="2024-05-06T07:08:09-03:30"))
    assert parsed.timestamp == datetime(2024, 5, 6, 10, 38, 9, tzinfo=UTC)
    assert parsed.timestamp.utcoffset() == timedelta(0)


def test_timestamp_is_serialized_as_utc_with_z() -> None:
    plus2 = timezone(timedelta(hours=2))
    m = msg(timestamp=datetime(2024, 5, 6, 7, 8, 9, 5, tzinfo=plus2))
    data = json.loads(m.to_json_bytes())
    assert data["timestamp"] == "2024-05-06T05:08:09.000005Z"
    assert json.loads(msg().to_json_bytes())["timestamp"].endswith("Z")


def test_none_timestamp_means_now() -> None:
    before = datetime.now(UTC)
    m = msg(timestamp=None)
    assert before <= m.timestamp <= datetime.now(UTC)


def test_any_accepted_timestamp_round_trips() -> None:
    m = msg(timestamp=datetime(999, 1, 1, tzinfo=UTC))
    assert parse_message(m.to_json_bytes()) == m


# -- thread ---------------------------------------------------------------------------------


def test_thread_id_defaults_to_the_message_id() -> None:
    m = msg()
    assert m.thread_id == m.id
    explicit = msg(id="abc", thread_id="thread-1")
    assert explicit.thread_id == "thread-1"
    assert msg(id="abc", thread_id="").thread_id == "abc"
    parsed = parse_message(raw(id="xyz"))
    assert parsed.thread_id == "xyz"


# -- on disk --------------------------------------------------------------------------------


def test_round_trip_through_bytes_keeps_every_field() -> None:
    m = msg(
        id="req-1",
        thread_id="thread-9",
        in_reply_to="req-0",
        kind=MessageKind.EVENT,
        priority="low",
        timestamp=datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        attempt=2,
        keywords=["auth", "injection"],
        headers={"timeout_s": "5", "x-trace": "abc"},
        content={"text": "héllo ✓ 🎉", "n": [1, 2.5, None, True], "nested": {"a": {}}},
    )
    data = m.to_json_bytes()
    assert data.endswith(b"}\n")
    assert "héllo ✓ 🎉" in data.decode("utf-8")  # UTF-8, not \u escapes: people read these
    assert list(json.loads(data)) == [
        "id", "thread_id", "in_reply_to", "kind", "from_agent", "to_agent", "priority",
        "timestamp", "attempt", "keywords", "headers", "content",
    ]  # fmt: skip
    back = parse_message(data)
    assert back == m
    assert back.to_json_bytes() == data


def test_file_name_is_rank_id_json() -> None:
    m = msg(id="abc")
    assert m.file_name == "1-abc.json"
    assert msg(id="abc", priority="high").file_name == "0-abc.json"
    assert msg(id="abc", priority="low").file_name == "2-abc.json"


def test_file_names_sort_by_priority_then_creation_time() -> None:
    made = []
    for i in range(30):
        priority = ["low", "normal", "high"][i % 3]
        made.append(msg(priority=priority, content=i))
    in_order = sorted(made, key=lambda m: m.file_name)
    expected = [
        *[m for m in made if m.priority is Priority.HIGH],
        *[m for m in made if m.priority is Priority.NORMAL],
        *[m for m in made if m.priority is Priority.LOW],
    ]
    assert [m.content for m in in_order] == [m.content for m in expected]


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"from_agent": "user", "to_agent": "echo", "content": "\xff\xfe"}', "not UTF-8"),
        (b"\xc3\x28", "not UTF-8"),
        (b'{"from_agent": "user", "to_agent": "echo"', "invalid JSON"),
        (b"", "invalid JSON"),
        (b'{"from_agent": "user", "to_agent": "echo", "content": NaN}', "NaN is not valid JSON"),
        (b'{"from_agent": "user", "to_agent": "echo", "content": Infinity}', "Infinity"),
        (b'{"from_agent": "user", "to_agent": "echo", "content": -Infinity}', "-Infinity"),
        (b'{"from_agent": "user", "to_agent": "echo", "content": 1e999}', "1e999 overflows"),
        (b'{"from_agent": "user", "to_agent": "echo", "content": [-1e400]}', "overflows"),
        (b"[]", "must be a JSON object, not list"),
        (b'"hello"', "must be a JSON object, not str"),
        (b"null", "must be a JSON object, not NoneType"),
        (b"42", "must be a JSON object, not int"),
        (b'{"from_agent": "user", "to_agent": "echo", "to_agent": "admin"}',
         "invalid JSON: duplicate key 'to_agent'"),
        (b'{"from_agent": "user", "to_agent": "echo", "content": {"a": 1, "b": 2, "a": 3}}',
         "invalid JSON: duplicate key 'a'"),
    ],
)
def test_parse_rejects_what_is_not_a_strict_json_object(data: bytes, expected: str) -> None:
    with pytest.raises(BadMessageError) as info:
        parse_message(data)
    assert expected in str(info.value)
    assert isinstance(info.value, AgentctlError)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"from_agent": "../x"}, "from_agent: String should match pattern"),
        ({"from_agent": None}, "from_agent: Input should be a valid string"),
        ({"to_agent": "Upper"}, "to_agent: String should match pattern"),
        ({"priority": "urgent"}, "priority: Input should be 'high', 'normal' or 'low'"),
        ({"kind": "command"}, "kind: Input should be 'task', 'result' or 'event'"),
        ({"attempt": -1}, "attempt: Input should be greater than or equal to 0"),
        ({"keywords": "auth"}, "keywords: Input should be a valid list"),
        ({"headers": {"a": 1}}, "headers.a: Input should be a valid string"),
        ({"timestamp": "yesterday"}, "timestamp: Input should be a valid datetime"),
    ],
)
def test_parse_rejects_schema_violations_naming_the_field(
    fields: dict[str, object], expected: str
) -> None:
    with pytest.raises(BadMessageError) as info:
        parse_message(raw(**fields))
    assert expected in str(info.value)


def test_parse_names_every_missing_field() -> None:
    with pytest.raises(BadMessageError) as info:
        parse_message(b"{}")
    assert str(info.value) == "from_agent: Field required; to_agent: Field required"


def test_parse_accepts_minimal_message_and_fills_defaults() -> None:
    m = parse_message(b'{"from_agent": "user", "to_agent": "echo"}')
    assert len(m.id) == 26 and m.thread_id == m.id
    assert m.content is None and m.priority is Priority.NORMAL and m.attempt == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_content_is_refused_not_silently_changed(value: float) -> None:
    try:
        m = msg(content={"score": value})
    except ValidationError:
        return  # refusing it is fine
    assert parse_message(m.to_json_bytes()).content == m.content


def test_every_parsed_message_can_be_written_again() -> None:
    # A lone surrogate parses as JSON but cannot be encoded as UTF-8: it is refused when read,
    # so a message that parses is never one that fails later, when a retry or reply writes it.
    data = b'{"from_agent": "user", "to_agent": "echo", "content": "a\\ud800b"}'
    with pytest.raises(BadMessageError, match="cannot be written as UTF-8 JSON"):
        parse_message(data)
    fine = parse_message(data.replace(b"\\ud800", b"\\u00e9"))
    assert parse_message(fine.to_json_bytes()) == fine and fine.content == "a\u00e9b"


def test_deeply_nested_json_is_a_bad_message() -> None:
    data = b'{"from_agent": "user", "to_agent": "echo", "content": ' + b"[" * 5000
    data += b"]" * 5000 + b"}"
    with pytest.raises(BadMessageError):
        parse_message(data)


def test_send_with_undecodable_content_gives_one_error_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    assert run_cli("validate", cwd=tmp_path).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "agentctl", "send", "echo", b"caf\xe9"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.decode("utf-8", "replace").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines


# -- properties: whatever the schema accepts round-trips, the rest is refused (issue 20) ---------

IDS = st.from_regex(MESSAGE_ID_PATTERN, fullmatch=True).filter(lambda i: len(i) <= 100)
NAMES = st.from_regex(AGENT_NAME_PATTERN, fullmatch=True)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {"from_agent": NAMES, "to_agent": NAMES},
    optional={
        "id": IDS,
        "thread_id": IDS,
        "in_reply_to": IDS,
        "kind": st.sampled_from([k.value for k in MessageKind]),
        "priority": st.sampled_from([p.value for p in Priority]),
        "timestamp": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
        ).map(lambda t: t.isoformat()),
        "attempt": st.integers(min_value=0, max_value=1 << 40),
        "keywords": st.lists(st.text(), max_size=4),
        "headers": st.dictionaries(st.text(), st.text(), max_size=4),
        "content": JSON_VALUES,
    },
)


@settings(max_examples=60, deadline=None)
@given(fields=FIELDS)
def test_any_json_the_schema_accepts_round_trips(fields: dict[str, object]) -> None:
    data = json.dumps(fields, ensure_ascii=False).encode()
    message = parse_message(data)

    again = message.to_json_bytes()
    assert parse_message(again) == message
    assert parse_message(again).to_json_bytes() == again
    for key in ("from_agent", "to_agent", "keywords", "headers", "attempt"):
        if key in fields:
            assert getattr(message, key) == fields[key]
    if "content" in fields:
        assert json.loads(again)["content"] == fields["content"]


# One field made wrong at a time, each way the schema refuses it.
WRONG = {
    "id": st.text().filter(lambda v: not re.fullmatch(MESSAGE_ID_PATTERN, v)) | st.integers(),
    "from_agent": st.text().filter(lambda v: not re.fullmatch(AGENT_NAME_PATTERN, v)),
    "to_agent": st.none() | st.integers() | st.just("Upper"),
    "kind": st.text().filter(lambda v: v not in {k.value for k in MessageKind}),
    "priority": st.text().filter(lambda v: v not in {p.value for p in Priority}),
    "attempt": st.integers(max_value=-1) | st.just("many") | st.floats(0.1, 0.9),
    "keywords": st.text(min_size=1) | st.dictionaries(st.text(), st.text(), min_size=1),
    "headers": st.dictionaries(st.text(), st.integers() | st.none(), min_size=1),
    "timestamp": st.just("yesterday") | st.lists(st.integers(), min_size=1),
    "colour": st.text(),  # a field the schema does not have
}


@settings(max_examples=150, deadline=None)
@given(fields=FIELDS, wrong=st.sampled_from(sorted(WRONG)), data=st.data())
def test_a_message_with_any_field_wrong_is_refused_naming_it(
    fields: dict[str, object], wrong: str, data: st.DataObject
) -> None:
    fields = {**fields, wrong: data.draw(WRONG[wrong])}
    with pytest.raises(BadMessageError) as info:
        parse_message(json.dumps(fields).encode())
    assert str(info.value).startswith(wrong) or f"; {wrong}" in str(info.value)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=64) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
@example(data=b'{"from_agent": "user", "to_agent": "echo", "x\\nerror: forged": 1}')
def test_any_bytes_either_parse_to_a_message_or_are_one_bad_message_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except BadMessageError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert parse_message(message.to_json_bytes()) == message


ULIDS = st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)


@settings(max_examples=100, deadline=None)
@given(made=st.lists(st.tuples(st.sampled_from(list(Priority)), ULIDS), unique_by=lambda t: t[1]))
def test_file_names_sort_by_priority_then_id(made: list[tuple[Priority, str]]) -> None:
    messages = [msg(id=i, priority=p) for p, i in made]
    by_name = sorted(messages, key=lambda m: m.file_name)
    assert by_name == sorted(messages, key=lambda m: (m.priority.rank, m.id))


@settings(max_examples=100, deadline=None)
@given(made=st.lists(st.tuples(st.sampled_from(list(Priority)), IDS), unique_by=lambda t: t[1]))
def test_a_higher_priority_file_name_sorts_first_whatever_the_ids(
    made: list[tuple[Priority, str]],
) -> None:
    names = sorted(msg(id=i, priority=p, kind="event").file_name for p, i in made)
    ranks = [int(name.split("-", 1)[0]) for name in names]
    assert ranks == sorted(ranks)


SURROGATE_TEXT = st.text(st.characters(min_codepoint=0xD700, max_codepoint=0xE0FF), max_size=6)


@settings(max_examples=150, deadline=None)
@given(content=st.lists(SURROGATE_TEXT, max_size=3), key=SURROGATE_TEXT)
def test_escaped_lone_surrogates_are_refused_wherever_they_are(
    content: list[str], key: str
) -> None:
    # parse_message skips re-encoding a message it parsed when the bytes hold no \u escape
    # (only an escape can bring a lone surrogate into decoded UTF-8): with escapes everywhere,
    # a surrogate left alone in the content, a header or a key is still refused.
    fields = {"from_agent": "user", "to_agent": "echo", "content": content, "headers": {key: "v"}}
    data = json.dumps(fields, ensure_ascii=True).encode()
    # A pair of escaped surrogates decodes to one character beyond the BMP: only what is left
    # alone after decoding cannot be written.
    decoded = json.loads(data)
    texts = "".join(decoded["content"]) + "".join(decoded["headers"])
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in texts)
    if lone:
        with pytest.raises(BadMessageError, match="cannot be written as UTF-8 JSON"):
            parse_message(data)
    else:
        message = parse_message(data)
        assert parse_message(message.to_json_bytes()) == message


@pytest.mark.parametrize("given", ["  \n", "-", "@empty.txt"])
def test_send_with_empty_content_is_refused_as_mcp_and_the_dashboard_refuse_it(
    tmp_path: Path, given: str
) -> None:
    # An unset variable (`agentctl send echo "$TASK"`), empty stdin or an empty file.
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    (tmp_path / "empty.txt").write_text("")
    result = run_cli("send", "echo", given, cwd=tmp_path, input="")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: CONTENT is empty; nothing sent"]
    assert not (tmp_path / "workspace" / "echo" / "inbox" / "new").exists() or not os.listdir(
        tmp_path / "workspace" / "echo" / "inbox" / "new"
    )
