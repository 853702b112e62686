// EventPipe: collect a .nettrace for a while, then stop it properly.
//
// CollectTracing2 (works on every runtime since .NET Core 3.0) is sent on one connection; the runtime
// answers with a session id and then streams the nettrace bytes on that same connection. We drain it
// into the file the whole time (if nobody reads, the runtime blocks and Stop never completes). When
// the duration is over, StopTracing goes on a second connection, and we keep reading the first one
// until EOF: the rundown (method and module names, needed to resolve stacks) is sent after the stop.
// A trace whose connection is merely dropped is truncated and cannot be opened.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DiagnosticsIpcError } from './hresult';
import { checkReply, IpcConnection, sendCommand } from './ipc';
import { resolveTarget, type DotnetTarget } from './discovery';
import { abortError } from './unix-socket';
import { Commands, encodeMessage, PayloadReader, PayloadWriter } from './wire';

export interface EventPipeProvider {
  name: string;
  /** Keyword mask (64 bits). */
  keywords: bigint;
  /** 0 LogAlways, 1 Critical, 2 Error, 3 Warning, 4 Informational, 5 Verbose. */
  level: number;
  /** "key=value;key2=value2", or an object that is encoded that way (values with ; or = quoted). */
  arguments?: string | Readonly<Record<string, string>>;
}

const ALL_KEYWORDS = 0xffff_ffff_ffff_ffffn;

/**
 * dotnet-trace's classic `cpu-sampling` pair (thread-time samples + the runtime's default keywords),
 * plus the System.Net sources with their event counters every second: connects, DNS, TLS, HTTP.
 */
export const DEFAULT_TRACE_PROVIDERS: readonly EventPipeProvider[] = Object.freeze([
  { name: 'Microsoft-DotNETCore-SampleProfiler', keywords: 0xf00000000000n, level: 4 },
  { name: 'Microsoft-Windows-DotNETRuntime', keywords: 0x00000014c14fccbdn, level: 4 },
  { name: 'System.Net.Http', keywords: ALL_KEYWORDS, level: 4, arguments: 'EventCounterIntervalSec=1' },
  { name: 'System.Net.Sockets', keywords: ALL_KEYWORDS, level: 4, arguments: 'EventCounterIntervalSec=1' },
  { name: 'System.Net.NameResolution', keywords: ALL_KEYWORDS, level: 4, arguments: 'EventCounterIntervalSec=1' },
  { name: 'System.Net.Security', keywords: ALL_KEYWORDS, level: 4, arguments: 'EventCounterIntervalSec=1' },
]);

export const NETTRACE_MAGIC = Buffer.from('Nettrace', 'latin1');

/** Encodes provider arguments; a key or value containing ';' or '=' is wrapped in double quotes. */
export function formatProviderArguments(args: string | Readonly<Record<string, string>> | undefined): string {
  if (args === undefined) return '';
  if (typeof args === 'string') return args;
  const quote = (s: string) => (/[;=]/.test(s) ? `"${s}"` : s);
  return Object.entries(args)
    .map(([k, v]) => `${quote(k)}=${quote(v)}`)
    .join(';');
}

function checkProviders(providers: readonly EventPipeProvider[]): void {
  if (!Array.isArray(providers) || providers.length === 0) throw new TypeError('providers must be a non-empty array');
  providers.forEach((p, i) => {
    if (!p || typeof p.name !== 'string' || p.name === '') throw new TypeError(`providers[${i}].name must be a non-empty string`);
    if (typeof p.keywords !== 'bigint' || p.keywords < 0n || p.keywords > ALL_KEYWORDS) {
      throw new RangeError(`providers[${i}].keywords must be a bigint in 0..2^64-1`);
    }
    if (!Number.isInteger(p.level) || p.level < 0 || p.level > 5) throw new RangeError(`providers[${i}].level must be an integer 0..5`);
  });
}

/** The CollectTracing2 payload: buffer MB, format 1 (nettrace), rundown, providers. */
export function encodeCollectTracing2(opts: {
  bufferSizeMB: number;
  requestRundown: boolean;
  providers: readonly EventPipeProvider[];
}): Buffer {
  const w = new PayloadWriter().u32(opts.bufferSizeMB).u32(1).bool8(opts.requestRundown).u32(opts.providers.length);
  for (const p of opts.providers) {
    w.u64(p.keywords).u32(p.level).string(p.name).string(formatProviderArguments(p.arguments));
  }
  return w.toBuffer();
}

