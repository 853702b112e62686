// The exporter's benchmark (issue 11), runnable alone: `npm run bench:exporter` (root, for the
// namespace part). Two parts, each selectable with --only:
//
//   exporter  the scrape-equivalent scan (bench/scenarios.mjs EXPORTER_SCRAPE) at 10k and 40k
//             sockets against the floor of the same dumps (floor-1walk), and the histogram pass
//             against a counts-only scan: the rows exporter-sync, exporter-async, counts-only,
//             counts-hist of the scenario table, each round in fresh processes (bench/measure.mjs),
//             floor and rows interleaved, ratios paired by round.
//   netns     S sockets (10k, 40k) spread over K network namespaces this script creates (1, 10, 50;
//             loopback only, held by python3 children inside each), then one scrape of every
//             namespace (a Sampler per namespace, its `netns` option) against the scrape of one.
//             With net.ipv4.tcp_child_ehash_entries = 0 (the default) every namespace shares the
//             host's TCP hash, so every TCP dump walks all S sockets whichever namespace asks: K
//             namespaces cost about K walks. `10h` in --namespaces makes 10 namespaces with a hash
//             of their own (the sysctl set only while they are created) for contrast.
//
//   node bench/exporter.mjs [--only exporter,netns] [--sizes 10000,40000] [--namespaces 1,10,50,10h]
//                           [--rounds 7] [--out bench/RESULTS.md]
//
// Writes its own marked section of RESULTS.md (bench/run.mjs carries it over) and its raw numbers
// to bench/out/exporter.json. Namespaces are deleted at the end, on a signal and on a crash, and
// ones left by a killed earlier run (their pid gone) are deleted at start.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installExitHandlers, killAllChildren, runChild, spawnTracked, startFarm, waitForLine } from './children.mjs';
import { planFarm } from './farm-plan.mjs';
import { loadLibrary } from './methods.mjs';
import { environment, pairedCpuRatio, pairedRatio, sizeLabel } from './report.mjs';
import { EXPORTER_SCRAPE, scenarios } from './scenarios.mjs';
import { FLOOR_BIN, OUT_DIR, compileC, runFloor, summarize } from './shapes-common.mjs';
import { readSysctl, setSysctls } from './shapes-netns.mjs';
import { writeSection } from './sections.mjs';
import { median, min } from './stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const MEASURE = path.join(here, 'measure.mjs');
const EXPORTER_ROWS = ['exporter-sync', 'exporter-async', 'counts-only', 'counts-hist'];
const FLOOR_ROW = scenarios.find((r) => r.id === 'floor-1walk');
const NS_PREFIX = 'sockwatch-xb';
const MAX_CONNECTIONS_PER_HOLDER = 9000; // 18,000 fds: under the 20,000 a process may hold here
export const START = '<!-- exporter:start (written by bench/exporter.mjs) -->';
export const END = '<!-- exporter:end -->';

const USAGE =
  'usage: node bench/exporter.mjs [--only exporter,netns] [--sizes 10000,40000] [--namespaces 1,10,50,10h] [--rounds 7] [--out PATH]\n' +
  '       node bench/exporter.mjs --report-only   (render the section again from bench/out/exporter.json)';

function parseArgs(argv) {
  const o = {
    only: ['exporter', 'netns'],
    sizes: [10000, 40000],
    namespaces: ['1', '10', '50', '10h'],
    rounds: 7,
    out: undefined,
    reportOnly: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const list = () => (argv[++i] ?? '').split(',').map((s) => s.trim());
    if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (a === '--report-only') o.reportOnly = true;
    else if (a === '--only') o.only = list();
    else if (a === '--sizes') o.sizes = list().map((s) => Number(s.replace(/k$/i, '000')));
    else if (a === '--namespaces') o.namespaces = list();
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else if (a === '--out') o.out = path.resolve(argv[++i]);
    else throw new RangeError(`unknown option ${a}\n${USAGE}`);
  }
  for (const p of o.only) if (!['exporter', 'netns'].includes(p)) throw new RangeError(`--only: "${p}" is not exporter or netns`);
  for (const n of o.sizes) if (!Number.isInteger(n) || n < 100) throw new RangeError(`--sizes: ${n} is not a socket count ≥ 100`);
  for (const k of o.namespaces)
    if (!/^[1-9]\d*h?$/.test(k)) throw new RangeError(`--namespaces: "${k}" is not a count (10, or 10h: own TCP hash)`);
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new RangeError('--rounds must be a positive integer');
  o.out ??= path.join(here, 'RESULTS.md');
  return o;
}

