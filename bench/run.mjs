// Benchmark harness: builds a loopback socket farm per size, runs every scenario row in a fresh
// process, and writes bench/RESULTS.md. Not a test: nothing here asserts timings.
//
//   node bench/run.mjs [--sizes 1000,10000,40000] [--quick] [--offenders 10] [--only id,id]
//                      [--skip id,id] [--out path] [--help]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eachArg } from './args.mjs';
import { installExitHandlers, killAllChildren, runChild, startFarm } from './children.mjs';
import { planFarm } from './farm-plan.mjs';
import { soakSection, withSoakSection } from './soak-section.mjs';
import { carrySections } from './sections.mjs';
import { loadLibrary, SkipError } from './methods.mjs';
import { environment, fmtTime, pairedRatio, renderMarkdown, sizeLabel } from './report.mjs';
import { defaultRounds, defaultRuns, scenarios, targets } from './scenarios.mjs';
import { median, min } from './stats.mjs';
import { sessionProgress, summarizeSessions } from './queue-report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const OUT_DIR = path.join(here, 'out');
const FLOOR_SRC = path.join(here, 'floor.c');
const FLOOR_BIN = path.join(OUT_DIR, 'floor');
const MEASURE = path.join(here, 'measure.mjs');
const SESSION = path.join(here, 'session.mjs');
/** Heap-measuring processes only; timing processes run with Node's defaults. */
const HEAP_NODE_FLAGS = ['--expose-gc', '--min-semi-space-size=256', '--max-semi-space-size=256'];
const FLOOR_WARMUPS = 3;

const USAGE = `usage: node bench/run.mjs [options]
  --sizes N,N,…     farm sizes in sockets (default 1000,10000,40000)
  --quick           fewer timed runs; default sizes 1000,10000; writes bench/out/RESULTS.md
  --offenders N|P%  server-side sockets holding unread bytes: a count in total (default 10),
                    or a percentage of the server-side sockets (e.g. 1%)
  --only ID,ID      run only these scenario rows (floors they compare against are added)
  --skip ID,ID      run every row but these (e.g. --skip queue-storm,watch-1000)
  --out PATH        where to write the Markdown report
  --report-only     measure nothing: render the report again from bench/out/results.json
  --help            this text
A rerun keeps the "Why:" lines already written into the report for targets still missed.`;

function parseArgs(argv) {
  const o = { sizes: undefined, quick: false, offenders: 10, only: undefined, skip: undefined, out: undefined, reportOnly: false };
  eachArg(argv, (a, value) => {
    if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (a === '--quick') o.quick = true;
    else if (a === '--report-only') o.reportOnly = true;
    else if (a === '--sizes') {
      o.sizes = value()
        .split(',')
        .map((s) => Number(s.trim().replace(/k$/i, '000')));
      for (const n of o.sizes) if (!Number.isInteger(n) || n < 8) throw new RangeError(`--sizes: ${n} is not a socket count ≥ 8`);
    } else if (a === '--offenders') {
      const v = value();
      const pct = /^(\d+(?:\.\d+)?)%$/.exec(v);
      o.offenders = pct ? `${pct[1]}%` : Number(v);
      if (pct ? Number(pct[1]) > 100 : !Number.isInteger(o.offenders) || o.offenders < 0) {
        throw new RangeError(`--offenders must be a non-negative integer or a percentage up to 100%, got ${v}`);
      }
    } else if (a === '--only')
      o.only = value()
        .split(',')
        .map((s) => s.trim());
    else if (a === '--skip')
      o.skip = value()
        .split(',')
        .map((s) => s.trim());
    else if (a === '--out') o.out = path.resolve(value());
    else throw new RangeError(`unknown option ${a} (see --help)`);
  });
  o.sizes ??= o.quick ? [1000, 10000] : [1000, 10000, 40000];
  o.sizes.sort((a, b) => a - b);
  const partial = o.quick || o.only !== undefined || o.skip !== undefined;
  o.out ??= partial ? path.join(OUT_DIR, 'RESULTS.md') : path.join(here, 'RESULTS.md');
  return o;
}

function checkIds(flag, ids) {
  for (const id of ids ?? [])
    if (!scenarios.some((r) => r.id === id))
      throw new RangeError(`${flag}: no scenario "${id}" (known: ${scenarios.map((r) => r.id).join(', ')})`);
}

