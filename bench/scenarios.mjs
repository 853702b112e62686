// The scenario table: one row per measured thing, run once per farm size, each in a fresh process.
// Add a benchmark by adding a row (and, if it is a new kind of work, a kind in methods.mjs).
//
// Row fields:
//   id         unique name, used by --only, baselines and targets
//   title      what the row measures, for the report
//   group      report section: 'sampler' | 'snat' | 'exporter' | 'queue-watch'
//   kind       'floor' (bench/floor.c) | 'addon-sync' | 'addon-async' | 'lookup' | 'ss' | 'proc' | 'pipeline'
//              | session kinds (queue-sessions.mjs): 'watch-ticks' | 'alert-delivery' | 'offender-storm'
//   session    true: the row is one timed session per round (bench/session.mjs), not repeated calls;
//              its own fields: intervalMs, ticks (watch-ticks), alerts, warmupAlerts, singleAlerts,
//              concurrency (alert-delivery), runMs, maxAlertsPerTick (offender-storm)
//   options    SampleOptions passed to the addon (addon-*); for 'floor', the options it mirrors:
//              the same protocols, families, state masks and kernel bytecode, compiled by the library
//   args / command / threshold / needs   kind-specific inputs
//   baseline   id of the row the "× baseline" column divides by
//   unit       'scan' (ms per call) or 'lookup' (µs per lookup)
//   runs       timed calls per process (default by size); warmups; heapCalls: batch size of the
//              heap measurement; rounds: how many fresh processes (default: the run's rounds)
//   heapFlat   true: part of the "heap per scan independent of N" target
//   sizes      optional (size, allSizes) => boolean: which farm sizes the row runs at
//   farm       planFarm overrides for a farm of the row's own (e.g. { offenders: 10000 })
//   oneWalk    floor rows: dump TCP of both families in one walk (legacy TCPDIAG_GETSOCK), as the
//              addon does when both families are asked for; without it, one v2 dump per family as
//              ss asks (each of those walks the whole host-wide TCP hash)
import { EXCLUDED_PORTS, planFarm } from './farm-plan.mjs';

export const THRESHOLD = 1000;
export const STORM_OFFENDERS = 10_000;
const STORM_RUN_MS = 20_000;

/** Whether a farm of n sockets can hold `offenders` offending connections. */
function farmFits(n, offenders) {
  try {
    planFarm({ sockets: n, offenders });
    return true;
  } catch {
    return false;
  }
}
const THRESHOLDS = { recvThreshold: THRESHOLD, sendThreshold: THRESHOLD };
/** A state mask and port bytecode: established sockets not on local ports 80/443. */
const KERNEL_FILTERED = { ...THRESHOLDS, states: ['established'], excludeLocalPorts: [80, 443] };
const SNAT_STATES = ['established', 'time-wait', 'close-wait', 'fin-wait-1', 'fin-wait-2'];
const SNAT = { tcp: true, states: SNAT_STATES, excludeLocalPorts: EXCLUDED_PORTS, aggregate: true };
/**
 * What one `sockwatch exporter` scrape asks of the sampler (issue 11): every socket counted per state
 * and family, queue histograms, the 50 fullest listeners, per-destination counts of the SNAT states
 * with the top 50 kept and local ports 80/443/2222 left out of them (in C++, not by the kernel: the
 * sockets are still counted), v4-mapped merged, no records. The kernel request is the full dump's.
 */
export const EXPORTER_SCRAPE = {
  ...THRESHOLDS,
  maxRecords: 0,
  queueHistogram: true,
  listeners: { top: 50 },
  aggregate: { states: SNAT_STATES, top: 50, excludeLocalPorts: EXCLUDED_PORTS, mergeMapped: true },
};
const SNAT_AWK =
  `awk '$1 ~ /^tcp/ && $6 ~ /^(ESTABLISHED|TIME_WAIT|CLOSE_WAIT|FIN_WAIT1|FIN_WAIT2)$/ ` +
  `&& $4 !~ /:(${EXCLUDED_PORTS.join('|')})$/ {print $5}' | sort | uniq -c | sort -rn`;

