"""A tool's arguments that fail its input schema, said in one line a model (or a person) can
act on: `timeout_s: must be greater than 0`, not pydantic's multi-line dump with its links."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

# pydantic says "Input should be ...", "String should have ...": the argument "must".
_SHOULD = re.compile(r"^(?:Input|String|List|Dictionary|Tuple|Set|Object|Value) should ")
_JSON_TYPES = {
    "NoneType": "null", "bool": "boolean", "int": "number", "float": "number", "str": "string",
    "list": "array", "dict": "object",
}  # fmt: skip


def argument_error(error: ValidationError) -> tuple[str, list[str]]:
    """One line naming each bad argument and what is wrong with it, and those arguments."""
    said: dict[str, str] = {}
    for detail in error.errors(include_url=False):
        where = ".".join(str(part) for part in detail["loc"]) or "arguments"
        said.setdefault(where, _what(detail))
    return "; ".join(f"{where}: {what}" for where, what in said.items()), sorted(said)


def _what(detail: Any) -> str:
    """What is wrong, without the rejected value (the caller's data) but with its JSON type."""
    kind = str(detail["type"])
    if kind == "missing":
        return "required"
    message = str(detail["msg"]).removeprefix("Value error, ")
    message = _SHOULD.sub("must ", message)
    if kind.endswith("_type"):
        given = type(detail.get("input")).__name__
        message += f" (got {_JSON_TYPES.get(given, given)})"
    return message
