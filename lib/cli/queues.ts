// `sockwatch queues`: watch send / receive / accept queues and alert on a breach. Wires a
// QueueWatcher to stdout (JSON lines) or, with --url, to a durable Outbox and HttpDelivery.
// runQueues reads as its steps, top to bottom: parse -> build watcher -> open outbox/delivery ->
// wire events -> announce -> run until a signal -> shut down. Flag values are parsed once here
// (lib/cli/args.ts) and handed on in the library's own representation (thresholds: number | 'off').
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HttpDelivery, Outbox, DELIVERY_DEFAULTS, StateDirLockedError } from '../alerts';
import {
  EPISODES_FILE,
  QUEUE_DEFAULTS,
  QueueWatcher,
  alertToJson,
  alertToLine,
  alertToParams,
  type AcceptThreshold,
  type ByteThreshold,
  type QueueAlert,
} from '../queues';
import { ensureDir } from '../base/fs';
import { SockwatchError } from '../base/errors';
import { LockFileError } from '../base/pid-lock';
import { redactText, redactUrl } from '../base/redact';
import { UINT32_MAX } from '../base/validate';
import { decimalFlag, intFlag, parse, sizeFlag, type Parsed } from './args';
import { UsageError } from './errors';
import { FILTER_HELP, FILTER_OPTIONS, filterOptions, resolveNetns } from './filters';
import { METRICS_LISTEN_HELP, METRICS_LISTEN_OPTIONS, metricsListenFlags, serveCommandMetrics, type MetricsListen } from './exporter';
import { queuesMetrics } from '../metrics/process-metrics';

export const QUEUES_HELP = `Usage: sockwatch queues [options]

Watch the send and receive queue of every TCP and UDP socket (listeners: the accept queue) and
report each socket whose queue goes above its threshold: JSON lines on stdout, or with --url an
HTTP GET per alert, kept in a durable outbox until the receiver answers 2xx.

Thresholds (a queue offends when strictly greater):
  --recv-threshold BYTES    receive queue; k/m/g units; off to disable (default 1m = 1048576)
  --send-threshold BYTES    send queue (default 1m). UDP sizes are kernel memory (truesize), not payload
  --accept-threshold N      listeners: accept queue in connections, "limit" (queue reached the
                            listen() backlog) or off (default limit); reported as type ACCEPT
Alerts:
  --interval MS             time between samples (default 250, at least 10)
  --repeat SECONDS          repeat while still above (default 60; 0 = never; fractions allowed)
  --confirm N/M             alert only when the socket offended in N of its last M samples (default 1/1)
  --notify-resolved         also report when a queue is back at or below its threshold, or closed
  --max-records N           offenders tracked per sample (default 10000); the rest are counted
  --max-alerts-per-tick N   alerts per sample (default 1000); the rest wait for later samples
  --no-pid                  do not look up the owning process (pid, comm)
${FILTER_HELP}
Delivery (with --url):
  --url URL                 http(s) receiver; alert fields are appended as query parameters
  --url-file PATH           read the receiver URL from the first line of PATH instead, or set
                            SOCKWATCH_URL: keeps a token in the URL out of the process list
                            (/proc/PID/cmdline is readable by every local user); one source only
  --state-dir DIR           outbox directory (default $XDG_STATE_HOME/sockwatch, else ./.sockwatch)
  --timeout MS              per request (default 5000)
  --concurrency N           requests in flight (default 4)
  --backoff-base MS         first retry delay, doubling with jitter (default 500)
  --backoff-cap MS          longest retry delay (default 60000)
  --outbox-max-records N    undelivered alerts kept; the oldest are dropped beyond (default 100000)
  --outbox-max-bytes BYTES  undelivered bytes kept (default 64m)
  -q, --quiet               no line per alert on stdout
${METRICS_LISTEN_HELP}
Output:
  -h, --help                this help

Query parameters of each GET: ts, type (SEND, RECV, ACCEPT), bytes (connections for ACCEPT),
threshold, local, remote, proto, state, host, pid and comm (when found), id (stable: use it to
de-duplicate), event (alert, repeat, resolved). SIGTERM or SIGINT stops cleanly (exit 0); alerts
not yet delivered are delivered by the next start, with their original ts and id.`;

