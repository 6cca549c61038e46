"""A worker process: its command line, logging, signals, backend and handler, around a Worker.

    python -m agentctl.runtime.worker --config agents.yaml --workspace workspace --agent NAME

(`agentctl.runtime.worker` runs this main(); the supervisor starts every worker so.)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from agentctl.backends import open_backend
from agentctl.config.agentspec import HandlerKind
from agentctl.config.roster import load_roster
from agentctl.model.constants import PIPELINE_AGENT
from agentctl.model.errors import AgentctlError
from agentctl.protocol.proc import die_with_parent
from agentctl.runtime.handlers import build_handler, build_llm_handler
from agentctl.runtime.worker import Worker

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.config.agentspec import AgentSpec
    from agentctl.config.roster import Roster
    from agentctl.runtime.handlers import Handler

log = logging.getLogger("agentctl.runtime.worker")


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process (started by `agentctl run`)."""
    parser = argparse.ArgumentParser(prog="agentctl-worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--replica", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {args.agent}[%(process)d] %(levelname)s %(message)s",
    )
    die_with_parent(signal.SIGTERM)
    transport: Backend | None = None
    try:
        roster = load_roster(args.config)
        spec = roster.agent(args.agent)
        from agentctl.flow.agentclass import allow_imports_from

        allow_imports_from(roster)
        # A worker waits for an unreachable NATS server (status: disconnected) instead of failing.
        transport = open_backend(
            roster, args.workspace, client_name=f"{spec.name}.{args.replica}", patient=True
        )
        handler = _handler_of(roster, spec, transport)
        worker = Worker(
            transport,
            spec,
            handler,
            poll_interval_s=roster.poll_interval_s,
            stuck_after_s=roster.stuck_after_s,
            replica=args.replica,
        )
    except BaseException as exc:
        if transport is not None:  # its connection's thread would keep the process alive
            transport.close()
        if not isinstance(exc, AgentctlError):
            raise
        log.error("%s", exc)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the message in hand", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return worker.run()
    except AgentctlError as exc:
        log.error("%s", exc)
        return 2
    finally:
        transport.close()


def _handler_of(roster: Roster, spec: AgentSpec, transport: Backend) -> Handler:
    if spec.name == PIPELINE_AGENT:
        # Imported here: only the pipeline agent's worker loads the conductor.
        from agentctl.runtime.conductor import ConductorHandler

        return ConductorHandler(roster, transport)
    if spec.handler_kind is HandlerKind.LLM:
        return build_llm_handler(
            spec,
            transport.local.ensure_agent_dir(spec.name),
            record=transport.record,
            withheld_env=roster.withheld_env(),
        )
    return build_handler(
        spec, max_output_bytes=roster.max_message_bytes, withheld_env=roster.withheld_env()
    )


if __name__ == "__main__":
    sys.exit(main())
