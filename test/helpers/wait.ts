// Polling waits for state that settles asynchronously: files, child output, recorded requests.

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface WaitOptions {
  /** Give up after this many ms (default 20 s). */
  ms?: number;
  /** Check this often, in ms (default 10). */
  everyMs?: number;
  /** Added to the error when the wait fails: "timed out waiting for WHAT; DETAIL". */
  detail?: () => string;
  /** Give up at once when this holds (say, the process that should act has exited). */
  giveUpIf?: () => boolean;
}

/** Resolves once `check()` holds; rejects naming `what` after the timeout (a number is the timeout in ms). */
export async function waitFor(what: string, check: () => boolean, options: number | WaitOptions = {}): Promise<void> {
  const { ms = 20_000, everyMs = 10, detail, giveUpIf } = typeof options === 'number' ? { ms: options } : options;
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline || giveUpIf?.()) throw new Error(`timed out waiting for ${what}${detail ? `; ${detail()}` : ''}`);
    await sleep(everyMs);
  }
}
