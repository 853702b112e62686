// Dump command set: ask the runtime to run createdump on itself.
//
// GenerateCoreDump3 (.NET 7+) returns createdump's error text; on UNKNOWN_COMMAND we fall back to
// GenerateCoreDump2 (.NET 6) and then GenerateCoreDump (.NET Core 3+). The runtime forks createdump,
// which opens the dump path as the target's user and inside the target's mount namespace. So:
// - the path is made absolute (the target's working directory is not ours);
// - for a target in another mount namespace (a container), createdump writes to a staging file in
//   the target's own temp dir, which we reach through /proc/PID/root without following any link and
//   copy out from the opened descriptor (see bringOutStagedDump);
// - the reply comes only when createdump exits, which can take minutes for a Full dump: by default we
//   wait without a timeout.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { systemError } from '../base/errors';
import { openUnderRoot } from '../base/fs';
import { DiagnosticsIpcError, isUnknownCommand } from './hresult';
import { sendCommand } from './ipc';
import { explainExisting, requireFreeOutputPath } from './output-file';
import { resolveTarget, type DotnetEndpoint, type DotnetTarget } from './discovery';
import { DUMP_TYPE_CODES, parseDumpType, type DumpTypeName } from './dump-types';
import { ensureDiskSpace, estimateDumpBytes, readMemoryFootprint, type StatfsFn } from './dump-space';
import { Commands, PayloadWriter, type IpcCommand } from './wire';

export interface WriteDumpOptions {
  /** Normal, WithHeap, Triage or Full (default Full, like dotnet-dump). */
  type?: string;
  /** createdump logs its progress to the target's stdout (flag 0x1, --diag). */
  diagnosticsLogging?: boolean;
  /** More createdump logging (flag 0x2, --verbose; v2+). */
  verboseLogging?: boolean;
  /** Also write <dump>.crashreport.json (flag 0x4; v2+). */
  crashReport?: boolean;
  /** Refuse when the destination lacks room for the estimated dump (default true). */
  checkDiskSpace?: boolean;
  /** Free-space probe, injectable for tests (default fs.statfs). */
  statfs?: StatfsFn;
  /** Reply timeout in ms; 0 (default) waits as long as createdump runs. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /**
   * Stops waiting (and closes the connection). createdump, once started, runs to completion in the
   * target regardless; a staged file is then left in the target's temp dir.
   */
  signal?: AbortSignal;
}

export interface DumpResult {
  /** Absolute path of the dump as seen from this process. */
  path: string;
  bytes: number;
  type: DumpTypeName;
  /** Which command the runtime accepted. */
  command: 'GenerateCoreDump3' | 'GenerateCoreDump2' | 'GenerateCoreDump';
  /** Our size estimate (bytes, without margin); undefined when the space check was off. */
  estimatedBytes?: number;
}

const FLAG_LOGGING = 0x1;
const FLAG_VERBOSE = 0x2;
const FLAG_CRASH_REPORT = 0x4;

/** The request payloads: v1 has a 0/1 diagnostics field where v2/v3 have flags. */
export function encodeDumpPayload(dumpPath: string, type: DumpTypeName, flags: number, version: 1 | 2 | 3): Buffer {
  const w = new PayloadWriter().string(dumpPath).u32(DUMP_TYPE_CODES[type]);
  return w.u32(version === 1 ? (flags & FLAG_LOGGING ? 1 : 0) : flags).toBuffer();
}

function checkOptions(opts: WriteDumpOptions): void {
  if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
  for (const name of ['diagnosticsLogging', 'verboseLogging', 'crashReport', 'checkDiskSpace'] as const) {
    if (opts[name] !== undefined && typeof opts[name] !== 'boolean') throw new TypeError(`${name} must be a boolean`);
  }
  if (opts.timeoutMs !== undefined && (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs < 0)) {
    throw new RangeError(`timeoutMs must be a number >= 0 (0 = no timeout), got ${String(opts.timeoutMs)}`);
  }
  if (opts.statfs !== undefined && typeof opts.statfs !== 'function') throw new TypeError('statfs must be a function');
}

