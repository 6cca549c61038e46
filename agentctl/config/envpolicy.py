"""What environment an agent's program gets (`env:` of an `exec:` or `command:` agent).

`inherit: all` (the default, as before) passes agentctl's whole environment; `inherit: none`
passes only `PATH`, `HOME`, the locale (`LANG`, `LC_*`, `TZ`), agentctl's own `AGENTCTL_*`
variables and the names listed in `pass:`. Either way, agentctl's LLM keys (`AGENTCTL_LLM_API_KEY`
and every `api_key_env` of the roster's `llm:` agents) reach a program only if `pass:` lists
them: the key that pays for the models is not every script's business. `set:` gives fixed
values; agentctl's per-agent variables (`AGENTCTL_AGENT`, ...) are applied last.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LLM_KEY_ENV = "AGENTCTL_LLM_API_KEY"  # the key variable the scaffolded roster names
BASIC_ENV = frozenset({"PATH", "HOME", "LANG", "TZ"})
BASIC_ENV_PREFIXES = ("LC_", "AGENTCTL_")


class EnvInherit(StrEnum):
    """How much of agentctl's environment a program inherits."""

    ALL = "all"
    NONE = "none"  # only PATH, HOME, the locale, AGENTCTL_* and what `pass:` lists


class EnvPolicy(BaseModel):
    """`env:` of an agent: `{inherit: all|none, pass: [NAME, ...], set: {NAME: value}}`."""

    # Only the YAML names (`pass`, `set`): `pass_` in a roster is an unknown key.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    inherit: EnvInherit = EnvInherit.ALL
    pass_: tuple[str, ...] = Field(default=(), alias="pass")
    set_: dict[str, str] = Field(default_factory=dict, alias="set")

    @field_validator("pass_")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        _check_names(names)
        return names

    @field_validator("set_")
    @classmethod
    def _set_names(cls, values: dict[str, str]) -> dict[str, str]:
        _check_names(values)
        return values

    def build(
        self,
        own: Mapping[str, str],
        *,
        withheld: Collection[str] = (LLM_KEY_ENV,),
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The environment of a program: `base` (os.environ) filtered by this policy, then
        `set:`, then agentctl's own variables `own`; names in `withheld` only if listed."""
        listed = set(self.pass_)
        env = {
            name: value
            for name, value in (os.environ if base is None else base).items()
            if name in listed or (name not in withheld and self._inherits(name))
        }
        env.update(self.set_)
        env.update(own)
        return env

    def _inherits(self, name: str) -> bool:
        if self.inherit is EnvInherit.ALL:
            return True
        return name in BASIC_ENV or name.startswith(BASIC_ENV_PREFIXES)


def _check_names(names: Collection[str]) -> None:
    for name in names:
        if not re.fullmatch(ENV_NAME_PATTERN, name):
            raise ValueError(f"{name!r} is not an environment variable name ({ENV_NAME_PATTERN})")
