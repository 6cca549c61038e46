"""EchoAgent: answers every task with what it was given. Useful to try a workspace end to end."""

from __future__ import annotations

from typing import Any

from agentctl.model.agent import BaseAgent


class EchoAgent(BaseAgent):
    """Replies with the task it received and the attempt number."""

    def __init__(self, name: str = "echo", role: str = "", expertise: list[str] | None = None):
        super().__init__(name=name, role=role or "Echoes tasks back", expertise=expertise or [])

    async def process(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Return the task unchanged."""
        return {"agent": self.name, "echo": task, "attempt": context["attempt"]}