const x = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–');
const ms = (v) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms` : '–');
const n = (v) => (Number.isFinite(v) ? v.toLocaleString('en-US') : '–');

function hostTcp() {
  const m = /^TCP: inuse (\d+) orphan \d+ tw (\d+) alloc (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m ? { inuse: Number(m[1]), tw: Number(m[2]), alloc: Number(m[3]) } : undefined;
}

// --- exporter rows -----------------------------------------------------------------------------

async function measureRow(id, size, farm) {
  const job = { id, size, mode: 'time', farm: { sample: farm.children[0]?.sample } };
  const r = await runChild(process.execPath, [MEASURE, JSON.stringify(job)]);
  if (r.code !== 0) return { skipped: `measure failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' ')}` };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

async function exporterPart(o, lib) {
  compileC(FLOOR_BIN, path.join(here, 'floor.c'));
  const out = [];
  for (const size of o.sizes) {
    const t0 = performance.now();
    const farm = await startFarm(planFarm({ sockets: size, offenders: 10 }));
    const sockets = farm.children.reduce((a, c) => a + c.sockets, 0);
    process.stdout.write(`[${sizeLabel(size)}] farm ready: ${sockets} sockets, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    const raw = { 'floor-1walk': [], ...Object.fromEntries(EXPORTER_ROWS.map((id) => [id, []])) };
    const alloc = [];
    try {
      for (let round = 0; round < o.rounds; round++) {
        alloc.push(hostTcp()?.alloc);
        raw['floor-1walk'].push(await runFloor(FLOOR_ROW, lib, 22));
        for (const id of EXPORTER_ROWS) raw[id].push(await measureRow(id, size, farm));
        process.stdout.write(`[${sizeLabel(size)}] exporter round ${round + 1}/${o.rounds}\n`);
      }
    } finally {
      await farm.stop();
    }
    const rows = Object.fromEntries(Object.entries(raw).map(([id, rounds]) => [id, summarize(rounds)]));
    const known = alloc.filter(Number.isFinite);
    out.push({ size, farmSockets: sockets, hostTcpAlloc: known.length ? [Math.min(...known), Math.max(...known)] : undefined, rows });
    for (const id of EXPORTER_ROWS) {
      const r = rows[id];
      const base = rows[scenarios.find((s) => s.id === id).baseline];
      process.stdout.write(
        `[${sizeLabel(size)}] ${id.padEnd(15)} ${r.skipped ? `skipped: ${r.skipped}` : `${ms(r.medianMs)}  ${x(pairedRatio(r, base))} (CPU ${x(pairedCpuRatio(r, base))})`}\n`,
      );
    }
  }
  return out;
}

