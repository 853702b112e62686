// For the fleet-limit tests: Azurite runs on this machine, so its clock (the storage clock the
// windows follow) is this machine's. A test that expects every instance in one window first waits
// out a window boundary that is too close.
import { sleep } from './wait';

/** Resolves once the next boundary of `windowMs`-long windows is at least `needMs` away. */
export async function awayFromWindowBoundary(windowMs: number, needMs: number): Promise<void> {
  const toNext = windowMs - (Date.now() % windowMs);
  if (toNext < needMs) await sleep(toNext + 1_500);
}
