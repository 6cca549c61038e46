"""AgentMessage: the one record every agent reads and writes, and its JSON form on disk."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from agentctl.model.constants import (
    AGENT_NAME_PATTERN,
    MAX_MESSAGE_ID_CHARS,
    MESSAGE_ID_PATTERN,
    MESSAGE_ID_RE,
    REQUEUED_HEADER,
)
from agentctl.model.errors import BadMessageError
from agentctl.model.ids import new_id, reply_id
from agentctl.model.priority import Priority
from agentctl.model.tracecontext import TRACE_HEADERS, attempt_context


class MessageKind(StrEnum):
    """What a message is for; the value is the string stored on disk."""

    TASK = "task"  # asks for work; answered by exactly one result
    RESULT = "result"  # answers a task (in_reply_to is set)
    EVENT = "event"  # informs; never answered


# json.dumps(value, allow_nan=False, ensure_ascii=False), without building a new encoder for
# every message.
_STRICT_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


# The validation context of messages that parse_message read with the strict parser.
_PARSED_STRICTLY: dict[str, bool] = {"parsed_strictly": True}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (never the naive `datetime.utcnow()`)."""
    return datetime.now(UTC)


class AgentMessage(BaseModel):
    """A message between agents, immutable once made.

    The seed article's fields keep their names (`from_agent`, `to_agent`, `content`,
    `priority`, `timestamp`), so `AgentMessage(from_agent="a", to_agent="b", content="hi")`
    works as written there. Change a message with `model_copy(update=...)`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Field order is the order people see in the files.
    id: str = Field(default_factory=new_id, pattern=MESSAGE_ID_PATTERN)
    thread_id: str = Field(default="", pattern=f"({MESSAGE_ID_PATTERN})|^$")
    in_reply_to: str | None = Field(default=None, pattern=MESSAGE_ID_PATTERN)
    kind: MessageKind = MessageKind.TASK
    from_agent: str = Field(pattern=AGENT_NAME_PATTERN)
    to_agent: str = Field(pattern=AGENT_NAME_PATTERN)
    priority: Priority = Priority.NORMAL
    timestamp: datetime = Field(default_factory=utc_now)
    attempt: int = Field(default=0, ge=0)  # attempts already spent on this message
    keywords: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    content: JsonValue = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _accept_seed_timestamps(cls, value: Any) -> Any:
        # The seed passes "" to mean "now"; a naive time is taken to be UTC, as the seed meant.
        if value in ("", None):
            return utc_now()
        return value

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _representable_as_json(self, info: ValidationInfo) -> AgentMessage:
        # NaN, infinities and lone surrogates pass pydantic's JsonValue but cannot be written
        # as standard UTF-8 JSON (pydantic would silently write NaN as null).
        if info.context is _PARSED_STRICTLY:
            return self  # parse_message has ruled all three out more cheaply
        try:
            _STRICT_ENCODER.encode([self.content, self.keywords, self.headers]).encode("utf-8")
        except ValueError as exc:  # UnicodeEncodeError is a ValueError
            raise ValueError(f"content cannot be written as UTF-8 JSON: {exc}") from None
        return self

    @model_validator(mode="after")
    def _reply_id_fits(self) -> AgentMessage:
        # A task must be answerable: its reply id (`<id>-reply`, `.rN` after a requeue) is a
        # message id too, so an id that leaves no room for the suffix is refused up front
        # rather than crashing the worker that tries to reply.
        if self.kind is MessageKind.TASK and not MESSAGE_ID_RE.fullmatch(
            reply_id(self.id, self.requeued)
        ):
            raise ValueError(
                f"id is too long to be answered: its reply id would be over "
                f"{MAX_MESSAGE_ID_CHARS} characters"
            )
        return self

    @model_validator(mode="after")
    def _thread_defaults_to_id(self) -> AgentMessage:
        # A message that starts a conversation is its own thread.
        if not self.thread_id:
            object.__setattr__(self, "thread_id", self.id)
        return self

    @field_serializer("timestamp")
    def _serialize_timestamp(self, value: datetime) -> str:
        return value.isoformat(timespec="microseconds").replace("+00:00", "Z")

    @property
    def file_name(self) -> str:
        """The file name on disk: sorts by priority, then creation time, and carries the id."""
        # Priority(...) because model_copy(update={"priority": "high"}) does not validate.
        return message_file_name(Priority(self.priority), self.id)

    def to_json_bytes(self) -> bytes:
        """The on-disk form: pretty JSON (people read these files), UTF-8."""
        return self.model_dump_json(indent=2).encode("utf-8") + b"\n"

    @property
    def requeued(self) -> int:
        """How many times `dead requeue` brought this message back (its `requeued` header)."""
        value = self.headers.get(REQUEUED_HEADER, "0")
        # isdigit() alone accepts "²", which int() refuses.
        return int(value) if value.isascii() and value.isdigit() else 0

    def reply(self, content: JsonValue, *, kind: MessageKind = MessageKind.RESULT) -> AgentMessage:
        """The one reply to this message: its id derives from ours, so it is never sent twice."""
        return AgentMessage(
            id=reply_id(self.id, self.requeued),
            thread_id=self.thread_id,
            in_reply_to=self.id,
            from_agent=self.to_agent,
            to_agent=self.from_agent,
            kind=kind,
            content=content,
            priority=Priority(self.priority),
            headers=self._reply_context(),
        )

    def _reply_context(self) -> dict[str, str]:
        # A reply continues the trace from the attempt that made it; one made outside any
        # attempt (a person's answer to an escalation) continues its request's own context.
        if self.attempt > 0:
            return attempt_context(self)
        return {k: v for k, v in self.headers.items() if k in TRACE_HEADERS}


def new_message(**fields: Any) -> AgentMessage:
    """Build a message from untrusted values; BadMessageError says which field is wrong."""
    try:
        return AgentMessage(**fields)
    except ValidationError as exc:
        raise BadMessageError(describe_validation_error(exc)) from None


def message_file_name(priority: Priority, message_id: str) -> str:
    """`<rank>-<id>.json`, e.g. `1-01JD3X...json` for a normal-priority message."""
    return f"{priority.rank}-{message_id}.json"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows to infinity")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return obj


_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# A Python call per object: about +9 us on a typical 600-byte message (+15% of parse_message),
# so only where the JSON is a message.
_UNIQUE_KEYS_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
)


def parse_json_strict(data: bytes, *, unique_keys: bool = False) -> Any:
    """Parse JSON as RFC 8259 does: UTF-8, no NaN or Infinity, no overflowing numbers.

    With `unique_keys`, an object that names a key twice is refused instead of keeping the
    last value, as strict readers do: readers that keep the first would see another message.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessageError(f"not UTF-8: {exc}") from None
    try:
        return (_UNIQUE_KEYS_DECODER if unique_keys else _STRICT_DECODER).decode(text)
    except ValueError as exc:
        raise BadMessageError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise BadMessageError("invalid JSON: nested too deeply") from None


def parse_message(data: bytes) -> AgentMessage:
    """Parse and validate the bytes of a message file; raise BadMessageError with a reason."""
    raw = parse_json_strict(data, unique_keys=True)
    if not isinstance(raw, dict):
        raise BadMessageError(f"a message must be a JSON object, not {type(raw).__name__}")
    # The strict parser has refused NaN and infinities already, and text decoded from UTF-8
    # holds a lone surrogate only through a \u escape: without one, the re-encoding that
    # `_representable_as_json` does for messages built in Python would find nothing.
    context = None if b"\\u" in data else _PARSED_STRICTLY
    try:
        return AgentMessage.model_validate(raw, context=context)
    except ValidationError as exc:
        raise BadMessageError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: `field.path: what is wrong`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(_printable(str(p)) for p in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _printable(name: str) -> str:
    # A key comes from the file: a newline in it must not split the one-line error (or forge one).
    return name if name.isprintable() else repr(name)
