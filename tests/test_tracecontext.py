"""W3C trace context: parsing, derived ids, and the context every derived message carries."""

from __future__ import annotations

import pytest

from agentctl.flow.router import user_message
from agentctl.flow.send import parse_headers
from agentctl.model.errors import AgentctlError
from agentctl.model.tracecontext import (
    TRACEPARENT_ENV,
    TraceParent,
    attempt_env,
    attempt_span_id,
    parse_traceparent,
    send_span_id,
    trace_id_of,
    valid_tracestate,
)

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_parses_and_formats_back() -> None:
    parsed = parse_traceparent(VALID)
    assert parsed == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert parsed.format() == VALID
    # A later version may add fields; version 00 may not.
    assert parse_traceparent(VALID.replace("00-", "01-", 1) + "-extra") is not None


@pytest.mark.parametrize(
    "bad",
    [None, "", "junk", VALID.upper(), VALID + "-extra", "ff" + VALID[2:],
     "00-" + "0" * 32 + "-00f067aa0ba902b7-01", VALID[:-19] + "0" * 16 + "-01",
     VALID.replace("-01", "-1")],
)  # fmt: skip
def test_an_invalid_traceparent_is_none(bad: str | None) -> None:
    assert parse_traceparent(bad) is None


def test_tracestate_lists_are_checked() -> None:
    assert valid_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    assert not valid_tracestate("")
    assert not valid_tracestate("no-equals-sign")
    assert not valid_tracestate(",".join(f"k{i}=v" for i in range(33)))


def test_ids_derive_from_the_thread_and_the_attempt_and_differ_between_them() -> None:
    assert trace_id_of("t1") == trace_id_of("t1") != trace_id_of("t2")
    assert len(trace_id_of("t1")) == 32 and len(send_span_id("m")) == 16
    ids = {attempt_span_id("m", 0, 1), attempt_span_id("m", 0, 2), attempt_span_id("m", 1, 1)}
    assert len(ids) == 3


def test_a_thread_starts_with_its_root_context_and_every_reply_continues_it() -> None:
    # Given: a message sent from outside (the root of its thread's trace).
    sent = user_message("worker", "hi")
    root = parse_traceparent(sent.headers["traceparent"])
    assert root == TraceParent(trace_id_of(sent.thread_id), send_span_id(sent.id))
    # When: its second attempt answers it, then a person answers outside any attempt.
    handled = sent.model_copy(update={"attempt": 2})
    reply = parse_traceparent(handled.reply("done").headers["traceparent"])
    unattempted = sent.reply("by hand").headers
    # Then: the same trace; the reply's parent is that attempt's span.
    assert reply == TraceParent(root.trace_id, attempt_span_id(sent.id, 0, 2))
    assert unattempted["traceparent"] == sent.headers["traceparent"]
    assert attempt_env(handled) == {TRACEPARENT_ENV: reply.format()}


def test_a_sender_cannot_set_the_trace_headers() -> None:
    for pair in (f"traceparent={VALID}", "tracestate=a=b"):
        with pytest.raises(AgentctlError, match="internal header"):
            parse_headers([pair])
