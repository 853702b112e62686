// One conversation with a .NET runtime's diagnostics server: connect, send one command, read the
// reply. The runtime serves exactly one command per connection, so every command opens a new one;
// commands that stream (EventPipe) keep reading the same connection after the reply.

import type * as net from 'node:net';
import { DiagnosticsIpcError } from './hresult';
import { abortError, connectUnixSocket } from './unix-socket';
import {
  decodeHeader,
  encodeMessage,
  IPC_HEADER_SIZE,
  PayloadReader,
  ServerResponseId,
  CommandSet,
  type IpcCommand,
  type IpcHeader,
} from './wire';

export interface IpcCallOptions {
  /** Connect timeout in ms (default 30 000). */
  connectTimeoutMs?: number;
  /** How long to wait for the reply, in ms; 0 waits forever (default 30 000). */
  replyTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface IpcReply {
  header: IpcHeader;
  payload: Buffer;
}

function connectError(socketPath: string, command: string, err: NodeJS.ErrnoException): DiagnosticsIpcError {
  const code = err.code ?? 'ERR_SOCKWATCH_DIAGNOSTICS_CLOSED'; // a socket error without errno: rare
  const why: Record<string, string> = {
    ENOENT: 'the socket does not exist (the process exited, or diagnostics are disabled)',
    ECONNREFUSED: 'nobody listens on it (a stale socket left by a process that exited)',
    EACCES: 'permission denied (the socket is mode 0600: run as the same user as the process, or as root)',
    ETIMEDOUT: 'the runtime did not accept the connection in time',
  };
  const out = new DiagnosticsIpcError({
    command,
    code,
    message: `${command}: cannot connect to ${socketPath}: ${why[code] ?? err.message}`,
  });
  (out as Error & { cause?: unknown }).cause = err;
  return out;
}

/** A connected diagnostics socket with a small read buffer. */
export class IpcConnection {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.notify();
  };
  private readonly onError = (err: Error) => {
    this.failure = err;
    this.notify();
  };

  private constructor(
    readonly socket: net.Socket,
    readonly socketPath: string,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  static async open(socketPath: string, command: string, opts: IpcCallOptions = {}): Promise<IpcConnection> {
    try {
      const socket = await connectUnixSocket(socketPath, { timeoutMs: opts.connectTimeoutMs, signal: opts.signal });
      return new IpcConnection(socket, socketPath);
    } catch (err) {
      if ((err as Error).name === 'AbortError' || err instanceof RangeError) throw err;
      throw connectError(socketPath, command, err as NodeJS.ErrnoException);
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  write(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Resolves with exactly n bytes; rejects on EOF, socket error, timeout (0 = none) or abort. */
  async readExactly(n: number, command: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Buffer> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    const signal = opts.signal;
    while (this.buffered < n) {
      if (signal?.aborted) throw abortError(signal);
      if (this.failure) {
        throw new DiagnosticsIpcError({
          command,
          code: (this.failure as NodeJS.ErrnoException).code ?? 'ERR_SOCKWATCH_DIAGNOSTICS_CLOSED',
          message: `${command}: ${this.failure.message}`,
        });
      }
      if (this.ended) {
        throw new DiagnosticsIpcError({
          command,
          code: 'ERR_SOCKWATCH_DIAGNOSTICS_CLOSED',
          message: `${command}: the runtime closed the connection after ${this.buffered} of ${n} expected bytes`,
        });
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new DiagnosticsIpcError({ command, code: 'ETIMEDOUT', message: `${command}: no reply within ${timeoutMs} ms` });
      }
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(remaining) ? setTimeout(done, remaining) : undefined;
        const onAbort = () => done();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.wake = done;
        function done() {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
      });
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** Reads one whole message (header + payload). */
  async readMessage(command: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<IpcReply> {
    const header = decodeHeader(await this.readExactly(IPC_HEADER_SIZE, command, opts), command);
    const payload = await this.readExactly(header.size - IPC_HEADER_SIZE, command, opts);
    return { header, payload };
  }

  /**
   * Stops buffering and hands the socket over (paused) with the bytes already read past the reply.
   * The caller owns the socket from then on.
   */
  detach(): { socket: net.Socket; leftover: Buffer } {
    this.socket.pause();
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('close', this.onEnd);
    this.socket.removeListener('error', this.onError);
    const leftover = Buffer.concat(this.chunks);
    this.chunks = [];
    this.buffered = 0;
    return { socket: this.socket, leftover };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Turns a reply into its payload, throwing DiagnosticsIpcError for an Error reply or an unexpected header. */
export function checkReply(cmd: IpcCommand, reply: IpcReply): Buffer {
  const { header, payload } = reply;
  if (header.commandSet !== CommandSet.Server) {
    throw new DiagnosticsIpcError({
      command: cmd.name,
      message: `${cmd.name}: reply has command set 0x${header.commandSet.toString(16)}, expected the server set 0xff`,
    });
  }
  if (header.commandId === ServerResponseId.OK) return payload;
  if (header.commandId === ServerResponseId.Error) {
    const reader = new PayloadReader(payload, cmd.name);
    const hresult = reader.u32('HRESULT') >>> 0;
    let detail: string | undefined;
    // GenerateCoreDump3 (and possibly later commands) append a message string after the HRESULT.
    if (reader.remaining >= 4) {
      try {
        detail = reader.string('error message').trim() || undefined;
      } catch {
        detail = undefined;
      }
    }
    throw new DiagnosticsIpcError({ command: cmd.name, hresult, detail });
  }
  throw new DiagnosticsIpcError({
    command: cmd.name,
    message: `${cmd.name}: reply has unknown response id 0x${header.commandId.toString(16)}`,
  });
}

/** Sends one command on a fresh connection and returns the OK payload; the connection is closed afterwards. */
export async function sendCommand(
  socketPath: string,
  cmd: IpcCommand,
  payload: Buffer = Buffer.alloc(0),
  opts: IpcCallOptions = {},
): Promise<Buffer> {
  const message = encodeMessage(cmd, payload);
  const conn = await IpcConnection.open(socketPath, cmd.name, opts);
  try {
    await conn.write(message);
    const reply = await conn.readMessage(cmd.name, { timeoutMs: opts.replyTimeoutMs, signal: opts.signal });
    return checkReply(cmd, reply);
  } finally {
    conn.close();
  }
}
