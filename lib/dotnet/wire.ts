// Byte layout of the .NET diagnostics IPC protocol: the 20-byte header, payload primitives, replies.
// All integers are little-endian; strings are u32 UTF-16 code-unit count (including the NUL) + UTF-16LE.

import { DiagnosticsIpcError } from './hresult';

/** "DOTNET_IPC_V1\0" */
export const IPC_MAGIC = Buffer.from('DOTNET_IPC_V1\0', 'latin1');
export const IPC_HEADER_SIZE = 20;
/** The header's u16 size covers header + payload. */
export const IPC_MAX_PAYLOAD = 0xffff - IPC_HEADER_SIZE;

export const CommandSet = { Dump: 0x01, EventPipe: 0x02, Profiler: 0x03, Process: 0x04, Server: 0xff } as const;
export const ServerResponseId = { OK: 0x00, Error: 0xff } as const;

export interface IpcCommand {
  readonly set: number;
  readonly id: number;
  /** For error messages: "Dump.GenerateCoreDump3". */
  readonly name: string;
}

function command(set: number, id: number, name: string): IpcCommand {
  return Object.freeze({ set, id, name });
}

export const Commands = {
  GenerateCoreDump: command(CommandSet.Dump, 0x01, 'Dump.GenerateCoreDump'),
  GenerateCoreDump2: command(CommandSet.Dump, 0x02, 'Dump.GenerateCoreDump2'),
  GenerateCoreDump3: command(CommandSet.Dump, 0x03, 'Dump.GenerateCoreDump3'),
  StopTracing: command(CommandSet.EventPipe, 0x01, 'EventPipe.StopTracing'),
  CollectTracing2: command(CommandSet.EventPipe, 0x03, 'EventPipe.CollectTracing2'),
  ProcessInfo: command(CommandSet.Process, 0x00, 'Process.ProcessInfo'),
  ProcessInfo2: command(CommandSet.Process, 0x04, 'Process.ProcessInfo2'),
  ProcessInfo3: command(CommandSet.Process, 0x08, 'Process.ProcessInfo3'),
} as const;

export interface IpcHeader {
  /** Header + payload bytes. */
  readonly size: number;
  readonly commandSet: number;
  readonly commandId: number;
}

/** A complete request message (header + payload). */
export function encodeMessage(cmd: IpcCommand, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > IPC_MAX_PAYLOAD) {
    throw new RangeError(`${cmd.name} payload is ${payload.length} bytes; the IPC header allows at most ${IPC_MAX_PAYLOAD}`);
  }
  const header = Buffer.alloc(IPC_HEADER_SIZE);
  IPC_MAGIC.copy(header, 0);
  header.writeUInt16LE(IPC_HEADER_SIZE + payload.length, 14);
  header.writeUInt8(cmd.set, 16);
  header.writeUInt8(cmd.id, 17);
  header.writeUInt16LE(0, 18);
  return Buffer.concat([header, payload]);
}

/** Parses and checks a 20-byte header; `command` names the request for error messages. */
export function decodeHeader(buf: Buffer, command: string): IpcHeader {
  if (buf.length < IPC_HEADER_SIZE) {
    throw new DiagnosticsIpcError({ command, message: `${command}: reply header is ${buf.length} bytes, expected ${IPC_HEADER_SIZE}` });
  }
  if (!buf.subarray(0, IPC_MAGIC.length).equals(IPC_MAGIC)) {
    throw new DiagnosticsIpcError({
      command,
      code: 'ERR_SOCKWATCH_DIAGNOSTICS_PROTOCOL',
      legacyCode: 'UNKNOWN_MAGIC',
      message: `${command}: reply does not start with DOTNET_IPC_V1`,
    });
  }
  const size = buf.readUInt16LE(14);
  if (size < IPC_HEADER_SIZE) {
    throw new DiagnosticsIpcError({ command, message: `${command}: reply header announces ${size} bytes, less than the header itself` });
  }
  return { size, commandSet: buf.readUInt8(16), commandId: buf.readUInt8(17) };
}

/** Builds a request payload. */
export class PayloadWriter {
  private readonly parts: Buffer[] = [];

  u8(value: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(value);
    this.parts.push(b);
    return this;
  }

  /** A 1-byte boolean (EventPipe payloads). */
  bool8(value: boolean): this {
    return this.u8(value ? 1 : 0);
  }

  u32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value >>> 0);
    this.parts.push(b);
    return this;
  }

  u64(value: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, value));
    this.parts.push(b);
    return this;
  }

  /** u32 count of UTF-16 code units including the NUL, then UTF-16LE; null → a count of 0. */
  string(value: string | null): this {
    if (value === null) return this.u32(0);
    const text = value + '\0';
    this.u32(text.length);
    this.parts.push(Buffer.from(text, 'utf16le'));
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads a reply payload; every read is bounds-checked and names the command on failure. */
export class PayloadReader {
  private offset = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly command: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private take(n: number, what: string): Buffer {
    if (this.offset + n > this.buf.length) {
      throw new DiagnosticsIpcError({
        command: this.command,
        message: `${this.command}: reply truncated reading ${what} (need ${n} bytes at offset ${this.offset}, have ${this.buf.length})`,
      });
    }
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  u32(what = 'u32'): number {
    return this.take(4, what).readUInt32LE(0);
  }

  i32(what = 'i32'): number {
    return this.take(4, what).readInt32LE(0);
  }

  u64(what = 'u64'): bigint {
    return this.take(8, what).readBigUInt64LE(0);
  }

  bytes(n: number, what = 'bytes'): Buffer {
    return this.take(n, what);
  }

  /** A .NET Guid (16 bytes: u32, u16, u16 little-endian, then 8 bytes as is) in its usual text form. */
  guid(what = 'guid'): string {
    const b = this.take(16, what);
    const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
    const tail = b.subarray(8).toString('hex');
    return `${hex(b.readUInt32LE(0), 8)}-${hex(b.readUInt16LE(4), 4)}-${hex(b.readUInt16LE(6), 4)}-${tail.slice(0, 4)}-${tail.slice(4)}`;
  }

  /** u32 char count (incl. NUL) + UTF-16LE; the trailing NUL is stripped. A count of 0 is the empty string. */
  string(what = 'string'): string {
    const chars = this.u32(`${what} length`);
    if (chars === 0) return '';
    const text = this.take(chars * 2, what).toString('utf16le');
    return text.endsWith('\0') ? text.slice(0, -1) : text;
  }
}