function selectRows(only, skip) {
  checkIds('--only', only);
  checkIds('--skip', skip);
  const skipped = new Set(skip ?? []);
  if (!only) return scenarios.filter((r) => !skipped.has(r.id));
  const wanted = new Set(only);
  for (const id of only) {
    const b = scenarios.find((r) => r.id === id).baseline;
    if (b) wanted.add(b);
  }
  wanted.add('floor'); // ns/socket needs the host socket count
  return scenarios.filter((r) => wanted.has(r.id) && !skipped.has(r.id));
}

function compileFloor() {
  mkdirSync(OUT_DIR, { recursive: true });
  if (existsSync(FLOOR_BIN) && statSync(FLOOR_BIN).mtimeMs >= statSync(FLOOR_SRC).mtimeMs) return;
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', FLOOR_BIN, FLOOR_SRC], { stdio: 'inherit' });
}

/** floor.c arguments mirroring what the addon sends for `options`. */
function floorArgs(row, lib) {
  const o = row.options ?? {};
  if (lib) {
    const req = lib.compileSampleOptions(o);
    const args = ['-p', String(req.protocols), '-f', String(req.families), '-t', String(req.tcpStates), '-u', String(req.udpStates)];
    if (req.bytecode && req.bytecode.length) args.push('-b', Buffer.from(req.bytecode).toString('hex'));
    if (row.oneWalk) args.push('-1');
    return args;
  }
  const filtered =
    o.states || o.localPorts || o.excludeLocalPorts || o.remotePorts || o.excludeRemotePorts || o.tcp || o.udp || o.ipv4 || o.ipv6;
  if (filtered) throw new SkipError('needs dist/ to compile the filter it mirrors');
  return [];
}

async function runFloor(row, size, lib, runsOverride) {
  let args;
  try {
    args = floorArgs(row, lib);
  } catch (err) {
    if (err instanceof SkipError) return { skipped: err.message };
    throw err;
  }
  const runs = runsOverride ?? row.runs ?? defaultRuns(size) * 2;
  const r = await runChild(FLOOR_BIN, ['-r', String(runs), '-w', String(FLOOR_WARMUPS), ...args]);
  if (r.code !== 0) return { skipped: `floor failed: ${r.stderr.trim()}` };
  const out = JSON.parse(r.stdout);
  return {
    times: out.ms,
    cpuTimes: out.cpuMs,
    heap: { bytes: null },
    info: {
      socketsSeen: out.sockets,
      sockets: out.sockets,
      bytesReceived: out.bytes,
      recvCalls: out.recvCalls,
      recvQ: out.recvQ,
      sendQ: out.sendQ,
    },
  };
}

