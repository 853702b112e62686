// The BPF spike of issue 13: scan cost of a BPF socket iterator (native-bpf/, thresholds, state
// mask and port filters applied in the kernel, only offenders and per-state counts emitted) against
// the netlink floor, and the latency a busy application sees on its own sockets while either scans
// back to back. Not a test; opt-in, root (BPF iterators are tracing programs):
//
//   npm run bench:bpf           (= node bench/bpf-spike.mjs; about 6 minutes)
//   node bench/bpf-spike.mjs --sizes 40000 --rounds 3 --latency-seconds 3
//   node bench/bpf-spike.mjs --report-only  (the section again from bench/out/bpf.json)
//
// Runs in a network namespace of its own (bench/shapes-netns.mjs: a TCP hash of the host's size
// holding only the farm) over the standard farm (bench/farm-plan.mjs). Every row at every size runs
// once per round in a fresh process, rows interleaved; ratios are paired by round. Writes
// bench/out/bpf.json and the "bpf" part of bench/RESULTS.md (bench/shapes-section.mjs).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eachArg } from './args.mjs';
import { installExitHandlers, killAllChildren, runChild, spawnTracked } from './children.mjs';
import { planFarm } from './farm-plan.mjs';
import { loadLibrary } from './methods.mjs';
import { environment } from './report.mjs';
import { THRESHOLD } from './scenarios.mjs';
import { compileC, FLOOR_BIN, OUT_DIR, runFloor, runFloorLike, sockstat, startFarmStaged, summarize } from './shapes-common.mjs';
import { runInNamespace } from './shapes-netns.mjs';
import { queueWatchStates } from './shapes-rows.mjs';
import { renderBpfSection, writeSection } from './shapes-section.mjs';
import { median } from './stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BPF_OUT = path.join(OUT_DIR, 'bpf');
const SOCKSCAN = path.join(BPF_OUT, 'sockscan');
const ECHO_BIN = path.join(OUT_DIR, 'bpf-echo');
/** Scans per process: fewer at 200k, where one netlink scan takes a quarter second or more here. */
const runsAt = (size) => (size >= 100_000 ? 7 : 22);
/** inet_diag bytecode that rejects every socket: one JMP (always "no") to the end + 4. */
const REJECT_ALL = '01040800';
const WARMUPS = 3;
const ALL_STATES = 0x1ffe;
const UDP_STATES = (1 << 1) | (1 << 7);
const BACK_TO_BACK_RUNS = 10_000; // floor.c's most; more scans than a latency window holds: killed when it ends

function parseArgs(argv) {
  const o = { sizes: [40_000, 200_000], rounds: 5, latencySeconds: 5, latencyRounds: 3, inside: false, out: path.join(here, 'RESULTS.md') };
  eachArg(argv, (a, value) => {
    if (a === '--sizes') o.sizes = value().split(',').map(Number);
    else if (a === '--rounds') o.rounds = Number(value());
    else if (a === '--latency-seconds') o.latencySeconds = Number(value());
    else if (a === '--latency-rounds') o.latencyRounds = Number(value());
    else if (a === '--out') o.out = path.resolve(value());
    else if (a === '--inside') o.inside = true;
    else if (a === '--report-only') o.reportOnly = true;
    else throw new RangeError(`unknown option ${a}`);
  });
  return o;
}

/** The rows: two netlink floors and the same two requests answered by the BPF iterator. */
function rows(queueMask) {
  const thresholds = ['-R', String(THRESHOLD), '-S', String(THRESHOLD), '-A', '-2'];
  return [
    {
      id: 'floor-1walk',
      kind: 'floor',
      title: 'netlink floor: every state, TCP v4+v6 in one walk, UDP v4 and v6',
      options: { recvThreshold: THRESHOLD },
      oneWalk: true,
    },
    {
      id: 'floor-queue',
      kind: 'floor',
      title: 'netlink floor with the queue watch’s state mask (no TIME_WAIT, SYN_RECV)',
      options: { states: queueWatchStates() },
      oneWalk: true,
    },
    {
      id: 'floor-walk',
      kind: 'floor',
      title: 'netlink, the walk alone: every state, a bytecode that rejects every socket (nothing filled or copied)',
      options: { recvThreshold: THRESHOLD },
      oneWalk: true,
      bytecode: REJECT_ALL,
    },
    {
      id: 'bpf-walk',
      kind: 'bpf',
      title: 'BPF iterators, the walk alone: the programs count each socket by state and return (empty state masks)',
      args: ['-t', '0', '-u', '0'],
      baseline: 'floor-1walk',
    },
    {
      id: 'bpf-scan',
      kind: 'bpf',
      title: 'BPF iterators (TCP, UDP): every state, thresholds 1000/1000 and accept at the limit in the kernel, offenders only',
      args: ['-t', String(ALL_STATES), '-u', String(UDP_STATES), ...thresholds],
      baseline: 'floor-1walk',
    },
    {
      id: 'bpf-queue',
      kind: 'bpf',
      title: 'the same with the queue watch’s state mask',
      args: ['-t', String(queueMask), '-u', String(UDP_STATES), ...thresholds],
      baseline: 'floor-1walk',
    },
  ];
}

