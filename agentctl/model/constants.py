"""Every magic name and default number of agentctl, in one place."""

from __future__ import annotations

import re

# Agent names become directory names, so they are the first thing validated.
AGENT_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
AGENT_NAME_RE = re.compile(AGENT_NAME_PATTERN)

# Message ids become file names: no ':' (Windows, Maildir info), no '/', no leading '.'.
MAX_MESSAGE_ID_CHARS = 128
MESSAGE_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$"
MESSAGE_ID_RE = re.compile(MESSAGE_ID_PATTERN)

# The pseudo-agent that stands for a person at the command line.
USER_AGENT = "user"
# Reserved for later layers (human escalations); refused as roster agent names today.
HUMAN_AGENT = "human"  # escalations wait in its inbox for a person to resolve them
PIPELINE_AGENT = "pipeline"  # the conductor of pipeline runs; `send pipeline:NAME` goes there
CONDUCTOR_CLASS = "agentctl.runtime.conductor:ConductorHandler"  # what the worker runs it with
RESERVED_AGENT_NAMES = frozenset({USER_AGENT, HUMAN_AGENT, PIPELINE_AGENT})
PIPELINE_HEADER = "pipeline"  # on a start message: which pipeline to run
STAGE_HEADER = "pipeline_stage"  # on a stage's message: "<run>/<stage index>"
HALT_FILE = "halted.json"  # under CONTROL_DIR: while it exists, no agent claims new work
DEFAULT_ESCALATION_OVERDUE_S = 3600.0

DEFAULT_CONFIG_FILE = "agents.yaml"
DEFAULT_WORKSPACE_DIR = "workspace"
ENV_WORKSPACE = "AGENTCTL_WORKSPACE"
ENV_CONFIG = "AGENTCTL_CONFIG"
ENV_AGENT = "AGENTCTL_AGENT"
ENV_INBOX = "AGENTCTL_INBOX"
ENV_MCP_TOKEN = "AGENTCTL_MCP_TOKEN"  # noqa: S105 - the variable's name, not a token

# Workspace layout.
CONTROL_DIR = ".agentctl"
SUPERVISOR_LOCK_FILE = "supervisor.lock"
SUPERVISOR_PID_FILE = "supervisor.json"
# Requests to a running supervisor (`agentctl restart`), one file each, and its answers.
REQUESTS_DIR = "requests"
ANSWERS_DIR = "answers"
CONTROL_ANSWER_TIMEOUT_S = 10.0  # how long a command waits for the supervisor to answer
WORKER_LOCK_FILE = "worker.lock"
INBOX_DIR = "inbox"
OUTBOX_DIR = "outbox"
STATUS_FILE = "status.json"
LOG_FILE = "agent.log"
TMP, NEW, PROCESSING, DONE, DEAD = "tmp", "new", "processing", "done", "dead"
INBOX_SUBDIRS = (TMP, NEW, PROCESSING, DONE, DEAD)
MESSAGE_SUFFIX = ".json"
JOURNAL_DIR = "journal"  # under CONTROL_DIR
ERROR_SUFFIX = ".error.json"  # a dead letter's reason beside it, as written before dead/.errors/
DEAD_ERRORS_DIR = ".errors"  # under dead/: the reason of dead/N is dead/.errors/N

DIR_MODE = 0o700
FILE_MODE = 0o600

# Defaults of the roster's workspace-level settings and per-agent settings.
DEFAULT_POLL_INTERVAL_S = 0.5
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
# A retry rewrites a message with its attempt count and a `not_before` header: a message that
# was within max_message_bytes may grow by this much, and is still read as itself.
REWRITE_HEADROOM_BYTES = 512
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_ATTEMPTS = 3
# An llm: agent with MCP servers: tool calls one attempt may make (default, and the most allowed).
DEFAULT_MAX_TOOL_CALLS = 16
MAX_TOOL_CALLS_LIMIT = 1000
MCP_EXTRA_HINT = "pip install 'agentctl[mcp]'"  # what to do when the MCP SDK is missing
# Between attempts of a failed message: 0.5 s, 1 s, 2 s, ... up to 30 s.
DEFAULT_RETRY_BACKOFF_S = 0.5
DEFAULT_RETRY_FACTOR = 2.0
DEFAULT_RETRY_MAX_S = 30.0
NOT_BEFORE_HEADER = "not_before"  # a retried message waits in new/ until this ISO time
DEFAULT_JOURNAL_MAX_BYTES = 64 * 1024 * 1024  # rotate the journal at this size

# Worker tuning.
HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_STUCK_AFTER_S = 10.0  # no heartbeat for this long: the worker is stuck, and is killed
# A handler still running this long after its timeout_s (a synchronous Python handler cannot be
# interrupted) makes the worker record a timeout and exit with WORKER_RESTART_EXIT_CODE.
HANDLER_OVERRUN_GRACE_S = 1.0
WORKER_RESTART_EXIT_CODE = 75  # EX_TEMPFAIL: restart me now; not counted as a crash
INTERRUPTED_NOTE_FILE = "interrupted.json"  # why the last worker left its message behind
# A handler's error is kept to its start: one of megabytes would not fit in the escalation
# reply (max_message_bytes), the journal or status.json.
MAX_ERROR_CHARS = 4000
LOG_TAIL_LINES = 10
STATUS_MIN_INTERVAL_S = 0.05  # coalesce status writes during a burst
CLAIM_BATCH = 1000  # re-list new/ after this many messages so priorities stay honoured
STALE_TMP_AGE_S = 3600.0  # a tmp/ file this old belongs to a writer that died

# Supervisor tuning.
STOP_GRACE_S = 10.0
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_FACTOR = 2.0
RESTART_BACKOFF_MAX_S = 30.0
RESTART_STABLE_S = 10.0
# A fatal agent is tried again after a cool-down: 60 s, doubling each time it turns fatal
# again, at most 30 min (systemd's start-limit interval, but retrying instead of giving up).
RESTART_COOLDOWN_S = 60.0
RESTART_COOLDOWN_MAX_S = 1800.0
SUPERVISOR_TICK_S = 0.1
LIVENESS_CHECK_INTERVAL_S = 1.0  # how often the supervisor reads each worker's heartbeat

# Reply ids derive from the request id, so a redelivered request cannot yield a second reply.
REPLY_ID_SUFFIX = "-reply"
REQUEUED_HEADER = "requeued"  # how many times a dead letter was brought back
RESTART_MAX_QUICK_FAILURES = 5  # this many short-lived runs in a row and the agent is fatal
