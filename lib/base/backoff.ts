// Retry timing, one rule for every retry loop (alert delivery, blob upload):
// - exponential backoff with FULL jitter: after the n-th failure wait a uniformly random delay in
//   [0, min(cap, base × 2^(n−1))], so clients that failed together spread out instead of retrying
//   together (equal jitter keeps half of the delay fixed and keeps them bunched);
// - a server's Retry-After (delay-seconds or an HTTP date) is a lower bound on that delay, itself
//   capped (retryAfterCapMs, by default the backoff cap): a hostile or confused server cannot park a
//   client for a day, and "Retry-After: 0" still gets the jittered delay, never a tight loop;
// - waiting is an abortable sleep: it rejects as soon as the caller's AbortSignal fires.

export interface BackoffOptions {
  /** Upper bound of the delay after the first failure (ms). */
  baseMs: number;
  /** Upper bound of any backoff delay (ms). */
  capMs: number;
  /** Upper bound of a Retry-After hint (ms); defaults to capMs. */
  retryAfterCapMs?: number;
}

/** A full-jitter draw: a random delay in [0, min(cap, base × 2^(failures−1))], in whole ms. */
export function fullJitterDelay(failures: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 52));
  return Math.floor(Math.min(Math.max(random(), 0), 1) * exp);
}

/** The delay before the next attempt after `failures` failures, given a Retry-After hint (ms) if any. */
export function backoffDelay(
  failures: number,
  options: BackoffOptions,
  retryAfterMs: number | undefined = undefined,
  random: () => number = Math.random,
): number {
  const hinted = retryAfterMs === undefined ? 0 : Math.min(Math.max(retryAfterMs, 0), options.retryAfterCapMs ?? options.capMs);
  return Math.max(hinted, fullJitterDelay(failures, options.baseMs, options.capMs, random));
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
