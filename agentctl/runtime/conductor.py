"""The conductor: drives durable pipeline runs, as the handler of the `pipeline` agent.

`agentctl run` starts it like any agent (a worker process for the reserved agent `pipeline`)
when the roster declares pipelines, so it gets the same claim / ack / recovery / heartbeat /
restart machinery. Its inbox receives three kinds of message:

- a start (`send pipeline:review CONTENT`, a task with header `pipeline: review`): a run is
  created, named after the start message, and its first stage dispatched;
- a stage result (a reply to `<run>.s<i>.<agent>`): recorded; when the stage is complete its
  verdict (the worst of its agents') decides: PASS/FLAG go on, BLOCK ends the run, ESCALATE
  parks it with a message in the `human` inbox, HALT halts the workspace, `halt: true` stops;
- a person's answer to an escalation (`agentctl resolve`): the parked run goes on or ends.

Every step saves the run's state before it sends anything, and every message it sends has a
derived id, so after a crash the same step is simply taken again: what was already delivered
is not delivered twice, and a completed stage is never dispatched again.
"""

from __future__ import annotations

import logging
from typing import Any

from agentctl.backends.transport import Transport
from agentctl.config.roster import Roster
from agentctl.flow.halt import halt
from agentctl.flow.pipeline import (
    PIPELINE_HEADER,
    STAGE_HEADER,
    Run,
    RunStore,
    StageState,
    escalation_id,
    parse_stage_id,
    run_id_for,
    stage_message_id,
    stage_verdict,
)
from agentctl.model.clock import SYSTEM_CLOCK, Clock
from agentctl.model.constants import HUMAN_AGENT, PIPELINE_AGENT
from agentctl.model.errors import NonRetryableError
from agentctl.model.ids import reply_id
from agentctl.model.message import AgentMessage, MessageKind
from agentctl.model.priority import Priority
from agentctl.model.task import task_of
from agentctl.model.tracecontext import context_headers, run_span_id, stage_span_id
from agentctl.model.verdict import Verdict
from agentctl.model.vocab import Event, RunStatus
from agentctl.protocol.status import iso_now, parse_iso
from agentctl.runtime.handlers import NO_REPLY

log = logging.getLogger(__name__)

BUDGET_FLAG_AT = 0.8  # share of a run's budget that flags it


