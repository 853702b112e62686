// What each queue-watch row does in its measuring process (bench/session.mjs). Unlike the rows of
// methods.mjs, these are not repeated calls but one timed session each:
//
//   watch-ticks     the real CLI (`sockwatch queues`, no --url) as a child process for a fixed number
//                   of ticks over the farm; bench/tick-probe.cjs, preloaded into it, records each
//                   tick's start against its slot, CPU time and RSS.
//   alert-delivery  N alerts through the library's Outbox + HttpDelivery (in this process) to
//                   bench/receiver.mjs (a child process): enqueue → 2xx, end to end.
//   offender-storm  the CLI with --url to bench/receiver.mjs for a fixed time over a farm where
//                   every offender holds unread bytes above the threshold.
//
// A session function (row, job) returns a plain JSON-able result or throws SkipError.
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTracked, waitForLine } from './children.mjs';
import { requireLibrary, SkipError } from './methods.mjs';
import { max, median } from './stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(here, '..', 'dist', 'cli', 'main.js');
const PROBE = path.join(here, 'tick-probe.cjs');
const RECEIVER = path.join(here, 'receiver.mjs');
/** Thresholds of every queue-watch row: the farm's offenders hold 2,000 unread bytes. */
const THRESHOLD = '1000';
/** Time the CLI gets beyond its planned run before it is killed (startup, clean stop). */
const CLI_SLACK_MS = 30_000;

// Fields of one tick in the probe's report (see tick-probe.cjs).
const T = {
  tick: 0,
  start: 1,
  slot: 2,
  missed: 3,
  tickMs: 4,
  scanMs: 5,
  seen: 6,
  offenders: 7,
  records: 8,
  events: 9,
  deferred: 10,
  untracked: 11,
  tracked: 12,
  active: 13,
  cpuUs: 14,
  rss: 15,
  sysUs: 16,
};

function requireDist() {
  if (!existsSync(CLI)) throw new SkipError('dist/cli/main.js missing (run npm run build)');
  try {
    return requireLibrary();
  } catch (err) {
    throw new SkipError(`dist/index.js not loadable (run npm run build): ${err.message.split('\n')[0]}`);
  }
}

const round3 = (v) => Math.round(v * 1000) / 1000;

function waitExit(child, timeoutMs, label) {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? child.signalCode);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${label} did not finish within ${Math.round(timeoutMs / 1000)} s; killed`));
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
  });
}

async function startReceiver(expect) {
  const child = spawnTracked(process.execPath, [RECEIVER, JSON.stringify({ expect })]);
  const ready = await waitForLine(child, 'READY', 'receiver');
  let stopped;
  return {
    url: `http://127.0.0.1:${ready.port}/alert`,
    /** Its counts; idempotent. */
    stop() {
      stopped ??= (async () => {
        const stats = waitForLine(child, 'STATS', 'receiver', 10_000);
        child.kill('SIGTERM');
        const s = await stats;
        await waitExit(child, 10_000, 'receiver');
        return s;
      })();
      return stopped;
    },
  };
}

/**
 * Runs `sockwatch queues …` with the probe until the probe stops it (ticks or time), returning the
 * probe's report, the number of stdout lines and the stderr text.
 */
async function runCli(args, { dir, ticks, runMs, alerts, timeoutMs }) {
  const probeOut = path.join(dir, 'probe.json');
  const stdoutFile = path.join(dir, 'stdout.txt');
  // stdout to a file: pipes are synchronous on Linux, a slow reader would stall the CLI.
  const outFd = openSync(stdoutFile, 'w');
  let child;
  try {
    child = spawnTracked(process.execPath, ['-r', PROBE, CLI, 'queues', ...args], {
      stdio: ['pipe', outFd, 'pipe'],
      env: {
        SOCKWATCH_BENCH_PROBE_OUT: probeOut,
        SOCKWATCH_BENCH_TICKS: String(ticks ?? 0),
        SOCKWATCH_BENCH_RUN_MS: String(runMs ?? 0),
        SOCKWATCH_BENCH_ALERTS: String(alerts ?? 0),
      },
    });
  } finally {
    closeSync(outFd);
  }
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await waitExit(child, timeoutMs, 'sockwatch queues');
  if (code !== 0 || !existsSync(probeOut)) throw new Error(`sockwatch queues exited with ${code}: ${stderr.trim().slice(0, 400)}`);
  const probe = JSON.parse(readFileSync(probeOut, 'utf8'));
  const text = readFileSync(stdoutFile, 'latin1');
  let lines = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lines++;
  return { probe, stdoutLines: lines, stderr: stderr.trim().split('\n').filter(Boolean) };
}