export interface CollectTraceOptions {
  /** How long to collect before stopping, in ms. */
  durationMs: number;
  /**
   * Ends the collection early; the session is still stopped properly and the rundown awaited, and the
   * result says stoppedBy 'signal'. Already aborted on entry → rejects with the abort reason.
   */
  signal?: AbortSignal;
  /** Default DEFAULT_TRACE_PROVIDERS. */
  providers?: readonly EventPipeProvider[];
  /** Runtime-side circular buffer, 1..1024 MB (default 256; events are dropped when it is full). */
  bufferSizeMB?: number;
  /** Rundown events for symbol resolution (default true). */
  requestRundown?: boolean;
  /** How long to wait for EOF after StopTracing (default 120 000 ms; rundown of a large app can take ~30 s). */
  rundownTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export interface TraceResult {
  path: string;
  bytes: number;
  sessionId: bigint;
  /** Why collection ended. */
  stoppedBy: 'duration' | 'signal' | 'target-exit';
  /** The stream reached EOF after the rundown and ends with the nettrace end tag. */
  endedCleanly: boolean;
}

function checkTraceOptions(opts: CollectTraceOptions): void {
  if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object with durationMs');
  if (typeof opts.durationMs !== 'number' || !Number.isFinite(opts.durationMs) || opts.durationMs <= 0) {
    throw new RangeError(`durationMs must be a positive number of milliseconds, got ${String(opts.durationMs)}`);
  }
  if (opts.bufferSizeMB !== undefined && (!Number.isInteger(opts.bufferSizeMB) || opts.bufferSizeMB < 1 || opts.bufferSizeMB > 1024)) {
    throw new RangeError(`bufferSizeMB must be an integer 1..1024, got ${String(opts.bufferSizeMB)}`);
  }
  if (opts.rundownTimeoutMs !== undefined && (!Number.isFinite(opts.rundownTimeoutMs) || opts.rundownTimeoutMs <= 0)) {
    throw new RangeError(`rundownTimeoutMs must be a positive number, got ${String(opts.rundownTimeoutMs)}`);
  }
  if (opts.requestRundown !== undefined && typeof opts.requestRundown !== 'boolean')
    throw new TypeError('requestRundown must be a boolean');
}

/** Reads the first and last bytes of a finished trace file. */
async function inspectTraceFile(file: string): Promise<{ bytes: number; magicOk: boolean; lastByte: number | undefined }> {
  const fh = await fsp.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(NETTRACE_MAGIC.length);
    await fh.read(head, 0, head.length, 0);
    let lastByte: number | undefined;
    if (size > 0) {
      const tail = Buffer.alloc(1);
      await fh.read(tail, 0, 1, size - 1);
      lastByte = tail[0];
    }
    return { bytes: size, magicOk: size >= NETTRACE_MAGIC.length && head.equals(NETTRACE_MAGIC), lastByte };
  } finally {
    await fh.close();
  }
}