function exporterMarkdown(results) {
  const lines = [];
  lines.push('### Exporter scrape');
  lines.push('');
  lines.push(
    '`exporter-*` is one scrape as `sockwatch exporter` asks for it (`EXPORTER_SCRAPE` in bench/scenarios.mjs): thresholds 1000/1000, ' +
      '`maxRecords: 0`, `queueHistogram: true`, `listeners: { top: 50 }`, `aggregate: { states: SNAT states, top: 50, excludeLocalPorts: ' +
      '[80, 443, 2222], mergeMapped: true }`. The kernel request is the full dump (every state, no bytecode: excluded ports are applied ' +
      'to the aggregation in C++, so those sockets are still counted), so its floor is `floor-1walk`. `counts-hist` adds only ' +
      '`queueHistogram: true` to `counts-only` (`maxRecords: 0`). Ratios are paired by round (median over rounds of row / baseline), ' +
      'every row in a fresh process per round, floor and rows interleaved; CPU ratios in brackets.',
  );
  lines.push('');
  lines.push('| Sockets | Row | time/op (median) | min | CPU/op | × baseline | × baseline (CPU) | sockets seen | notes |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---|');
  for (const s of results) {
    for (const id of ['floor-1walk', ...EXPORTER_ROWS]) {
      const r = s.rows[id];
      const row = scenarios.find((q) => q.id === id);
      if (r.skipped) {
        lines.push(`| ${sizeLabel(s.size)} | \`${id}\` | skipped: ${r.skipped} | | | | | | |`);
        continue;
      }
      const base = row.baseline ? s.rows[row.baseline] : undefined;
      const info = r.info ?? {};
      const baseSeen = base?.info?.socketsSeen;
      const drift = Number.isFinite(baseSeen) && Math.abs(info.socketsSeen - baseSeen) > 0.05 * baseSeen;
      const notes = [
        id.startsWith('exporter') ? `${info.aggregates} remotes / ${n(info.aggregatedSockets)} sockets in the top 50` : '',
        drift ? `⚠ other processes' sockets changed during the rounds (${row.baseline} saw ${n(baseSeen)})` : '',
      ]
        .filter(Boolean)
        .join('; ');
      lines.push(
        `| ${sizeLabel(s.size)} | \`${id}\` | ${ms(r.medianMs)} | ${ms(r.minMs)} | ${ms(r.cpuMedianMs)} | ${base ? `${x(pairedRatio(r, base))} ${row.baseline}` : '–'} | ${base ? x(pairedCpuRatio(r, base)) : '–'} | ${n(info.socketsSeen)} | ${notes} |`,
      );
    }
  }
  lines.push('');
  const verdict = (row, over, max) => {
    const parts = results.map((s) => {
      const v = pairedRatio(s.rows[row], s.rows[over]);
      return `${sizeLabel(s.size)} ${x(v)}${Number.isFinite(v) ? (v <= max ? ' ✓' : ' ✗') : ''} (CPU ${x(pairedCpuRatio(s.rows[row], s.rows[over]))})`;
    });
    return parts.join(', ');
  };
  lines.push(`- Target: exporter scrape (async) ≤ 1.3× the floor of the same dumps: ${verdict('exporter-async', 'floor-1walk', 1.3)}.`);
  lines.push(`- Exporter scrape (sync) vs the same floor: ${verdict('exporter-sync', 'floor-1walk', 1.3)}.`);
  lines.push(`- Target: queue histograms ≤ 1.1× a counts-only scan: ${verdict('counts-hist', 'counts-only', 1.1)}.`);
  for (const s of results)
    if (s.hostTcpAlloc)
      lines.push(
        `- ${sizeLabel(s.size)}: ${n(s.farmSockets)} farm sockets; TCP sockets allocated host-wide (sockstat \`alloc\`, all namespaces) during the rounds: ${s.hostTcpAlloc.join('–')}.`,
      );
  lines.push('');
  return lines.join('\n');
}

// --- namespace rows ----------------------------------------------------------------------------

// Holds `n` loopback connections (both ends) and one listener in its namespace. SO_LINGER 0 on
// every socket: when the holder dies its connections end with RST, so no TIME_WAIT socket stays in
// the host-wide hash to slow the next configuration's dumps. Exits when its stdin closes.
const HOLDER = `
import json, socket, struct, sys
n = int(sys.argv[1])
lin = struct.pack('ii', 1, 0)
def sock():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, lin); return s
srv = sock(); srv.bind(('127.0.0.1', 0)); srv.listen(4096)
port = srv.getsockname()[1]
keep = []
for i in range(n):
    c = sock(); c.connect(('127.0.0.1', port))
    a, _ = srv.accept(); a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, lin)
    keep += [c, a]
print('READY ' + json.dumps({'port': port, 'sockets': 2 * n + 1}), flush=True)
sys.stdin.read()
`;

const created = new Set();

function deleteNamespace(name) {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // already gone
  }
  created.delete(name);
}

function deleteAllNamespaces() {
  killAllChildren('SIGKILL');
  for (const name of [...created]) deleteNamespace(name);
}

/** Namespaces an earlier run left behind when it was killed (its pid is gone). */
function removeStaleNamespaces() {
  let names = [];
  try {
    names = readdirSync('/var/run/netns');
  } catch {
    return;
  }
  for (const name of names) {
    const m = new RegExp(`^${NS_PREFIX}-(\\d+)-`).exec(name);
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      deleteNamespace(name);
    }
  }
}