const OPTIONS = {
  ...FILTER_OPTIONS,
  'recv-threshold': { type: 'string' },
  'send-threshold': { type: 'string' },
  'accept-threshold': { type: 'string' },
  interval: { type: 'string' },
  repeat: { type: 'string' },
  confirm: { type: 'string' },
  'notify-resolved': { type: 'boolean' },
  'max-records': { type: 'string' },
  'max-alerts-per-tick': { type: 'string' },
  'no-pid': { type: 'boolean' },
  url: { type: 'string' },
  'url-file': { type: 'string' },
  'state-dir': { type: 'string' },
  timeout: { type: 'string' },
  concurrency: { type: 'string' },
  'backoff-base': { type: 'string' },
  'backoff-cap': { type: 'string' },
  'outbox-max-records': { type: 'string' },
  'outbox-max-bytes': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  ...METRICS_LISTEN_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const;

const DELIVERY_FLAGS = [
  'state-dir',
  'timeout',
  'concurrency',
  'backoff-base',
  'backoff-cap',
  'outbox-max-records',
  'outbox-max-bytes',
  'quiet',
];

/** How often a repeated kind of stderr notice may be printed. */
const NOTICE_EVERY_MS = 5000;

function byteThreshold(flag: string, v: unknown): ByteThreshold | undefined {
  if (v === 'off') return 'off';
  return sizeFlag(flag, v);
}

function acceptThresholdFlag(v: unknown): AcceptThreshold | undefined {
  if (v === 'limit' || v === 'off') return v;
  if (typeof v === 'string' && !/^\s*-?\d+\s*$/.test(v))
    throw new UsageError(`--accept-threshold: "${v}" is not a number of connections, "limit" or "off"`);
  return intFlag('--accept-threshold', v);
}

function repeatFlag(v: unknown): number | undefined {
  const ms = decimalFlag('--repeat', v, { scale: 1000, what: 'number of seconds' });
  return ms === undefined ? undefined : Math.round(ms);
}

function confirmFlag(v: unknown): { n: number; m: number } | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(String(v).trim());
  if (!m) throw new UsageError(`--confirm: "${String(v)}" is not N/M (like 2/3)`);
  const n = Number(m[1]);
  const of = Number(m[2]);
  if (of < 1 || of > 32) throw new UsageError(`--confirm: M must be from 1 to 32, got ${of}`);
  if (n < 1 || n > of) throw new UsageError(`--confirm: N must be from 1 to M (${of}), got ${n}`);
  return { n, m: of };
}

/** The environment variable that may hold the receiver URL (instead of --url). */
export const URL_ENV = 'SOCKWATCH_URL';

/**
 * The receiver URL from its one source: --url, --url-file (first line, trimmed) or $SOCKWATCH_URL
 * (empty counts as unset). Two sources are a usage error: which one wins would be a guess.
 */
function receiverUrl(values: Parsed['values'], env: NodeJS.ProcessEnv): URL | undefined {
  const sources: Array<{ label: string; read: () => string }> = [];
  if (values.url !== undefined) sources.push({ label: '--url', read: () => String(values.url) });
  if (values['url-file'] !== undefined) {
    const file = String(values['url-file']);
    sources.push({ label: `--url-file ${file}`, read: () => readUrlFile(file) });
  }
  if (env[URL_ENV]) sources.push({ label: URL_ENV, read: () => env[URL_ENV]! });
  if (sources.length > 1) throw new UsageError(`the receiver URL is given twice (${sources.map((s) => s.label).join(' and ')}): give one`);
  const source = sources[0];
  return source ? urlFrom(source.label, source.read()) : undefined;
}