export const scenarios = [
  // --- the sampler ---------------------------------------------------------------------------
  {
    id: 'floor',
    group: 'sampler',
    kind: 'floor',
    title: 'C floor, the standard full dump as ss asks for it: 4 v2 dumps (TCP, UDP × v4, v6), all states, fixed fields only',
    options: THRESHOLDS,
  },
  {
    id: 'floor-1walk',
    group: 'sampler',
    kind: 'floor',
    title: 'C floor with the same requests as the addon: TCP v4+v6 in one walk, UDP v4 and v6',
    options: THRESHOLDS,
    oneWalk: true,
  },
  {
    id: 'sync-scan',
    group: 'sampler',
    kind: 'addon-sync',
    title: 'sampleSync, every socket, thresholds 1000/1000 (few offenders)',
    options: THRESHOLDS,
    baseline: 'floor-1walk',
    heapFlat: true,
  },
  {
    id: 'async-scan',
    group: 'sampler',
    kind: 'addon-async',
    title: 'await sample(), every socket, thresholds 1000/1000',
    options: THRESHOLDS,
    baseline: 'floor-1walk',
    heapFlat: true,
  },
  {
    id: 'floor-filtered',
    group: 'sampler',
    kind: 'floor',
    title: 'C floor with the kernel filter below (state mask + port bytecode), same requests as the addon',
    options: KERNEL_FILTERED,
    oneWalk: true,
  },
  {
    id: 'sync-filtered',
    group: 'sampler',
    kind: 'addon-sync',
    title: 'sampleSync, states [established], excludeLocalPorts [80, 443], thresholds',
    options: KERNEL_FILTERED,
    baseline: 'floor-filtered',
    heapFlat: true,
  },
  {
    id: 'async-filtered',
    group: 'sampler',
    kind: 'addon-async',
    title: 'await sample(), same kernel filter and thresholds',
    options: KERNEL_FILTERED,
    baseline: 'floor-filtered',
    heapFlat: true,
  },
  {
    id: 'sync-list-all',
    group: 'sampler',
    kind: 'addon-sync',
    title: 'sampleSync with all: true (every socket becomes a JS record; for contrast)',
    options: { all: true, maxRecords: 1_000_000 },
    baseline: 'floor',
    runs: 3,
    rounds: 1,
    heapCalls: 2,
  },
  {
    id: 'ss',
    group: 'sampler',
    kind: 'ss',
    title: '`ss -tuan` spawned, output parsed in JS (count, queue sums, offenders)',
    args: ['-tuan'],
    threshold: THRESHOLD,
    baseline: 'floor',
    heapCalls: 2,
  },
  {
    id: 'proc',
    group: 'sampler',
    kind: 'proc',
    title: '/proc/net/{tcp,tcp6,udp,udp6} read and parsed in JS (same answer)',
    threshold: THRESHOLD,
    baseline: 'floor',
    heapCalls: 2,
  },
  {
    id: 'lookup',
    group: 'sampler',
    kind: 'lookup',
    title: 'exact lookup of one TCP socket by 4-tuple and cookie (no dump)',
    unit: 'lookup',
  },

  // --- outbound (SNAT) watch ------------------------------------------------------------------
  {
    id: 'floor-snat',
    group: 'snat',
    kind: 'floor',
    title: 'C floor: TCP v4+v6 in one walk, SNAT states, bytecode excluding local ports 80/443/2222',
    options: SNAT,
    oneWalk: true,
  },
  {
    id: 'snat-sync',
    group: 'snat',
    kind: 'addon-sync',
    title: 'sampleSync, SNAT states, excludeLocalPorts [80,443,2222], aggregate: true',
    options: SNAT,
    baseline: 'floor-snat',
  },
  {
    id: 'snat-async',
    group: 'snat',
    kind: 'addon-async',
    title: 'await sample(), same SNAT options',
    options: SNAT,
    baseline: 'floor-snat',
  },
  {
    id: 'snat-netstat-p',
    group: 'snat',
    kind: 'pipeline',
    title: '`netstat -natp | awk | sort | uniq -c | sort -rn` (per-remote counts)',
    command: `netstat -natp 2>/dev/null | ${SNAT_AWK}`,
    needs: ['netstat', 'awk', 'sort', 'uniq'],
    baseline: 'floor-snat',
    runs: 3,
    rounds: 1,
    warmups: 1,
    heapCalls: 1,
  },
  {
    id: 'snat-netstat',
    group: 'snat',
    kind: 'pipeline',
    title: 'the same pipeline without -p (no /proc/*/fd walk)',
    command: `netstat -nat 2>/dev/null | ${SNAT_AWK}`,
    needs: ['netstat', 'awk', 'sort', 'uniq'],
    baseline: 'floor-snat',
    runs: 3,
    rounds: 2,
    warmups: 1,
    heapCalls: 1,
  },

  // --- exporter scrape (issue 11) --------------------------------------------------------------
  // Also run alone, with the namespace rows, by bench/exporter.mjs (npm run bench:exporter).
  {
    id: 'exporter-sync',
    group: 'exporter',
    kind: 'addon-sync',
    title:
      'sampleSync of one exporter scrape: histograms, top 50 listeners, aggregate (SNAT states, top 50, excludeLocalPorts [80,443,2222] in C++, mergeMapped), maxRecords 0',
    options: EXPORTER_SCRAPE,
    baseline: 'floor-1walk',
    sizes: (n) => n >= 10000,
  },
  {
    id: 'exporter-async',
    group: 'exporter',
    kind: 'addon-async',
    title: 'await sample() of the same scrape (what the exporter calls)',
    options: EXPORTER_SCRAPE,
    baseline: 'floor-1walk',
    sizes: (n) => n >= 10000,
  },
  {
    id: 'counts-only',
    group: 'exporter',
    kind: 'addon-sync',
    title: 'sampleSync, counts only (maxRecords 0, no thresholds): the scan the histogram pass is compared with',
    options: { maxRecords: 0 },
    baseline: 'floor-1walk',
    sizes: (n) => n >= 10000,
  },
  {
    id: 'counts-hist',
    group: 'exporter',
    kind: 'addon-sync',
    title: 'the same with queueHistogram: true (default 9 bounds, 4 series)',
    options: { maxRecords: 0, queueHistogram: true },
    baseline: 'counts-only',
    sizes: (n) => n >= 10000,
  },

  // --- queue watch (issue 3) ------------------------------------------------------------------
  // Sessions, not repeated calls (session: true): each runs once per round in a fresh
  // bench/session.mjs process; queue-sessions.mjs says what each kind does.
  {
    id: 'watch-250',
    group: 'queue-watch',
    kind: 'watch-ticks',
    session: true,
    title: '`sockwatch queues` (the CLI, no --url) over the farm (few offenders), --interval 250 (the default)',
    intervalMs: 250,
    ticks: 40,
    rounds: 3,
    sizes: (n) => n >= 10000,
  },
  {
    id: 'watch-1000',
    group: 'queue-watch',
    kind: 'watch-ticks',
    session: true,
    title: 'the same at --interval 1000',
    intervalMs: 1000,
    ticks: 30,
    rounds: 1,
    sizes: (n) => n >= 10000,
  },
  {
    id: 'alerts-http',
    group: 'queue-watch',
    kind: 'alert-delivery',
    session: true,
    title: 'Outbox + HttpDelivery (library, default concurrency 4): a burst of alerts enqueued → 2xx from a local receiver',
    alerts: 10000,
    warmupAlerts: 500,
    singleAlerts: 200,
    rounds: 3,
    sizes: (n, all) => n === all[0],
  },
  {
    id: 'alerts-http-c16',
    group: 'queue-watch',
    kind: 'alert-delivery',
    session: true,
    title: 'the same with concurrency 16',
    alerts: 10000,
    warmupAlerts: 500,
    singleAlerts: 200,
    concurrency: 16,
    rounds: 3,
    sizes: (n, all) => n === all[0],
  },
  {
    id: 'queue-storm',
    group: 'queue-watch',
    kind: 'offender-storm',
    session: true,
    title: `\`sockwatch queues --url\` to a local receiver for ${STORM_RUN_MS / 1000} s over a farm where ${STORM_OFFENDERS} server sides hold unread bytes above the threshold`,
    farm: { offenders: STORM_OFFENDERS },
    intervalMs: 250,
    maxAlertsPerTick: 1000,
    runMs: STORM_RUN_MS,
    rounds: 1,
    // At the largest size only, when it has room for the offenders (10k offenders need ≥ 20k sockets).
    sizes: (n, all) => n === all[all.length - 1] && farmFits(n, STORM_OFFENDERS),
  },
];