function runRow(row, lib, runs) {
  if (row.kind === 'floor') return runFloor(row, lib, runs, row.bytecode);
  return runFloorLike(SOCKSCAN, ['-r', String(runs), '-w', String(WARMUPS), ...row.args]);
}

/** Offenders by both paths on the same sockets (queues held still by the farm): same set? */
async function parity(lib, bpfRow) {
  const s = new lib.Sampler();
  let netlink;
  try {
    netlink = s.sampleSync({ recvThreshold: THRESHOLD, sendThreshold: THRESHOLD, acceptThreshold: 'limit' });
  } finally {
    s.close();
  }
  const r = await runChild(SOCKSCAN, ['-r', '1', '-w', '0', '-o', ...bpfRow.args]);
  const lines = r.stdout.trim().split('\n');
  const summary = JSON.parse(lines.pop());
  const key = (proto, local, lport, remote, rport, rq, wq) => `${proto} ${local}:${lport} ${remote}:${rport} ${rq}/${wq}`;
  const bpf = new Set(
    lines.map((l) => JSON.parse(l)).map((o) => key(o.proto === 6 ? 'tcp' : 'udp', o.local, o.sport, o.remote, o.dport, o.recvQ, o.sendQ)),
  );
  const nl = new Set(
    netlink.records.map((o) => key(o.protocol, o.localAddress, o.localPort, o.remoteAddress, o.remotePort, o.recvQ, o.sendQ)),
  );
  const onlyNetlink = [...nl].filter((k) => !bpf.has(k));
  const onlyBpf = [...bpf].filter((k) => !nl.has(k));
  return {
    netlinkOffenders: nl.size,
    bpfOffenders: bpf.size,
    same: onlyNetlink.length === 0 && onlyBpf.length === 0,
    onlyNetlink: onlyNetlink.slice(0, 5),
    onlyBpf: onlyBpf.slice(0, 5),
    netlinkSockets: netlink.socketsSeen,
    bpfSockets: summary.sockets,
    bpfWalked: summary.walked,
  };
}

/** The echo ping-pong alone, then beside back-to-back netlink scans, then beside BPF scans; per round. */
async function latency(o, lib, allRows) {
  const floorRow = allRows.find((r) => r.id === 'floor-1walk');
  const req = lib.compileSampleOptions(floorRow.options);
  const scanners = {
    idle: undefined,
    netlink: [
      FLOOR_BIN,
      [
        '-r',
        String(BACK_TO_BACK_RUNS),
        '-w',
        '0',
        '-p',
        String(req.protocols),
        '-f',
        String(req.families),
        '-t',
        String(req.tcpStates),
        '-u',
        String(req.udpStates),
        '-1',
      ],
    ],
    bpf: [SOCKSCAN, ['-r', String(BACK_TO_BACK_RUNS), '-w', '0', ...allRows.find((r) => r.id === 'bpf-scan').args]],
  };
  const results = Object.fromEntries(Object.keys(scanners).map((k) => [k, []]));
  for (let round = 0; round < o.latencyRounds; round++) {
    for (const [name, scanner] of Object.entries(scanners)) {
      const child = scanner ? spawnTracked(scanner[0], scanner[1], { stdio: ['pipe', 'ignore', 'pipe'] }) : undefined;
      if (child) await new Promise((r) => setTimeout(r, 300)); // loaded and scanning
      const r = await runChild(ECHO_BIN, [String(o.latencySeconds), '16']);
      const alive = child && child.exitCode === null;
      child?.kill('SIGKILL');
      if (r.code !== 0) throw new Error(`bpf-echo failed: ${r.stderr}`);
      results[name].push({ ...JSON.parse(r.stdout), scannerRan: scanner ? alive : undefined });
    }
    process.stdout.write(`latency round ${round + 1}/${o.latencyRounds} done\n`);
  }
  const pooled = {};
  for (const [name, rs] of Object.entries(results)) {
    pooled[name] = {
      rounds: rs,
      roundTrips: median(rs.map((r) => r.roundTrips)),
      p50Us: median(rs.map((r) => r.p50Us)),
      p90Us: median(rs.map((r) => r.p90Us)),
      p99Us: median(rs.map((r) => r.p99Us)),
      p999Us: median(rs.map((r) => r.p999Us)),
      maxUs: median(rs.map((r) => r.maxUs)),
      scannerRan: rs.every((r) => r.scannerRan !== false),
    };
  }
  return pooled;
}

