// Soak: one long-lived Sampler driven by `await sample()` for minutes, alternating the scan modes
// (threshold, all, aggregate) at each farm size, to see whether memory the collector can see (V8
// heap after a full GC) or cannot (RSS) grows. Rule: like every bench row, each size runs in a fresh
// process next to a fresh farm; the numbers are slopes over time, never a pass/fail.
//
//   npm run bench:soak                                   # 10k and 40k, 3 modes × 2 cycles × 20 s each
//   node bench/soak.mjs --sizes 10000 --phase-seconds 5 --cycles 1 --out /tmp/soak.md
//
// Writes its section of bench/RESULTS.md (between the soak markers, see soak-section.mjs).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { installExitHandlers, runChild, startFarm } from './children.mjs';
import { planFarm } from './farm-plan.mjs';
import { withSoakSection, SOAK_END, SOAK_START } from './soak-section.mjs';
import { pointsSlope } from './stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const MODES = {
  threshold: { recvThreshold: 1000 },
  all: { all: true, maxRecords: 100_000 },
  aggregate: { aggregate: true },
};

// ---- the measuring child: node --expose-gc bench/soak.mjs --child '{json}' ----

async function child({ phaseSeconds, cycles }) {
  const { Sampler } = createRequire(import.meta.url)(path.join(here, '..', 'dist', 'index.js'));
  const s = new Sampler();
  const samples = []; // { t, mode, calls, heap, rss }
  const calls = Object.fromEntries(Object.keys(MODES).map((m) => [m, 0]));
  const t0 = performance.now();
  let socketsSeen = 0;
  const measure = (mode) => {
    global.gc();
    const heap = v8.getHeapStatistics().used_heap_size;
    samples.push({ t: (performance.now() - t0) / 1000, mode, calls: calls[mode], heap, rss: process.memoryUsage().rss });
  };
  for (let c = 0; c < cycles; c++) {
    for (const [mode, options] of Object.entries(MODES)) {
      const end = performance.now() + phaseSeconds * 1000;
      let next = performance.now() + 1000;
      while (performance.now() < end) {
        socketsSeen = (await s.sample(options)).socketsSeen;
        calls[mode]++;
        if (performance.now() >= next) {
          measure(mode);
          next = performance.now() + 1000;
        }
      }
    }
  }
  await s.close();
  process.stdout.write(`${JSON.stringify({ samples, calls, socketsSeen, seconds: (performance.now() - t0) / 1000 })}\n`);
}

// ---- the harness ----

/** Consecutive readings of one mode: its phases, in order. */
function phases(samples) {
  const out = [];
  for (const p of samples) {
    if (out.length === 0 || out.at(-1).mode !== p.mode) out.push({ mode: p.mode, points: [] });
    out.at(-1).points.push(p);
  }
  return out;
}

function summarize(run) {
  const rows = [];
  const all = phases(run.samples);
  for (const mode of Object.keys(MODES)) {
    const mine = all.filter((ph) => ph.mode === mode);
    // Within each phase (its first reading, the step from the previous mode, left out), averaged.
    const within = (key) => {
      const slopes = mine.map((ph) => pointsSlope(ph.points.slice(1).map((p) => [p.t, p[key]]))).filter((x) => Number.isFinite(x));
      return slopes.length ? (slopes.reduce((a, b) => a + b, 0) / slopes.length) * 60 : 0;
    };
    // Cycle over cycle: the phase-end reading of this mode, first cycle → last cycle, per minute.
    const across = (key) => {
      if (mine.length < 2) return undefined;
      const a = mine[0].points.at(-1);
      const b = mine.at(-1).points.at(-1);
      return ((b[key] - a[key]) / (b.t - a.t)) * 60;
    };
    rows.push({
      mode,
      calls: run.calls[mode],
      heapFirst: mine[0]?.points[0]?.heap ?? 0,
      heapLast: mine.at(-1)?.points.at(-1)?.heap ?? 0,
      heapSlope: within('heap'),
      heapAcross: across('heap'),
      rssFirst: mine[0]?.points[0]?.rss ?? 0,
      rssLast: mine.at(-1)?.points.at(-1)?.rss ?? 0,
      rssSlope: within('rss'),
      rssAcross: across('rss'),
    });
  }
  return rows;
}

