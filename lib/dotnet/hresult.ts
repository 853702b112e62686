// HRESULTs returned by the .NET diagnostics server, and the error class every IPC failure becomes.
// Codes from the diagnostics IPC spec (dotnet/diagnostics documentation/design-docs/ipc-protocol.md).
// The HRESULT names are the runtime's vocabulary: they ride in `hresultName`, while `code` follows the
// project's scheme (lib/base/errors.ts): ERR_SOCKWATCH_DIAGNOSTICS* or the errno name of a socket failure.
import { legacyCodeOf } from '../base/errors';

/** Known diagnostics-server HRESULTs (unsigned 32-bit) → stable code name and a readable meaning. */
const KNOWN_HRESULTS: ReadonlyMap<number, { code: string; meaning: string }> = new Map([
  [0x80131384, { code: 'BAD_ENCODING', meaning: 'the runtime could not parse the request (it is too old for an option)' }],
  [0x80131385, { code: 'UNKNOWN_COMMAND', meaning: 'the runtime does not know this command (older runtime)' }],
  [0x80131386, { code: 'UNKNOWN_MAGIC', meaning: 'the request header magic was not recognised' }],
  [0x80131387, { code: 'UNKNOWN_ERROR', meaning: 'the runtime reported an unknown error' }],
  [0x80131515, { code: 'NOT_SUPPORTED', meaning: 'the operation is not supported by this runtime' }],
  [0x80004005, { code: 'E_FAIL', meaning: 'the operation failed' }],
  [0x80004001, { code: 'E_NOTIMPL', meaning: 'the operation is not implemented by this runtime' }],
  [0x8013135b, { code: 'NOT_YET_AVAILABLE', meaning: 'the runtime is not ready for this command yet' }],
  [0x80131371, { code: 'RUNTIME_UNINITIALIZED', meaning: 'the runtime is not initialised yet' }],
  [0x80070057, { code: 'INVALID_ARGUMENT', meaning: 'an argument was rejected by the runtime' }],
  [0x8007007a, { code: 'INSUFFICIENT_BUFFER', meaning: 'a buffer was too small' }],
  [0x800000cb, { code: 'ENVVAR_NOT_FOUND', meaning: 'the environment variable was not found' }],
  [0x8013136a, { code: 'PROFILER_ALREADY_ACTIVE', meaning: 'a profiler is already attached' }],
  [0x8007000e, { code: 'E_OUTOFMEMORY', meaning: 'the runtime ran out of memory' }],
  [0x80070005, { code: 'E_ACCESSDENIED', meaning: 'access denied' }],
]);

export const HRESULT = {
  BAD_ENCODING: 0x80131384,
  UNKNOWN_COMMAND: 0x80131385,
  UNKNOWN_MAGIC: 0x80131386,
  UNKNOWN_ERROR: 0x80131387,
  NOT_SUPPORTED: 0x80131515,
  E_FAIL: 0x80004005,
} as const;

/** `0x80131385` style, always 8 hex digits. */
export function formatHresult(hresult: number): string {
  return '0x' + (hresult >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

/** Decodes an HRESULT into a stable code name and a readable meaning. Unknown Win32-facility codes name the Win32 error. */
export function describeHresult(hresult: number): { code: string; meaning: string } {
  const hr = hresult >>> 0;
  const known = KNOWN_HRESULTS.get(hr);
  if (known) return known;
  if ((hr & 0xffff0000) >>> 0 === 0x80070000) {
    return { code: `WIN32_${hr & 0xffff}`, meaning: `Win32 error ${hr & 0xffff}` };
  }
  return { code: `HRESULT_${formatHresult(hr).slice(2)}`, meaning: 'unrecognised error code' };
}

/** A failure reported by a .NET runtime's diagnostics server (an Error reply), or a broken conversation with it. */
export class DiagnosticsIpcError extends Error {
  /** The HRESULT as an unsigned 32-bit number; 0 when the failure is not a runtime reply (protocol/transport). */
  readonly hresult: number;
  /**
   * ERR_SOCKWATCH_DIAGNOSTICS (the runtime replied with an error: see hresultName),
   * ERR_SOCKWATCH_DIAGNOSTICS_PROTOCOL / _CLOSED / EMPTY_TRACE / BAD_TRACE (lib/base/errors.ts),
   * or the errno name of a socket failure (ECONNREFUSED, ENOENT, ETIMEDOUT…).
   */
  readonly code: string;
  /** The runtime's name for the HRESULT (UNKNOWN_COMMAND, E_FAIL, …), when the runtime replied with one. */
  readonly hresultName?: string;
  /**
   * The code this failure carried in 0.1.0 (the HRESULT name, PROTOCOL_ERROR, CONNECTION_CLOSED…).
   * @deprecated match on `code` (and `hresultName`) instead; removed in 0.3.0.
   */
  readonly legacyCode?: string;
  /** The command that failed, e.g. "Dump.GenerateCoreDump3". */
  readonly command: string;
  /** Extra text from the runtime: for GenerateCoreDump3, createdump's own error message. */
  readonly detail?: string;

  constructor(opts: { command: string; hresult?: number; code?: string; legacyCode?: string; message?: string; detail?: string }) {
    const hresult = (opts.hresult ?? 0) >>> 0;
    const described = opts.hresult !== undefined ? describeHresult(hresult) : undefined;
    const code = opts.code ?? (described ? 'ERR_SOCKWATCH_DIAGNOSTICS' : 'ERR_SOCKWATCH_DIAGNOSTICS_PROTOCOL');
    // An explicit message is used as is; a generated one ends with the runtime's own text, if any.
    const message =
      opts.message ??
      `${opts.command} failed: ${described ? `${described.meaning} (${described.code}, HRESULT ${formatHresult(hresult)})` : code}` +
        (opts.detail ? `: ${opts.detail}` : '');
    super(message);
    this.name = 'DiagnosticsIpcError';
    this.hresult = hresult;
    this.code = code;
    if (described) this.hresultName = described.code;
    const legacy = opts.legacyCode ?? described?.code ?? legacyCodeOf(code);
    if (legacy !== undefined) this.legacyCode = legacy;
    this.command = opts.command;
    if (opts.detail) this.detail = opts.detail;
  }
}

export function isUnknownCommand(err: unknown): boolean {
  return err instanceof DiagnosticsIpcError && err.hresult === HRESULT.UNKNOWN_COMMAND;
}