function readUrlFile(file: string): string {
  if (file === '') throw new UsageError('--url-file: expected a file, got ""');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8'); // links followed: secret mounts (Kubernetes) are links
  } catch (e) {
    throw new UsageError(`--url-file: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const line = text.split('\n', 1)[0]!.trim();
  if (line === '') throw new UsageError(`--url-file: ${file} has no URL on its first line`);
  return line;
}

function urlFrom(label: string, v: string): URL {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new UsageError(`${label}: "${redactText(v)}" is not a valid URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${label}: must be http or https, got ${redactUrl(u)}`);
  return u;
}

function defaultStateDir(): string {
  const xdg = process.env.XDG_STATE_HOME;
  return xdg && path.isAbsolute(xdg) ? path.join(xdg, 'sockwatch') : path.resolve('.sockwatch');
}

/** Everything the command line says, parsed and checked. */
interface QueueConfig {
  recvThreshold: ByteThreshold | undefined;
  sendThreshold: ByteThreshold | undefined;
  acceptThreshold: AcceptThreshold | undefined;
  filter: ReturnType<typeof filterOptions>;
  netns: string | undefined;
  intervalMs: number | undefined;
  repeatMs: number | undefined;
  confirm: { n: number; m: number } | undefined;
  notifyResolved: boolean;
  maxRecords: number | undefined;
  maxAlertsPerTick: number | undefined;
  owners: boolean;
  quiet: boolean;
  /** With --metrics-listen: alerts raised, delivered…, the outbox, as Prometheus metrics. */
  metrics: MetricsListen | undefined;
  /** With --url. */
  delivery?: {
    url: URL;
    stateDir: string;
    timeoutMs: number | undefined;
    concurrency: number | undefined;
    backoffBaseMs: number | undefined;
    backoffCapMs: number | undefined;
    outboxMaxRecords: number | undefined;
    outboxMaxBytes: number | undefined;
  };
}

function parseValues(argv: string[]): { values: Parsed['values']; url: URL | undefined } {
  const { values } = parse(argv, OPTIONS);
  if (values.help) return { values, url: undefined };
  const url = receiverUrl(values, process.env);
  if (!url) {
    const stray = DELIVERY_FLAGS.find((f) => values[f] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --url, --url-file or ${URL_ENV} (without one, alerts are JSON lines on stdout)`);
  }
  return { values, url };
}

/** Step 1: argv to a QueueConfig, or 'help'. Throws UsageError (exit 2) naming the flag. */
function parseQueueArgs(argv: string[]): QueueConfig | 'help' {
  const { values, url } = parseValues(argv);
  if (values.help) return 'help';
  const recvThreshold = byteThreshold('--recv-threshold', values['recv-threshold']);
  const sendThreshold = byteThreshold('--send-threshold', values['send-threshold']);
  const acceptThreshold = acceptThresholdFlag(values['accept-threshold']);
  if (recvThreshold === 'off' && sendThreshold === 'off' && acceptThreshold === 'off') {
    throw new UsageError('--recv-threshold, --send-threshold and --accept-threshold are all off: nothing to watch');
  }
  const config: QueueConfig = {
    recvThreshold,
    sendThreshold,
    acceptThreshold,
    intervalMs: intFlag('--interval', values.interval, { min: QUEUE_DEFAULTS.minIntervalMs }),
    repeatMs: repeatFlag(values.repeat),
    confirm: confirmFlag(values.confirm),
    maxRecords: intFlag('--max-records', values['max-records'], { min: 1, max: UINT32_MAX }),
    maxAlertsPerTick: intFlag('--max-alerts-per-tick', values['max-alerts-per-tick'], { min: 1 }),
    notifyResolved: values['notify-resolved'] === true,
    owners: values['no-pid'] !== true,
    quiet: values.quiet === true,
    filter: filterOptions(values),
    netns: resolveNetns(values.netns),
    metrics: metricsListenFlags(values),
  };
  if (url) config.delivery = parseDeliveryFlags(values, url);
  return config;
}

function parseDeliveryFlags(values: Parsed['values'], url: URL): NonNullable<QueueConfig['delivery']> {
  const backoffBaseMs = intFlag('--backoff-base', values['backoff-base'], { min: 1 });
  const backoffCapMs = intFlag('--backoff-cap', values['backoff-cap'], { min: 1 });
  if (backoffCapMs !== undefined && backoffCapMs < (backoffBaseMs ?? DELIVERY_DEFAULTS.backoffBaseMs)) {
    throw new UsageError(`--backoff-cap: ${backoffCapMs} is below the backoff base ${backoffBaseMs ?? DELIVERY_DEFAULTS.backoffBaseMs}`);
  }
  if (values['state-dir'] === '') throw new UsageError('--state-dir: expected a directory, got ""');
  return {
    url,
    stateDir: (values['state-dir'] as string | undefined) ?? defaultStateDir(),
    timeoutMs: intFlag('--timeout', values.timeout, { min: 1 }),
    concurrency: intFlag('--concurrency', values.concurrency, { min: 1, max: 1024 }),
    backoffBaseMs,
    backoffCapMs,
    outboxMaxRecords: intFlag('--outbox-max-records', values['outbox-max-records'], { min: 1 }),
    outboxMaxBytes: sizeFlag('--outbox-max-bytes', values['outbox-max-bytes'], { min: 4096 }),
  };
}

/** Prints a notice at once, then at most every NOTICE_EVERY_MS per kind, with what happened meanwhile. */
class Notices {
  private readonly last = new Map<string, number>();
  private readonly pending = new Map<string, { count: number; text: () => string; timer: NodeJS.Timeout }>();

