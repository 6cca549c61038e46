"""The seed's `task` and `context` dicts an agent's `process(task, context)` is given."""

from __future__ import annotations

from typing import Any

from agentctl.model.constants import STAGE_HEADER
from agentctl.model.message import AgentMessage


def task_of(message: AgentMessage) -> dict[str, Any]:
    """The seed's `task` dict: the content's fields (or `{"content": ...}`) plus keywords.

    A pipeline stage's message carries the seed's context (`original_task`, `results`) as its
    content: its task is the original task, as in the seed's Pipeline.
    """
    content = message.content
    if is_stage(message):
        assert isinstance(content, dict)
        original = content["original_task"]
        return dict(original) if isinstance(original, dict) else {"content": original}
    task: dict[str, Any] = dict(content) if isinstance(content, dict) else {"content": content}
    task.setdefault("keywords", list(message.keywords))
    return task


def context_of(message: AgentMessage) -> dict[str, Any]:
    """The `context` dict handed to `process`: the message, its attempt, its thread, and for a
    pipeline stage the seed's `original_task` and earlier stages' `results`."""
    context: dict[str, Any] = {
        "message": message.model_dump(mode="json"),
        "attempt": message.attempt,
        "thread_id": message.thread_id,
    }
    if is_stage(message):
        assert isinstance(message.content, dict)
        context["original_task"] = message.content["original_task"]
        context["results"] = message.content.get("results", {})
    return context


def is_stage(message: AgentMessage) -> bool:
    """Whether `message` is a pipeline stage's, carrying the seed's context as its content."""
    return (
        STAGE_HEADER in message.headers
        and isinstance(message.content, dict)
        and "original_task" in message.content
    )
