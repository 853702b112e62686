// The one lock file of the project: the outbox's state directory (outbox.lock), the snat pidfile
// (sockwatch-snat.pid) and the per-instance collection locks (dump_taken_{instance}.lock...).
//
// Format (v1): line 1 is the owner's pid (so `kill $(head -1 FILE)` works), line 2 a JSON object
// {"v":1,"pid","start","host","boot",...}: start = field 22 of /proc/PID/stat, host = the host name,
// boot = /proc/sys/kernel/random/boot_id. 0.1.0 wrote either {"pid","start"} alone (outbox.lock) or
// the pid line and a JSON line without v, host and boot; both are read as "this host, this boot" and
// are replaced by v1 when taken over. A file with a newer v is refused, never misread.
//
// Liveness, one rule:
//   other host name                       → held elsewhere: refused with one line naming the host and
//                                           the file (a state directory on shared storage must be
//                                           per instance; we cannot tell whether that owner lives)
//   same host, other boot id              → stale (the machine rebooted since), taken over
//   our own pid                           → held exactly when this process holds it
//   pid gone (ESRCH)                      → stale
//   pid alive, start time differs         → stale (the pid was reused, e.g. pid 1 in a new container)
//   otherwise (alive; start same/unknown) → held: a live process is never robbed
//
// Created atomically (a complete temporary file, mode 0600, opened O_EXCL|O_NOFOLLOW, hard-linked
// into place); read with O_NOFOLLOW: a symbolic link at the lock path is refused with one line.
// Errors carry a string `code` (lib/base/errors.ts): ERR_SOCKWATCH_LOCKED (held), ERR_SOCKWATCH_LOCK_VERSION
// (newer format), or the errno the kernel gives (ELOOP for a link under O_NOFOLLOW).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SockwatchError, legacyCodeOf } from './errors';
import { processStartTime, removeFilesOfDeadProcesses } from './proc';

/** The lock file format this version writes and reads. */
export const LOCK_FORMAT_VERSION = 1;

export interface FileOwner {
  /** Format version; absent in files written by 0.1.0. */
  v?: number;
  pid: number;
  /** Start time of the pid in clock ticks since boot; undefined when unknown. */
  start?: string;
  /** Host name of the owner; undefined in 0.1.0 files (read as this host). */
  host?: string;
  /** Boot id of the owner's host; undefined in 0.1.0 files (read as this boot). */
  boot?: string;
  /** What the file is for ("sockwatch snat", "memory dump"...). */
  what?: string;
  instance?: string;
  createdAt?: string;
}

export type AcquireResult =
  | { acquired: true; file: string; owner: FileOwner; /** The dead owner whose stale file was replaced. */ takenOverFrom?: FileOwner }
  | { acquired: false; file: string; /** The live owner. */ owner: FileOwner };

/** Where a recorded owner stands. */
export type OwnerState = 'held' | 'stale' | 'elsewhere';

/** A lock file that cannot be used: held on another host, a symbolic link, or a newer format. */
export class LockFileError extends Error {
  /**
   * The 0.1.0 code (ELOCKED) of a held lock.
   * @deprecated match on `code` instead; removed in 0.3.0.
   */
  readonly legacyCode?: string;
  constructor(
    message: string,
    readonly code: string,
    readonly file: string,
    readonly owner?: FileOwner,
  ) {
    super(message);
    this.name = 'LockFileError';
    const legacy = legacyCodeOf(code);
    if (legacy !== undefined) this.legacyCode = legacy;
  }
}

/** Lock files held by this process (a second acquire in the same process is refused too). */
const heldHere = new Set<string>();

let cachedBootId: string | null | undefined;

/** This machine's boot id (a new one at every boot); undefined off Linux. */
export function bootId(): string | undefined {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId ?? undefined;
}

/** The liveness rule of the opening comment. `file` tells whether our own pid holds that file. */
export function ownerState(owner: FileOwner, file?: string): OwnerState {
  if (owner.host !== undefined && owner.host !== os.hostname()) return 'elsewhere';
  const boot = bootId();
  if (owner.boot !== undefined && boot !== undefined && owner.boot !== boot) return 'stale';
  if (owner.pid === process.pid) return file === undefined || heldHere.has(path.resolve(file)) ? 'held' : 'stale';
  if (!(owner.pid > 0)) return 'stale';
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if (errnoCode(err) === 'ESRCH') return 'stale';
    // EPERM: alive, another user's
  }
  const start = processStartTime(owner.pid);
  return owner.start !== undefined && start !== undefined && start !== owner.start ? 'stale' : 'held';
}

