// Host shapes (issue 13): the existing rows of the scenario table on farms shaped like real hosts,
// in a network namespace of their own with a TCP hash of their own. Not a test; opt-in:
//
//   npm run bench:shapes        (= node bench/shapes.mjs; root; about 10 minutes)
//   node bench/shapes.mjs --shapes timewait --rounds 2 --only floor-1walk,queue-scan,floor-queue
//   node bench/shapes.mjs --report-only     (the section again from bench/out/shapes.json)
//   node bench/shapes.mjs --shapes timewait --rounds 7 --only floor-1walk,floor-queue,queue-scan --merge
//                                           (more rounds of a few rows, replacing them in bench/out/shapes.json)
//
// Shapes:
//   timewait   the standard farm at 20k sockets (10k connections, 10 offenders) plus 40k client-side
//              TIME_WAIT sockets from real short loopback connections (bench/shapes-tw.c), made over a
//              60 s ramp and kept at 40k while the rows run (a steady churn of about 670 connections
//              a second): 2/3 of all sockets in TIME_WAIT, as on a host with SNAT trouble
//   200k       the standard farm at 200k sockets (100k loopback connections, both ends held, over
//              12 child processes of ≤ 18,000 fds each)
//
// Namespace: as root, the parent sets net.ipv4.tcp_child_ehash_entries to the host's
// tcp_ehash_entries (so the walk covers a hash of the host's size), creates a network namespace,
// puts the setting back at once (it is read only when a namespace is created), brings up its
// loopback and re-runs itself inside (`ip netns exec`). Inside, it sets tcp_tw_reuse = 0 and
// tcp_max_tw_buckets (both per namespace) for the TIME_WAIT farm. The namespace is deleted at the
// end, on a signal and on a crash of the parent; its sockets (TIME_WAIT too) go with it. The root
// namespace's sysctls are the same before and after, and other processes' sockets stay out of every
// walk measured here (and this farm out of theirs). --no-netns runs in the caller's namespace
// instead and restores the per-namespace sysctls it changed.
//
// Results: bench/out/shapes.json, and the shapes section of bench/RESULTS.md (shapes-section.mjs).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { eachArg } from './args.mjs';
import { fileURLToPath } from 'node:url';
import { installExitHandlers, killAllChildren, runChild, spawnTracked, waitForLine } from './children.mjs';
import { readSysctl, runInNamespace, setSysctls } from './shapes-netns.mjs';
import { compileC, FLOOR_BIN, OUT_DIR, runFloor, sockstat, startFarmStaged, summarize } from './shapes-common.mjs';
import { planFarm } from './farm-plan.mjs';
import { loadLibrary } from './methods.mjs';
import { environment } from './report.mjs';
import { summarizeSessions } from './queue-report.mjs';
import { scenarios } from './scenarios.mjs';
import { shapeRows } from './shapes-rows.mjs';
import { renderShapesSection, writeSection } from './shapes-section.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const TW_BIN = path.join(OUT_DIR, 'shapes-tw');

export const SHAPES = {
  timewait: { label: 'TIME_WAIT-heavy', farm: { sockets: 20_000, offenders: 10 }, timeWait: 40_000, twRampS: 60 },
  '200k': { label: '200k sockets', farm: { sockets: 200_000, offenders: 10 }, timeWait: 0 },
};

/** Rows on every shape: every repeated-call row of the table, the shape rows, and the 250 ms watch. */
function rowsToRun(only) {
  const rows = [...scenarios.filter((r) => !r.session || r.id === 'watch-250'), ...shapeRows()];
  if (!only) return rows;
  const wanted = new Set(only);
  for (const id of only) {
    const b = rows.find((r) => r.id === id)?.baseline;
    if (b) wanted.add(b);
  }
  return rows.filter((r) => wanted.has(r.id));
}

