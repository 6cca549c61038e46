"""What a `command:` agent finds in its environment: the roster settings it must honour, so a
program in any language needs no YAML parser (docs/PROTOCOL.md, "The command contract")."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import wait_until, write_roster

# Writes its environment to env-NAME.txt in the roster's folder (its working directory), then
# waits to be stopped.
_DUMP_ENV = '[sh, -c, "env > env-$AGENTCTL_AGENT.txt.tmp && mv env-$AGENTCTL_AGENT.txt.tmp env-$AGENTCTL_AGENT.txt; exec sleep 60"]'  # noqa: E501


def _env_of(project: Path, agent: str) -> dict[str, str]:
    path = wait_until(lambda: (p := project / f"env-{agent}.txt").exists() and p)
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_a_command_agent_gets_the_roster_settings_it_must_honour(tmp_path: Path, supervised):
    # Given a roster with settings of its own, one agent with its own limits and one without
    write_roster(
        tmp_path,
        f"""
        - name: tuned
          command: {_DUMP_ENV}
          max_attempts: 5
          timeout_s: 7.5
          env: {{inherit: none}}
        - name: plain
          command: {_DUMP_ENV}
        """,
        durability="fsync", max_message_bytes=4096, poll_interval_s=0.25,
    )
    # When `agentctl run` starts them
    sup = supervised(tmp_path)
    tuned, plain = _env_of(tmp_path, "tuned"), _env_of(tmp_path, "plain")
    # Then each finds the workspace's settings and its own, as plain strings
    assert {k: v for k, v in tuned.items() if k.startswith("AGENTCTL_")} == {
        "AGENTCTL_AGENT": "tuned",
        "AGENTCTL_WORKSPACE": str(tmp_path / "workspace"),
        "AGENTCTL_INBOX": str(tmp_path / "workspace" / "tuned" / "inbox"),
        "AGENTCTL_CONFIG": str(tmp_path / "agents.yaml"),
        "AGENTCTL_DURABILITY": "fsync",
        "AGENTCTL_MAX_MESSAGE_BYTES": "4096",
        "AGENTCTL_POLL_INTERVAL_S": "0.25",
        "AGENTCTL_MAX_ATTEMPTS": "5",
        "AGENTCTL_TIMEOUT_S": "7.5",
    }
    assert (plain["AGENTCTL_MAX_ATTEMPTS"], plain["AGENTCTL_TIMEOUT_S"]) == ("3", "300")
    assert sup.stop() == 0