/** K namespaces holding about `sockets` sockets in all; `ownHash`: each with a TCP hash of its own. */
async function buildNamespaces(sockets, k, ownHash) {
  const names = Array.from({ length: k }, (_, i) => `${NS_PREFIX}-${process.pid}-${i}`);
  const connections = Math.max(1, Math.floor(sockets / k / 2));
  // A hash of its own, sized like the kernel sizes one (a power of two ≥ the sockets it will hold).
  const buckets = 2 ** Math.ceil(Math.log2(Math.max(1024, connections * 2)));
  const restore = ownHash ? setSysctls({ 'net.ipv4.tcp_child_ehash_entries': buckets }) : () => undefined;
  try {
    for (const name of names) {
      execFileSync('ip', ['netns', 'add', name]);
      created.add(name);
    }
  } finally {
    restore();
  }
  const holders = [];
  for (const name of names) {
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    for (let left = connections; left > 0; left -= MAX_CONNECTIONS_PER_HOLDER) {
      const child = spawnTracked('ip', [
        'netns',
        'exec',
        name,
        'python3',
        '-c',
        HOLDER,
        String(Math.min(left, MAX_CONNECTIONS_PER_HOLDER)),
      ]);
      holders.push({ name, child, ready: waitForLine(child, 'READY', `holder in ${name}`, 300_000) });
    }
  }
  const infos = await Promise.all(holders.map((h) => h.ready));
  const stop = async () => {
    await Promise.all(
      holders.map(
        (h) =>
          new Promise((resolve) => {
            if (h.child.exitCode !== null || h.child.signalCode !== null) return resolve();
            h.child.once('exit', resolve);
            h.child.kill('SIGKILL');
          }),
      ),
    );
    for (const name of names) deleteNamespace(name);
  };
  return { names, buckets: ownHash ? buckets : 0, sockets: infos.reduce((a, i) => a + i.sockets, 0), holders: holders.length, stop };
}

/** Rounds of: one scrape of every namespace in turn (each timed), and one of the host's own namespace. */
function scanNamespaces(lib, names, rounds) {
  const samplers = names.map((name) => new lib.Sampler({ netns: `/var/run/netns/${name}` }));
  const host = new lib.Sampler();
  try {
    for (const s of [...samplers, host]) s.sampleSync(EXPORTER_SCRAPE); // warm-up
    const perRound = [];
    let seen = [];
    // Wall and CPU time (user + system: the kernel's walk runs in this process's recvmsg) of one scrape.
    const timed = (s) => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const res = s.sampleSync(EXPORTER_SCRAPE);
      const c = process.cpuUsage(c0);
      return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000, seen: res.socketsSeen };
    };
    for (let r = 0; r < rounds; r++) {
      const each = samplers.map(timed);
      seen = each.map((e) => e.seen);
      const h = timed(host);
      perRound.push({
        all: each.reduce((a, e) => a + e.wall, 0),
        allCpu: each.reduce((a, e) => a + e.cpu, 0),
        each: each.map((e) => e.wall),
        eachCpu: each.map((e) => e.cpu),
        host: h.wall,
        hostCpu: h.cpu,
      });
    }
    return { perRound, seen };
  } finally {
    for (const s of [...samplers, host]) s.close();
  }
}

