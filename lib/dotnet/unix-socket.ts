// Connecting to a Unix socket whose path may not fit in sockaddr_un.sun_path (108 bytes with the NUL).
//
// Paths through /proc/PID/root/... (targets in other containers) easily exceed that, and Node/libuv
// silently truncate a long path (the connect then fails with a misleading ENOENT). We never chdir
// (not allowed in worker threads, and process-wide): instead we open the socket's directory and
// connect to /proc/self/fd/N/<name>, a short path the kernel resolves through the open directory.
// Opening the directory needs read permission on it; when that is refused we fall back to a
// symlink to the socket inside a fresh private directory under /tmp (connect() follows symlinks),
// removed right after the connect.
//
// A path through /proc/PID/root (a target in another mount namespace) is never resolved by the kernel
// in one go: a symbolic link planted in the container would resolve against *our* root, and a root
// sockwatch would then talk to a host socket. It is walked one component at a time without following
// any link (base/fs openSocketUnderRoot) and connected to through /proc/self/fd/N of the socket itself.

import * as fsp from 'node:fs/promises';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { openSocketUnderRoot } from '../base/fs';

/** Bytes of sun_path usable for a path (108 minus the terminating NUL). */
export const SUN_PATH_MAX = 107;

export interface UnixConnectOptions {
  /** Give up connecting after this many ms (default 30 000, like the .NET client). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('The operation was aborted');
  err.name = 'AbortError';
  (err as NodeJS.ErrnoException).code = 'ABORT_ERR';
  return err;
}

function connectShort(socketPath: string, opts: UnixConnectOptions): Promise<net.Socket> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const signal = opts.signal;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const socket = net.createConnection({ path: socketPath });
    const timer = setTimeout(() => {
      const err = new Error(`connect ETIMEDOUT ${socketPath}: no answer within ${timeoutMs} ms`) as NodeJS.ErrnoException;
      err.code = 'ETIMEDOUT';
      fail(err);
    }, timeoutMs);
    const onAbort = () => fail(abortError(signal!));
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeListener('error', fail);
      socket.removeListener('connect', done);
    };
    function fail(err: Error) {
      cleanup();
      socket.destroy();
      reject(err);
    }
    function done() {
      cleanup();
      resolve(socket);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', fail);
    socket.once('connect', done);
  });
}

function shortTempRoot(): string {
  const t = os.tmpdir();
  return t.length <= 40 ? t : '/tmp';
}

/** `/proc/PID/root` and the path inside it, for a path that goes through another process's root. */
const THROUGH_ROOT = /^(\/proc\/\d+\/root)(\/.*)$/;

/** Connects to a Unix stream socket, whatever the length of its path. */
export async function connectUnixSocket(socketPath: string, opts: UnixConnectOptions = {}): Promise<net.Socket> {
  const rooted = THROUGH_ROOT.exec(socketPath);
  if (rooted) {
    const { fd } = openSocketUnderRoot(rooted[1]!, rooted[2]!);
    try {
      return await connectShort(`/proc/self/fd/${fd}`, opts);
    } finally {
      fs.closeSync(fd);
    }
  }
  if (Buffer.byteLength(socketPath) <= SUN_PATH_MAX) return connectShort(socketPath, opts);

  const dir = path.dirname(socketPath);
  const name = path.basename(socketPath);
  let dirHandle: fsp.FileHandle | undefined;
  try {
    dirHandle = await fsp.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
  }
  if (dirHandle) {
    const viaFd = `/proc/self/fd/${dirHandle.fd}/${name}`;
    try {
      if (Buffer.byteLength(viaFd) > SUN_PATH_MAX) {
        throw new RangeError(`socket file name ${JSON.stringify(name)} is too long for sun_path even through /proc/self/fd`);
      }
      return await connectShort(viaFd, opts);
    } finally {
      await dirHandle.close();
    }
  }

  const linkDir = await fsp.mkdtemp(path.join(shortTempRoot(), 'sw-'));
  try {
    const link = path.join(linkDir, 's');
    await fsp.symlink(socketPath, link);
    return await connectShort(link, opts);
  } finally {
    await fsp.rm(linkDir, { recursive: true, force: true });
  }
}
