// Finding .NET processes by their diagnostics sockets.
//
// A .NET runtime listens on `$TMPDIR/dotnet-diagnostic-{pid}-{key}-socket` (TMPDIR as the target sees
// it, /tmp when unset), where {pid} is its pid inside its own pid namespace and {key} its start time
// in clock ticks (field 22 of /proc/PID/stat). For a process in another container (another mount
// namespace) we look through /proc/PID/root, and take {pid} from the last NSpid value in
// /proc/PID/status. Several sockets for one pid (a reused pid after a crash) → the one whose key is
// the process's start time, else the newest by mtime.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { SockwatchError, systemError } from '../base/errors';
import { startTimeFromStat } from '../base/proc';
import { openDirUnderRoot, openSocketUnderRoot } from '../base/fs';

const SOCKET_NAME = /^dotnet-diagnostic-(\d+)-(\d+)-socket$/;

/** What is needed to talk to a runtime: a host pid and a socket path usable from this process. */
export interface DotnetEndpoint {
  /** Pid in our pid namespace. */
  pid: number;
  /** Path of the diagnostics socket as seen from here (may go through /proc/PID/root). */
  socketPath: string;
  /** False when the target lives in another mount namespace (a container); paths it opens are then its own. */
  sameMountNamespace?: boolean;
  /** "/proc/PID/root" when the target is in another mount namespace, else "". */
  rootPrefix?: string;
  /** The target's temp directory as the target sees it. */
  tmpDir?: string;
}

export interface DotnetProcess extends DotnetEndpoint {
  /** Pid inside the target's own pid namespace (the pid in the socket name; equals pid outside containers). */
  nsPid: number;
  sameMountNamespace: boolean;
  rootPrefix: string;
  tmpDir: string;
  /** /proc/PID/comm */
  comm: string;
  /** /proc/PID/cmdline split at NULs. */
  cmdline: string[];
  /** The {key} part of the socket name (the runtime's start time in clock ticks on Linux). */
  socketKey: string;
  socketMtimeMs: number;
}

/** A pid, or an endpoint from listDotnetProcesses/findDiagnosticSocket (or built by hand). */
export type DotnetTarget = number | DotnetEndpoint;

function checkPid(pid: unknown, name = 'pid'): asserts pid is number {
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) {
    throw new TypeError(`${name} must be a positive integer, got ${String(pid)}`);
  }
}

function parseEnviron(raw: Buffer): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of raw.toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const key = entry.slice(0, eq);
    if (!env.has(key)) env.set(key, entry.slice(eq + 1)); // getenv() returns the first one
  }
  return env;
}

/**
 * The environment a process was started with (/proc/PID/environ). Changes the process made to its own
 * environment later are not visible. Reading another user's process needs root. Values can be
 * secrets (e.g. DIAGNOSTICS_AZUREBLOBCONTAINERSASURL): print them only through redactUrl/redactText.
 */
export function readProcessEnv(pid: number): Map<string, string> {
  checkPid(pid);
  try {
    return parseEnviron(fs.readFileSync(`/proc/${pid}/environ`));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') {
      throw systemError(os.constants.errno.ESRCH, 'open', `process ${pid} does not exist`, { cause: err });
    }
    if (code === 'EACCES' || code === 'EPERM') {
      const e = err as NodeJS.ErrnoException;
      const why = `cannot read the environment of process ${pid}: permission denied (run as its user or as root)`;
      throw systemError(e.errno ?? os.constants.errno.EACCES, e.syscall ?? 'open', why, { cause: err });
    }
    throw err;
  }
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Last NSpid value (pid inside the innermost pid namespace), or the pid itself when unknown. */
export function nsPidFromStatus(status: string | undefined, pid: number): number {
  const line = status?.split('\n').find((l) => l.startsWith('NSpid:'));
  const values = line?.slice('NSpid:'.length).trim().split(/\s+/).map(Number) ?? [];
  const last = values[values.length - 1];
  return last !== undefined && Number.isSafeInteger(last) && last > 0 ? last : pid;
}

let ownMountNs: string | null | undefined;
async function mountNamespace(pid: number | 'self'): Promise<string | null> {
  try {
    return await fsp.readlink(`/proc/${pid}/ns/mnt`);
  } catch {
    return null;
  }
}

interface ProcFacts {
  pid: number;
  nsPid: number;
  tmpDir: string;
  rootPrefix: string;
  sameMountNamespace: boolean;
  mountNs: string | null;
  startTime: string | undefined;
  env: Map<string, string> | undefined;
}