async function netnsPart(o, lib) {
  if (process.getuid?.() !== 0) throw new Error('the namespace part needs root (ip netns add)');
  removeStaleNamespaces();
  const out = [];
  for (const size of o.sizes) {
    for (const spec of o.namespaces) {
      const k = Number.parseInt(spec, 10);
      const ownHash = spec.endsWith('h');
      const t0 = performance.now();
      const before = hostTcp();
      const ns = await buildNamespaces(size, k, ownHash);
      const setupS = (performance.now() - t0) / 1000;
      try {
        const during = hostTcp();
        const { perRound, seen } = scanNamespaces(lib, ns.names, o.rounds);
        const all = median(perRound.map((r) => r.all));
        const one = median(perRound.flatMap((r) => r.each));
        const result = {
          size,
          k,
          ownHash,
          buckets: ns.buckets,
          sockets: ns.sockets,
          holders: ns.holders,
          setupS,
          hostTcpBefore: before,
          hostTcpDuring: during,
          allMs: all,
          allMinMs: min(perRound.map((r) => r.all)),
          oneMs: one,
          oneMinMs: min(perRound.flatMap((r) => r.each)),
          hostMs: median(perRound.map((r) => r.host)),
          allCpuMs: median(perRound.map((r) => r.allCpu)),
          oneCpuMs: median(perRound.flatMap((r) => r.eachCpu)),
          hostCpuMs: median(perRound.map((r) => r.hostCpu)),
          allOverOneCpu: median(perRound.map((r) => r.allCpu / median(r.eachCpu))),
          // Paired within each round: every namespace's scan / the host namespace's scan of that round.
          allOverOne: median(perRound.map((r) => r.all / median(r.each))),
          seenPerNs: [Math.min(...seen), Math.max(...seen)],
          perRound,
        };
        out.push(result);
        process.stdout.write(
          `[${sizeLabel(size)}] ${String(k).padStart(2)} netns${ownHash ? ' (own hash)' : ''}: all ${ms(all)} (CPU ${ms(result.allCpuMs)}), one ${ms(one)} (CPU ${ms(result.oneCpuMs)}), all/one ${x(result.allOverOne)} (CPU ${x(result.allOverOneCpu)}), host ns ${ms(result.hostMs)} (setup ${setupS.toFixed(1)} s)\n`,
        );
      } finally {
        await ns.stop();
      }
    }
  }
  return out;
}

function netnsMarkdown(results) {
  const lines = [];
  lines.push('### A scrape of every network namespace');
  lines.push('');
  lines.push(
    'S sockets (loopback connections, both ends, plus one listener per holder process) spread evenly over K network namespaces made ' +
      'for the run (`ip netns add`; python3 holders inside each, at most 9,000 connections per process). One scrape of every namespace ' +
      '= `sampleSync(EXPORTER_SCRAPE)` on a Sampler per namespace (`netns: /var/run/netns/NAME`), one after another, as ' +
      '`--all-netns` does; "one namespace" is the median single-namespace scrape in the same passes; "host ns" a scrape of the ' +
      "benchmark's own namespace (which holds none of these sockets) in the same rounds. `own hash`: the K namespaces were created with " +
      '`net.ipv4.tcp_child_ehash_entries` set (a TCP hash of their own; the sysctl was put back right after). Medians over ' +
      "rounds. CPU is the process's user + system time around each scrape (the kernel walks the hash inside this process's " +
      '`recvmsg`), which leaves out the time spent waiting for a core on this busy machine; the comparisons use it. Measured in one ' +
      'process (the samplers reused), not in fresh processes.',
  );
  lines.push('');
  lines.push(
    '| Sockets | Namespaces | sockets seen per ns | every ns: wall (median) | min | CPU | × the same sockets in 1 ns (CPU) | per namespace (CPU) | one ns alone (CPU) | host ns (CPU) |',
  );
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const single = results.find((q) => q.size === r.size && q.k === 1 && !q.ownHash);
    lines.push(
      `| ${sizeLabel(r.size)} | ${r.k}${r.ownHash ? ` (own hash, ${n(r.buckets)} buckets)` : ''} | ${r.seenPerNs[0] === r.seenPerNs[1] ? n(r.seenPerNs[0]) : r.seenPerNs.map(n).join('–')} | ${ms(r.allMs)} | ${ms(r.allMinMs)} | ${ms(r.allCpuMs)} | ${single ? x(r.allCpuMs / single.allCpuMs) : '–'} | ${ms(r.allCpuMs / r.k)} | ${ms(r.oneCpuMs)} | ${ms(r.hostCpuMs)} |`,
    );
  }
  lines.push('');
  for (const size of [...new Set(results.map((r) => r.size))]) {
    const at = results.filter((r) => r.size === size);
    const single = at.find((r) => r.k === 1 && !r.ownHash);
    if (!single) continue;
    const parts = at
      .filter((r) => r !== single)
      .map((r) => `${r.k}${r.ownHash ? ' with own hashes' : ''}: ${x(r.allMs / single.allMs)} (CPU ${x(r.allCpuMs / single.allCpuMs)})`);
    if (parts.length) lines.push(`- ${sizeLabel(size)}: every namespace vs the same sockets in one namespace — ${parts.join(', ')}.`);
  }
  const widest = results.filter((r) => !r.ownHash).sort((a, b) => b.k - a.k || b.size - a.size)[0];
  if (widest && widest.k > 1)
    lines.push(
      `- What one namespace costs with the shared hash: ${sizeLabel(widest.size)} sockets over ${widest.k} namespaces, ${ms(widest.allCpuMs / widest.k)} CPU ` +
        `per namespace, against ${ms(widest.hostCpuMs)} for a scrape of a namespace holding none of them: each scrape pays one walk of the ` +
        "whole shared hash (every namespace's sockets, and any other on the host) plus its own sockets' messages, so K namespaces cost about K walks.",
    );
  const tcp = results.map((r) => r.hostTcpDuring?.alloc).filter(Number.isFinite);
  if (tcp.length)
    lines.push(
      `- TCP sockets allocated host-wide (sockstat \`alloc\`) while the configurations stood: ${Math.min(...tcp)}–${Math.max(...tcp)}.`,
    );
  lines.push('');
  return lines.join('\n');
}

