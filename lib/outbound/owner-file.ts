// Files that record their owner: the pidfile of a run and the per-instance collection locks
// (dump_taken_{instance}.lock, trace_taken_{instance}.lock, as the original script named them).
//
// Line 1 is the owner's pid (so `kill $(head -1 FILE)` works), line 2 a JSON object with the pid,
// its start time (field 22 of /proc/PID/stat) and what it holds. A file whose owner is dead, or
// whose pid now belongs to a process started at another time (pid reuse, e.g. pid 1 after a
// container restart), is stale and is taken over: a run killed with SIGKILL never blocks the next.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startTimeFromStat } from '../dotnet/discovery';

export interface FileOwner {
  pid: number;
  /** Start time of the pid in clock ticks since boot; undefined when unknown. */
  start?: string;
  /** What the file is for ("sockwatch snat", "memory dump"...). */
  what?: string;
  instance?: string;
  createdAt?: string;
}

export type AcquireResult =
  | { acquired: true; file: string; owner: FileOwner; /** The dead owner whose stale file was replaced. */ takenOverFrom?: FileOwner }
  | { acquired: false; file: string; /** The live owner. */ owner: FileOwner };

/** Start time of a process (clock ticks since boot), undefined when it does not exist. */
export function processStartTime(pid: number): string | undefined {
  try {
    return startTimeFromStat(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return undefined;
  }
}

/** True when the owner's process still runs (same pid and same start time). */
export function ownerAlive(owner: FileOwner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: alive, another user's
  }
  const start = processStartTime(owner.pid);
  if (start === undefined) return false;
  return owner.start === undefined || owner.start === start;
}

export function formatOwnerFile(owner: FileOwner): string {
  return `${owner.pid}\n${JSON.stringify(owner)}\n`;
}

/** Parses an owner file; undefined for garbage (treated as stale). */
export function parseOwnerFile(content: string): FileOwner | undefined {
  const [first, second] = content.split('\n');
  const pid = Number(first?.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  let details: Partial<FileOwner> = {};
  try {
    details = second ? (JSON.parse(second) as Partial<FileOwner>) : {};
  } catch {
    details = {};
  }
  return {
    ...(typeof details.what === 'string' ? { what: details.what } : {}),
    ...(typeof details.instance === 'string' ? { instance: details.instance } : {}),
    ...(typeof details.createdAt === 'string' ? { createdAt: details.createdAt } : {}),
    pid,
    ...(typeof details.start === 'string' ? { start: details.start } : {}),
  };
}

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The owner recorded in a file; undefined when there is no file. A damaged file reads as owner pid 0. */
export function readOwnerFile(file: string): FileOwner | undefined {
  const content = readIfExists(file);
  if (content === undefined) return undefined;
  return parseOwnerFile(content) ?? { pid: 0 };
}

/** Removes `file` only if it still holds `content` (another process may have replaced it meanwhile). */
function removeIfUnchanged(file: string, content: string): boolean {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  if (readIfExists(aside) === content) {
    fs.rmSync(aside, { force: true });
    return true;
  }
  try {
    fs.linkSync(aside, file); // put the other process's fresh file back
  } catch {
    /* a third process holds it now */
  }
  fs.rmSync(aside, { force: true });
  return false;
}

/**
 * Creates `file` for this process, atomically (hard link of a complete temp file). A live owner
 * keeps it ({acquired: false}); a dead owner's file is replaced.
 */
export function acquireOwnerFile(file: string, details: Omit<FileOwner, 'pid' | 'start' | 'createdAt'> = {}): AcquireResult {
  const me: FileOwner = { ...details, pid: process.pid, start: processStartTime(process.pid), createdAt: new Date().toISOString() };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, formatOwnerFile(me), { mode: 0o644 });
  let takenOverFrom: FileOwner | undefined;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        fs.linkSync(tmp, file);
        return { acquired: true, file, owner: me, ...(takenOverFrom ? { takenOverFrom } : {}) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const content = readIfExists(file);
      if (content === undefined) continue;
      const owner = parseOwnerFile(content) ?? { pid: 0 };
      if (owner.pid === process.pid && owner.start === me.start) return { acquired: false, file, owner };
      if (owner.pid > 0 && ownerAlive(owner)) return { acquired: false, file, owner };
      if (removeIfUnchanged(file, content)) takenOverFrom = owner;
    }
    const owner = readOwnerFile(file) ?? { pid: 0 };
    return { acquired: false, file, owner };
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Removes `file` when this process owns it. Returns whether it did. */
export function releaseOwnerFile(file: string): boolean {
  const content = readIfExists(file);
  if (content === undefined) return false;
  if (parseOwnerFile(content)?.pid !== process.pid) return false;
  return removeIfUnchanged(file, content);
}

/** Removes `file` when its owner is `owner` (same pid) or dead. Returns whether it did. */
export function removeOwnerFileIfDeadOr(file: string, owner?: FileOwner): boolean {
  const content = readIfExists(file);
  if (content === undefined) return false;
  const recorded = parseOwnerFile(content);
  const ours = recorded !== undefined && owner !== undefined && recorded.pid === owner.pid;
  if (!ours && recorded && recorded.pid > 0 && ownerAlive(recorded)) return false;
  return removeIfUnchanged(file, content);
}
