"""The cluster's control records in the `<STREAM>_control` bucket: the HALT verdict every worker
obeys, and the lease that keeps one conductor per cluster (the file side's halt.py and control.py).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from agentctl.backends.nats.client import control_bucket, status_key
from agentctl.model.constants import PIPELINE_AGENT
from agentctl.model.errors import AgentctlError
from agentctl.protocol.status import AgentState, iso_now, parse_iso

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport

log = logging.getLogger(__name__)

HALT_KEY = "halted"
HALT_CHECK_INTERVAL_S = 0.5  # how stale a worker's view of the halt record may be
CONDUCTOR_KEY = "conductor"
CONDUCTOR_LEASE_S = 5.0  # a conductor whose heartbeat is older has died: its lease is free


class ControlRecords:
    """The halt record and the conductor lease of one transport's stream."""

    def __init__(self, transport: NatsTransport) -> None:
        self.transport = transport
        self._halted = False
        self._halt_checked = 0.0

    def is_halted(self) -> bool:
        """The halt record's presence, looked up at most every HALT_CHECK_INTERVAL_S."""
        now = time.monotonic()
        if now - self._halt_checked >= HALT_CHECK_INTERVAL_S:
            try:
                self._halted = self.transport.loop.call(self._halt_record(), 2.0) is not None
                self._halt_checked = now
            except Exception as exc:  # keep the last answer while the server is away
                log.debug("cannot read the halt record: %s", exc)
        return self._halted

    def halt_state(self) -> dict[str, Any] | None:
        """The halt record, or None."""
        value = self.transport.call(self._halt_record, "read the halt record")
        if value is None:
            return None
        try:
            data = json.loads(value)
        except ValueError:
            return {"reason": "the halt record is damaged", "by": None, "run": None}
        return data if isinstance(data, dict) else None

    def write_halt(self, record: dict[str, Any]) -> None:
        """Put the halt record: every worker on every machine stops claiming."""
        data = json.dumps(record).encode()
        self.transport.call(lambda: self.transport.control.put(HALT_KEY, data), "halt")
        self._halted, self._halt_checked = True, time.monotonic()

    def clear_halt(self) -> None:
        """Delete the halt record."""
        self.transport.call(lambda: self.transport.control.delete(HALT_KEY), "resume")
        self._halted, self._halt_checked = False, time.monotonic()

    async def _halt_record(self) -> bytes | None:
        # Through the stream leader, not a direct get: a bucket with replicas that has just
        # been created does not answer direct gets until its replicas catch up (measured: the
        # request times out), and a wrong "not halted" is not an answer to give.
        from nats.js.errors import NotFoundError

        bucket = control_bucket(self.transport.stream)
        try:
            msg = await self.transport.js.get_msg(
                f"KV_{bucket}", subject=f"$KV.{bucket}.{HALT_KEY}", direct=False
            )
        except NotFoundError:
            return None
        if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            return None  # resumed: the key's last entry is its deletion
        return bytes(msg.data) if msg.data else None

    def claim_conductor(self) -> None:
        """One conductor per cluster: take the lease in the control bucket, or refuse (one
        clear error) while another machine's conductor is alive. Two conductors would share
        the `pipeline` consumer while each keeps its own run records, and split runs."""
        me = {"host": socket.gethostname(), "workspace": str(self.transport.workspace.root)}
        self.transport.call(lambda: self._claim_conductor(me), "claim the conductor's lease")

    async def _claim_conductor(self, me: dict[str, str]) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        data = json.dumps({**me, "since": iso_now()}).encode()
        try:
            await self.transport.control.create(CONDUCTOR_KEY, data)
            return
        except KeyWrongLastSequenceError:
            pass  # held already: by us (a restart), by a dead conductor, or by a live one
        entry = await self.transport.control.get(CONDUCTOR_KEY)
        try:
            holder = json.loads(entry.value or b"{}")
        except ValueError:
            holder = {}
        mine = all(holder.get(k) == v for k, v in me.items())
        if not mine and await self._conductor_alive(str(holder.get("host", ""))):
            raise AgentctlError(
                f"another conductor runs on {holder.get('host')} (workspace "
                f"{holder.get('workspace')}); one per cluster: on this machine run "
                "`agentctl run --agent NAME ...` for the agents it should host"
            )
        await self.transport.control.update(CONDUCTOR_KEY, data, last=entry.revision)

    async def _conductor_alive(self, host: str) -> bool:
        from datetime import UTC, datetime

        from nats.js.errors import KeyNotFoundError

        key = status_key(PIPELINE_AGENT, host, 0)
        try:
            entry = await self.transport.kv.get(key)
            status = json.loads(entry.value or b"{}")
        except (KeyNotFoundError, ValueError):
            return False
        heartbeat = parse_iso(str(status.get("heartbeat_at", "")))
        down = (AgentState.STOPPED, AgentState.CRASHED, AgentState.FATAL)
        if heartbeat is None or status.get("state") in down:
            return False
        return (datetime.now(UTC) - heartbeat).total_seconds() <= CONDUCTOR_LEASE_S