function openForWrite(file: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, 'w', 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** The FastSerialization NullReference tag that ends a nettrace stream. */
const END_OF_STREAM_TAG = 0x01;

/**
 * Collects an EventPipe trace into `tracePath` (nettrace format) for `durationMs`, then stops it
 * cleanly and waits for the rundown. Rejects when the file is empty or does not start with "Nettrace".
 */
export async function collectTrace(target: DotnetTarget, tracePath: string, opts: CollectTraceOptions): Promise<TraceResult> {
  if (typeof tracePath !== 'string' || tracePath === '') throw new TypeError('tracePath must be a non-empty string');
  checkTraceOptions(opts);
  const providers = opts.providers ?? DEFAULT_TRACE_PROVIDERS;
  checkProviders(providers);
  const signal = opts.signal;
  if (signal?.aborted) throw abortError(signal);
  const endpoint = await resolveTarget(target);
  const file = path.resolve(tracePath);
  const cmd = Commands.CollectTracing2;

  const request = encodeMessage(
    cmd,
    encodeCollectTracing2({ bufferSizeMB: opts.bufferSizeMB ?? 256, requestRundown: opts.requestRundown ?? true, providers }),
  );
  // Open the file first: a bad path must fail before a session is started in the target.
  const fd = await openForWrite(file);
  const out = fs.createWriteStream(file, { fd });
  let conn: IpcConnection | undefined;
  let sessionId: bigint;
  try {
    conn = await IpcConnection.open(endpoint.socketPath, cmd.name, { connectTimeoutMs: opts.connectTimeoutMs, signal });
    await conn.write(request);
    const payload = checkReply(cmd, await conn.readMessage(cmd.name, { timeoutMs: 30_000, signal }));
    sessionId = new PayloadReader(payload, cmd.name).u64('session id');
  } catch (err) {
    conn?.close();
    await new Promise<void>((resolve) => out.end(resolve));
    throw err;
  }

  const { socket, leftover } = conn.detach();
  let streamError: Error | undefined;
  let eof = false;
  const ended = new Promise<void>((resolve) => {
    socket.once('end', () => {
      eof = true;
      resolve();
    });
    socket.once('close', () => resolve());
    socket.once('error', (err) => {
      streamError = err;
      resolve();
    });
  });
  let fileError: Error | undefined;
  const fileFailed = new Promise<Error>((resolve) =>
    out.once('error', (err) => {
      fileError = err;
      resolve(err);
    }),
  );
  if (leftover.length > 0) out.write(leftover);
  socket.pipe(out, { end: false });
  socket.resume();

  let stoppedBy: TraceResult['stoppedBy'] = 'duration';
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const waitEnd = await Promise.race([
    new Promise<'duration'>((resolve) => {
      timer = setTimeout(() => resolve('duration'), opts.durationMs);
    }),
    new Promise<'signal'>((resolve) => {
      onAbort = () => resolve('signal');
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
    ended.then(() => 'target-exit' as const),
    fileFailed,
  ]);
  clearTimeout(timer);
  if (onAbort) signal?.removeEventListener('abort', onAbort);

  const finish = async (): Promise<void> => {
    socket.unpipe(out);
    socket.destroy();
    await new Promise<void>((resolve) => out.end(resolve));
  };

  if (waitEnd instanceof Error) {
    await finish();
    throw waitEnd;
  }
  stoppedBy = waitEnd;

  let rundownTimedOut = false;
  if (stoppedBy !== 'target-exit') {
    try {
      const stop = new PayloadWriter().u64(sessionId).toBuffer();
      await sendCommand(endpoint.socketPath, Commands.StopTracing, stop, {
        connectTimeoutMs: opts.connectTimeoutMs,
        replyTimeoutMs: 30_000,
      });
    } catch (err) {
      // The session may have ended by itself meanwhile (target exiting); anything else is a failure.
      if (!eof) {
        await finish();
        throw err;
      }
    }
    const rundownMs = opts.rundownTimeoutMs ?? 120_000;
    let rundownTimer: NodeJS.Timeout | undefined;
    rundownTimedOut = await Promise.race([
      ended.then(() => false),
      new Promise<boolean>((resolve) => {
        rundownTimer = setTimeout(() => resolve(true), rundownMs);
      }),
    ]);
    clearTimeout(rundownTimer);
  }
  await finish();
  if (fileError) throw fileError;

  const info = await inspectTraceFile(file);
  if (info.bytes === 0) {
    throw new DiagnosticsIpcError({
      command: cmd.name,
      code: 'ERR_SOCKWATCH_EMPTY_TRACE',
      message: `${cmd.name}: the runtime sent no trace data (${file} is empty)`,
    });
  }
  if (!info.magicOk) {
    throw new DiagnosticsIpcError({ command: cmd.name, code: 'ERR_SOCKWATCH_BAD_TRACE', message: `${cmd.name}: ${file} does not start with "Nettrace"` });
  }
  return {
    path: file,
    bytes: info.bytes,
    sessionId,
    stoppedBy,
    endedCleanly: eof && !rundownTimedOut && !streamError && info.lastByte === END_OF_STREAM_TAG,
  };
}
