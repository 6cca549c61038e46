#!/usr/bin/env node
// An agentctl `command` agent in Node.js, with no packages: it speaks the file protocol of
// docs/PROTOCOL.md itself, the way agentctl's own worker does (link-based claims, attempts
// counted at claim, retries, dead letters with an error file, escalation replies, recovery of
// processing/ at start, status.json with a heartbeat).
//
//   command: [node, node_agent.js, --max-attempts, "2"]
//
// Its work (handle() below): reverse the text of a task. Content {"fail": true} makes every
// attempt fail, to show retries and the escalation.
'use strict';

const fs = require('fs');
const path = require('path');

const AGENT = process.env.AGENTCTL_AGENT;
const WORKSPACE = process.env.AGENTCTL_WORKSPACE;
const INBOX = process.env.AGENTCTL_INBOX;
if (!AGENT || !WORKSPACE || !INBOX) {
  console.error('node_agent.js: AGENTCTL_AGENT, AGENTCTL_WORKSPACE and AGENTCTL_INBOX must be set '
    + '(run it as a `command:` agent of `agentctl run`)');
  process.exit(2);
}

function option(flag, fallback) {
  const i = process.argv.indexOf(flag);
  return i > 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : fallback;
}

// Top-level roster settings, read with a regular expression: no YAML parser without packages.
function rosterSetting(key) {
  try {
    const text = fs.readFileSync(process.env.AGENTCTL_CONFIG || '', 'utf8');
    const m = text.match(new RegExp(`^${key}:\\s*([^\\s#]+)`, 'm'));
    return m ? m[1] : undefined;
  } catch {
    return undefined;
  }
}

const MAX_ATTEMPTS = option('--max-attempts', 3);
const POLL_MS = 1000 * option('--poll-s', Number(rosterSetting('poll_interval_s') || 0.5));
const FSYNC = rosterSetting('durability') !== 'none';
const MAX_BYTES = Number(rosterSetting('max_message_bytes') || 1048576);
const HEARTBEAT_MS = 1000;

const NAME_RE = /^[a-z][a-z0-9_-]{0,31}$/;
const ID_RE = /^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$/;
const RANK = { high: 0, normal: 1, low: 2 };
const KINDS = ['task', 'result', 'event'];
const FIELDS = ['id', 'thread_id', 'in_reply_to', 'kind', 'from_agent', 'to_agent', 'priority',
  'timestamp', 'attempt', 'keywords', 'headers', 'content'];
const SUBDIRS = ['tmp', 'new', 'processing', 'done', 'dead'];

class BadMessage extends Error {}

// -- the agent's work ---------------------------------------------------------------------

function handle(message) {
  const content = message.content;
  if (content !== null && typeof content === 'object' && content.fail) {
    throw new Error(`asked to fail (attempt ${message.attempt})`);
  }
  const text = typeof content === 'string' ? content : JSON.stringify(content);
  return { agent: AGENT, reversed: [...text].reverse().join(''), attempt: message.attempt };
}

// -- file primitives ------------------------------------------------------------------------

process.umask(0o077); // files 0600, directories 0700
let tmpCounter = 0;
const tmpName = (base) => `${base}.${process.pid}.${tmpCounter++}.tmp`;
const isoNow = () => new Date().toISOString();