  constructor(private readonly write: (line: string) => void) {}

  /** `text` is called when the line is printed, with the number of occurrences it covers. */
  note(kind: string, text: (count: number) => string): void {
    const now = Date.now();
    const p = this.pending.get(kind);
    if (p) {
      p.count++;
      p.text = () => text(p.count);
      return;
    }
    const lastAt = this.last.get(kind);
    if (lastAt === undefined || now - lastAt >= NOTICE_EVERY_MS) {
      this.last.set(kind, now);
      this.write(text(1));
      return;
    }
    const entry = {
      count: 1,
      text: () => text(1),
      timer: setTimeout(() => this.flushKind(kind), lastAt + NOTICE_EVERY_MS - now),
    };
    entry.timer.unref();
    this.pending.set(kind, entry);
  }

  /** Prints what is pending now: of one kind, or of all. */
  flush(kind?: string): void {
    for (const k of kind === undefined ? [...this.pending.keys()] : [kind]) this.flushKind(k);
  }

  private flushKind(kind: string): void {
    const p = this.pending.get(kind);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(kind);
    this.last.set(kind, Date.now());
    this.write(p.text());
  }
}

type Line = (line: string) => void;

/** Step 3: the watcher (validates the library options; opens its sampler). With --url, its open episodes live in the state dir. */
function buildWatcher(c: QueueConfig, sink: Delivery | undefined): QueueWatcher {
  return new QueueWatcher({
    episodeFile: sink ? path.join(sink.outbox.dir, EPISODES_FILE) : undefined,
    recvThreshold: c.recvThreshold,
    sendThreshold: c.sendThreshold,
    acceptThreshold: c.acceptThreshold,
    filter: c.filter,
    intervalMs: c.intervalMs,
    repeatMs: c.repeatMs,
    confirm: c.confirm,
    notifyResolved: c.notifyResolved,
    maxRecords: c.maxRecords,
    maxAlertsPerTick: c.maxAlertsPerTick,
    owners: c.owners,
    netns: c.netns,
  });
}

interface Delivery {
  url: URL;
  outbox: Outbox;
  delivery: HttpDelivery;
}

/** Step 2 (with --url): the durable outbox in the state dir and the HTTP delivery from it. */
function openDelivery(d: NonNullable<QueueConfig['delivery']>): Delivery {
  const dir = path.resolve(d.stateDir);
  try {
    // One component at a time: refuses /proc and /sys (a recursive mkdir loops there), names EROFS.
    ensureDir(dir);
  } catch (e) {
    throw new UsageError(`--state-dir: ${(e as Error).message}`);
  }
  let outbox: Outbox;
  try {
    outbox = Outbox.open({ dir, maxRecords: d.outboxMaxRecords, maxBytes: d.outboxMaxBytes });
  } catch (e) {
    if (e instanceof StateDirLockedError) throw new UsageError(`--state-dir: ${e.message}`);
    // A newer state format, a lock held elsewhere or of a newer format, a link: its own line (exit 1).
    if (e instanceof SockwatchError || e instanceof LockFileError) throw e;
    const err = e as Error & { code?: string };
    if (err.code) throw new UsageError(`--state-dir: ${dir} is not writable (${err.code})`);
    throw e;
  }
  try {
    const { url, timeoutMs, concurrency, backoffBaseMs, backoffCapMs } = d;
    return { url, outbox, delivery: new HttpDelivery({ url, outbox, timeoutMs, concurrency, backoffBaseMs, backoffCapMs }) };
  } catch (e) {
    outbox.close();
    throw new UsageError(`--url: ${(e as Error).message}`);
  }
}

/** Step 4a: each alert to stdout as JSON, or into the outbox first and then a line on stdout. */
function wireAlerts(watcher: QueueWatcher, sink: Delivery | undefined, quiet: boolean, writeOut: Line, notices: Notices): void {
  watcher.on('alert', (a: QueueAlert) => {
    if (!sink) {
      writeOut(JSON.stringify(alertToJson(a)));
      return;
    }
    try {
      // Durable before anything is printed: a printed alert is never lost.
      // A full outbox drops repeats first: the first crossing and the resolution say more.
      sink.delivery.enqueue(alertToParams(a), { id: a.id, createdAt: Math.round(a.timestamp * 1000), expendable: a.event === 'repeat' });
    } catch (e) {
      notices.note(
        'outbox-write',
        (n) => `cannot write to the outbox in ${sink.outbox.dir}: ${(e as Error).message}${n > 1 ? ` (${n} alerts)` : ''}`,
      );
    }
    if (!quiet) writeOut(alertToLine(a));
  });
}

