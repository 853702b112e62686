// JS heap allocated per call, measured without a GC in the measured window.
//
// Method: the measuring process runs with --expose-gc and a young generation pinned at 256 MiB
// (--min-semi-space-size=256 --max-semi-space-size=256), so tens of MiB of garbage need no
// scavenge. One warm-up batch of `calls` calls absorbs one-off costs (inline caches, lazy
// compilation). Then, several times: a forced full GC, a settle of the event loop, a reading of
// the young generation's used size, a batch of `calls` calls, a second reading. A
// PerformanceObserver on 'gc' entries tells whether a collection ran inside the window; such a
// batch is discarded. What a call allocates is deterministic, while one-off work of V8 (a table
// growing, a deoptimisation) can only add, so the smallest clean batch / `calls` is the
// allocation per call. If every batch saw a GC, the batch is shrunk and the whole tried again.
// Buffers outside the V8 heap (e.g. child stdout chunks) are not counted; strings and objects
// made from them are.
import v8 from 'node:v8';
import { PerformanceObserver } from 'node:perf_hooks';

const gcStarts = [];
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcStarts.push(e.startTime);
});
observer.observe({ entryTypes: ['gc'] });

const settle = () => new Promise((resolve) => setImmediate(resolve));
const YOUNG_SPACES = new Set(['new_space', 'new_large_object_space']);
/** Bytes used in the young generation, where every fresh allocation lands (JIT code and
 *  bytecode go to other spaces and would only add noise). */
function usedHeap() {
  let used = 0;
  for (const s of v8.getHeapSpaceStatistics()) if (YOUNG_SPACES.has(s.space_name)) used += s.space_used_size;
  return used;
}

export function canMeasureHeap() {
  return typeof globalThis.gc === 'function';
}

const MEASURED_BATCHES = 5;

async function runBatch(call, sync, n) {
  if (sync) for (let i = 0; i < n; i++) call();
  else for (let i = 0; i < n; i++) await call();
}

/**
 * Bytes of JS heap allocated per call of `call` (sync or returning a promise), or null when every
 * attempt saw a GC. `calls` is the batch size of the first attempt.
 */
export async function heapPerCall(call, { sync, calls }) {
  if (!canMeasureHeap()) return { bytes: null, calls: 0, note: 'run with --expose-gc' };
  let batch = Math.max(1, calls);
  for (let attempt = 0; attempt < 4; attempt++) {
    await runBatch(call, sync, batch); // warm-up
    const clean = [];
    for (let k = 0; k < MEASURED_BATCHES; k++) {
      globalThis.gc();
      await settle();
      await settle();
      const t0 = performance.now();
      // A reading allocates its own result after taking it: the second of two back-to-back
      // readings shows that cost, which the batch's closing reading carries too.
      const hA = usedHeap();
      const h0 = usedHeap();
      await runBatch(call, sync, batch);
      const h1 = usedHeap();
      const t1 = performance.now();
      await settle();
      await settle();
      const bytes = (h1 - h0 - (h0 - hA)) / batch;
      if (!gcStarts.some((t) => t >= t0 && t <= t1) && bytes >= 0) clean.push(bytes);
    }
    if (clean.length > 0) return { bytes: Math.min(...clean), calls: batch, batches: clean.length };
    if (batch === 1) break;
    batch = Math.max(1, Math.floor(batch / 4));
  }
  return { bytes: null, calls: batch, note: 'a GC ran in every attempt' };
}
