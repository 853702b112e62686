// One process per state directory. The lock file holds the owner's pid and its start time (from
// /proc/<pid>/stat), so a lock left by a SIGKILLed run is recognised as stale even when the pid has
// been reused (a container restart gives the new process the same pid 1) and is taken over.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export const LOCK_FILE = 'outbox.lock';

interface LockOwner {
  pid: number;
  start?: string;
}

/** Lock files held by this process (a second open in the same process is refused too). */
const heldHere = new Set<string>();

export class StateDirLockedError extends Error {
  readonly code = 'ELOCKED';
  constructor(
    readonly dir: string,
    readonly ownerPid: number | undefined,
  ) {
    super(
      `state directory ${dir} is in use by ${ownerPid === process.pid ? 'this process' : `process ${ownerPid ?? '(unknown)'}`}` +
        ` (lock file ${path.join(dir, LOCK_FILE)})`,
    );
    this.name = 'StateDirLockedError';
  }
}

export class StateDirLock {
  private released = false;

  private constructor(
    readonly path: string,
    /** The pid of a dead owner whose stale lock was taken over, if any. */
    readonly takenOverFrom: number | undefined,
  ) {}

  /** Takes the lock in `dir` or throws StateDirLockedError; errno errors (EACCES, EROFS...) pass through. */
  static acquire(dir: string): StateDirLock {
    const lockPath = path.join(dir, LOCK_FILE);
    const me: LockOwner = { pid: process.pid, start: processStartTime(process.pid) };
    const tmp = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(me)}\n`, { mode: 0o644 });
    let takenOverFrom: number | undefined;
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          fs.linkSync(tmp, lockPath); // atomic create-if-absent, with content already in place
          heldHere.add(lockPath);
          removeLeftovers(dir);
          return new StateDirLock(lockPath, takenOverFrom);
        } catch (err) {
          if (errnoCode(err) !== 'EEXIST') throw err;
        }
        const content = readIfExists(lockPath);
        if (content === undefined) continue; // released meanwhile
        const owner = parseOwner(content);
        if (owner && isAlive(owner, lockPath)) throw new StateDirLockedError(dir, owner.pid);
        if (!removeIfUnchanged(lockPath, content)) throw new StateDirLockedError(dir, parseOwner(readIfExists(lockPath) ?? '')?.pid);
        takenOverFrom = owner?.pid;
      }
      throw new StateDirLockedError(dir, undefined);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.path);
    const content = readIfExists(this.path);
    if (content !== undefined && parseOwner(content)?.pid === process.pid) fs.rmSync(this.path, { force: true });
  }
}

/**
 * Moves the stale lock aside and checks it is the one we judged stale. If another process replaced it
 * in between, its fresh lock is put back and false is returned.
 */
function removeIfUnchanged(lockPath: string, staleContent: string): boolean {
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(lockPath, aside);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return true;
    throw err;
  }
  const moved = readIfExists(aside);
  if (moved === staleContent) {
    fs.rmSync(aside, { force: true });
    return true;
  }
  try {
    fs.linkSync(aside, lockPath);
  } catch {
    /* a third process holds it now */
  }
  fs.rmSync(aside, { force: true });
  return false;
}

/** Temporary files of lock attempts by processes that died in the middle of one. */
function removeLeftovers(dir: string): void {
  for (const name of fs.readdirSync(dir)) {
    const m = /^outbox\.lock\.(?:stale-)?(\d+)[.-][0-9a-f]{8}(?:\.tmp)?$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if (errnoCode(err) === 'ESRCH') fs.rmSync(path.join(dir, name), { force: true });
    }
  }
}

function isAlive(owner: LockOwner, lockPath: string): boolean {
  if (owner.pid === process.pid) return heldHere.has(lockPath);
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if (errnoCode(err) === 'ESRCH') return false;
  }
  // Alive (or EPERM: alive, other user). A different start time means the pid was reused.
  const start = processStartTime(owner.pid);
  return !(owner.start && start && start !== owner.start);
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined off Linux. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

function parseOwner(content: string): LockOwner | undefined {
  try {
    const v = JSON.parse(content) as Partial<LockOwner>;
    if (Number.isSafeInteger(v.pid) && (v.pid as number) > 0) {
      return { pid: v.pid as number, start: typeof v.start === 'string' ? v.start : undefined };
    }
  } catch {
    /* garbage: treated as stale */
  }
  return undefined;
}

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;
}
