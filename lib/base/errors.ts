// One way to fail. Rule: a failure of the operating system keeps Node's own scheme (errno name in
// `code`, negative `errno`, `syscall`, as fs and net errors carry; see systemError); a condition the
// project itself detects carries one code `ERR_SOCKWATCH_<NAME>` from ERROR_CODES below (meaning and
// what to do, the same table as the README's "Error codes") on a SockwatchError. Foreign
// vocabularies ride along in their own property (`hresultName` for .NET, the service code for Azure),
// and the 0.1.0 code of a renamed condition stays readable as the deprecated `legacyCode`.
import * as os from 'node:os';
import * as util from 'node:util';

/** Every project code: what it means and what to do about it. */
export const ERROR_CODES = {
  ERR_SOCKWATCH_SAMPLER_CLOSED: {
    meaning: 'the Sampler was closed; it cannot scan any more',
    action: 'create a new Sampler',
    legacy: 'ERR_SAMPLER_CLOSED',
  },
  ERR_SOCKWATCH_SAMPLER_BUSY: {
    meaning: 'sampleSync or lookupSync was called while an async call of the same Sampler was queued or running',
    action: 'await the pending call first, or use sample() / lookup(), which queue',
    legacy: 'EBUSY',
  },
  ERR_SOCKWATCH_LOCKED: {
    meaning: 'another live process (or a process on another host) holds this lock file: state directory, snat pidfile or instance lock',
    action: 'stop the other instance, or give this one its own state directory or instance name',
    legacy: 'ELOCKED',
  },
  ERR_SOCKWATCH_LOCK_VERSION: {
    meaning: 'a lock file was written by a newer sockwatch (a lock format this version does not know)',
    action: 'run the newer version, or stop it and remove the lock file it left',
    legacy: undefined,
  },
  ERR_SOCKWATCH_STATE_VERSION: {
    meaning:
      'a state file (outbox.meta, episodes.json, an upload or pending-upload record) was written by a newer sockwatch; it is left as is, never misread',
    action: 'run the newer version, or move the file away to start over',
    legacy: undefined,
  },
  ERR_SOCKWATCH_NO_DOTNET: {
    meaning: 'the process has no .NET diagnostics socket (not .NET, diagnostics disabled, other TMPDIR or container)',
    action: 'read the causes listed in the message; run as root in the host pid namespace',
    legacy: 'ENODOTNET',
  },
  ERR_SOCKWATCH_DIAGNOSTICS: {
    meaning: 'the .NET runtime answered a diagnostics command with an error (`hresultName`, `hresult` say which)',
    action: 'check the runtime version supports the command; the message carries the runtime text',
    legacy: undefined,
  },
  ERR_SOCKWATCH_DIAGNOSTICS_PROTOCOL: {
    meaning: 'the diagnostics reply was malformed (bad magic, short or unexpected payload)',
    action: 'report it with the runtime version: the runtime speaks a protocol this version does not know',
    legacy: 'PROTOCOL_ERROR',
  },
  ERR_SOCKWATCH_DIAGNOSTICS_CLOSED: {
    meaning: 'the diagnostics connection was closed or broke before the reply was complete',
    action: 'the process probably exited or crashed during the command; check it',
    legacy: 'CONNECTION_CLOSED',
  },
  ERR_SOCKWATCH_EMPTY_TRACE: {
    meaning: 'the runtime sent no EventPipe trace data',
    action: 'retry; check the process is still running and the providers are valid',
    legacy: 'EMPTY_TRACE',
  },
  ERR_SOCKWATCH_BAD_TRACE: {
    meaning: 'the trace file does not start with "Nettrace"',
    action: 'retry; report it with the runtime version if it repeats',
    legacy: 'BAD_TRACE',
  },
  ERR_SOCKWATCH_NO_DISK_SPACE: {
    meaning: 'a dump would not fit in the free space of its directory (checked before it is taken)',
    action: 'free space, or point the dump directory at a larger filesystem',
    legacy: 'ENOSPC',
  },
  ERR_SOCKWATCH_SAS_EXPIRED: {
    meaning: 'the container SAS URL is past its `se=` expiry',
    action: 'ask for a new SAS URL',
    legacy: 'SAS_EXPIRED',
  },
  ERR_SOCKWATCH_UPLOAD_TIMEOUT: {
    meaning: 'one upload request took longer than its per-try timeout (retried)',
    action: 'nothing while retries succeed; otherwise check the network path to the storage account',
    legacy: 'timeout',
  },
  ERR_SOCKWATCH_FILE_CHANGED: {
    meaning: 'the file changed while it was being uploaded; the upload starts over',
    action: 'nothing; if it repeats, something keeps writing the file',
    legacy: 'FILE_CHANGED',
  },
  ERR_SOCKWATCH_VERIFY_FAILED: {
    meaning: 'the committed blob does not match the local file (size or MD5)',
    action: 'retried from the start while the local file exists; otherwise inspect the blob',
    legacy: 'VERIFY_FAILED',
  },
  ERR_SOCKWATCH_UPLOAD_REJECTED: {
    meaning:
      'the storage service answered an upload request with an error status; `statusCode` and `serviceCode` (e.g. AuthenticationFailed, ContainerNotFound) say which',
    action: '403: a new SAS URL with r and w; 404: create the container; 408, 429 and 5xx are retried',
    legacy: undefined,
  },
  ERR_SOCKWATCH_UPLOAD_FAILED: {
    meaning:
      'an upload request failed in a way that is neither a network error nor a service answer; `serviceCode` holds what the storage client reported',
    action: 'read the message; report it if it repeats',
    legacy: undefined,
  },
} as const satisfies Record<string, { meaning: string; action: string; legacy: string | undefined }>;

