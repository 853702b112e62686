// Measures one scenario row at one farm size, in a fresh process started by run.mjs. Two modes:
//   time: warm-up calls, then `runs` timed calls; plain node, default V8 flags.
//   heap: warm-up calls, then JS heap allocated per call (heap.mjs); started with --expose-gc and
//         a 256 MiB young generation so the measured batches need no GC.
// Prints one JSON line on stdout:
//   { id, times: [wall ms per operation...], cpuTimes: [process CPU ms per operation...] | null,
//     heap: {bytes, calls} | null, info: {...} }  or  { id, skipped }
//
//   node [flags] bench/measure.mjs '{"id":"sync-scan","size":10000,"mode":"time","farm":{"sample":…}}'
import { heapPerCall } from './heap.mjs';
import { KINDS, SkipError } from './methods.mjs';
import { defaultRuns, scenarios } from './scenarios.mjs';

const DEFAULT_WARMUPS = 3;
const DEFAULT_HEAP_CALLS = 50;

async function measure(job) {
  const row = scenarios.find((r) => r.id === job.id);
  if (!row) throw new Error(`no scenario "${job.id}"`);
  const kind = KINDS[row.kind];
  if (!kind) throw new Error(`scenario ${row.id}: kind "${row.kind}" is not measured by measure.mjs`);

  let m;
  try {
    m = await kind(row, job);
  } catch (err) {
    if (err instanceof SkipError) return { id: row.id, skipped: err.message };
    throw err;
  }
  try {
    const runs = job.mode === 'heap' ? 0 : (job.runs ?? row.runs ?? defaultRuns(job.size));
    const warmups = row.warmups ?? DEFAULT_WARMUPS;
    let last;
    for (let i = 0; i < warmups; i++) last = m.sync ? m.call() : await m.call();
    const times = [];
    const cpuTimes = [];
    for (let i = 0; i < runs; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      last = m.sync ? m.call() : await m.call();
      times.push((performance.now() - t0) / m.perCall);
      const c = process.cpuUsage(c0);
      cpuTimes.push((c.user + c.system) / 1000 / m.perCall);
    }
    let heap = null;
    if (job.mode === 'heap') {
      heap = await heapPerCall(m.call, { sync: m.sync, calls: row.heapCalls ?? DEFAULT_HEAP_CALLS });
      if (heap.bytes !== null) heap.bytes /= m.perCall;
    }
    // A spawned command's CPU is not this process's: no CPU time for those rows.
    return { id: row.id, times, cpuTimes: m.spawns ? null : cpuTimes, heap, info: m.describe(last) };
  } finally {
    await m.close?.();
  }
}

try {
  const job = JSON.parse(process.argv[2] ?? 'null');
  const result = await measure(job);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`measure: ${err.stack ?? err}\n`);
  process.exit(1);
}