const MiB = (b) => `${(b / 1048576).toFixed(1)} MiB`;
const KiBmin = (b) => (b === undefined ? '–' : `${b >= 0 ? '+' : '−'}${Math.abs(b / 1024).toFixed(1)} KiB/min`);

function render(results, options) {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const lines = [
    SOAK_START,
    '## Soak: one long-lived sampler, scan modes alternating',
    '',
    `${new Date().toISOString().slice(0, 10)} · Linux ${os.release()} · ${cpu} × ${os.cpus().length} · Node ${process.version} · ` +
      `\`node bench/soak.mjs --sizes ${options.sizes.join(',')} --phase-seconds ${options.phaseSeconds} --cycles ${options.cycles}\``,
    '',
    'One `Sampler` in a fresh process (`--expose-gc`) calls `await sample()` back to back: `threshold` (`recvThreshold: 1000`), ' +
      '`all` (`all: true`, every socket a record), `aggregate` (`aggregate: true`), each for a phase, the three in turn, ' +
      `${options.cycles} cycle(s). Once a second: a full GC, then V8's used heap and the RSS. *In phase*: least-squares slope over time ` +
      "within each of the mode's phases (a phase's first reading, the step from the previous mode, left out), averaged over its phases. " +
      "*Cycle to cycle*: the mode's phase-end reading in the first cycle against the last, per minute between them. " +
      'Both near zero over minutes is the claim; a few hundred KiB/min over a 20 s phase is within the noise of the allocator.',
    '',
    '| Farm | Mode | Calls | Heap after GC (first → last) | Heap in phase | Heap cycle to cycle | RSS (first → last) | RSS in phase | RSS cycle to cycle |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    for (const row of r.rows) {
      lines.push(
        `| ${r.size.toLocaleString('en-US')} (${r.socketsSeen.toLocaleString('en-US')} seen) | ${row.mode} | ${row.calls.toLocaleString('en-US')} | ` +
          `${MiB(row.heapFirst)} → ${MiB(row.heapLast)} | ${KiBmin(row.heapSlope)} | ${KiBmin(row.heapAcross)} | ` +
          `${MiB(row.rssFirst)} → ${MiB(row.rssLast)} | ${KiBmin(row.rssSlope)} | ${KiBmin(row.rssAcross)} |`,
      );
    }
  }
  lines.push(SOAK_END);
  return lines.join('\n');
}

async function main(argv) {
  const arg = (name, dflt) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  if (argv[0] === '--child') return child(JSON.parse(argv[1]));
  const options = {
    sizes: arg('--sizes', '10000,40000').split(',').map(Number),
    phaseSeconds: Number(arg('--phase-seconds', '20')),
    cycles: Number(arg('--cycles', '2')),
  };
  const out = arg('--out', path.join(here, 'RESULTS.md'));
  installExitHandlers();
  const results = [];
  for (const size of options.sizes) {
    process.stderr.write(`soak: farm of ${size} sockets…\n`);
    const farm = await startFarm(planFarm({ sockets: size }));
    try {
      const job = JSON.stringify({ phaseSeconds: options.phaseSeconds, cycles: options.cycles });
      const timeoutMs = (options.phaseSeconds * 3 * options.cycles + 120) * 1000;
      const r = await runChild(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', job], { timeoutMs });
      if (r.code !== 0) throw new Error(`soak child at ${size} exited ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
      const run = JSON.parse(r.stdout.trim().split('\n').at(-1));
      results.push({ size, socketsSeen: run.socketsSeen, rows: summarize(run), run });
      process.stderr.write(`soak: ${size} done (${run.seconds.toFixed(0)} s)\n`);
    } finally {
      await farm.stop();
    }
  }
  mkdirSync(path.join(here, 'out'), { recursive: true });
  writeFileSync(path.join(here, 'out', 'soak.json'), `${JSON.stringify({ options, results }, null, 1)}\n`);
  const section = render(results, options);
  const previous = existsSync(out) ? readFileSync(out, 'utf8') : '';
  writeFileSync(out, withSoakSection(previous, section));
  process.stdout.write(`${section}\n`);
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`soak: ${err.stack ?? err}\n`);
  process.exit(1);
});
