// `sockwatch snat -c`: stop the run recorded in the pidfile (never a process found by name), then
// remove its pidfile and lock files. SIGTERM first (the run stops cleanly, leaving resumable upload
// records), SIGKILL when it has not exited within the grace period.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants as osConstants } from 'node:os';
import { systemError } from '../base/errors';
import { assertSameHost, ownerAlive, readOwnerFile, removeOwnerFileIfDeadOr, type FileOwner } from '../base/pid-lock';

export const PIDFILE_NAME = 'sockwatch-snat.pid';
const LOCK_NAME = /^(dump|trace)_taken_.+\.lock$/;

export interface StopInstanceOptions {
  /** How long to wait after SIGTERM before SIGKILL (default 15 000 ms). */
  graceMs?: number;
  /** How long to wait after SIGKILL (default 5 000 ms). */
  killWaitMs?: number;
}

export interface StopInstanceResult {
  pidfile: string;
  /** The owner recorded in the pidfile, if there was one. */
  owner?: FileOwner;
  /** The owner was running when we looked. */
  wasRunning: boolean;
  /** Signals sent. */
  signals: ('SIGTERM' | 'SIGKILL')[];
  /** The owner is gone now. */
  stopped: boolean;
  /** Files removed (pidfile, locks). */
  removed: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitGone(owner: FileOwner, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (ownerAlive(owner)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

function signal(pid: number, sig: 'SIGTERM' | 'SIGKILL'): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    if ((err as NodeJS.ErrnoException).code === 'EPERM') {
      const e = err as NodeJS.ErrnoException;
      const why = `cannot stop process ${pid}: permission denied (run as its user or as root)`;
      throw systemError(e.errno ?? osConstants.errno.EPERM, 'kill', why, { cause: err });
    }
    throw err;
  }
}

/** Stops the instance whose pidfile is in `dir` and removes its pidfile and lock files (and stale ones). */
export async function stopRunningInstance(dir: string, options: StopInstanceOptions = {}): Promise<StopInstanceResult> {
  const pidfile = path.join(path.resolve(dir), PIDFILE_NAME);
  const owner = readOwnerFile(pidfile);
  if (owner) assertSameHost(pidfile, owner); // another host's run cannot be signalled from here
  const result: StopInstanceResult = { pidfile, wasRunning: false, signals: [], stopped: true, removed: [] };
  if (owner && owner.pid > 0) {
    result.owner = owner;
    if (owner.pid !== process.pid && ownerAlive(owner)) {
      result.wasRunning = true;
      signal(owner.pid, 'SIGTERM');
      result.signals.push('SIGTERM');
      let gone = await waitGone(owner, options.graceMs ?? 15_000);
      if (!gone) {
        signal(owner.pid, 'SIGKILL');
        result.signals.push('SIGKILL');
        gone = await waitGone(owner, options.killWaitMs ?? 5_000);
      }
      result.stopped = gone;
      if (!gone) return result;
    }
  }
  if (removeOwnerFileIfDeadOr(pidfile, owner)) result.removed.push(pidfile);
  result.removed.push(...removeStaleLocks(path.dirname(pidfile), owner));
  return result;
}

/** Removes the collection lock files in `dir` whose owner is dead (or is `owner`). Returns them. */
export function removeStaleLocks(dir: string, owner?: FileOwner): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!LOCK_NAME.test(name)) continue;
    const file = path.join(dir, name);
    if (removeOwnerFileIfDeadOr(file, owner)) removed.push(file);
  }
  return removed;
}