async function inside(o) {
  installExitHandlers();
  mkdirSync(BPF_OUT, { recursive: true });
  compileC(FLOOR_BIN, path.join(here, 'floor.c'));
  compileC(ECHO_BIN, path.join(here, 'bpf-echo.c'), ['-pthread']);
  execFileSync('make', ['-s', '-C', path.join(here, '..', 'native-bpf'), `OUT=${BPF_OUT}`], { stdio: 'inherit' });
  const lib = loadLibrary();
  const queueMask = lib.compileSampleOptions({ states: queueWatchStates() }).tcpStates;
  const allRows = rows(queueMask);
  const env = { ...environment(), clang: execFileSync('clang', ['--version'], { encoding: 'utf8' }).split('\n')[0] };
  const started = performance.now();
  const sizes = [];
  for (const size of o.sizes) {
    const farm = await startFarmStaged(planFarm({ sockets: size, offenders: 10 }));
    try {
      const info = { sockets: farm.children.reduce((n, c) => n + c.sockets, 0), children: farm.children.length, sockstat: [sockstat()] };
      process.stdout.write(`[${size}] farm ready: ${JSON.stringify(info.sockstat[0])}\n`);
      const raw = new Map(allRows.map((r) => [r.id, []]));
      for (let round = 0; round < o.rounds; round++) {
        for (const row of allRows) raw.get(row.id).push(await runRow(row, lib, runsAt(size)));
        info.sockstat.push(sockstat());
        process.stdout.write(`[${size}] round ${round + 1}/${o.rounds} done\n`);
      }
      const result = { size, info, rows: {} };
      for (const row of allRows) {
        result.rows[row.id] = summarize(raw.get(row.id));
        const r = result.rows[row.id];
        process.stdout.write(
          `[${size}] ${row.id.padEnd(12)} ${r.skipped ? `skipped: ${r.skipped}` : `${r.medianMs.toFixed(2)} ms (CPU ${r.cpuMedianMs.toFixed(2)} ms)`}\n`,
        );
      }
      result.parity = await parity(
        lib,
        allRows.find((r) => r.id === 'bpf-scan'),
      );
      process.stdout.write(`[${size}] parity: ${JSON.stringify(result.parity)}\n`);
      if (size === o.sizes[0]) result.latency = await latency(o, lib, allRows);
      sizes.push(result);
    } finally {
      await farm.stop();
    }
  }
  env.durationS = Math.round((performance.now() - started) / 1000);
  writeFileSync(path.join(OUT_DIR, 'bpf.json'), `${JSON.stringify({ env, options: o, sizes }, null, 2)}\n`);
  writeSection(o.out, renderBpfSection({ env, options: o, sizes, rows: allRows }), 'bpf');
  process.stdout.write(`wrote bench/out/bpf.json and the bpf part of ${path.relative(process.cwd(), o.out)} (${env.durationS} s)\n`);
}

const argv = process.argv.slice(2);
const o = parseArgs(argv);
/** Renders the section again from bench/out/bpf.json, measuring nothing. */
async function reportOnly(o) {
  const { env, options, sizes } = JSON.parse(readFileSync(path.join(OUT_DIR, 'bpf.json'), 'utf8'));
  const queueMask = loadLibrary().compileSampleOptions({ states: queueWatchStates() }).tcpStates;
  writeSection(o.out, renderBpfSection({ env, options, sizes, rows: rows(queueMask) }), 'bpf');
  process.stdout.write(`wrote the bpf part of ${path.relative(process.cwd(), o.out)} from bench/out/bpf.json\n`);
}

const run = o.reportOnly
  ? reportOnly(o)
  : o.inside
    ? inside(o)
    : process.getuid?.() === 0
      ? runInNamespace('bpf', fileURLToPath(import.meta.url), argv)
      : Promise.reject(new RangeError('bench/bpf-spike.mjs needs root (BPF iterators are tracing programs)'));
run.catch((err) => {
  process.stderr.write(`bpf-spike: ${err instanceof RangeError ? err.message : (err.stack ?? err)}\n`);
  killAllChildren();
  process.exit(err instanceof RangeError ? 2 : 1);
});
