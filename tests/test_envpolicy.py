"""The environment of agents' programs (`env:`): real `agentctl run`, real programs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agentctl.config.roster import load_roster
from tests.conftest import run_cli, wait_until, write_roster

LLM_KEY_ENV = "AGENTCTL_LLM_API_KEY"  # agentctl's own, named by the scaffolded roster

# A program that answers with its whole environment.
PRINT_ENV = f"[{sys.executable}, -c, 'import json, os, sys; sys.stdin.read(); " \
    "print(json.dumps(dict(os.environ)))']"

SECRETS = {
    LLM_KEY_ENV: "sk-agentctl-secret",
    "TEAM_LLM_KEY": "sk-team-secret",  # an llm agent's api_key_env
    "CLOUD_SECRET": "aws-secret",
    "MY_TOKEN": "token-for-the-tool",
    "LANG": "C.UTF-8",
    "LC_MESSAGES": "C",
    "TZ": "UTC",
}


def test_programs_get_what_their_policy_gives_and_never_the_llm_keys(
    tmp_path: Path, supervised, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: agentctl started with LLM keys, a cloud secret and a token in its environment.
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    write_roster(tmp_path, f"""\
        - name: strict
          exec: {PRINT_ENV}
          env: {{inherit: none, pass: [MY_TOKEN, NOT_SET_ANYWHERE], set: {{GREETING: hello}}}}
        - name: inheritor
          exec: {PRINT_ENV}
        - name: keyed
          exec: {PRINT_ENV}
          env: {{inherit: none, pass: [{LLM_KEY_ENV}]}}
        - name: daemon
          command: [sh, -c, "env > daemon.env.tmp && mv daemon.env.tmp daemon.env; exec sleep 300"]
          env: {{inherit: none, pass: [MY_TOKEN]}}
        - name: model
          llm: {{model: m, base_url: "${{AGENTCTL_TEST_NO_SUCH_URL}}", api_key_env: TEAM_LLM_KEY}}
    """)
    supervised(tmp_path).wait_ready(["strict", "inheritor", "keyed"])

    # When: each exec agent answers with its environment, and the command agent writes its own.
    def env_of(agent: str) -> dict[str, str]:
        result = run_cli("send", agent, "x", "--wait", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    strict, inheritor, keyed = env_of("strict"), env_of("inheritor"), env_of("keyed")
    daemon_file = tmp_path / "daemon.env"
    wait_until(daemon_file.is_file)
    daemon = dict(line.split("=", 1) for line in daemon_file.read_text().splitlines())

    # Then: no program has an LLM key it was not given; `inherit: none` keeps out the rest too.
    for env in (strict, inheritor, daemon):
        assert LLM_KEY_ENV not in env and "TEAM_LLM_KEY" not in env
    for env in (strict, daemon):
        assert "CLOUD_SECRET" not in env
        assert env["MY_TOKEN"] == "token-for-the-tool"
        assert {"PATH", "HOME"} <= env.keys()
        assert (env["LANG"], env["LC_MESSAGES"], env["TZ"]) == ("C.UTF-8", "C", "UTC")
    assert strict["GREETING"] == "hello" and "NOT_SET_ANYWHERE" not in strict
    assert strict["AGENTCTL_AGENT"] == "strict" and "AGENTCTL_MESSAGE_ID" in strict
    assert daemon["AGENTCTL_AGENT"] == "daemon" and "AGENTCTL_INBOX" in daemon
    assert inheritor["CLOUD_SECRET"] == "aws-secret"  # inherit: all stays the default
    assert keyed[LLM_KEY_ENV] == "sk-agentctl-secret" and "CLOUD_SECRET" not in keyed


def test_the_roster_withholds_every_llm_agents_key(tmp_path: Path) -> None:
    path = write_roster(tmp_path, """\
        - name: a
          llm: {model: m, base_url: "http://127.0.0.1:9/v1", api_key_env: OPENAI_API_KEY}
        - name: b
          llm: {model: m, base_url: "http://127.0.0.1:9/v1"}
        - name: c
          exec: [cat]
    """)
    assert load_roster(path).withheld_env() == {LLM_KEY_ENV, "OPENAI_API_KEY"}


def test_set_and_agentctl_own_variables_win_in_that_order() -> None:
    from agentctl.config.envpolicy import EnvInherit, EnvPolicy

    policy = EnvPolicy.model_validate(
        {"inherit": "none", "pass": ["X"], "set": {"X": "set", "AGENTCTL_AGENT": "spoof", "N": 8}}
    )
    env = policy.build({"AGENTCTL_AGENT": "real"}, base={"X": "base", "LC_ALL": "C", "Y": "y"})
    assert env == {"X": "set", "N": "8", "AGENTCTL_AGENT": "real", "LC_ALL": "C"}
    assert policy.inherit is EnvInherit.NONE