class ConductorHandler:
    """The `pipeline` agent's handler (see the module docstring)."""

    def __init__(
        self, roster: Roster, transport: Transport, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.roster = roster
        self.clock = clock  # a run's wall-time budget is read on it
        self.ws = transport
        # Runs live on the conductor's machine: one conductor drives them all.
        self.runs = RunStore.of(transport.local)

    # -- the Handler protocol ----------------------------------------------------------------

    def on_start(self) -> None:
        """Take up every unfinished run where it was (after a crash or a restart)."""
        self.ws.claim_conductor()  # one conductor per cluster on NATS
        for run in self.runs.all():
            if run.finished and run.finished_at is not None and self._answered(run):
                continue  # long over: nothing to redo (and nothing to journal)
            self._advance(run, resume=True)

    def _answered(self, run: Run) -> bool:
        return self.ws.has_reply(run.requester, reply_id(run.request_id), run.request_priority)

    def handle(self, message: AgentMessage, *, timeout_s: float) -> Any:
        """Apply one message to the run it belongs to."""
        if message.kind is MessageKind.TASK and PIPELINE_HEADER in message.headers:
            self._start(message)
            return NO_REPLY  # the run's outcome is the reply, sent when it ends
        parsed = parse_stage_id(message.in_reply_to or "")
        if message.kind is MessageKind.RESULT and parsed is not None:
            run_id, stage, who = parsed
            if who == "escalation":
                self._resolve(run_id, stage, message.content)
            else:
                self._record(run_id, stage, who, message.content)
            return None
        raise NonRetryableError(
            "not for the pipeline conductor: send `pipeline:NAME CONTENT` to start a run"
        )

    def close(self) -> None:
        """Nothing to release."""

    # -- steps ---------------------------------------------------------------------------------

    def _start(self, message: AgentMessage) -> None:
        run_id = run_id_for(message.id)
        run = self.runs.load(run_id)
        if run is None:
            name = message.headers[PIPELINE_HEADER]
            stages = self.roster.stages(name)  # ConfigError: an unknown pipeline
            run = Run(
                run_id=run_id,
                pipeline=name,
                requester=message.from_agent,
                request_id=message.id,
                request_priority=str(message.priority),
                original_task=task_of(message),
                stages=[StageState(agents=agents) for agents in stages],
                thread_id=message.thread_id,
            )
            final = self.roster.final_agent(name)
            if final is not None:
                run.final = StageState(agents=[final])
            self.runs.save(run)
            self._journal(Event.RUN_STARTED, run, stages=stages)
        self._advance(run)

    def _record(self, run_id: str, stage: int, agent: str, result: Any) -> None:
        run = self.runs.load(run_id)
        if run is None:
            return
        if stage == len(run.stages) and run.final_pending:
            state = run.final
            assert state is not None
        elif run.status != RunStatus.RUNNING or stage != run.current:
            return  # late or repeated: that stage was settled already
        else:
            state = run.stages[stage]
        if agent not in state.agents or agent in state.results:
            return
        state.results[agent] = result
        self._check_budget(run)
        self.runs.save(run)
        self._advance(run)

    def _check_budget(self, run: Run) -> None:
        """A run's budget (tokens reported by its llm: stages, wall time since it started):
        a flag at 80 %, the end of the run (outcome halted) at 100 %."""
        budget = self.roster.budget(run.pipeline)
        if budget is None or run.status != RunStatus.RUNNING:
            return
        tokens = sum(
            int((r.get("usage") or {}).get("total_tokens") or 0)
            for stage in [*run.stages, *([run.final] if run.final else [])]
            for r in stage.results.values()
            if isinstance(r, dict) and isinstance(r.get("usage"), dict)
        )
        now = self.clock.now()
        wall_s = (now - (parse_iso(run.started_at) or now)).total_seconds()
        share = budget.share(tokens, wall_s)
        spent = f"{tokens} tokens, {wall_s:.0f} s"
        if share >= 1.0:
            run.status, run.reason = RunStatus.HALTED, f"budget exhausted ({spent})"
            self._journal(Event.BUDGET, run, share=round(share, 3), tokens=tokens, wall_s=wall_s)
        elif share >= BUDGET_FLAG_AT and not any(f.get("budget") for f in run.flags):
            run.flags.append({"stage": run.current, "budget": True,
                              "reason": f"budget {share:.0%} used ({spent})"})  # fmt: skip
            self._journal(Event.FLAGGED, run, stage=run.current, reason=f"budget {share:.0%} used")

    def _resolve(self, run_id: str, stage: int, answer: Any) -> None:
        run = self.runs.load(run_id)
        if run is None or run.status != RunStatus.ESCALATED or stage != run.current:
            return
        answer = answer if isinstance(answer, dict) else {"verdict": str(answer)}
        verdict = stage_verdict(answer)
        state = run.stages[stage]
        state.resolution = answer
        note = answer.get("note")
        if verdict is Verdict.BLOCK:
            run.status, run.reason = RunStatus.BLOCKED, f"blocked by a person: {note or 'no note'}"
        elif verdict in (Verdict.PASS, Verdict.FLAG):
            if verdict is Verdict.FLAG:
                run.flags.append({"stage": stage, "by": "human", "note": note})
            state.verdict = verdict.value
            run.status = RunStatus.RUNNING
            run.current += 1
        else:
            raise NonRetryableError(
                f"an escalation is resolved with pass, flag or block, not {verdict}"
            )
        self.runs.save(run)
        self._journal(
            Event.RUN_RESUMED if run.status == RunStatus.RUNNING else Event.RUN_ENDED,
            run,
            stage=stage,
            verdict=verdict.value,
            note=note,
        )
        self._advance(run)

    def _advance(self, run: Run, *, resume: bool = False) -> None:
        """Take the next step of a run; each step is safe to take again after a crash.

        A stage's messages are sent when it starts, and sent again only when `resume`-ing after
        a restart (delivery then finds those already delivered and does nothing).
        """
        while run.status == RunStatus.RUNNING:
            if run.current >= len(run.stages):
                run.status = RunStatus.DONE
                break
            state = run.stages[run.current]
            if not state.complete:
                self._dispatch(run, resend=resume)
                return
            self._conclude_stage(run)
        if run.status == RunStatus.ESCALATED:
            self._escalate(run)
            return
        if run.final_pending:
            self._dispatch(run, final=True, resend=resume)
            return
        if run.final is not None and run.final.complete and run.final.verdict is None:
            verdicts = [stage_verdict(r) for r in run.final.results.values()]
            run.final.verdict = Verdict.worst(verdicts).value
            run.final.finished_at = iso_now()
            self.runs.save(run)
        if run.finished:
            self._finish(run)

    def _dispatch(self, run: Run, *, final: bool = False, resend: bool = False) -> None:
        index = len(run.stages) if final else run.current
        state = run.final if final else run.stages[index]
        assert state is not None
        if state.started_at is None:
            state.started_at = iso_now()
            self.runs.save(run)  # saved first: after a crash, resume sends them again
        elif not resend:
            return  # sent when the stage started; its answers are on their way
        context = run.context()
        for agent in state.agents:
            if agent in state.results:
                continue
            message = AgentMessage(
                id=stage_message_id(run.run_id, index, agent),
                thread_id=run.thread_id,
                from_agent=PIPELINE_AGENT,
                to_agent=agent,
                kind=MessageKind.TASK,
                priority=Priority(run.request_priority),
                headers={
                    STAGE_HEADER: f"{run.run_id}/{index}",
                    PIPELINE_HEADER: run.pipeline,
                    **context_headers(run.thread_id, stage_span_id(run.run_id, index)),
                },
                content=context,
            )
            self.ws.deliver(message, dedupe=True)

    def _conclude_stage(self, run: Run) -> None:
        index = run.current
        state = run.stages[index]
        # In the stage's order, not the order the answers came in: the reason reads the same.
        verdicts = {agent: stage_verdict(state.results[agent]) for agent in state.agents}
        verdict = Verdict.worst(list(verdicts.values()))
        state.verdict = verdict.value
        state.finished_at = iso_now()
        worst = [agent for agent, v in verdicts.items() if v is verdict]
        reason = _reason(state.results, worst, verdict)
        if verdict is Verdict.FLAG:
            run.flags.append({"stage": index, "agents": worst, "reason": reason})
            self._journal(Event.FLAGGED, run, stage=index, flagged=worst, reason=reason)
        if verdict is Verdict.HALT:
            run.status, run.reason = RunStatus.HALTED, reason
            halt(self.ws, reason, by=PIPELINE_AGENT, run=run.run_id)
        elif verdict is Verdict.BLOCK:
            run.status, run.reason = RunStatus.BLOCKED, reason
        elif verdict is Verdict.ESCALATE:
            run.status, run.reason = RunStatus.ESCALATED, reason
        elif any(isinstance(r, dict) and r.get("halt") is True for r in state.results.values()):
            run.status, run.reason = RunStatus.STOPPED, f"halt: true from {', '.join(state.agents)}"
        else:
            run.current += 1
        self.runs.save(run)
        self._journal(
            Event.STAGE_DONE, run, stage=index, verdict=verdict.value, agents=state.agents
        )

    def _escalate(self, run: Run) -> None:
        state = run.stages[run.current]
        evidence: dict[str, Any] = {
            "run": run.run_id,
            "pipeline": run.pipeline,
            "stage": run.current,
            "agents": state.agents,
            "reason": run.reason,
            "evidence": state.results,
            "original_task": run.original_task,
        }
        message = AgentMessage(
            id=escalation_id(run.run_id, run.current),
            thread_id=run.thread_id,
            from_agent=PIPELINE_AGENT,
            to_agent=HUMAN_AGENT,
            kind=MessageKind.TASK,
            priority=Priority(run.request_priority),
            headers=context_headers(run.thread_id, stage_span_id(run.run_id, run.current)),
            content=evidence,
        )
        if self.ws.deliver(message, dedupe=True) is not None:
            self._journal(Event.ESCALATED, run, stage=run.current, reason=run.reason)

    def _finish(self, run: Run) -> None:
        if run.finished_at is None:
            run.finished_at = iso_now()
            self.runs.save(run)
            self._journal(Event.RUN_ENDED, run, outcome=run.status, verdict=run.verdict().value)
        reply = AgentMessage(
            id=reply_id(run.request_id),
            thread_id=run.thread_id,
            in_reply_to=run.request_id,
            from_agent=PIPELINE_AGENT,
            to_agent=run.requester,
            kind=MessageKind.RESULT,
            priority=Priority(run.request_priority),
            headers=context_headers(run.thread_id, run_span_id(run.run_id)),
            content=run.outcome(),
        )
        self.ws.deliver(reply, dedupe=True)

    def _journal(self, event: Event, run: Run, **fields: Any) -> None:
        self.ws.journal.append(
            event,
            agent=PIPELINE_AGENT,
            message_id=run.request_id,
            thread_id=run.thread_id,
            run=run.run_id,
            pipeline=run.pipeline,
            **fields,
        )


def _reason(results: dict[str, Any], agents: list[str], verdict: Verdict) -> str:
    """Why a stage came to its verdict, from the results that decided it."""
    parts = []
    for agent in agents:
        result = results.get(agent)
        detail = None
        if isinstance(result, dict):
            for key in ("reason", "error", "summary", "findings"):
                if result.get(key):
                    detail = result[key]
                    break
        parts.append(f"{agent}: {detail}" if detail is not None else agent)
    text = "; ".join(str(p) for p in parts)
    return f"{verdict.value} from {text}" if text else verdict.value
