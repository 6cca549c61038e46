#!/bin/sh
# The smallest agentctl `command` agent: answers each task with its text in upper case.
umask 077; in=$AGENTCTL_INBOX; ws=$AGENTCTL_WORKSPACE; me=$AGENTCTL_AGENT
while sleep 0.2; do
  for f in "$in"/new/*.json; do
    n=${f##*/}; p=$in/processing/$n; now=$(date -u +%FT%TZ)
    mv "$f" "$p" 2>/dev/null || continue              # claim (the only consumer of this inbox)
    if ! to=$(jq -er 'select(.kind == "task") | .from_agent' "$p" 2>/dev/null); then
      if jq empty "$p" 2>/dev/null; then mv "$p" "$in/done/"; continue; fi   # not a task: ack
      jq -n --arg e "$n: not JSON" --arg now "$now" '{message_id: null, error: $e, attempts: 0,
        error_kind: "bad_message", dead_at: $now}' >"$in/dead/.errors/$n"
      mv "$p" "$in/dead/"; continue                                          # not JSON: dead/
    fi
    r=${n%.json}-reply.json; t=$ws/$to/inbox/tmp/$r   # the reply's file: <rank>-<id>-reply.json
    jq --arg now "$now" '{id: "\(.id)-reply", thread_id, in_reply_to: .id, kind: "result",
      from_agent: .to_agent, to_agent: .from_agent, priority, timestamp: $now,
      content: (.content | if type == "string" then ascii_upcase else . end)}' "$p" >"$t"
    ln "$t" "$ws/$me/outbox/$r" 2>/dev/null; ln "$t" "$ws/$to/inbox/new/$r" 2>/dev/null
    rm -f "$t"; mv "$p" "$in/done/"                   # replied (never twice: ln refuses); ack
  done
done