/** Interval keeping, CPU and memory of one CLI run, from the probe's ticks. */
export function analyzeTicks(probe) {
  const ticks = probe.ticks;
  if (ticks.length < 2) throw new Error(`the CLI ran only ${ticks.length} tick(s)`);
  const first = ticks[0];
  const last = ticks[ticks.length - 1];
  const emitAt = (t) => t[T.start] + t[T.tickMs];
  const windowMs = emitAt(last) - emitAt(first);
  const cpuMs = (last[T.cpuUs] - first[T.cpuUs]) / 1000;
  return {
    intervalMs: probe.intervalMs,
    ticks: ticks.length,
    missedTicks: last[T.missed],
    // |start − slot|: the tick's start against its slot on the fixed-rate schedule.
    jitterMs: ticks.map((t) => round3(Math.abs(t[T.start] - t[T.slot]))),
    lateMaxMs: round3(max(ticks.map((t) => t[T.start] - t[T.slot]))),
    tickMs: ticks.map((t) => round3(t[T.tickMs])),
    scanMs: ticks.map((t) => round3(t[T.scanMs])),
    socketsSeen: median(ticks.map((t) => t[T.seen])),
    windowMs: round3(windowMs),
    cpuMs: round3(cpuMs),
    cpuPct: (cpuMs / windowMs) * 100,
    sysCpuMs: round3((last[T.sysUs] - first[T.sysUs]) / 1000),
    rssPeakBytes: probe.maxRssKiB * 1024,
  };
}

function cliEnv() {
  return {
    loadavg: os
      .loadavg()
      .map((v) => v.toFixed(2))
      .join(' '),
  };
}

// --- watch-ticks: interval jitter and CPU over the farm ---------------------------------------

