"""BaseAgent: the seed article's agent class, which `python:` handlers subclass."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class BaseAgent(ABC):
    """An agent with a name, a role and declared expertise.

    Subclasses implement `process(task, context)`, usually `async`, returning a JSON-able dict.
    `task` is the message content (a dict; a plain string arrives as `{"content": ...}`) plus
    the message's `keywords`; `context` carries the message itself and its attempt number.

        class Greeter(BaseAgent):
            def __init__(self):
                super().__init__(name="greeter", role="Says hello", expertise=["greeting"])

            async def process(self, task, context):
                return {"greeting": f"hello, {task['content']}"}
    """

    def __init__(self, name: str, role: str, expertise: list[str]) -> None:
        self.name = name
        self.role = role
        self.expertise = expertise
        self.status = "idle"

    @abstractmethod
    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Process a task and return results."""

    def can_handle(self, task: dict[str, Any]) -> float:
        """Return confidence score 0-1 for handling this task: keyword overlap with expertise."""
        task_keywords = set(task.get("keywords", []))
        overlap = task_keywords & set(self.expertise)
        return len(overlap) / max(len(self.expertise), 1)
