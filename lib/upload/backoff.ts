// Exponential backoff with jitter, and an abortable sleep.

export interface BackoffOptions {
  /** Delay after the first failed attempt, before jitter (ms). */
  baseDelayMs: number;
  /** Upper bound of any delay (ms). */
  maxDelayMs: number;
}

/**
 * The delay after `failedAttempts` failures: base × 2^(n−1), capped, with "equal jitter" (half fixed,
 * half random) so that many uploaders that failed together do not retry together.
 * A server's Retry-After raises the delay (still capped).
 */
export function backoffDelay(
  failedAttempts: number,
  options: BackoffOptions,
  retryAfterMs = 0,
  random: () => number = Math.random,
): number {
  const exp = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.max(0, failedAttempts - 1));
  const jittered = exp / 2 + random() * (exp / 2);
  return Math.round(Math.min(options.maxDelayMs, Math.max(jittered, retryAfterMs)));
}

/** Resolves after `ms`, or rejects with `onAbort()` as soon as `signal` fires. */
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
