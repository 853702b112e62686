// Every file sockwatch writes goes through here. The rules:
// - The last component of a path we write is never followed when it is a symbolic link (O_NOFOLLOW):
//   a link planted where a log, lock, outbox segment or dump belongs is refused with one line naming
//   it. This rests on how files are opened, not on directory modes (shared mounts such as App Service's
//   /home may show every directory as world-writable).
// - Files are created 0600 and directories 0700 unless the caller says otherwise.
// - Directories are created one component at a time (Node's recursive mkdir loops forever on ENOENT
//   under /proc), never under /proc or /sys, and a failure names the component and the errno
//   (EROFS for a read-only mount, not ENOENT).
// - Whole-file replacements are written to a temporary file opened O_EXCL|O_NOFOLLOW and renamed
//   over the target (rename replaces a link itself, never its target).
import * as fs from 'node:fs';
import * as path from 'node:path';

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

// libuv opens every descriptor close-on-exec already.
const { O_NOFOLLOW, O_CREAT, O_EXCL, O_WRONLY, O_APPEND, O_RDONLY, O_TRUNC, O_DIRECTORY } = fs.constants;

/** Pseudo file systems no state, log or dump may go to. */
const PSEUDO_ROOTS = ['/proc', '/sys'];

export interface FsError extends Error {
  code: string;
  path: string;
  syscall?: string;
}

function fsError(message: string, code: string, file: string, syscall?: string): FsError {
  return Object.assign(new Error(message), { code, path: file, ...(syscall ? { syscall } : {}) });
}

function describeCode(code: string | undefined): string {
  switch (code) {
    case 'EROFS':
      return 'read-only file system';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOSPC':
      return 'no space left on device';
    case 'ENOTDIR':
      return 'a path component is not a directory';
    case 'ELOOP':
      return 'too many symbolic links';
    default:
      return 'cannot create';
  }
}

function isUnder(p: string, root: string): boolean {
  return p === root || p.startsWith(`${root}/`);
}

/**
 * Creates `dir` and any missing parents (mode `mode` for the ones created), one component at a time.
 * Refuses an empty path and anything under /proc or /sys. Errors carry `code` (the errno name) and
 * `path` (the component that failed).
 */
export function ensureDir(dir: string, mode: number = DIR_MODE): string {
  if (typeof dir !== 'string' || dir.trim() === '') throw fsError('directory path is empty', 'EINVAL', String(dir));
  const abs = path.resolve(dir);
  const pseudo = PSEUDO_ROOTS.find((r) => isUnder(abs, r));
  if (pseudo) throw fsError(`${abs} is under ${pseudo}, a kernel pseudo file system: choose a directory on real storage`, 'EINVAL', abs);
  const parts = abs.split('/').filter(Boolean);
  let current = '/';
  for (const part of parts) {
    current = path.join(current, part);
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(current);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw fsError(`${current}: ${describeCode(code)} (${code})`, code ?? 'EIO', current, 'stat');
    }
    if (st) {
      if (!st.isDirectory()) throw fsError(`${current} exists and is not a directory`, 'ENOTDIR', current, 'mkdir');
      continue;
    }
    try {
      fs.mkdirSync(current, { mode });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.statSync(current).isDirectory()) continue; // created meanwhile
      throw fsError(`cannot create ${current}: ${describeCode(code)} (${code})`, code ?? 'EIO', current, 'mkdir');
    }
  }
  return abs;
}

function linkRefused(file: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  // O_NOFOLLOW on a symbolic link fails with ELOOP (EMLINK on some BSDs; Linux says ELOOP).
  if (code === 'ELOOP') return fsError(`refusing to open ${file}: it is a symbolic link`, 'ELOOP', file, 'open');
  return err;
}

/** Opens `file` with `flags` | O_NOFOLLOW; a symbolic link at `file` is an ELOOP error naming it. */
export function openNoFollow(file: string, flags: number, mode: number = FILE_MODE): number {
  try {
    return fs.openSync(file, flags | O_NOFOLLOW, mode);
  } catch (e) {
    throw linkRefused(file, e);
  }
}

/** The promise form of openNoFollow. */
export async function openNoFollowAsync(file: string, flags: number, mode: number = FILE_MODE): Promise<fs.promises.FileHandle> {
  try {
    return await fs.promises.open(file, flags | O_NOFOLLOW, mode);
  } catch (e) {
    throw linkRefused(file, e);
  }
}

export const OPEN_APPEND = O_WRONLY | O_CREAT | O_APPEND;
export const OPEN_TRUNCATE = O_WRONLY | O_CREAT | O_TRUNC;
export const OPEN_CREATE_NEW = O_WRONLY | O_CREAT | O_EXCL;
export const OPEN_READ = O_RDONLY;
export const OPEN_DIRECTORY = O_RDONLY | O_DIRECTORY;

