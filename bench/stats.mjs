// Small statistics helpers for the benchmark harness.

export function median(values) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function min(values) {
  return values.length ? Math.min(...values) : NaN;
}

/** Least-squares slope of y over x (NaN with fewer than two distinct x). */
export function slope(xs, ys) {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** Least-squares slope of [x, y] points; 0 when it cannot be told (fewer than two distinct x). */
export function pointsSlope(points) {
  const k = slope(
    points.map(([x]) => x),
    points.map(([, y]) => y),
  );
  return Number.isFinite(k) ? k : 0;
}

/**
 * Percentile p (0–100), linear between the two nearest ranks (as numpy's default). With fewer than
 * 100 values p99 lies between the two largest.
 */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export function max(values) {
  return values.length ? Math.max(...values) : NaN;
}