export type SockwatchErrorCode = keyof typeof ERROR_CODES;

/** The 0.1.0 code of a project code, for the `legacyCode` of classes that carry other codes too. */
export function legacyCodeOf(code: string): string | undefined {
  return Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code as SockwatchErrorCode].legacy : undefined;
}

export interface SockwatchErrorOptions {
  cause?: unknown;
}

/** A condition the project detects itself; `code` is one of ERROR_CODES. */
export class SockwatchError extends Error {
  readonly code: SockwatchErrorCode;
  /**
   * The code this condition carried in 0.1.0 (ELOCKED, SAS_EXPIRED, …), for code that still matches on it.
   * @deprecated match on `code` instead; removed in 0.3.0.
   */
  readonly legacyCode?: string;

  constructor(code: SockwatchErrorCode, message: string, options: SockwatchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SockwatchError';
    this.code = code;
    const legacy: string | undefined = ERROR_CODES[code].legacy;
    if (legacy !== undefined) this.legacyCode = legacy;
  }
}

/** An operating-system failure shaped like Node's own (fs, net): code, negative errno, syscall. */
export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

/** errno number → name, from Node's os.constants.errno (libuv's table lacks some, e.g. EBADMSG). */
let errnoNames: Map<number, string> | undefined;

/** The errno name for an errno number of either sign: Node's getSystemErrorName, then os.constants.errno. */
export function errnoName(errno: number): string {
  const n = -Math.abs(errno);
  const uv = util.getSystemErrorMap().get(n)?.[0];
  if (uv !== undefined) return uv;
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [name, value] of Object.entries(os.constants.errno)) if (!errnoNames.has(value)) errnoNames.set(value, name);
  }
  return errnoNames.get(-n) ?? 'UNKNOWN';
}

export interface SystemErrorOptions extends SockwatchErrorOptions {
  /** What the errno means (strerror), when the caller has it; else Node's description, if any. */
  description?: string;
}

/**
 * Builds a SystemError from an errno number (either sign): message `<syscall> <CODE>: <context>`,
 * or `<syscall> <CODE>: <description>` without context (Node's `connect ECONNREFUSED 127.0.0.1:80`).
 */
export function systemError(errno: number, syscall: string, context?: string, options: SystemErrorOptions = {}): SystemError {
  const n = -Math.abs(errno);
  const code = errnoName(n);
  const why = context ?? options.description ?? util.getSystemErrorMap().get(n)?.[1] ?? `errno ${-n}`;
  const err = new Error(`${syscall} ${code}: ${why}`, options.cause === undefined ? undefined : { cause: options.cause }) as SystemError;
  err.code = code;
  err.errno = n;
  err.syscall = syscall;
  return err;
}
