// Retry timing, one rule for every retry loop (alert delivery, blob upload):
// - exponential backoff with EQUAL jitter: after the n-th failure the bound is
//   min(cap, base × 2^(n−1)) and the delay a uniformly random value in [bound/2, bound]. Half of it
//   random spreads clients that failed together; half of it fixed gives every attempt budget a known
//   floor (5 upload attempts at the 2 s default ride out at least 15 s of outage, which full jitter,
//   able to draw ~0 every time, does not) and rules out near-zero delays, so no loop ever spins;
// - a server's Retry-After (delay-seconds or an HTTP date) is a lower bound on that delay, itself
//   capped (retryAfterCapMs, by default the backoff cap): a hostile or confused server cannot park a
//   client for a day, and "Retry-After: 0" never shortens the backoff;
// - waiting is an abortable sleep: it rejects as soon as the caller's AbortSignal fires.

export interface BackoffOptions {
  /** Upper bound of the delay after the first failure (ms). */
  baseMs: number;
  /** Upper bound of any backoff delay (ms). */
  capMs: number;
  /** Upper bound of a Retry-After hint (ms); defaults to capMs. */
  retryAfterCapMs?: number;
}

/** The upper bound of the delay after `failures` failures: min(cap, base × 2^(failures−1)). */
export function backoffBound(failures: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 52));
}

/** The delay before the next attempt after `failures` failures, given a Retry-After hint (ms) if any. */
export function backoffDelay(
  failures: number,
  options: BackoffOptions,
  retryAfterMs: number | undefined = undefined,
  random: () => number = Math.random,
): number {
  const hinted = retryAfterMs === undefined ? 0 : Math.min(Math.max(retryAfterMs, 0), options.retryAfterCapMs ?? options.capMs);
  const bound = backoffBound(failures, options.baseMs, options.capMs);
  const jittered = Math.floor(bound / 2 + Math.min(Math.max(random(), 0), 1) * (bound / 2));
  return Math.max(hinted, Math.min(jittered, options.capMs));
}

/**
 * Parses a Retry-After header value (RFC 9110: delay in whole seconds, or an HTTP date) into ms from
 * `now`. Undefined when absent or unparseable; a date in the past gives 0.
 */
export function parseRetryAfter(value: string | readonly string[] | null | undefined, now: number = Date.now()): number | undefined {
  const v = Array.isArray(value) ? (value as readonly string[])[0] : (value as string | null | undefined);
  if (v === undefined || v === null) return undefined;
  const text = v.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Resolves after `ms`, or rejects with `onAbort()` as soon as `signal` fires (at once if it already has). */
export function sleep(ms: number, signal: AbortSignal | undefined, onAbort: () => Error): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(onAbort());
      return;
    }
    const done = (): void => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const aborted = (): void => {
      clearTimeout(timer);
      reject(onAbort());
    };
    signal?.addEventListener('abort', aborted, { once: true });
  });
}