// --- the report --------------------------------------------------------------------------------

/** The previous section's parts, so `--only netns` keeps the exporter tables and the other way round. */
function previousParts(file) {
  const md = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const i = md.indexOf(START);
  const j = md.indexOf(END);
  const body = i >= 0 && j > i ? md.slice(i + START.length, j) : '';
  const part = (head) => {
    const a = body.indexOf(head);
    if (a < 0) return '';
    const b = body.indexOf('\n### ', a + head.length);
    return body.slice(a, b < 0 ? undefined : b).trim();
  };
  return { exporter: part('### Exporter scrape'), netns: part('### A scrape of every network namespace') };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const json = path.join(OUT_DIR, 'exporter.json');
  if (o.reportOnly) {
    const saved = JSON.parse(readFileSync(json, 'utf8'));
    return render({ ...saved.options, out: o.out }, saved.env, saved.results, saved.durationS, saved.loadavgEnd);
  }
  installExitHandlers();
  process.on('exit', deleteAllNamespaces);
  const lib = loadLibrary();
  const env = environment();
  const started = performance.now();
  const results = {};
  if (o.only.includes('exporter')) results.exporter = await exporterPart(o, lib);
  if (o.only.includes('netns')) results.netns = await netnsPart(o, lib);
  const durationS = Math.round((performance.now() - started) / 1000);
  const loadavgEnd = os
    .loadavg()
    .map((v) => v.toFixed(2))
    .join(' ');
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(json, `${JSON.stringify({ env, options: o, results, durationS, loadavgEnd }, null, 2)}\n`);
  render(o, env, results, durationS, loadavgEnd);
}

function render(o, env, results, durationS, loadavgEnd) {
  const prev = previousParts(o.out);
  const text = [
    '## Exporter and network namespaces (issue 11)',
    '',
    `Written by \`npm run bench:exporter\` (bench/exporter.mjs; \`-- --only exporter\` or \`-- --only netns\` reruns one part). Last run: ${env.date}, ` +
      `kernel ${env.kernel}, ${env.cpu} (${env.cores} cores), Node ${env.node}, load average ${env.loadavg} at start and ` +
      `${loadavgEnd ?? '?'} at the end, ${o.rounds} rounds, ${durationS ?? '?'} s. The machine was shared with ` +
      'other work: absolute times are noisy, ratios measured in the same run are what to read.',
    '',
    results.exporter ? exporterMarkdown(results.exporter) : prev.exporter,
    '',
    results.netns ? netnsMarkdown(results.netns) : prev.netns,
  ].join('\n');
  writeSection(o.out, START, END, text);
  process.stdout.write(`wrote ${path.relative(process.cwd(), o.out)} (section "exporter") and bench/out/exporter.json\n`);
}

main().catch((err) => {
  process.stderr.write(`bench/exporter: ${err instanceof RangeError ? err.message : (err.stack ?? err)}\n`);
  deleteAllNamespaces();
  process.exit(err instanceof RangeError ? 2 : 1);
});