async function requireDirectory(dir: string): Promise<void> {
  let isDir = false;
  try {
    isDir = (await fsp.stat(dir)).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw systemError(os.constants.errno.ENOENT, 'stat', `dump directory ${dir} does not exist`);
}

/**
 * Brings a dump staged inside a container out to `to`. The staged path is resolved under the
 * target's root without following any link (a hostile container could plant an absolute link that
 * resolves against ours), the file is checked with fstat (regular, owned by the target's user), and
 * copied from that descriptor, never from a path. The staged entry is then removed through its
 * directory's descriptor.
 */
async function bringOutStagedDump(rootPrefix: string, inner: string, to: string, targetUidValue: string): Promise<number> {
  const staged = openUnderRoot(rootPrefix, inner);
  try {
    if (targetUidValue !== '?' && String(staged.stat.uid) !== targetUidValue) {
      throw Object.assign(
        new Error(`refusing to read ${rootPrefix}${inner}: owned by uid ${staged.stat.uid}, not by the target's uid ${targetUidValue}`),
        { code: 'EPERM' },
      );
    }
    // COPYFILE_EXCL: the destination is created with O_CREAT|O_EXCL, which never follows a link.
    try {
      await fsp.copyFile(`/proc/self/fd/${staged.fd}`, to, fs.constants.COPYFILE_EXCL);
    } catch (err) {
      throw explainExisting(err, to, 'dump');
    }
    await fsp.unlink(`/proc/self/fd/${staged.dirFd}/${staged.name}`).catch(() => undefined);
    return staged.stat.size;
  } finally {
    staged.close();
  }
}

async function targetUid(pid: number): Promise<string> {
  try {
    const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8');
    return /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? '?';
  } catch {
    return '?';
  }
}

/** Sends v3, then v2, then v1 while the runtime answers UNKNOWN_COMMAND. */
async function requestDump(
  endpoint: DotnetEndpoint,
  dumpPath: string,
  type: DumpTypeName,
  flags: number,
  opts: WriteDumpOptions,
): Promise<DumpResult['command']> {
  const attempts: [IpcCommand, 1 | 2 | 3, DumpResult['command']][] = [
    [Commands.GenerateCoreDump3, 3, 'GenerateCoreDump3'],
    [Commands.GenerateCoreDump2, 2, 'GenerateCoreDump2'],
    [Commands.GenerateCoreDump, 1, 'GenerateCoreDump'],
  ];
  let lastError: unknown;
  for (const [cmd, version, name] of attempts) {
    try {
      await sendCommand(endpoint.socketPath, cmd, encodeDumpPayload(dumpPath, type, flags, version), {
        connectTimeoutMs: opts.connectTimeoutMs,
        replyTimeoutMs: opts.timeoutMs ?? 0,
        signal: opts.signal,
      });
      return name;
    } catch (err) {
      if (!isUnknownCommand(err)) throw err;
      lastError = err;
    }
  }
  throw lastError;
}

/**
 * Writes a dump of a .NET process to `dumpPath` (made absolute). Refuses with
 * InsufficientDiskSpaceError when the destination has too little room (see dump-space.ts for the
 * estimate). Runtime failures are DiagnosticsIpcError; with GenerateCoreDump3 `detail` holds
 * createdump's own message.
 */
export async function writeDump(target: DotnetTarget, dumpPath: string, opts: WriteDumpOptions = {}): Promise<DumpResult> {
  if (typeof dumpPath !== 'string' || dumpPath === '') throw new TypeError('dumpPath must be a non-empty string');
  checkOptions(opts);
  const type = parseDumpType(opts.type ?? 'full');
  const flags =
    (opts.diagnosticsLogging ? FLAG_LOGGING : 0) | (opts.verboseLogging ? FLAG_VERBOSE : 0) | (opts.crashReport ? FLAG_CRASH_REPORT : 0);
  const endpoint = await resolveTarget(target);
  const finalPath = path.resolve(dumpPath);
  await requireDirectory(path.dirname(finalPath));
  // A dump is always a new file: nothing (a planted link above all) may be at its path.
  requireFreeOutputPath(finalPath, 'dump');

  // In another mount namespace, createdump's path is resolved in the target's filesystem.
  const staged = endpoint.sameMountNamespace === false && !!endpoint.rootPrefix;
  const pathForTarget = staged
    ? path.posix.join(endpoint.tmpDir ?? '/tmp', `sockwatch-dump-${endpoint.pid}-${randomBytes(6).toString('hex')}.dmp`)
    : finalPath;
  const writtenPath = staged ? endpoint.rootPrefix + pathForTarget : finalPath;

  let estimatedBytes: number | undefined;
  if (opts.checkDiskSpace !== false) {
    estimatedBytes = estimateDumpBytes(await readMemoryFootprint(endpoint.pid), type);
    const what = `a ${type} dump of process ${endpoint.pid}`;
    await ensureDiskSpace(path.dirname(finalPath), estimatedBytes, what, opts.statfs);
    if (staged) await ensureDiskSpace(path.dirname(writtenPath), estimatedBytes, `${what} (staged in its container)`, opts.statfs);
  }

  let command: DumpResult['command'];
  try {
    command = await requestDump(endpoint, pathForTarget, type, flags, opts);
  } catch (err) {
    if (staged) await fsp.rm(writtenPath, { force: true }).catch(() => undefined);
    if (err instanceof DiagnosticsIpcError && err.hresult !== 0) {
      const hint =
        ` (createdump runs as uid ${await targetUid(endpoint.pid)} of the target` +
        `${staged ? ' inside its container' : ''}; it needs ptrace permission over the target and write access to ` +
        `${path.posix.dirname(pathForTarget)}${err.detail ? '' : '; pass diagnosticsLogging for its log on the target stdout'})`;
      const wrapped = new DiagnosticsIpcError({
        command: err.command,
        hresult: err.hresult,
        detail: err.detail,
        message: err.message + hint,
      });
      (wrapped as Error & { cause?: unknown }).cause = err;
      throw wrapped;
    }
    throw err;
  }

  let bytes: number;
  if (staged) {
    bytes = await bringOutStagedDump(endpoint.rootPrefix!, pathForTarget, finalPath, await targetUid(endpoint.pid));
  } else {
    let st: fs.Stats;
    try {
      st = await fsp.lstat(writtenPath);
    } catch {
      throw new Error(`the runtime reported a dump at ${pathForTarget} but no file is there (${writtenPath})`);
    }
    if (!st.isFile())
      throw new Error(`the runtime reported a dump at ${writtenPath} but it is not a regular file (a link was planted there?)`);
    bytes = st.size;
  }
  return { path: finalPath, bytes, type, command, ...(estimatedBytes !== undefined ? { estimatedBytes } : {}) };
}
