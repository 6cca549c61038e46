#!/bin/sh
# An agentctl `command` agent in POSIX sh + jq, following docs/PROTOCOL.md (which embeds this
# file verbatim). It answers each task with {"agent": NAME, "echo": CONTENT}.
umask 077; export LC_ALL=C   # files 0600, dirs 0700; globs sort like the protocol's file names
in=$AGENTCTL_INBOX; ws=$AGENTCTL_WORKSPACE; me=$AGENTCTL_AGENT
reply='if length == 1 and (.[0] | type) == "object" then .[0] else error("not one object") end
  | if (.id | test("^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$")) and .to_agent == $me
      and (.from_agent | test("^[a-z][a-z0-9_-]{0,31}$"))
      and (.priority // "normal" | . == "high" or . == "normal" or . == "low")
    then . else error("bad header") end
  | select((.kind // "task") == "task")
  | (.headers.requeued // "0" | if test("^[0-9]+$") and tonumber > 0 then ".r\(tonumber)"
     else "" end) as $r | "\(.id)-reply\($r)" as $rid   # the reply id rule of PROTOCOL.md
  | if ($rid | length) > 128 then error("id too long for a reply id") else . end
  | {id: $rid, thread_id: (if (.thread_id // "") == "" then .id else .thread_id end),
     in_reply_to: .id, kind: "result", from_agent: $me, to_agent: .from_agent,
     priority: (.priority // "normal"), timestamp: $now, attempt: 0, keywords: [], headers: {},
     content: {agent: $me, echo: .content}}'
name='| "\(.to_agent)/inbox \({high: 0, normal: 1, low: 2}[.priority])-\(.id).json"'
trap 'exit 0' TERM INT       # a message in hand stays in processing/; recovery handles it
for f in "$in"/processing/*; do [ -f "$f" ] && mv "$f" "$in/new/"; done    # crash recovery
while :; do
  for f in "$in"/new/*; do
    n=${f##*/}; p=$in/processing/$n; now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    [ -f "$f" ] && mv "$f" "$p" || continue                                 # claim
    if to=$(jq -rs --arg me "$me" --arg now "$now" "$reply $name" "$p"); then
      if [ -n "$to" ]; then                            # a task: reply, unless already replied
        set -- $to; t=$ws/$1/tmp/$2.$$.tmp
        if ! ls "$ws/$1"/*/"$2" >/dev/null 2>&1; then
          jq -s --arg me "$me" --arg now "$now" "$reply" "$p" >"$t" || exit 1
          ln "$t" "$ws/$me/outbox/$2" 2>/dev/null; ln "$t" "$ws/$1/new/$2" || exit 1
          rm -f "$t"
        fi
      fi
      mv "$p" "$in/done/"                                                   # ack
    elif [ $? -lt 128 ]; then                           # not a valid task: dead/, with why
      jq -n --arg e "$n: not a valid task for $me (see agent.log)" --arg now "$now" \
        '{message_id: null, error: $e, error_kind: "bad_message", attempts: 0, dead_at: $now}' \
        >"$in/tmp/$n.err" && mv "$in/tmp/$n.err" "$in/dead/.errors/$n"
      mv "$p" "$in/dead/"
    fi
  done
  sleep 0.2
done