/** True while the owner's process runs on this host (or runs on another host: we cannot tell). */
export function ownerAlive(owner: FileOwner): boolean {
  return ownerState(owner) !== 'stale';
}

/** Throws (code ERR_SOCKWATCH_LOCKED) when the file's owner is on another host. */
export function assertSameHost(file: string, owner: FileOwner): void {
  if (ownerState(owner) === 'elsewhere') throw elsewhereError(file, owner);
}

function elsewhereError(file: string, owner: FileOwner): LockFileError {
  return new LockFileError(
    `lock file ${file} belongs to process ${owner.pid} on host ${owner.host}; a state directory on shared storage must be per instance`,
    'ERR_SOCKWATCH_LOCKED',
    file,
    owner,
  );
}

export function formatOwnerFile(owner: FileOwner): string {
  return `${owner.pid}\n${JSON.stringify({ ...owner, v: LOCK_FORMAT_VERSION })}\n`;
}

type Parsed = { owner: FileOwner } | { newer: number } | undefined;

/** Parses v1 and both 0.1.0 formats; undefined for garbage (treated as stale). */
function parseLock(content: string): Parsed {
  const lines = content.split('\n');
  const oldJsonOnly = lines[0]!.trimStart().startsWith('{');
  const pidLine = oldJsonOnly ? undefined : lines[0]!.trim();
  let details: Record<string, unknown> = {};
  try {
    const v: unknown = JSON.parse((oldJsonOnly ? lines[0] : lines[1]) ?? '');
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) details = v as Record<string, unknown>;
  } catch {
    /* a pid line alone is a usable 0.1.0 file */
  }
  if (typeof details.v === 'number' && details.v > LOCK_FORMAT_VERSION) return { newer: details.v };
  const pid = pidLine !== undefined ? Number(pidLine) : details.pid;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0 || (pidLine !== undefined && !/^\d+$/.test(pidLine))) {
    return undefined;
  }
  const owner: FileOwner = { pid };
  if (typeof details.v === 'number') owner.v = details.v;
  for (const key of ['start', 'host', 'boot', 'what', 'instance', 'createdAt'] as const) {
    if (typeof details[key] === 'string') owner[key] = details[key] as string;
  }
  return { owner };
}

/** The owner recorded in `content`; throws for a newer format. Undefined for garbage. */
export function parseOwnerFile(content: string, file = 'lock file'): FileOwner | undefined {
  const parsed = parseLock(content);
  if (parsed && 'newer' in parsed) {
    throw new LockFileError(
      `lock file ${file} has format v${parsed.newer}, written by a newer sockwatch (this one knows v${LOCK_FORMAT_VERSION}); stop that version or remove the file`,
      'ERR_SOCKWATCH_LOCK_VERSION',
      file,
    );
  }
  return parsed?.owner;
}

/** Reads a lock file without following a link; undefined when there is none. */
function readLock(file: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new LockFileError(`lock file ${file} is a symbolic link; refusing to follow it`, 'ELOOP', file);
    throw err;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) throw new LockFileError(`lock file ${file} is not a regular file`, 'EINVAL', file);
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** The owner recorded in a file; undefined when there is no file. A damaged file reads as owner pid 0. */
export function readOwnerFile(file: string): FileOwner | undefined {
  const content = readLock(file);
  if (content === undefined) return undefined;
  return parseOwnerFile(content, file) ?? { pid: 0 };
}