// Targets, evaluated per size (or across sizes for heap-flat). `info: true` rows are reported
// without a verdict. `bound` (speedups): a floor row; a miss also reports how much faster than the
// slower side that floor itself is, the most any reader of the same dumps could reach.
export const targets = [
  // The floor of the sampler targets does the same dump as the addon (floor-1walk).
  {
    id: 'sync-vs-floor',
    label: 'full sync scan ≤ 1.15× floor (same requests)',
    kind: 'ratio',
    row: 'sync-scan',
    over: 'floor-1walk',
    max: 1.15,
  },
  {
    id: 'async-vs-floor',
    label: 'async scan ≤ 1.3× floor (same requests)',
    kind: 'ratio',
    row: 'async-scan',
    over: 'floor-1walk',
    max: 1.3,
  },
  {
    id: 'sync-vs-v2-floor',
    label: 'full sync scan vs the standard per-family dump',
    kind: 'ratio',
    row: 'sync-scan',
    over: 'floor',
    info: true,
  },
  {
    id: 'vs-ss',
    label: 'sync scan ≥ 2× faster than ss -tuan + parse',
    kind: 'speedup',
    row: 'sync-scan',
    slower: 'ss',
    min: 2,
    bound: 'floor',
  },
  {
    id: 'vs-proc',
    label: 'sync scan ≥ 3× faster than /proc/net parsing',
    kind: 'speedup',
    row: 'sync-scan',
    slower: 'proc',
    min: 3,
    bound: 'floor',
  },
  {
    id: 'heap-flat',
    label: 'heap per scan independent of N (few offenders)',
    kind: 'heap-flat',
    rows: scenarios.filter((r) => r.heapFlat).map((r) => r.id),
    maxSpreadBytes: 1024,
  },
  { id: 'lookup', label: 'exact lookup ≤ 50 µs', kind: 'max-us', row: 'lookup', max: 50 },
  // Issue 4: the SNAT scan against the full-dump floor (every socket, every state), and against the old script's pipeline.
  {
    id: 'snat-vs-full-floor',
    label: 'SNAT scan ≤ 0.5× the full-dump floor (standard per-family dumps)',
    kind: 'ratio',
    row: 'snat-sync',
    over: 'floor',
    max: 0.5,
  },
  {
    id: 'snat-vs-1walk-floor',
    label: 'SNAT scan vs the one-walk full-dump floor',
    kind: 'ratio',
    row: 'snat-sync',
    over: 'floor-1walk',
    info: true,
  },
  {
    id: 'snat-vs-netstat-p',
    label: 'SNAT scan ≥ 50× faster than the netstat -natp | awk | sort | uniq pipeline',
    kind: 'speedup',
    row: 'snat-sync',
    slower: 'snat-netstat-p',
    min: 50,
    bound: 'floor-snat',
  },
  {
    id: 'snat-vs-floor',
    label: 'SNAT scan vs its own floor (same kernel filter)',
    kind: 'ratio',
    row: 'snat-sync',
    over: 'floor-snat',
    info: true,
  },
  {
    id: 'snat-vs-netstat',
    label: 'SNAT scan vs netstat -nat pipeline',
    kind: 'speedup',
    row: 'snat-sync',
    slower: 'snat-netstat',
    info: true,
  },
  // Issue 11: an exporter scrape against the floor of the same dumps, and the histogram pass.
  {
    id: 'exporter-vs-floor',
    label: 'exporter scrape (async) ≤ 1.3× the floor of the same dumps',
    kind: 'ratio',
    row: 'exporter-async',
    over: 'floor-1walk',
    max: 1.3,
  },
  {
    id: 'exporter-sync-vs-floor',
    label: 'exporter scrape (sync) vs the floor of the same dumps',
    kind: 'ratio',
    row: 'exporter-sync',
    over: 'floor-1walk',
    info: true,
  },
  {
    id: 'hist-vs-counts',
    label: 'queue histograms ≤ 1.1× a counts-only scan',
    kind: 'ratio',
    row: 'counts-hist',
    over: 'counts-only',
    max: 1.1,
  },
  // Issue 3: "a storm of offending sockets keeps the sampling interval and bounded memory" (queue-report.mjs).
  {
    id: 'queue-interval',
    label: 'queue watch keeps its sampling interval (0 missed ticks, p99 jitter < interval)',
    kind: 'interval-held',
    rows: ['watch-250', 'watch-1000', 'queue-storm'],
  },
  {
    id: 'queue-memory',
    label: 'offender storm: bounded memory (RSS peak of the second half ≤ 1.1× the first half)',
    kind: 'memory-bounded',
    row: 'queue-storm',
    maxGrowth: 1.1,
  },
  // Issue 13: "a steady 10k-offender storm at ≤ 1.2× the CPU of the few-offender watch" (change-tracking scans).
  {
    id: 'storm-steady',
    label: 'steady 10k-offender storm ≤ 1.2× the CPU per tick of the few-offender watch (issue 13, same run)',
    kind: 'storm-steady',
    row: 'queue-storm',
    over: 'watch-250',
    max: 1.2,
  },
];

/** Timed calls per row and process at a farm size, unless the row says otherwise. */
export function defaultRuns(size) {
  return size <= 2000 ? 15 : size <= 15000 ? 11 : 11;
}

/** Rounds: each row runs in this many fresh processes, interleaved with the other rows, so slow
 *  phases of a shared machine spread over all rows instead of hitting one. */
export function defaultRounds(quick) {
  return quick ? 2 : 7;
}