/** Step 4b: offender storms and sampling errors as rate-limited notices. */
function wireWatcherNotices(watcher: QueueWatcher, notices: Notices): void {
  let suppressed = { untracked: 0, deferred: 0, offendersTotal: 0 };
  watcher.on('suppressed', (s) => {
    suppressed = {
      untracked: suppressed.untracked + s.untracked,
      deferred: suppressed.deferred + s.deferred,
      offendersTotal: s.offendersTotal,
    };
    notices.note('suppressed', () => {
      const line =
        `offender storm: ${suppressed.offendersTotal} offending sockets in the last sample; ` +
        `${suppressed.untracked} offender observations not tracked (over --max-records), ` +
        `${suppressed.deferred} alerts deferred (over --max-alerts-per-tick)`;
      suppressed = { untracked: 0, deferred: 0, offendersTotal: 0 };
      return line;
    });
  });
  watcher.on('error', (e) => notices.note('sample', (n) => `sampling failed: ${e.message}${n > 1 ? ` (${n} times)` : ''}`));
}

/** Step 4c: the delivery's state (failing, recovered, dead letters, drops) as rate-limited notices. */
function wireDeliveryNotices({ url, outbox, delivery }: Delivery, notices: Notices, stderr: Line): void {
  const shown = redactUrl(url);
  let failing = false;
  outbox.on('error', (e) => notices.note('outbox', () => `outbox: ${e.message}`));
  // Found on open (emitted on the next tick): one line per damaged run, never rate-limited away.
  outbox.on('damaged', (d) =>
    stderr(
      `outbox: skipped ${d.records} damaged record(s) in ${path.basename(d.file)} at offset ${d.offset} (${d.bytes} bytes)` +
        (d.quarantine ? `; bytes kept in ${d.quarantine}` : '; could not copy them to quarantine/') +
        (d.truncated ? `; ${path.basename(d.file)} cut to ${d.offset} bytes` : ''),
    ),
  );
  // One rate-limited notice for the delivery state, worded from the state when it is printed:
  // a flapping receiver costs at most one line per NOTICE_EVERY_MS.
  let retries = 0;
  let lastReason = '';
  const deliveryState = (): string => {
    const n = retries;
    retries = 0;
    if (!failing) return `delivery to ${shown} recovered${n > 0 ? ` (${n} retries since the last notice)` : ''}`;
    return `delivery to ${shown} failing (${lastReason}); retrying with backoff (${n} retries), ${outbox.size} alert(s) kept in ${outbox.dir}`;
  };
  delivery.on('retry', (r) => {
    failing = true;
    retries++;
    lastReason = r.reason;
    notices.note('delivery', deliveryState);
  });
  delivery.on('delivered', () => {
    if (!failing) return;
    failing = false;
    notices.note('delivery', deliveryState);
  });
  delivery.on('dead-letter', (d) =>
    notices.note(
      'dead',
      (n) =>
        `receiver refused alert ${d.record.id} with HTTP ${d.status}${d.location !== undefined ? ` (redirect to ${d.location}: not followed)` : ''}; written to ${path.join(outbox.dir, 'dead-letter.jsonl')}${n > 1 ? ` (${n} alerts)` : ''}`,
    ),
  );
  delivery.on('dropped', (d) =>
    notices.note('dropped', (n) => `outbox full (${d.reason}): dropped ${n} oldest undelivered alert(s), ${outbox.droppedTotal} in total`),
  );
  delivery.on('error', (e) => notices.note('ack', () => `outbox: ${e.message}`));
  const rec = outbox.recovery;
  if (rec.records > 0) stderr(`${rec.records} undelivered alert(s) from an earlier run: delivering them first`);
  if (rec.dropped > 0) stderr(`the outbox was over its bounds: dropped ${rec.dropped} oldest undelivered alert(s)`);
}

