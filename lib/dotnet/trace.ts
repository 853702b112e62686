// EventPipe: collect a .nettrace for a while, then stop it properly.
//
// CollectTracing2 (works on every runtime since .NET Core 3.0) is sent on one connection; the runtime
// answers with a session id and then streams the nettrace bytes on that same connection. We drain it
// into the file the whole time (if nobody reads, the runtime blocks and Stop never completes). When
// the duration is over, StopTracing goes on a second connection, and we keep reading the first one
// until EOF: the rundown (method and module names, needed to resolve stacks) is sent after the stop.
// A trace whose connection is merely dropped is truncated and cannot be opened.
// Rule: collectTrace reads as its steps (startSession → TraceStream → waitForStop →
// stopAndAwaitRundown → checkTraceFile); each race of promises lives in one named function.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type * as net from 'node:net';
import * as path from 'node:path';
import { DiagnosticsIpcError } from './hresult';
import { checkReply, IpcConnection, sendCommand } from './ipc';
import { resolveTarget, type DotnetTarget } from './discovery';
import { openNewOutput } from './output-file';
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

/** The trace file is always new: a link or a file at its path is refused (output-file.ts). */
function openForWrite(file: string): Promise<number> {
  return Promise.resolve().then(() => openNewOutput(file, 'trace'));
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
  if (opts.signal?.aborted) throw abortError(opts.signal);
  const endpoint = await resolveTarget(target);
  const file = path.resolve(tracePath);

  // Open the file first: a bad path must fail before a session is started in the target.
  const out = fs.createWriteStream(file, { fd: await openForWrite(file) });
  const session = await startSession(endpoint.socketPath, providers, opts, out);
  const stream = new TraceStream(session.connection, out);
  let stoppedBy: TraceResult['stoppedBy'];
  let rundownTimedOut = false;
  try {
    stoppedBy = await waitForStop(stream, opts.durationMs, opts.signal);
    if (stoppedBy !== 'target-exit') rundownTimedOut = await stopAndAwaitRundown(endpoint.socketPath, session.id, stream, opts);
  } finally {
    await stream.finish();
  }
  if (stream.fileError) throw stream.fileError;

  const info = await checkTraceFile(file);
  return {
    path: file,
    bytes: info.bytes,
    sessionId: session.id,
    stoppedBy,
    endedCleanly: stream.eof && !rundownTimedOut && !stream.streamError && info.lastByte === END_OF_STREAM_TAG,
  };
}

/** Sends CollectTracing2 and reads the session id; on failure the file is closed (left empty). */
async function startSession(
  socketPath: string,
  providers: readonly EventPipeProvider[],
  opts: CollectTraceOptions,
  out: fs.WriteStream,
): Promise<{ id: bigint; connection: IpcConnection }> {
  const cmd = Commands.CollectTracing2;
  const request = encodeMessage(
    cmd,
    encodeCollectTracing2({ bufferSizeMB: opts.bufferSizeMB ?? 256, requestRundown: opts.requestRundown ?? true, providers }),
  );
  let conn: IpcConnection | undefined;
  try {
    conn = await IpcConnection.open(socketPath, cmd.name, { connectTimeoutMs: opts.connectTimeoutMs, signal: opts.signal });
    await conn.write(request);
    const payload = checkReply(cmd, await conn.readMessage(cmd.name, { timeoutMs: 30_000, signal: opts.signal }));
    return { id: new PayloadReader(payload, cmd.name).u64('session id'), connection: conn };
  } catch (err) {
    conn?.close();
    await new Promise<void>((resolve) => out.end(resolve));
    throw err;
  }
}

/**
 * The session's connection, drained into the file from now on (if nobody reads, the runtime blocks
 * and Stop never completes). Records how the stream and the file ended.
 */
class TraceStream {
  /** The stream ended: EOF, close or a socket error. */
  readonly ended: Promise<void>;
  /** Settles only if writing the file fails. */
  readonly fileFailed: Promise<Error>;
  eof = false;
  streamError: Error | undefined;
  fileError: Error | undefined;
  private readonly socket: net.Socket;

  constructor(
    connection: IpcConnection,
    private readonly out: fs.WriteStream,
  ) {
    const { socket, leftover } = connection.detach();
    this.socket = socket;
    this.ended = new Promise<void>((resolve) => {
      socket.once('end', () => {
        this.eof = true;
        resolve();
      });
      socket.once('close', () => resolve());
      socket.once('error', (err) => {
        this.streamError = err;
        resolve();
      });
    });
    this.fileFailed = new Promise<Error>((resolve) =>
      out.once('error', (err) => {
        this.fileError = err;
        resolve(err);
      }),
    );
    if (leftover.length > 0) out.write(leftover);
    socket.pipe(out, { end: false });
    socket.resume();
  }

  /** Stops reading and closes the file. */
  async finish(): Promise<void> {
    this.socket.unpipe(this.out);
    this.socket.destroy();
    await new Promise<void>((resolve) => this.out.end(resolve));
  }
}

/** The first of: the duration is over, the signal fires, the target ends the stream, the file fails (rejects). */
async function waitForStop(stream: TraceStream, durationMs: number, signal: AbortSignal | undefined): Promise<TraceResult['stoppedBy']> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const first = await Promise.race([
      new Promise<'duration'>((resolve) => {
        timer = setTimeout(() => resolve('duration'), durationMs);
      }),
      new Promise<'signal'>((resolve) => {
        onAbort = () => resolve('signal');
        signal?.addEventListener('abort', onAbort, { once: true });
      }),
      stream.ended.then(() => 'target-exit' as const),
      stream.fileFailed,
    ]);
    if (first instanceof Error) throw first;
    return first;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * StopTracing on a second connection, then the rest of the stream (the rundown comes after the
 * stop). Resolves true when the rundown did not end within rundownTimeoutMs.
 */
async function stopAndAwaitRundown(
  socketPath: string,
  sessionId: bigint,
  stream: TraceStream,
  opts: CollectTraceOptions,
): Promise<boolean> {
  try {
    const stop = new PayloadWriter().u64(sessionId).toBuffer();
    await sendCommand(socketPath, Commands.StopTracing, stop, { connectTimeoutMs: opts.connectTimeoutMs, replyTimeoutMs: 30_000 });
  } catch (err) {
    // The session may have ended by itself meanwhile (target exiting); anything else is a failure.
    if (!stream.eof) throw err;
  }
  let rundownTimer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    stream.ended.then(() => false),
    new Promise<boolean>((resolve) => {
      rundownTimer = setTimeout(() => resolve(true), opts.rundownTimeoutMs ?? 120_000);
    }),
  ]);
  clearTimeout(rundownTimer);
  return timedOut;
}

/** The finished file: not empty and starting with "Nettrace" (else DiagnosticsIpcError). */
async function checkTraceFile(file: string): Promise<{ bytes: number; lastByte: number | undefined }> {
  const name = Commands.CollectTracing2.name;
  const info = await inspectTraceFile(file);
  if (info.bytes === 0) {
    throw new DiagnosticsIpcError({
      command: name,
      code: 'ERR_SOCKWATCH_EMPTY_TRACE',
      message: `${name}: the runtime sent no trace data (${file} is empty)`,
    });
  }
  if (!info.magicOk) {
    throw new DiagnosticsIpcError({
      command: name,
      code: 'ERR_SOCKWATCH_BAD_TRACE',
      message: `${name}: ${file} does not start with "Nettrace"`,
    });
  }
  return info;
}
