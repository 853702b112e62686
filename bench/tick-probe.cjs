// Preloaded into the real CLI by the queue-watch benchmark:
//
//   node -r bench/tick-probe.cjs dist/cli/main.js queues …
//
// It observes the QueueWatcher the CLI creates through its public API only (a 'tick' and an
// 'alert' listener, attached when start() is called) and changes nothing else. Per tick it keeps
// the tick's start against its slot on the fixed-rate schedule, the tick stats, process CPU time
// and RSS. It ends the run itself with SIGTERM (the CLI's own clean stop) after
// SOCKWATCH_BENCH_TICKS ticks or SOCKWATCH_BENCH_RUN_MS ms after start(), or when its stdin pipe
// closes (the benchmark died; the CLI would otherwise run forever). On exit it writes a JSON report
// to SOCKWATCH_BENCH_PROBE_OUT.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { QueueWatcher } = require(path.join(__dirname, '..', 'dist', 'queues', 'watcher.js'));

const outFile = process.env.SOCKWATCH_BENCH_PROBE_OUT;
const stopAfterTicks = Number(process.env.SOCKWATCH_BENCH_TICKS || 0);
const stopAfterMs = Number(process.env.SOCKWATCH_BENCH_RUN_MS || 0);
const alertTarget = Number(process.env.SOCKWATCH_BENCH_ALERTS || 0);

let lastCpu = process.cpuUsage();
const cpuUs = () => {
  lastCpu = process.cpuUsage();
  return lastCpu.user + lastCpu.system;
};

const report = {
  pid: process.pid,
  timeOrigin: performance.timeOrigin,
  intervalMs: undefined,
  startAt: undefined, // performance.now() just before QueueWatcher.start()
  stopReason: undefined,
  stopAt: undefined,
  exitAt: undefined,
  // One entry per tick: [tick, startMs (since startAt), slotMs, missedTicks, tickMs, scanMs,
  //   socketsSeen, offendersTotal, records, events, deferred, untracked, tracked, active, cpuUs, rssBytes,
  //   systemCpuUs]
  ticks: [],
  alerts: 0,
  firstAlertAt: null,
  alertTargetReachedAt: null,
  maxRssKiB: undefined,
};

let stopping = false;
function stopRun(reason) {
  if (stopping) return;
  stopping = true;
  report.stopReason = reason;
  report.stopAt = performance.now() - (report.startAt ?? 0);
  process.stdin.destroy();
  process.kill(process.pid, 'SIGTERM');
}

function onTick(s) {
  const now = performance.now();
  const started = now - s.tickMs - report.startAt;
  const slot = (s.tick - 1 + s.missedTicks) * report.intervalMs;
  report.ticks.push([
    s.tick, started, slot, s.missedTicks, s.tickMs, s.scanMs, s.socketsSeen, s.offendersTotal, s.records,
    s.events, s.deferred, s.untracked, s.tracked, s.active, cpuUs(), process.memoryUsage.rss(), lastCpu.system,
  ]);
  if (stopAfterTicks > 0 && s.tick >= stopAfterTicks) stopRun(`${stopAfterTicks} ticks`);
}

function onAlert() {
  report.alerts++;
  const at = performance.now() - report.startAt;
  report.firstAlertAt ??= at;
  if (alertTarget > 0 && report.alerts === alertTarget) report.alertTargetReachedAt = at;
}

const originalStart = QueueWatcher.prototype.start;
QueueWatcher.prototype.start = function probedStart(...args) {
  if (report.startAt === undefined) {
    this.on('tick', onTick);
    this.on('alert', onAlert);
    report.intervalMs = this.intervalMs;
    report.startAt = performance.now();
    if (stopAfterMs > 0) setTimeout(() => stopRun(`${stopAfterMs} ms`), stopAfterMs).unref();
  }
  return originalStart.apply(this, args);
};

// The parent's end of stdin closing means the benchmark is gone: stop like a SIGTERM would.
process.stdin.on('end', () => stopRun('stdin closed'));
process.stdin.on('error', () => stopRun('stdin error'));
process.stdin.resume();
process.stdin.unref?.();

process.on('exit', () => {
  report.exitAt = performance.now() - (report.startAt ?? 0);
  report.maxRssKiB = process.resourceUsage().maxRSS;
  if (outFile) fs.writeFileSync(outFile, JSON.stringify(report));
});
