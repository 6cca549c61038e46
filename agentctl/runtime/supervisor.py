"""The supervisor behind `agentctl run`: starts each agent as a process, restarts, stops.

One supervisor per workspace, enforced with the lock in `control.py`. Each agent runs in a
process group of its own; stopping sends SIGTERM to every group, then SIGKILL after a grace
period, and reaps every child. Children ask the kernel for SIGTERM when the supervisor dies,
and a new supervisor also stops any agent a dead one left running (checked by pid *and* start time).

The clock (agentctl.model.clock) and the process factory are parameters, so restart timing,
cool-downs and the stuck check are testable without sleeping.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agentctl.backends.file.workspace import Workspace
from agentctl.config.agentspec import HandlerKind, RestartPolicy
from agentctl.config.roster import Roster
from agentctl.model.clock import SYSTEM_CLOCK, Clock
from agentctl.model.constants import (
    LIVENESS_CHECK_INTERVAL_S,
    STOP_GRACE_S,
    WORKER_RESTART_EXIT_CODE,
)
from agentctl.model.vocab import Event
from agentctl.protocol.control import release_supervisor_lock, take_supervisor_lock
from agentctl.protocol.proc import ProcessRef, die_with_parent, prepare_die_with_parent
from agentctl.protocol.status import (
    AgentState,
    AgentStatus,
    iso_after,
    read_status,
    write_status,
)
from agentctl.protocol.writeretry import disk_error_line, probe_write
from agentctl.runtime.agentcommand import command_of, cwd_of
from agentctl.runtime.agentprocess import (
    AgentProcess,
    ProcState,
    describe_exit,
    signal_group,
)
from agentctl.runtime.agentstatus import command_status, exit_status, fatal_status, recount_of
from agentctl.runtime.reload import names_to_run, workers_of
from agentctl.runtime.requests import Requests
from agentctl.runtime.stuckcheck import stuck_for_s

if TYPE_CHECKING:
    from agentctl.backends.transport import Transport

Spawn = Callable[..., "subprocess.Popen[bytes]"]

__all__ = ["AgentProcess", "ProcState", "Spawn", "Supervisor", "describe_exit"]


class Supervisor:
    """Runs the agents of a roster as child processes."""

    def __init__(
        self,
        roster: Roster,
        workspace: Workspace,
        *,
        agents: Sequence[str] | None = None,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        spawn: Spawn = subprocess.Popen,
        grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.roster = roster
        self.workspace = workspace
        # Where events are journaled: the workspace, or the NATS stream.
        self.transport: Transport = transport if transport is not None else workspace
        self.only = list(agents) if agents else None  # `run --agent`: what a reload keeps to
        self.disabled = roster.disabled_agents()
        self.events: list[str] = [f"{name}: {why}" for name, why in self.disabled.items()]
        self.agents: dict[str, AgentProcess] = {}
        for name in names_to_run(roster, self.only, self.disabled):
            self.agents.update(workers_of(roster.agent(name)))
        self.clock = clock
        self.spawn = spawn
        self.grace_s = grace_s
        self._lock_fd: int | None = None
        self.write_error: str | None = None  # the last write refused, while they fail
        self.requests = Requests(self)  # what commands ask of us (`agentctl restart`, `stop`)

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the workspace lock, stop leftovers of a dead supervisor, start every agent."""
        self._take_lock()
        try:
            self._stop_leftovers()
            prepare_die_with_parent()
            for proc in self.agents.values():
                self.launch(proc)
        except BaseException:
            self.stop()
            raise

    def _take_lock(self) -> None:
        self._lock_fd = take_supervisor_lock(self.workspace, str(self.roster.path))

    def _stop_leftovers(self) -> None:
        # We hold the lock, so no live supervisor owns these: a killed one left them behind.
        leftovers = []
        for key, proc in self.agents.items():
            status = read_status(self.workspace.status_path(proc.spec.name, proc.replica))
            if status is None or not status.pid:
                continue
            ref = ProcessRef(status.pid, status.pid_start_ticks, status.pid)
            if ref.is_alive() and ref.signal_group(signal.SIGTERM):
                self.events.append(f"{key}: stopped a leftover process (pid {status.pid})")
                leftovers.append(ref)
        deadline = self.clock.monotonic() + self.grace_s
        while any(ref.is_alive() for ref in leftovers) and self.clock.monotonic() < deadline:
            self.clock.sleep(0.05)
        for ref in leftovers:
            ref.signal_group(signal.SIGKILL)

    def launch(self, proc: AgentProcess, *, cause: str | None = None) -> None:
        """Start `proc`'s process (one the system refuses is retried with backoff)."""
        spec = proc.spec
        self._recount_handled(proc)  # the worker carries its counts over from status.json
        argv, env = command_of(self.roster, self.workspace, proc)
        try:
            self.workspace.ensure_agent(spec.name)  # a full disk can refuse these: retried
            if proc.log_file is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                fd = os.open(self.workspace.log_path(spec.name), flags, 0o600)
                proc.log_file = os.fdopen(fd, "ab", buffering=0)
            popen = self.spawn(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=proc.log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd_of(self.roster),
                env=env,
                process_group=0,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - a single prctl call
            )
        except OSError as exc:
            proc.state = ProcState.BACKOFF
            proc.last_exit = None
            proc.schedule_restart(self.clock.monotonic(), quick=True)
            error = f"cannot start {argv[0]!r}: {disk_error_line(exc)}"
            self.note(spec.name, Event.CRASHED, error, error=error)
            return
        proc.popen = popen
        proc.ref = ProcessRef.of(popen.pid)
        proc.state = ProcState.RUNNING
        proc.started_at = self.clock.monotonic()
        if spec.handler_kind is HandlerKind.COMMAND:
            # A command agent may not write status.json itself; record what we know.
            self._write_command_status(proc, AgentState.RUNNING)
        event = Event.RESTARTED if proc.restarts else Event.STARTED
        self.note(
            spec.name,
            event,
            f"{event} (pid {popen.pid})" + (f" after {cause}" if cause else ""),
            pid=popen.pid,
            restarts=proc.restarts or None,
            cause=cause,  # why a fatal agent runs again: its cool-down, or `agentctl restart`
        )

    def note(self, agent: str, event: Event, text: str, **fields: object) -> None:
        """One happening, for the live view and for the journal."""
        self.events.append(f"{agent}: {text}")
        self._journal(event, agent, **fields)

    def _journal(self, event: Event, agent: str, **fields: object) -> None:
        self._write(lambda: self.transport.record(event, None, agent, **fields))

    def _write(self, step: Callable[[], object]) -> None:
        """Run a write the supervisor can do without (journal, status files): one the disk
        refuses is shown in the live view and skipped, so a full disk never stops the team."""
        try:
            step()
        except OSError as exc:
            line = disk_error_line(exc)
            if line != self.write_error:
                self.events.append(f"cannot write (going on without it): {line}")
            self.write_error = line
        else:
            self.write_error = None

    # -- supervise --------------------------------------------------------------------------

    def tick(self) -> None:
        """Answer requests, reap exited children and restart them when their policy, backoff
        or cool-down say so."""
        if self._lock_fd is not None:  # only the supervisor holding the lock answers
            self.requests.serve()
        now = self.clock.monotonic()
        for proc in self.agents.values():
            if proc.state is ProcState.RUNNING and proc.popen is not None:
                returncode = proc.popen.poll()
                if returncode is not None:
                    self._on_exit(proc, returncode, now)
                elif now >= proc.next_liveness_check:
                    proc.next_liveness_check = now + LIVENESS_CHECK_INTERVAL_S
                    self._kill_if_stuck(proc)
            elif proc.state is ProcState.BACKOFF and now >= proc.restart_at:
                proc.restarts += 1
                self.launch(proc)
            elif proc.state is ProcState.FATAL and now >= proc.restart_at:
                self.start_afresh(proc, times_fatal=proc.times_fatal, cause="cool-down")

    def restart_agent(self, name: str) -> list[str]:
        """Start every worker of agent `name` now (as `agentctl restart` asks); see Requests."""
        return self.requests.restart(name)

    def start_afresh(self, proc: AgentProcess, *, times_fatal: int, cause: str) -> None:
        """Start `proc` again with a whole new burst of quick restarts (why: `cause`)."""
        proc.forget_failures(times_fatal=times_fatal)
        proc.restarts += 1
        self.launch(proc, cause=cause)

    def _kill_if_stuck(self, proc: AgentProcess) -> None:
        """SIGKILL a worker whose heartbeat stopped: wedged in C code, stopped, deadlocked.

        Its message stays in processing/ and the next worker counts that attempt.
        """
        silent_s = stuck_for_s(self.workspace, proc, self.clock.now())
        if silent_s is not None:
            # A worker that cannot write cannot beat either: killing it would not help (its
            # heartbeat goes on in place when the disk is full; this is for read-only or failing
            # disks). Ask the disk before calling the silence stuck.
            refused = probe_write(self.workspace.agent_dir(proc.spec.name))
            if refused is not None:
                if not proc.spared:
                    proc.spared = True
                    why = disk_error_line(refused)
                    self.events.append(
                        f"{proc.spec.name}: silent, but the disk refuses writes ({why}); not killed"
                    )
                return
            proc.spared = False
            self.note(
                proc.spec.name,
                Event.KILLED,
                f"stuck: no heartbeat for {silent_s:.0f} s; killed (SIGKILL)",
                error=f"no heartbeat for {silent_s:.0f} s",
            )
            signal_group(proc, signal.SIGKILL)

    def _on_exit(self, proc: AgentProcess, returncode: int, now: float) -> None:
        name = proc.spec.name
        proc.last_exit = returncode
        ran_s = now - proc.started_at
        if (
            returncode == WORKER_RESTART_EXIT_CODE
            and proc.spec.handler_kind is not HandlerKind.COMMAND  # only our worker means it so
            and proc.spec.restart is not RestartPolicy.NEVER
        ):
            # The worker gave up on a handler that overran its timeout and asked for a fresh
            # process: restart at once, and do not count it as a crash.
            self.note(
                name,
                Event.EXITED,
                "handler overran its timeout; restarting the worker",
                exit=describe_exit(returncode),
            )
            proc.restarts += 1
            self.launch(proc)
            return
        failed = returncode != 0
        self._record_exit(proc, returncode)
        policy = proc.spec.restart
        restart = policy is RestartPolicy.ALWAYS or (failed and policy is RestartPolicy.ON_FAILURE)
        exit_text = describe_exit(returncode)
        event = Event.CRASHED if failed else Event.EXITED
        if not restart:
            proc.state = ProcState.EXITED
            self.note(
                name,
                event,
                f"{exit_text}; not restarted ({policy.value})",
                exit=exit_text,
                restart=False,
            )
            return
        policy_s = proc.spec.restart_backoff
        proc.schedule_restart(now, quick=ran_s < policy_s.stable_s)
        if proc.quick_failures >= policy_s.max_quick_failures:
            proc.state = ProcState.FATAL
            proc.times_fatal += 1
            cooldown_s = policy_s.cooldown_after_s(proc.times_fatal)
            proc.restart_at = now + cooldown_s if cooldown_s is not None else math.inf
            reason = f"{exit_text}; fatal after {proc.quick_failures} quick failures in a row"
            self._record_fatal(proc, reason, cooldown_s)
            self.note(name, event, exit_text, exit=exit_text, restart=False)
            then = f"next try in {cooldown_s:g} s" if cooldown_s is not None else "no retry"
            self.note(
                name,
                Event.FATAL,
                f"{reason}; {then}, or `agentctl restart {name}` (see its agent.log)",
                error=reason,
                retry_in_s=cooldown_s,
            )
            return
        proc.state = ProcState.BACKOFF
        self.note(
            name,
            event,
            f"{exit_text}; restarting in {proc.backoff_s:g} s",
            exit=exit_text,
            restart_in_s=proc.backoff_s,
        )

    def release_in_hand(self, proc: AgentProcess) -> None:
        """Put back what a worker killed at the end of the stop grace had in hand.

        It was stopped, not crashed: its message goes back to new/ for the next run without an
        attempt counted. (A `command` agent's inbox is its own business.)
        """
        if proc.spec.handler_kind is HandlerKind.COMMAND:
            return
        names: list[str] = []
        self._write(lambda: names.extend(self.transport.release_in_hand(proc.spec.name)))
        for name in names:
            self._journal(
                Event.RELEASED,
                proc.spec.name,
                file=name,
                reason="stopped before its handler finished",
            )

    def _recount_handled(self, proc: AgentProcess) -> None:
        recount_of(self.workspace, proc)

    def _record_fatal(self, proc: AgentProcess, reason: str, cooldown_s: float | None) -> None:
        # `status` must say why the agent is down, until when: the reason and the end of its log.
        self._recount_handled(proc)  # right while it is down, too
        next_try_at = iso_after(cooldown_s, self.clock.now()) if cooldown_s is not None else None
        self.record_status(proc, fatal_status(self.workspace, proc, reason, next_try_at))

    def _record_exit(self, proc: AgentProcess, returncode: int) -> None:
        self.record_status(proc, exit_status(self.workspace, proc, returncode))

    def record_status(self, proc: AgentProcess, status: AgentStatus) -> None:
        """Write `status` as the status.json of `proc` (and publish it, on NATS)."""
        path = self.workspace.status_path(proc.spec.name, proc.replica)
        self._write(lambda: write_status(path, status))
        self.transport.publish_status(status)

    def _write_command_status(self, proc: AgentProcess, state: AgentState) -> None:
        status = command_status(proc, state)
        self._write(lambda: write_status(self.workspace.status_path(proc.spec.name), status))

    def drain_events(self) -> list[str]:
        """Return and forget the events recorded since the last call."""
        events, self.events = self.events, []
        return events

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM every agent's group, SIGKILL what is left after the grace period, reap all."""
        alive = (ProcState.RUNNING, ProcState.STOPPING)
        running = [p for p in self.agents.values() if p.state in alive and p.popen]
        for proc in running:
            signal_group(proc, signal.SIGTERM)
        deadline = self.clock.monotonic() + self.grace_s
        for proc in running:
            assert proc.popen is not None
            remaining = max(0.0, deadline - self.clock.monotonic())
            try:
                proc.popen.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                self.note(
                    proc.spec.name, Event.KILLED, f"still running after {self.grace_s:g} s; killed"
                )
                signal_group(proc, signal.SIGKILL)
                proc.popen.wait()
                self.release_in_hand(proc)
            signal_group(proc, signal.SIGKILL)  # anything the agent left in its group
            self._record_exit(proc, proc.popen.returncode)
            proc.state = ProcState.STOPPED
            self._journal(Event.STOPPED, proc.spec.name, exit=describe_exit(proc.popen.returncode))
        for proc in self.agents.values():
            if proc.log_file is not None:
                proc.log_file.close()
                proc.log_file = None
            if proc.state is ProcState.BACKOFF:
                proc.state = ProcState.STOPPED
        if self._lock_fd is not None:
            lock_fd, self._lock_fd = self._lock_fd, None
            self._write(lambda: release_supervisor_lock(self.workspace, lock_fd))