/** Step 4d: what the episode file held (continued, resolved, not continued), and drops over its cap. */
function reportEpisodes(watcher: QueueWatcher, notices: Notices, stderr: Line): void {
  const r = watcher.episodesRestored;
  if (r) {
    if (r.restored > 0) stderr(`continuing ${r.restored} open alert episode(s) from an earlier run (no new alert for them)`);
    if (r.previousBoot.length > 0)
      stderr(
        `${r.previousBoot.length} open alert episode(s) from before the last reboot: ` +
          (watcher.notifyResolved ? 'sending resolved for them' : 'closed (no --notify-resolved)'),
      );
    if (r.discarded > 0) stderr(`${r.discarded} alert episode(s) in ${r.file} not continued: ${r.discardedReason}`);
    if (r.unreadable) stderr(`${r.file} could not be read; it is replaced (open episodes alert again)`);
  }
  watcher.on('episodesDropped', (d) =>
    notices.note(
      'episodes',
      () => `more than ${d.maxEpisodes} open alert episodes: ${d.droppedTotal} oldest not saved in ${d.file} (a restart alerts them again)`,
    ),
  );
}

/** Step 5: one line on stderr saying what is watched and where alerts go. */
function announce(watcher: QueueWatcher, sink: Delivery | undefined, stderr: Line): void {
  const t = watcher.thresholds;
  const what = [
    t.recv === 'off' ? undefined : `recv > ${t.recv} B`,
    t.send === 'off' ? undefined : `send > ${t.send} B`,
    t.accept === 'off' ? undefined : t.accept === 'limit' ? 'accept queue at backlog limit' : `accept > ${t.accept}`,
  ].filter(Boolean);
  stderr(
    `watching queues every ${watcher.intervalMs} ms (${what.join(', ')})` +
      (sink ? `; alerts to ${redactUrl(sink.url)}, outbox ${sink.outbox.dir}` : '; alerts as JSON lines on stdout'),
  );
}

/** Step 6: runs until SIGTERM, SIGINT or a closed stdout; resolves with the reason. */
async function runUntilStopped(watcher: QueueWatcher, sink: Delivery | undefined, out: NodeJS.WritableStream): Promise<string> {
  let stopRequested: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  out.on('error', () => stopRequested('stdout closed'));
  const onSignal = (sig: NodeJS.Signals): void => stopRequested(sig);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  sink?.delivery.start();
  watcher.start();
  const reason = await stopped;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  return reason;
}

/**
 * Step 7: stops the watcher, gives delivery a moment, closes the outbox and says what is left. A
 * second signal exits at once (130); whatever happens, the process exits within 5 s.
 */
async function shutDown(watcher: QueueWatcher, sink: Delivery | undefined, reason: string, notices: Notices, stderr: Line): Promise<void> {
  const onSecondSignal = (): void => process.exit(130);
  process.once('SIGTERM', onSecondSignal);
  process.once('SIGINT', onSecondSignal);
  const watchdog = setTimeout(() => {
    stderr('shutdown took too long; exiting');
    process.exit(0);
  }, 5000);
  watchdog.unref();
  try {
    await watcher.stop();
    await sink?.delivery.stop({ graceMs: 1000 });
    const left = sink?.outbox.size ?? 0;
    sink?.outbox.close();
    notices.flush();
    if (left > 0) stderr(`stopped (${reason}); ${left} undelivered alert(s) kept in ${sink!.outbox.dir} for the next start`);
  } finally {
    clearTimeout(watchdog);
    process.off('SIGTERM', onSecondSignal);
    process.off('SIGINT', onSecondSignal);
  }
}

export async function runQueues(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const config = parseQueueArgs(argv);
  if (config === 'help') {
    out.write(QUEUES_HELP + '\n');
    return 0;
  }
  const stderr: Line = (line) => void process.stderr.write(`sockwatch: ${redactText(line)}\n`);
  const notices = new Notices(stderr);

  // The state dir's lock is taken (openDelivery) before the watcher reads its episodes there.
  const sink = config.delivery ? openDelivery(config.delivery) : undefined;
  let watcher: QueueWatcher;
  try {
    watcher = buildWatcher(config, sink);
  } catch (e) {
    sink?.outbox.close();
    throw e;
  }

  wireAlerts(watcher, sink, config.quiet, (line) => void out.write(line + '\n'), notices);
  wireWatcherNotices(watcher, notices);
  if (sink) wireDeliveryNotices(sink, notices, stderr);
  reportEpisodes(watcher, notices, stderr);
  let metricsServer;
  try {
    metricsServer = config.metrics && (await serveCommandMetrics('queues', config.metrics, (r) => queuesMetrics(r, watcher, sink)));
  } catch (e) {
    await watcher.stop();
    sink?.outbox.close();
    throw e;
  }
  announce(watcher, sink, stderr);

  const reason = await runUntilStopped(watcher, sink, out);
  await shutDown(watcher, sink, reason, notices, stderr);
  await metricsServer?.close();
  return 0;
}