async function procFacts(pid: number): Promise<ProcFacts | undefined> {
  const status = await readText(`/proc/${pid}/status`);
  if (status === undefined) return undefined;
  const nsPid = nsPidFromStatus(status, pid);
  let env: Map<string, string> | undefined;
  try {
    env = parseEnviron(await fsp.readFile(`/proc/${pid}/environ`));
  } catch {
    env = undefined; // not ours to read: fall back to /tmp
  }
  const tmp = env?.get('TMPDIR');
  const tmpDir = tmp ? path.posix.resolve('/', tmp) : '/tmp';
  if (ownMountNs === undefined) ownMountNs = await mountNamespace('self');
  const mountNs = await mountNamespace(pid);
  // Unknown namespaces (no permission): a pid namespace of its own suggests a container.
  const sameMountNamespace = mountNs !== null && ownMountNs !== null ? mountNs === ownMountNs : nsPid === pid;
  return {
    pid,
    nsPid,
    tmpDir,
    rootPrefix: sameMountNamespace ? '' : `/proc/${pid}/root`,
    sameMountNamespace,
    mountNs,
    startTime: startTimeFromStat(await readText(`/proc/${pid}/stat`)),
    env,
  };
}

interface SocketEntry {
  nsPid: number;
  key: string;
  name: string;
}

/**
 * The diagnostics sockets named in `tmpDir` (under `rootPrefix` when the target is in another mount
 * namespace: walked without following links, see base/fs openDirUnderRoot).
 */
async function listSockets(rootPrefix: string, tmpDir: string): Promise<SocketEntry[]> {
  let names: string[];
  try {
    if (rootPrefix === '') names = await fsp.readdir(tmpDir);
    else {
      const fd = openDirUnderRoot(rootPrefix, tmpDir);
      try {
        names = await fsp.readdir(`/proc/self/fd/${fd}`);
      } finally {
        fs.closeSync(fd);
      }
    }
  } catch {
    return [];
  }
  const out: SocketEntry[] = [];
  for (const name of names) {
    const m = SOCKET_NAME.exec(name);
    if (m) out.push({ nsPid: Number(m[1]), key: m[2]!, name });
  }
  return out;
}

function socketUnderRoot(facts: ProcFacts, name: string): fs.Stats {
  const { fd, stat } = openSocketUnderRoot(facts.rootPrefix, path.posix.join(facts.tmpDir, name));
  fs.closeSync(fd);
  return stat;
}

async function pickSocket(facts: ProcFacts, entries: SocketEntry[]): Promise<DotnetProcess | undefined> {
  const dir = facts.rootPrefix + facts.tmpDir;
  const candidates: { entry: SocketEntry; mtimeMs: number }[] = [];
  for (const entry of entries) {
    if (entry.nsPid !== facts.nsPid) continue;
    try {
      // The runtime creates the socket itself: a symbolic link by that name is someone else's (lstat),
      // and in another container's root one is never followed (openSocketUnderRoot).
      const st = facts.rootPrefix === '' ? await fsp.lstat(path.join(dir, entry.name)) : socketUnderRoot(facts, entry.name);
      if (st.isSocket()) candidates.push({ entry, mtimeMs: st.mtimeMs });
    } catch {
      // vanished meanwhile, or not a socket reached without links
    }
  }
  if (candidates.length === 0) return undefined;
  const exact = candidates.find((c) => c.entry.key === facts.startTime);
  const best = exact ?? candidates.reduce((a, b) => (b.mtimeMs > a.mtimeMs ? b : a));
  const cmdlineRaw = await readText(`/proc/${facts.pid}/cmdline`);
  return {
    pid: facts.pid,
    nsPid: facts.nsPid,
    socketPath: path.join(dir, best.entry.name),
    sameMountNamespace: facts.sameMountNamespace,
    rootPrefix: facts.rootPrefix,
    tmpDir: facts.tmpDir,
    comm: ((await readText(`/proc/${facts.pid}/comm`)) ?? '').trim(),
    cmdline: (cmdlineRaw ?? '').split('\0').filter((s, i, all) => s !== '' || i < all.length - 1),
    socketKey: best.entry.key,
    socketMtimeMs: best.mtimeMs,
  };
}

/** Processes inspected at once: bounds open files on hosts with thousands of processes. */
const DISCOVERY_CONCURRENCY = 16;

async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Every live process that has a .NET diagnostics socket, including processes in other containers
 * (through /proc/PID/root). Processes we may not inspect are searched in /tmp only. Sorted by pid.
 */
