#!/bin/sh
# An agentctl `exec` agent: run once per message, the message JSON on stdin, the result JSON on
# stdout, a non-zero exit status for a failure (stderr goes to the agent's log). See
# docs/PROTOCOL.md, "The exec contract". It counts the words of a text task and upper-cases it;
# any other content fails the attempt (jq's error() exits 5), so agentctl retries it and then
# escalates.
exec jq -c --arg agent "${AGENTCTL_AGENT:-}" --arg id "${AGENTCTL_MESSAGE_ID:-}" '
  if (.content | type) == "string" then . else error("expected text, got \(.content | type)") end
  | {agent: $agent, message_id: $id, attempt,
     words: ([.content | splits("[[:space:]]+") | select(. != "")] | length),
     upper: (.content | ascii_upcase)}'