async function runMeasure(row, size, mode, farm) {
  const job = { id: row.id, size, mode, farm: { sample: farm.children[0]?.sample } };
  const flags = mode === 'heap' ? HEAP_NODE_FLAGS : [];
  const r = await runChild(process.execPath, [...flags, MEASURE, JSON.stringify(job)]);
  if (r.code !== 0) return { skipped: `measure failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' ')}` };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** A session row (queue watch) in its own fresh process; the farm's totals go along. */
async function runSession(row, size, farmInfo) {
  const job = { id: row.id, size, mode: 'session', farm: { sockets: farmInfo.sockets, offenders: farmInfo.offenders } };
  const r = await runChild(process.execPath, [SESSION, JSON.stringify(job)]);
  if (r.code !== 0) return { skipped: `session failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' ')}` };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** Rounds of a row: its own count (sessions: one in --quick mode), else the run's. */
function roundsOf(row, o) {
  if (row.session && o.quick) return 1;
  return row.rounds ?? defaultRounds(o.quick);
}

/** Pools the rounds of one row: median and min over every timed call of every process. */
function summarize(rounds, heap) {
  const skipped = rounds.find((r) => r.skipped) ?? (heap?.skipped ? heap : undefined);
  if (skipped) return { skipped: skipped.skipped };
  const times = rounds.flatMap((r) => r.times);
  const hasCpu = rounds.every((r) => Array.isArray(r.cpuTimes));
  return {
    medianMs: median(times),
    minMs: min(times),
    runs: times.length,
    rounds: rounds.length,
    roundMedians: rounds.map((r) => median(r.times)),
    cpuMedianMs: hasCpu ? median(rounds.flatMap((r) => r.cpuTimes)) : null,
    cpuRoundMedians: hasCpu ? rounds.map((r) => median(r.cpuTimes)) : null,
    heapBytes: heap?.heap?.bytes ?? null,
    heapCalls: heap?.heap?.calls,
    heapNote: heap?.heap?.note,
    info: rounds[rounds.length - 1].info,
  };
}

function progressLine(size, row, r, sizeResult) {
  const label = `[${sizeLabel(size).padStart(4)}] ${row.id.padEnd(16)}`;
  if (r.skipped) return `${label} skipped: ${r.skipped}`;
  if (row.session) return `${label} ${sessionProgress(row, r)}`;
  const base = row.baseline ? sizeResult.rows[row.baseline] : undefined;
  const ratio = base && !base.skipped ? `  ${pairedRatio(r, base).toFixed(2)}× ${row.baseline}` : '';
  const heap = r.heapBytes === null || r.heapBytes === undefined ? '' : `  heap ${Math.round(r.heapBytes)} B/op`;
  return `${label} ${fmtTime(row, r.medianMs).padStart(10)}${ratio}${heap}`;
}

const FARM_SHAPE =
  '- The farm: per size, child processes (each ≤ 9,000 connections, i.e. ≤ 18,000 fds) each listen on `127.0.0.(11+i)` ports 80, 443 ' +
  'and 2222 and connect to themselves, holding both ends; server sides are accepted paused, so bytes written to a client end stay unread. ' +
  'Half of the client ends bind their own source address in 127.100.0.0/16 with local port 80 or 443; the other half take an ephemeral port ' +
  "from `127.0.0.(101+i)`. So 75% of the farm's sockets have local port 80/443/2222 (the SNAT shape: inbound on excluded ports) and 25% are " +
  'outbound client sockets to 3 destinations per child. The offenders are server sides holding 2,000 unread bytes each (threshold 1,000). ' +
  'Farm children exit with RST on every connection, so no TIME_WAIT sockets carry over to the next size.';

/**
 * TCP sockets allocated on the whole host (`alloc` in /proc/net/sockstat is a global counter, not
 * per network namespace): every TCP dump walks a hash holding about this many sockets.
 */
function hostTcpAllocated() {
  try {
    const m = /^TCP:.*\balloc (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A count, or a percentage of the server-side sockets (half the farm's sockets). */
function offendersAt(spec, size) {
  if (typeof spec === 'number') return spec;
  return Math.round((Number.parseFloat(spec) / 100) * Math.floor(size / 2));
}

/** Rows grouped by the farm they need: row.farm holds planFarm overrides (e.g. { offenders: 10000 }). */
function groupByFarm(rows) {
  const groups = new Map();
  for (const row of rows) {
    const key = JSON.stringify(row.farm ?? {});
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(row);
  }
  return groups;
}

/** Builds one farm, runs its rows in interleaved rounds plus one heap process each, stops it. */
async function runFarmGroup({ size, farmKey, group, o, lib, sizeResult }) {
  const tag = `[${sizeLabel(size).padStart(4)}]`;
  const before = await runFloor({ id: 'host-count', options: {} }, size, undefined, 1);
  const overrides = JSON.parse(farmKey);
  const t0 = performance.now();
  const farm = await startFarm(planFarm({ sockets: size, offenders: offendersAt(o.offenders, size), ...overrides }));
  const info = {
    overrides,
    rows: group.map((r) => r.id),
    children: farm.children.length,
    connections: farm.children.reduce((n, c) => n + c.connections, 0),
    sockets: farm.children.reduce((n, c) => n + c.sockets, 0),
    offenders: farm.children.reduce((n, c) => n + c.offenders, 0),
    setupMs: performance.now() - t0,
    hostSocketsBefore: before.info?.sockets,
  };
  sizeResult.farms.push(info);
  process.stdout.write(
    `${tag} farm ready: ${info.sockets} sockets in ${info.children} process(es), ${(info.setupMs / 1000).toFixed(1)} s\n`,
  );
  try {
    const raw = new Map(group.map((row) => [row.id, []]));
    const maxRounds = Math.max(...group.map((row) => roundsOf(row, o)));
    const allocSamples = [];
    for (let round = 0; round < maxRounds; round++) {
      allocSamples.push(hostTcpAllocated());
      for (const row of group) {
        if (round >= roundsOf(row, o) || raw.get(row.id).some((r) => r.skipped)) continue;
        let r;
        if (row.session) r = await runSession(row, size, info);
        else if (row.kind === 'floor') r = await runFloor(row, size, lib);
        else r = await runMeasure(row, size, 'time', farm);
        raw.get(row.id).push(r);
      }
      process.stdout.write(`${tag} round ${round + 1}/${maxRounds} done\n`);
    }
    allocSamples.push(hostTcpAllocated());
    const known = allocSamples.filter((v) => v !== undefined);
    if (known.length) info.hostTcpAllocated = [Math.min(...known), Math.max(...known)];
    const heap = new Map();
    for (const row of group) {
      if (row.kind !== 'floor' && !row.session && !raw.get(row.id).some((r) => r.skipped))
        heap.set(row.id, await runMeasure(row, size, 'heap', farm));
    }
    for (const row of group) {
      const r = row.session ? summarizeSessions(row, raw.get(row.id)) : summarize(raw.get(row.id), heap.get(row.id));
      sizeResult.rows[row.id] = r;
      if (row.id === 'floor' && !r.skipped) sizeResult.hostSockets = r.info.sockets;
      process.stdout.write(`${progressLine(size, row, r, sizeResult)}\n`);
    }
  } finally {
    await farm.stop();
  }
}

function writeReport(out, { env, options, sizes, rows }) {
  const previous = existsSync(out) ? readFileSync(out, 'utf8') : '';
  const rendered = renderMarkdown({ env, options, sizes, scenarios: rows, targets, farmShape: FARM_SHAPE, previous });
  const soak = soakSection(previous); // bench/soak.mjs's section survives a rerun
  // So do the other scripts' marked sections (exporter, shapes, bpf).
  writeFileSync(out, carrySections(previous, soak ? withSoakSection(rendered, soak) : rendered));
}

function reportOnly(o) {
  const file = path.join(OUT_DIR, 'results.json');
  if (!existsSync(file))
    throw new RangeError(`--report-only: ${path.relative(process.cwd(), file)} does not exist; run the benchmark first`);
  const { env, options, sizes } = JSON.parse(readFileSync(file, 'utf8'));
  const measuredIds = new Set(sizes.flatMap((s) => Object.keys(s.rows)));
  const out = o.out ?? path.join(here, 'RESULTS.md');
  writeReport(out, { env, options, sizes, rows: scenarios.filter((r) => measuredIds.has(r.id)) });
  process.stdout.write(`wrote ${path.relative(process.cwd(), out)} from ${path.relative(process.cwd(), file)}\n`);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.reportOnly) return reportOnly(o);
  installExitHandlers();
  const rows = selectRows(o.only, o.skip);
  const started = performance.now();
  const env = environment();
  compileFloor();

  let lib;
  try {
    lib = loadLibrary();
  } catch (err) {
    if (!(err instanceof SkipError)) throw err;
    process.stdout.write(`note: addon rows will be skipped: ${err.message}\n`);
  }

  process.stdout.write(
    `sockwatch bench: sizes ${o.sizes.map(sizeLabel).join(', ')}; ${rows.length} rows; kernel ${env.kernel}; ${env.cores} cores; node ${env.node}\n`,
  );
  const sizes = [];
  for (const size of o.sizes) {
    const sizeResult = { size, farms: [], rows: {}, hostSockets: undefined };
    const active = rows.filter((row) => !row.sizes || row.sizes(size, o.sizes));
    for (const [farmKey, group] of groupByFarm(active)) {
      await runFarmGroup({ size, farmKey, group, o, lib, sizeResult });
    }
    sizeResult.farm = sizeResult.farms[0];
    sizes.push(sizeResult);
  }

  env.loadavgEnd = os
    .loadavg()
    .map((v) => v.toFixed(2))
    .join(' ');
  const options = { sizes: o.sizes, offenders: o.offenders, quick: o.quick, durationS: Math.round((performance.now() - started) / 1000) };
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(path.join(OUT_DIR, 'results.json'), `${JSON.stringify({ env, options, sizes }, null, 2)}\n`);
  writeReport(o.out, { env, options, sizes, rows });
  process.stdout.write(`wrote ${path.relative(process.cwd(), o.out)} and bench/out/results.json (${options.durationS} s)\n`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err instanceof RangeError ? err.message : (err.stack ?? err)}\n`);
  killAllChildren();
  process.exit(err instanceof RangeError ? 2 : 1);
});