export async function listDotnetProcesses(): Promise<DotnetProcess[]> {
  const pids = (await fsp.readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
  const listings = new Map<string, Promise<SocketEntry[]>>(); // one readdir per (mount ns, dir)
  const found: DotnetProcess[] = [];
  await forEachLimited(pids, DISCOVERY_CONCURRENCY, async (pid) => {
    const facts = await procFacts(pid);
    if (!facts) return;
    const key = `${facts.sameMountNamespace ? 'self' : (facts.mountNs ?? `pid${pid}`)}:${facts.tmpDir}`;
    let listing = listings.get(key);
    if (!listing) {
      listing = listSockets(facts.rootPrefix, facts.tmpDir);
      listings.set(key, listing);
    }
    const proc = await pickSocket(facts, await listing);
    if (proc) found.push(proc);
  });
  return found.sort((a, b) => a.pid - b.pid);
}

function diagnosticsDisabledBy(env: Map<string, string> | undefined): string | undefined {
  if (!env) return undefined;
  for (const name of ['DOTNET_EnableDiagnostics', 'COMPlus_EnableDiagnostics', 'DOTNET_EnableDiagnostics_IPC']) {
    if (env.get(name) === '0') return `${name}=0`;
  }
  return undefined;
}

async function mapsCoreclr(pid: number): Promise<boolean | undefined> {
  const maps = await readText(`/proc/${pid}/maps`);
  return maps === undefined ? undefined : maps.includes('libcoreclr.so');
}

/** The diagnostics socket of one process; throws (code ERR_SOCKWATCH_NO_DOTNET, or ESRCH) saying why when there is none. */
export async function findDiagnosticSocket(pid: number): Promise<DotnetProcess> {
  checkPid(pid);
  const facts = await procFacts(pid);
  if (!facts) {
    throw Object.assign(
      systemError(
        os.constants.errno.ESRCH,
        'open',
        `process ${pid} does not exist (or is not visible from this pid namespace: run with the host pid namespace)`,
      ),
      { pid },
    );
  }
  const dir = facts.rootPrefix + facts.tmpDir;
  const proc = await pickSocket(facts, await listSockets(facts.rootPrefix, facts.tmpDir));
  if (proc) return proc;

  const disabledBy = diagnosticsDisabledBy(facts.env);
  const causes: string[] = [];
  if (disabledBy) causes.push(`diagnostics are disabled in its environment (${disabledBy})`);
  const coreclr = await mapsCoreclr(pid);
  if (coreclr === false) causes.push('it does not look like a .NET process (no libcoreclr.so mapped; single-file apps excepted)');
  if (!disabledBy) causes.push('diagnostics are disabled (DOTNET_EnableDiagnostics=0 or DOTNET_EnableDiagnostics_IPC=0)');
  if (!facts.env) causes.push('its environment is unreadable, so its TMPDIR is unknown and only /tmp was searched (run as root)');
  else causes.push('it uses a different TMPDIR than the one searched');
  if (!facts.sameMountNamespace) {
    const reachable = await fsp.access(dir).then(
      () => true,
      () => false,
    );
    if (!reachable) causes.push(`it runs in another container and ${dir} is not accessible (needs root or CAP_SYS_PTRACE)`);
    else if (facts.rootPrefix !== '') {
      try {
        fs.closeSync(openDirUnderRoot(facts.rootPrefix, facts.tmpDir));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ELOOP' || code === 'ENOTDIR') {
          causes.push(
            `its TMPDIR ${facts.tmpDir} goes through a symbolic link inside its container, which sockwatch does not follow ` +
              `there (a link could point at the host's files): give the app a TMPDIR without links`,
          );
        }
      }
    }
  }
  causes.push('the runtime could not create the socket (a TMPDIR path longer than 107 bytes, or not writable)');
  const err = new SockwatchError(
    'ERR_SOCKWATCH_NO_DOTNET',
    `no .NET diagnostics socket for process ${pid}: looked for dotnet-diagnostic-${facts.nsPid}-*-socket in ${dir}. ` +
      `Likely causes: ${causes.join('; ')}`,
  );
  throw Object.assign(err, { pid });
}

/** Accepts a pid or an endpoint; a pid is resolved with findDiagnosticSocket. */
export async function resolveTarget(target: DotnetTarget, name = 'target'): Promise<DotnetEndpoint> {
  if (typeof target === 'number') return findDiagnosticSocket(target);
  if (target === null || typeof target !== 'object') {
    throw new TypeError(`${name} must be a pid or an object with pid and socketPath, got ${String(target)}`);
  }
  checkPid(target.pid, `${name}.pid`);
  if (typeof target.socketPath !== 'string' || target.socketPath === '') {
    throw new TypeError(`${name}.socketPath must be a non-empty string`);
  }
  return target;
}