function fsyncPath(p) {
  const fd = fs.openSync(p, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

function writeNewFile(p, data) { // 0600, must not exist, fsynced when durability is fsync
  const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL
    | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.writeSync(fd, data);
    if (FSYNC) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function linkNoReplace(src, dst) { // false if dst exists; throws ENOENT if src is gone
  try {
    fs.linkSync(src, dst);
    return true;
  } catch (err) {
    if (err.code === 'EEXIST') return false;
    throw err;
  }
}

function unlinkQuietly(p) {
  try { fs.unlinkSync(p); } catch (err) { if (err.code !== 'ENOENT') throw err; }
}

function moveSettle(src, dst) { // link + unlink; dst already there means the move was done
  try { linkNoReplace(src, dst); } catch (err) { if (err.code === 'ENOENT') return; throw err; }
  unlinkQuietly(src);
}

function rewriteInto(dir, name, data) { // replace dir/name atomically (same message, new bytes)
  const tmp = path.join(INBOX, 'tmp', tmpName(name));
  writeNewFile(tmp, data);
  fs.renameSync(tmp, path.join(dir, name));
  if (FSYNC) fsyncPath(dir);
}

function exists(p) {
  try { fs.lstatSync(p); return true; } catch { return false; }
}

// -- messages -------------------------------------------------------------------------------

const fileName = (message) => `${RANK[message.priority]}-${message.id}.json`;
// Pretty JSON like agentctl writes (objects are built with their fields in FIELDS order).
const toBytes = (message) => Buffer.from(`${JSON.stringify(message, null, 2)}\n`, 'utf8');

function readMessage(p) {
  let fd;
  try {
    fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    if (err.code === 'ELOOP') throw new BadMessage('is a symlink; message files must be regular files');
    throw err;
  }
  let data;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new BadMessage('is not a regular file');
    if (st.size > MAX_BYTES) throw new BadMessage(`is ${st.size} bytes, over the limit of ${MAX_BYTES}`);
    data = fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  let raw;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (err) {
    throw new BadMessage(`invalid JSON or UTF-8: ${err.message}`);
  }
  return validate(raw);
}

function validate(raw) { // the checks that matter here; `agentctl schema message` has them all
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new BadMessage('a message must be a JSON object');
  }
  const extra = Object.keys(raw).filter((k) => !FIELDS.includes(k));
  if (extra.length) throw new BadMessage(`unknown field(s): ${extra.join(', ')}`);
  const m = {
    id: raw.id, thread_id: raw.thread_id || raw.id, in_reply_to: raw.in_reply_to ?? null,
    kind: raw.kind ?? 'task', from_agent: raw.from_agent, to_agent: raw.to_agent,
    priority: raw.priority ?? 'normal', timestamp: raw.timestamp || isoNow(),
    attempt: raw.attempt ?? 0, keywords: raw.keywords ?? [], headers: raw.headers ?? {},
    content: raw.content ?? null,
  };
  const check = (ok, what) => { if (!ok) throw new BadMessage(what); };
  check(typeof m.id === 'string' && ID_RE.test(m.id), `id: ${JSON.stringify(m.id)} is not a valid id`);
  check(typeof m.thread_id === 'string' && ID_RE.test(m.thread_id), 'thread_id: not a valid id');
  check(m.in_reply_to === null || (typeof m.in_reply_to === 'string' && ID_RE.test(m.in_reply_to)),
    'in_reply_to: not a valid id');
  check(KINDS.includes(m.kind), `kind: must be one of ${KINDS.join(', ')}`);
  check(typeof m.from_agent === 'string' && NAME_RE.test(m.from_agent), 'from_agent: not an agent name');
  check(m.to_agent === AGENT, `addressed to ${JSON.stringify(m.to_agent)}, not ${JSON.stringify(AGENT)}`);
  check(Object.hasOwn(RANK, m.priority), 'priority: must be high, normal or low');
  check(Number.isInteger(m.attempt) && m.attempt >= 0, 'attempt: must be an integer >= 0');
  check(Array.isArray(m.keywords) && m.keywords.every((k) => typeof k === 'string'),
    'keywords: must be a list of strings');
  check(m.headers !== null && typeof m.headers === 'object' && !Array.isArray(m.headers)
    && Object.values(m.headers).every((v) => typeof v === 'string'), 'headers: must map strings to strings');
  check(m.kind !== 'task' || ID_RE.test(replyId(m)), 'id: too long to derive a valid reply id');
  return m;
}

// The reply id rule: `<id>-reply`, or `<id>-reply.r<N>` for a message `agentctl dead requeue`
// brought back N times (its `requeued` header), so each life answers once.
function replyId(message) {
  const requeued = /^[0-9]+$/.test(message.headers.requeued ?? '') ? Number(message.headers.requeued) : 0;
  return `${message.id}-reply${requeued > 0 ? `.r${requeued}` : ''}`;
}

function replyTo(request, content) {
  return {
    id: replyId(request), thread_id: request.thread_id, in_reply_to: request.id, kind: 'result',
    from_agent: AGENT, to_agent: request.from_agent, priority: request.priority, timestamp: isoNow(),
    attempt: 0, keywords: [], headers: {}, content,
  };
}

// -- mailboxes ------------------------------------------------------------------------------

const inbox = (sub, name = '') => path.join(INBOX, sub, name);

function ensureAgent(name) { // what agentctl's Workspace.ensure_agent creates
  const dir = path.join(WORKSPACE, name);
  for (const sub of SUBDIRS) fs.mkdirSync(path.join(dir, 'inbox', sub), { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.join(dir, 'outbox'), { recursive: true, mode: 0o700 });
  return path.join(dir, 'inbox');
}

// Deliver `message` into its recipient's new/, with a copy in our outbox; never overwrites, and
// never delivers a reply twice (dedupe: its name anywhere in the recipient's inbox).
function deliver(message) {
  const box = ensureAgent(message.to_agent);
  const name = fileName(message);
  if (['new', 'processing', 'done', 'dead'].some((sub) => exists(path.join(box, sub, name)))) return;
  const tmp = path.join(box, 'tmp', tmpName(name));
  const outbox = path.join(WORKSPACE, AGENT, 'outbox');
  writeNewFile(tmp, toBytes(message));
  try {
    linkNoReplace(tmp, path.join(outbox, name));
    linkNoReplace(tmp, path.join(box, 'new', name));
  } finally {
    unlinkQuietly(tmp);
  }
  if (FSYNC) {
    fsyncPath(path.join(box, 'new'));
    fsyncPath(outbox);
  }
}

function claim(name) { // the winner is whoever unlinks new/name
  const src = inbox('new', name);
  const dst = inbox('processing', name);
  try {
    if (!linkNoReplace(src, dst)) return null;
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
  try {
    fs.unlinkSync(src);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
    unlinkQuietly(dst);
    return null;
  }
  return dst;
}

function bury(name, record, message) { // the reason first (dead/.errors/N), then the message
  const reasons = inbox('dead', '.errors');
  fs.mkdirSync(reasons, { recursive: true, mode: 0o700 });
  rewriteInto(reasons, name, Buffer.from(`${JSON.stringify(record, null, 2)}\n`));
  if (message) {
    rewriteInto(inbox('dead'), name, toBytes(message));
    unlinkQuietly(inbox('processing', name));
  } else {
    moveSettle(inbox('processing', name), inbox('dead', name));
  }
}

const errorRecord = (id, error, kind, attempts) => ({
  message_id: id, error, error_kind: kind, attempts, dead_at: isoNow(),
});

// -- status.json ----------------------------------------------------------------------------

function startTicks() { // field 22 of /proc/self/stat: with the pid, it identifies this process
  try {
    const stat = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return 0;
  }
}

const status = {
  agent: AGENT, state: 'starting', pid: process.pid, pid_start_ticks: startTicks(),
  started_at: isoNow(), heartbeat_at: '', current_message_id: null,
  handled: 0, failed: 0, dead: 0, last_error: null, exit_code: null,
};

function writeStatus(changes = {}) {
  Object.assign(status, changes, { heartbeat_at: isoNow() });
  const file = path.join(WORKSPACE, AGENT, 'status.json');
  const tmp = path.join(WORKSPACE, AGENT, tmpName('.status.json'));
  try {
    writeNewFile(tmp, `${JSON.stringify(status, null, 2)}\n`);
    fs.renameSync(tmp, file);
  } catch (err) {
    console.error(`cannot write ${file}: ${err.message}`);
  }
}

// -- the loop -------------------------------------------------------------------------------

function fail(name, message, error, kind) {
  console.error(`${message.id} attempt ${message.attempt}/${MAX_ATTEMPTS} failed: ${error}`);
  status.failed += 1;
  status.last_error = `${message.id}: ${error}`;
  if (message.attempt < MAX_ATTEMPTS) {
    rewriteInto(inbox('new'), name, toBytes(message)); // back in line, with its attempt count
    unlinkQuietly(inbox('processing', name));
    return;
  }
  if (message.kind === 'task') {
    deliver(replyTo(message, { agent: AGENT, verdict: 'escalate', error, attempts: message.attempt }));
  }
  bury(name, errorRecord(message.id, error, kind, message.attempt), message);
  status.dead += 1;
}

function handleClaimed(name, interrupted) {
  let message;
  try {
    message = readMessage(inbox('processing', name));
  } catch (err) {
    if (!(err instanceof BadMessage) && !err.code) throw err;
    console.error(`bad message file ${name}: ${err.message}`);
    bury(name, errorRecord(null, `${name}: ${err.message}`, 'bad_message', 0), null);
    Object.assign(status, { failed: status.failed + 1, dead: status.dead + 1, last_error: `${name}: ${err.message}` });
    return;
  }
  message.attempt += 1; // counted at claim: whatever happens next, this attempt was spent
  if (interrupted) {
    fail(name, message, 'worker died while handling it', 'interrupted');
    return;
  }
  writeStatus({ state: 'busy', current_message_id: message.id });
  let result;
  try {
    result = handle(message);
  } catch (err) {
    fail(name, message, `${err.name}: ${err.message}`, 'error');
    return;
  }
  if (message.kind === 'task') deliver(replyTo(message, result ?? null)); // reply, then ack
  moveSettle(inbox('processing', name), inbox('done', name));
  status.handled += 1;
}

function recover() { // settle what a dead predecessor left in processing/
  for (const name of fs.readdirSync(inbox('processing')).sort()) {
    if (['new', 'done', 'dead'].some((sub) => exists(inbox(sub, name)))) {
      unlinkQuietly(inbox('processing', name)); // a move that crashed half-way: it was done
    } else {
      handleClaimed(name, true);
    }
  }
}

function listNew() {
  return fs.readdirSync(inbox('new'), { withFileTypes: true })
    .filter((e) => !e.name.startsWith('.') && !e.isDirectory())
    .map((e) => e.name)
    .sort(); // ASCII names: the same order as agentctl's
}

let stopping = false;
let wake = () => {};

function sleepOrWake(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => { clearTimeout(timer); resolve(); };
  });
}

async function main() {
  for (const sub of SUBDIRS) fs.mkdirSync(inbox(sub), { recursive: true, mode: 0o700 });
  writeStatus();
  recover();
  let watcher = null;
  try {
    watcher = fs.watch(inbox('new'), () => wake()); // a hint only: we also rescan every POLL_MS
  } catch (err) {
    console.error(`watching ${inbox('new')} by polling: ${err.message}`);
  }
  const heartbeat = setInterval(() => writeStatus(), HEARTBEAT_MS);
  writeStatus({ state: 'idle' });
  console.error(`agent ${AGENT} ready (pid ${process.pid})`);
  while (!stopping) {
    const names = listNew();
    for (const name of names) {
      if (stopping) break;
      if (claim(name) !== null) handleClaimed(name, false);
    }
    if (names.length === 0) {
      if (status.state !== 'idle') writeStatus({ state: 'idle', current_message_id: null });
      await sleepOrWake(POLL_MS);
    } else {
      await new Promise(setImmediate); // let signals and the heartbeat in between batches
    }
  }
  if (watcher) watcher.close();
  clearInterval(heartbeat);
  writeStatus({ state: 'stopped', current_message_id: null });
}

// SIGTERM (agentctl stop) or Ctrl-C: finish the message in hand, claim no more, exit 0.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => { stopping = true; wake(); });
}

main().catch((err) => {
  console.error(err.stack || String(err));
  process.exit(1);
});