/** Appends `data` to `file` (created `mode`), never through a symbolic link. */
export function appendFileNoFollow(file: string, data: string | Uint8Array, mode: number = FILE_MODE): void {
  const fd = openNoFollow(file, OPEN_APPEND, mode);
  try {
    fs.writeFileSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads `file` whole, refusing a symbolic link at its path. */
export function readFileNoFollow(file: string): Buffer {
  const fd = openNoFollow(file, OPEN_READ);
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

let tmpCounter = 0;

/**
 * Replaces `file` with `data`: written to a fresh temporary file beside it (O_EXCL|O_NOFOLLOW),
 * optionally fsynced, then renamed over `file`. A reader sees the old or the new content, never a mix.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, options: { mode?: number; fsync?: boolean } = {}): void {
  const tmp = `${file}.${process.pid}.${++tmpCounter}.tmp`;
  const fd = openNoFollow(tmp, OPEN_CREATE_NEW, options.mode ?? FILE_MODE);
  try {
    fs.writeFileSync(fd, data);
    if (options.fsync) fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/** A regular file opened under another process's root (see openUnderRoot). */
export interface RootedFile {
  /** Read-only descriptor of the file itself. */
  fd: number;
  /** fstat of `fd`: the file that was opened, whatever the path says now. */
  stat: fs.Stats;
  /** Descriptor of its directory, to remove the entry without resolving the path again. */
  dirFd: number;
  name: string;
  close(): void;
}

/** O_PATH (Linux): a descriptor that names an inode without opening it; fs.constants lacks it. */
const O_PATH = 0o10000000;

/** `inner` split into components; `..` and relative paths refused (above the target's root lies ours). */
function innerParts(inner: string): string[] {
  const parts = inner.split('/').filter((p) => p !== '' && p !== '.');
  if (!inner.startsWith('/') || parts.includes('..')) throw fsError(`${inner}: not a plain absolute path`, 'EINVAL', inner);
  return parts;
}

/**
 * Descends from `root` through the directories `parts`, each opened with O_NOFOLLOW through
 * /proc/self/fd/N/NAME (which looks NAME up in the directory already opened, as openat(2) would).
 * Returns the last directory's descriptor and the path shown in errors; the caller closes it.
 */
function descendUnderRoot(root: string, parts: readonly string[]): { dirFd: number; shown: string } {
  let dirFd = fs.openSync(root, OPEN_DIRECTORY);
  let shown = root;
  try {
    for (const part of parts) {
      shown = `${shown}/${part}`;
      let next: number;
      try {
        next = fs.openSync(`/proc/self/fd/${dirFd}/${part}`, OPEN_DIRECTORY | O_NOFOLLOW);
      } catch (e) {
        throw rootedError(shown, e);
      }
      fs.closeSync(dirFd);
      dirFd = next;
    }
    return { dirFd, shown };
  } catch (e) {
    fs.closeSync(dirFd);
    throw e;
  }
}

/** The last component of `inner` under `root`, opened with `flags` | O_NOFOLLOW; its directory stays open. */
function openLeafUnderRoot(
  root: string,
  inner: string,
  flags: number,
): { fd: number; stat: fs.Stats; dirFd: number; name: string; shown: string } {
  const parts = innerParts(inner);
  const name = parts.pop();
  if (name === undefined) throw fsError(`${inner}: not a plain absolute path`, 'EINVAL', inner);
  const { dirFd, shown: dirShown } = descendUnderRoot(root, parts);
  const shown = `${dirShown}/${name}`;
  try {
    let fd: number;
    try {
      fd = fs.openSync(`/proc/self/fd/${dirFd}/${name}`, flags | O_NOFOLLOW);
    } catch (e) {
      throw rootedError(shown, e);
    }
    try {
      return { fd, stat: fs.fstatSync(fd), dirFd, name, shown };
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  } catch (e) {
    fs.closeSync(dirFd);
    throw e;
  }
}

/**
 * Opens `inner` (an absolute path as the target process sees it) under `root` (e.g. /proc/PID/root)
 * one component at a time with O_NOFOLLOW, so that no symbolic link is followed at all: an absolute
 * link planted by a hostile container would otherwise resolve against *our* root (the host's) and a
 * root sockwatch would read a host file. `..` is refused for the same reason. The last component
 * must be a regular file.
 */
export function openUnderRoot(root: string, inner: string): RootedFile {
  const { fd, stat, dirFd, name, shown } = openLeafUnderRoot(root, inner, O_RDONLY | fs.constants.O_NONBLOCK);
  const close = () => {
    fs.closeSync(fd);
    fs.closeSync(dirFd);
  };
  if (!stat.isFile()) {
    close();
    throw fsError(`refusing to read ${shown}: not a regular file`, 'EINVAL', shown);
  }
  return { fd, stat, dirFd, name, close };
}

/**
 * The directory `inner` under `root`, opened as openUnderRoot opens files (no link followed on the
 * way); list it through /proc/self/fd/N. The caller closes the descriptor.
 */
export function openDirUnderRoot(root: string, inner: string): number {
  return descendUnderRoot(root, innerParts(inner)).dirFd;
}

/**
 * An O_PATH descriptor of the Unix socket `inner` under `root`, reached as openUnderRoot reaches files
 * (no link followed, the last component included), and its fstat. Connect to /proc/self/fd/N: the
 * kernel resolves that link to this very inode, so a container cannot swap in a link to a host socket
 * between the check and the connect. The caller closes the descriptor.
 */
export function openSocketUnderRoot(root: string, inner: string): { fd: number; stat: fs.Stats } {
  // O_PATH | O_NOFOLLOW opens a link itself instead of failing: fstat tells.
  const { fd, stat, dirFd, shown } = openLeafUnderRoot(root, inner, O_PATH);
  fs.closeSync(dirFd);
  if (!stat.isSocket()) {
    fs.closeSync(fd);
    const link = stat.isSymbolicLink();
    throw fsError(
      `refusing to connect to ${shown}: ${link ? "a symbolic link inside the target's root" : 'not a socket'}`,
      link ? 'ELOOP' : 'ENOTSOCK',
      shown,
      'connect',
    );
  }
  return { fd, stat };
}

function rootedError(shown: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') return fsError(`refusing to follow ${shown}: a symbolic link inside the target's root`, 'ELOOP', shown, 'open');
  if (code === 'ENOTDIR') return fsError(`refusing to follow ${shown}: not a directory (or a symbolic link)`, 'ENOTDIR', shown, 'open');
  return err;
}