async function watchTicks(row) {
  requireDist();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sockwatch-bench-'));
  try {
    const load = cliEnv().loadavg;
    const args = ['--recv-threshold', THRESHOLD, '--send-threshold', THRESHOLD, '--interval', String(row.intervalMs)];
    const run = await runCli(args, { dir, ticks: row.ticks, timeoutMs: row.ticks * row.intervalMs + CLI_SLACK_MS });
    const a = analyzeTicks(run.probe);
    return { ...a, args, offendersTotal: max(run.probe.ticks.map((t) => t[T.offenders])), alertLines: run.stdoutLines, loadavg: load };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- alert-delivery: Outbox + HttpDelivery to a local receiver -------------------------------

/** A queue alert shaped like the watcher's, made distinct by i. */
function syntheticAlert(lib, i, host) {
  const timestamp = 1_790_000_000 + i / 1000;
  const cookie = BigInt(1_000_000 + i);
  return {
    id: lib.alertId(host, cookie, 'RECV', timestamp, 'alert', 0),
    event: 'alert',
    type: 'RECV',
    timestamp,
    since: timestamp,
    repeat: 0,
    bytes: 2000,
    threshold: 1000,
    protocol: 'tcp',
    family: 4,
    state: 'established',
    local: `127.0.0.11:${[80, 443, 2222][i % 3]}`,
    remote: `127.100.${(i >> 8) & 0xff}.${i & 0xff}:${40000 + (i % 20000)}`,
    cookie,
    inode: 5_000_000 + i,
    uid: 0,
    host,
    pid: 4242,
    comm: 'node',
  };
}

async function alertDelivery(row) {
  const lib = requireDist();
  const { Outbox, HttpDelivery, alertToParams } = lib;
  const n = row.alerts;
  const warmups = row.warmupAlerts;
  const singles = row.singleAlerts;
  const total = warmups + n + singles;
  const receiver = await startReceiver(total);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sockwatch-bench-'));
  let outbox;
  let delivery;
  try {
    const load = cliEnv().loadavg;
    outbox = Outbox.open({ dir });
    delivery = new HttpDelivery({ url: receiver.url, outbox, ...(row.concurrency ? { concurrency: row.concurrency } : {}) });
    const params = Array.from({ length: total }, (_, i) => alertToParams(syntheticAlert(lib, i, 'bench-host')));
    let next = 0;
    const enqueue = () => delivery.enqueue(params[next], { id: params[next++].id });
    const enqueuedAt = new Map();
    const latencies = [];
    let delivered = 0;
    let target = 0;
    let reached;
    delivery.on('delivered', (e) => {
      delivered++;
      const at = enqueuedAt.get(e.record.seq);
      if (at !== undefined) latencies.push(performance.now() - at);
      if (delivered === target) reached?.();
    });
    delivery.on('retry', (e) => process.stderr.write(`retry: ${e.reason}\n`));
    delivery.on('dead-letter', (e) => process.stderr.write(`dead letter: HTTP ${e.status}\n`));
    delivery.start();
    const until = (count) =>
      new Promise((resolve) => {
        target = count;
        reached = resolve;
        if (delivered >= count) resolve();
      });

    // Warm-up: JIT, keep-alive connections, the outbox's first segment.
    for (let i = 0; i < warmups; i++) enqueue();
    await until(warmups);

    // A burst: n alerts enqueued at once, delivered with the configured concurrency.
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) enqueue();
    const tEnqueued = performance.now();
    const cEnqueued = process.cpuUsage(c0);
    await until(warmups + n);
    const t1 = performance.now();
    const c1 = process.cpuUsage(c0);
    const outboxStats = outbox.stats();

    // Single alerts on an idle channel: enqueue one, wait for its 2xx, repeat.
    for (let i = 0; i < singles; i++) {
      const at = performance.now();
      enqueuedAt.set(enqueue().seq, at);
      await until(warmups + n + i + 1);
    }

    await delivery.stop();
    outbox.close();
    outbox = undefined;
    const received = await receiver.stop();
    return {
      alerts: n,
      concurrency: row.concurrency ?? lib.DELIVERY_DEFAULTS.concurrency,
      totalMs: round3(t1 - t0),
      alertsPerSec: (n / (t1 - t0)) * 1000,
      enqueueUsPerAlert: ((tEnqueued - t0) * 1000) / n,
      enqueueCpuUsPerAlert: (cEnqueued.user + cEnqueued.system) / n,
      cpuUsPerAlert: (c1.user + c1.system) / n,
      cpuPct: ((c1.user + c1.system) / 1000 / (t1 - t0)) * 100,
      singles,
      singleLatencyMs: latencies.map(round3),
      queryBytes: Math.round(params.slice(warmups, warmups + n).reduce((sum, p) => sum + new URLSearchParams(p).toString().length, 0) / n),
      outbox: { pending: outboxStats.pending, diskBytes: outboxStats.diskBytes, segments: outboxStats.segments },
      received,
      loadavg: load,
    };
  } finally {
    await delivery?.stop();
    outbox?.close();
    await receiver.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- offender-storm: the CLI with --url over a farm of offenders ------------------------------

async function offenderStorm(row, job) {
  requireDist();
  const offenders = job.farm?.offenders;
  if (!Number.isInteger(offenders) || offenders < 1) throw new SkipError('the farm reported no offenders');
  const receiver = await startReceiver(offenders);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sockwatch-bench-'));
  try {
    const load = cliEnv().loadavg;
    const args = [
      '--recv-threshold',
      THRESHOLD,
      '--send-threshold',
      THRESHOLD,
      '--interval',
      String(row.intervalMs),
      '--max-alerts-per-tick',
      String(row.maxAlertsPerTick),
      '--url',
      receiver.url,
      '--state-dir',
      path.join(dir, 'state'),
    ];
    const run = await runCli(args, { dir, runMs: row.runMs, alerts: offenders, timeoutMs: row.runMs + CLI_SLACK_MS });
    const received = await receiver.stop();
    const p = run.probe;
    const a = analyzeTicks(p);
    const startEpoch = p.timeOrigin + p.startAt;
    const allDeliveredMs = received.expectReachedAt === null ? null : received.expectReachedAt - startEpoch;
    const ticks = p.ticks;
    const events = ticks.map((t) => t[T.events]);
    // The steady storm: from the first tick after the last alert was delivered to the end.
    const steady = allDeliveredMs === null ? [] : ticks.filter((t) => t[T.start] > allDeliveredMs);
    const steadyCpuPct =
      steady.length >= 2
        ? ((steady[steady.length - 1][T.cpuUs] - steady[0][T.cpuUs]) / 1000 / (steady[steady.length - 1][T.start] - steady[0][T.start])) *
          100
        : null;
    return {
      ...a,
      args: args.map((v) => (v === receiver.url ? 'http://127.0.0.1:PORT/alert' : v.startsWith(dir) ? '<tmp>/state' : v)),
      runMs: row.runMs,
      offenders,
      offendersSeen: max(ticks.map((t) => t[T.offenders])),
      recordsMax: max(ticks.map((t) => t[T.records])),
      trackedMax: max(ticks.map((t) => t[T.tracked])),
      maxAlertsPerTick: row.maxAlertsPerTick,
      eventsPerTickMax: max(events),
      ticksWithEvents: events.filter((e) => e > 0).length,
      deferredSum: ticks.reduce((s, t) => s + t[T.deferred], 0),
      untrackedSum: ticks.reduce((s, t) => s + t[T.untracked], 0),
      alertsEmitted: p.alerts,
      firstAlertMs: p.firstAlertAt,
      allAlertedMs: p.alertTargetReachedAt,
      firstDeliveredMs: received.firstAt === null ? null : received.firstAt - startEpoch,
      allDeliveredMs,
      deliveredPerSec: received.expectReachedAt === null ? null : (offenders / (received.expectReachedAt - received.firstAt)) * 1000,
      steadyCpuPct,
      steadyTicks: steady.length,
      // Offender records that reached JS per steady tick (the watcher's change-tracking scans).
      steadyRecordsMax: steady.length ? max(steady.map((t) => t[T.records])) : null,
      steadyRecordsSum: steady.reduce((s, t) => s + t[T.records], 0),
      steadyCpuMsPerTick:
        steady.length >= 2 ? (steady[steady.length - 1][T.cpuUs] - steady[0][T.cpuUs]) / 1000 / (steady.length - 1) : null,
      steadyMissed: steady.length >= 2 ? steady[steady.length - 1][T.missed] - steady[0][T.missed] : null,
      // RSS per tick: [ms since start, bytes]
      rss: ticks.map((t) => [Math.round(t[T.start]), t[T.rss]]),
      alertLines: run.stdoutLines,
      notices: run.stderr.slice(0, 8),
      received,
      loadavg: load,
    };
  } finally {
    await receiver.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

export const SESSIONS = {
  'watch-ticks': watchTicks,
  'alert-delivery': alertDelivery,
  'offender-storm': offenderStorm,
};