function parseArgs(argv) {
  const o = { shapes: Object.keys(SHAPES), rounds: 3, netns: true, inside: false, only: undefined, out: path.join(here, 'RESULTS.md') };
  eachArg(argv, (a, value) => {
    if (a === '--shapes') o.shapes = value().split(',');
    else if (a === '--rounds') o.rounds = Number(value());
    else if (a === '--only') o.only = value().split(',');
    else if (a === '--out') o.out = path.resolve(value());
    else if (a === '--no-netns') o.netns = false;
    else if (a === '--inside') o.inside = true;
    else if (a === '--report-only') o.reportOnly = true;
    else if (a === '--merge') o.merge = true;
    else throw new RangeError(`unknown option ${a}`);
  });
  for (const s of o.shapes) if (!SHAPES[s]) throw new RangeError(`--shapes: no shape "${s}" (known: ${Object.keys(SHAPES).join(', ')})`);
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new RangeError('--rounds must be a positive integer');
  return o;
}

// --- measuring ----------------------------------------------------------------------------------

async function runNode(script, job) {
  const r = await runChild(process.execPath, [path.join(here, script), JSON.stringify(job)]);
  if (r.code !== 0) return { skipped: `${script} failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' ')}` };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

async function runShape(key, o, lib, rows) {
  const shape = SHAPES[key];
  const t0 = performance.now();
  const farm = await startFarmStaged(planFarm(shape.farm));
  let tw;
  try {
    if (shape.timeWait) {
      tw = spawnTracked(TW_BIN, [String(shape.timeWait), '256', String(shape.twRampS)]);
      tw.ready = await waitForLine(tw, 'READY', 'shapes-tw', 180_000);
    }
    const info = {
      shape: key,
      label: shape.label,
      children: farm.children.length,
      connections: farm.children.reduce((n, c) => n + c.connections, 0),
      farmSockets: farm.children.reduce((n, c) => n + c.sockets, 0),
      offenders: farm.children.reduce((n, c) => n + c.offenders, 0),
      timeWaitTarget: shape.timeWait,
      timeWaitRampS: shape.twRampS,
      timeWaitSetup: tw?.ready,
      setupMs: performance.now() - t0,
      sockstat: [sockstat()],
    };
    process.stdout.write(`[${key}] ready: ${JSON.stringify(info.sockstat[0])} in ${(info.setupMs / 1000).toFixed(1)} s\n`);
    const raw = new Map(rows.map((r) => [r.id, []]));
    const size = shape.farm.sockets + shape.timeWait;
    for (let round = 0; round < o.rounds; round++) {
      for (const row of rows) {
        const wanted = row.session ? 1 : (row.rounds ?? o.rounds);
        if (round >= wanted || raw.get(row.id).some((r) => r.skipped)) continue;
        let r;
        if (row.session)
          r = await runNode('session.mjs', { id: row.id, size, mode: 'session', farm: { sockets: size, offenders: info.offenders } });
        else if (row.kind === 'floor') r = await runFloor(row, lib, (row.runs ?? 11) * 2);
        else r = await runNode('shapes-measure.mjs', { id: row.id, size, mode: 'time', farm: { sample: farm.children[0]?.sample } });
        raw.get(row.id).push(r);
      }
      info.sockstat.push(sockstat());
      process.stdout.write(`[${key}] round ${round + 1}/${o.rounds} done (${JSON.stringify(info.sockstat.at(-1))})\n`);
    }
    const result = { size: key, info, rows: {}, hostSockets: undefined };
    for (const row of rows) {
      result.rows[row.id] = row.session ? summarizeSessions(row, raw.get(row.id)) : summarize(raw.get(row.id));
      const r = result.rows[row.id];
      process.stdout.write(
        `[${key}] ${row.id.padEnd(16)} ${r.skipped ? `skipped: ${r.skipped}` : r.session ? `CPU ${r.cpuPct?.toFixed?.(1)}%` : `${r.medianMs.toFixed(2)} ms`}\n`,
      );
    }
    result.hostSockets = result.rows.floor?.info?.socketsSeen;
    return result;
  } finally {
    if (tw) tw.kill('SIGTERM');
    await farm.stop();
  }
}

async function inside(o) {
  installExitHandlers();
  compileC(FLOOR_BIN, path.join(here, 'floor.c'));
  compileC(TW_BIN, path.join(here, 'shapes-tw.c'));
  const lib = loadLibrary();
  const twMax = Math.max(...o.shapes.map((s) => SHAPES[s].timeWait)) * 2;
  const restore = setSysctls({
    'net.ipv4.tcp_tw_reuse': 0,
    ...(twMax > Number(readSysctl('net.ipv4.tcp_max_tw_buckets')) ? { 'net.ipv4.tcp_max_tw_buckets': twMax } : {}),
  });
  process.on('exit', restore);
  const env = {
    ...environment(),
    netns: o.netns,
    sysctls: {
      tcp_tw_reuse: 0,
      tcp_max_tw_buckets: readSysctl('net.ipv4.tcp_max_tw_buckets'),
      ip_local_port_range: readSysctl('net.ipv4.ip_local_port_range'),
    },
  };
  const rows = rowsToRun(o.only);
  const started = performance.now();
  const shapes = [];
  try {
    for (const key of o.shapes) {
      try {
        shapes.push(await runShape(key, o, lib, rows));
      } catch (err) {
        // One shape failing (a farm that never got ready) leaves the others' results.
        process.stderr.write(`[${key}] failed: ${err.message}\n`);
        shapes.push({ size: key, failed: err.message, info: { shape: key, label: SHAPES[key].label }, rows: {} });
      }
    }
  } finally {
    restore();
  }
  env.durationS = Math.round((performance.now() - started) / 1000);
  mkdirSync(OUT_DIR, { recursive: true });
  const file = path.join(OUT_DIR, 'shapes.json');
  let result = { env, rounds: o.rounds, shapes };
  if (o.merge) result = merged(JSON.parse(readFileSync(file, 'utf8')), result);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  writeSection(o.out, renderShapesSection({ ...result, rows: rowsToRun() }));
  process.stdout.write(
    `wrote bench/out/shapes.json and the shapes section of ${path.relative(process.cwd(), o.out)} (${env.durationS} s)\n`,
  );
}

/**
 * --merge: the rows of this run replace the same rows of the same shapes in the previous results
 * (a longer rerun of a few rows); each shape notes which rows came from which run.
 */
function merged(previous, run) {
  for (const s of run.shapes) {
    const i = previous.shapes.findIndex((p) => p.size === s.size);
    if (s.failed) continue;
    const rerun = { rows: Object.keys(s.rows), rounds: run.rounds, date: run.env.date, loadavg: run.env.loadavg };
    const old = previous.shapes[i];
    if (!old || old.failed || Object.keys(old.rows).every((id) => id in s.rows)) {
      // every row again: the whole shape (its farm too) is this run's
      rerun.whole = true;
      previous.shapes[i < 0 ? previous.shapes.length : i] = { ...s, reruns: [rerun] };
      continue;
    }
    Object.assign(old.rows, s.rows);
    (old.reruns ??= []).push(rerun);
  }
  return previous;
}

const argv = process.argv.slice(2);
const o = parseArgs(argv);
/** Renders the section again from bench/out/shapes.json, measuring nothing. */
async function reportOnly(o) {
  const { env, rounds, shapes } = JSON.parse(readFileSync(path.join(OUT_DIR, 'shapes.json'), 'utf8'));
  writeSection(o.out, renderShapesSection({ env, rounds, shapes, rows: rowsToRun() }));
  process.stdout.write(`wrote the shapes section of ${path.relative(process.cwd(), o.out)} from bench/out/shapes.json\n`);
}

const run = o.reportOnly
  ? reportOnly(o)
  : o.inside || !o.netns
    ? inside(o)
    : process.getuid?.() === 0
      ? runInNamespace('shapes', fileURLToPath(import.meta.url), argv)
      : Promise.reject(new RangeError('bench/shapes.mjs needs root for its namespace (or --no-netns)'));
run.catch((err) => {
  process.stderr.write(`shapes: ${err instanceof RangeError ? err.message : (err.stack ?? err)}\n`);
  killAllChildren();
  process.exit(err instanceof RangeError ? 2 : 1);
});