/** Removes `file` only if it still holds `content` (another process may have replaced it meanwhile). */
function removeIfUnchanged(file: string, content: string): boolean {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(file, aside); // renames a link itself, never its target
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return true;
    throw err;
  }
  let moved: string | undefined;
  try {
    moved = readLock(aside);
  } catch {
    moved = undefined;
  }
  if (moved === content) {
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

/** Temporary files of lock attempts by processes that died in the middle of one. */
function removeLeftovers(file: string): void {
  const base = path.basename(file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${base}\\.(?:stale-)?(\\d+)[.-][0-9a-f]{8}(?:\\.tmp)?$`);
  removeFilesOfDeadProcesses(path.dirname(file), (name) => {
    const m = pattern.exec(name);
    return m ? Number(m[1]) : undefined;
  });
}

/** Writes a complete temporary lock file: mode 0600, never through a link. */
function writeTemp(tmp: string, content: string): void {
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    fs.writeFileSync(fd, content);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Creates `file` for this process, atomically (hard link of a complete temporary file). A live owner
 * keeps it ({acquired: false}); a stale owner's file is replaced. Throws LockFileError for an owner on
 * another host, a symbolic link or a newer format; errno errors (EACCES, EROFS...) pass through.
 */
export function acquireOwnerFile(file: string, details: Pick<FileOwner, 'what' | 'instance'> = {}): AcquireResult {
  const me: FileOwner = {
    ...details,
    pid: process.pid,
    start: processStartTime(process.pid),
    host: os.hostname(),
    boot: bootId(),
    createdAt: new Date().toISOString(),
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeTemp(tmp, formatOwnerFile(me));
  let takenOverFrom: FileOwner | undefined;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        fs.linkSync(tmp, file); // atomic create-if-absent; never follows a link at `file`
        heldHere.add(path.resolve(file));
        removeLeftovers(file);
        return { acquired: true, file, owner: me, ...(takenOverFrom ? { takenOverFrom } : {}) };
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      const content = readLock(file);
      if (content === undefined) continue; // released meanwhile
      const owner = parseOwnerFile(content, file) ?? { pid: 0 };
      const state = ownerState(owner, file);
      if (state === 'elsewhere') throw elsewhereError(file, owner);
      if (state === 'held') return { acquired: false, file, owner };
      if (removeIfUnchanged(file, content)) takenOverFrom = owner;
    }
    return { acquired: false, file, owner: readOwnerFile(file) ?? { pid: 0 } };
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Removes `file` when this process owns it. Returns whether it did. */
export function releaseOwnerFile(file: string): boolean {
  heldHere.delete(path.resolve(file));
  const content = readLock(file);
  if (content === undefined) return false;
  if (parseOwnerFile(content, file)?.pid !== process.pid) return false;
  return removeIfUnchanged(file, content);
}

/** Removes `file` when its owner is `owner` (same pid) or stale. Returns whether it did. */
export function removeOwnerFileIfDeadOr(file: string, owner?: FileOwner): boolean {
  const content = readLock(file);
  if (content === undefined) return false;
  const recorded = parseOwnerFile(content, file);
  const ours = recorded !== undefined && owner !== undefined && recorded.pid === owner.pid && recorded.host === owner.host;
  if (!ours && recorded && ownerState(recorded, file) !== 'stale') return false;
  return removeIfUnchanged(file, content);
}

/** The lock of a state directory (one process per directory). */
export const LOCK_FILE = 'outbox.lock';

/** Another live process holds the state directory (code ERR_SOCKWATCH_LOCKED). */
export class StateDirLockedError extends SockwatchError {
  constructor(
    readonly dir: string,
    readonly ownerPid: number | undefined,
    message?: string,
  ) {
    super(
      'ERR_SOCKWATCH_LOCKED',
      message ??
        `state directory ${dir} is in use by ${ownerPid === process.pid ? 'this process' : `process ${ownerPid ?? '(unknown)'}`}` +
          ` (lock file ${path.join(dir, LOCK_FILE)})`,
    );
    this.name = 'StateDirLockedError';
  }
}

/** One process per state directory: `dir/outbox.lock`, by the rule above. */
export class StateDirLock {
  private released = false;

  private constructor(
    readonly path: string,
    /** The pid of a stale owner whose lock was taken over, if any. */
    readonly takenOverFrom: number | undefined,
  ) {}

  /** Takes the lock in `dir` or throws StateDirLockedError; other errors (ELOOP, EACCES...) pass through. */
  static acquire(dir: string): StateDirLock {
    const file = path.join(dir, LOCK_FILE);
    let got: AcquireResult;
    try {
      got = acquireOwnerFile(file, { what: 'state directory' });
    } catch (err) {
      if (err instanceof LockFileError && err.code === 'ERR_SOCKWATCH_LOCKED') {
        throw new StateDirLockedError(dir, err.owner?.pid, err.message);
      }
      throw err;
    }
    if (!got.acquired) throw new StateDirLockedError(dir, got.owner.pid || undefined);
    return new StateDirLock(file, got.takenOverFrom?.pid);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    releaseOwnerFile(this.path);
  }
}

/** The `code` of an errno error (ENOENT, EACCES...), undefined for anything else. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;
}
