// The IPC client against a FAKE diagnostics server: a small Unix-socket server in a temp dir that
// speaks the wire format. It is fake on purpose: the installed .NET 10 runtime supports every newest
// command, so the fallbacks (GenerateCoreDump3 → 2 → 1, ProcessInfo3 → 2) and error replies cannot
// be provoked from it. The real runtime is exercised in dotnet-runtime.test.ts and
// dotnet-discovery.test.ts. The fake decodes requests by hand (not with the client's own reader).

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDump } from '../lib/dotnet/dump';
import { getProcessInfo } from '../lib/dotnet/process-info';
import { collectTrace } from '../lib/dotnet/trace';
import { DiagnosticsIpcError } from '../lib/dotnet/hresult';
import { InsufficientDiskSpaceError } from '../lib/dotnet/dump-space';

const MAGIC = Buffer.from('DOTNET_IPC_V1\0', 'latin1');

interface Request {
  connection: number;
  set: number;
  id: number;
  payload: Buffer;
}

type Responder = (req: Request, socket: net.Socket) => void;

function message(set: number, id: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  MAGIC.copy(h);
  h.writeUInt16LE(20 + payload.length, 14);
  h[16] = set;
  h[17] = id;
  return Buffer.concat([h, payload]);
}
const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n | 0);
  return b;
};
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
};
const wstr = (s: string) => Buffer.concat([i32(s.length + 1), Buffer.from(s + '\0', 'utf16le')]);
const ok = (payload: Buffer = i32(0)) => message(0xff, 0x00, payload);
const error = (hr: number, extra: Buffer = Buffer.alloc(0)) => message(0xff, 0xff, Buffer.concat([i32(hr), extra]));
const UNKNOWN_COMMAND = 0x80131385;

/** Reads a u32-length UTF-16 string at `offset` of a request payload. */
function readWstr(buf: Buffer, offset: number): { value: string; next: number } {
  const chars = buf.readUInt32LE(offset);
  const value = buf
    .subarray(offset + 4, offset + 4 + chars * 2)
    .toString('utf16le')
    .replace(/\0$/, '');
  return { value, next: offset + 4 + chars * 2 };
}

let dir: string;
let server: net.Server;
let socketPath: string;
let requests: Request[];
let connections: number;
let respond: Responder;

async function startFakeServer(at: string): Promise<void> {
  requests = [];
  connections = 0;
  server = net.createServer((socket) => {
    const connection = ++connections;
    let buf = Buffer.alloc(0);
    let handled = false;
    socket.on('error', () => undefined);
    socket.on('data', (d) => {
      if (handled) return;
      buf = Buffer.concat([buf, d]);
      if (buf.length < 20) return;
      const size = buf.readUInt16LE(14);
      if (buf.length < size) return;
      handled = true;
      expect(buf.subarray(0, 14).equals(MAGIC)).toBe(true);
      const req = { connection, set: buf[16]!, id: buf[17]!, payload: buf.subarray(20, size) };
      requests.push(req);
      respond(req, socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(at, resolve));
}

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'sw-fakeipc-'));
  socketPath = path.join(dir, 'fake-socket');
  await startFakeServer(socketPath);
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await fsp.rm(dir, { recursive: true, force: true });
});

const target = () => ({ pid: process.pid, socketPath });

describe('GenerateCoreDump fallbacks (fake server)', () => {
  it('falls back from v3 to v2 on UNKNOWN_COMMAND and sends the absolute path both times', async () => {
    respond = (req, socket) => {
      if (req.id === 0x03) return socket.end(error(UNKNOWN_COMMAND));
      const { value } = readWstr(req.payload, 0);
      fs.writeFileSync(value, 'fake dump');
      socket.end(ok());
    };
    const relative = path.relative(process.cwd(), path.join(dir, 'out.dmp'));
    const result = await writeDump(target(), relative, { checkDiskSpace: false });

    expect(requests.map((r) => [r.set, r.id])).toEqual([
      [0x01, 0x03],
      [0x01, 0x02],
    ]);
    expect(new Set(requests.map((r) => r.connection)).size).toBe(2); // one connection per command
    for (const r of requests) {
      const { value, next } = readWstr(r.payload, 0);
      expect(value).toBe(path.join(dir, 'out.dmp'));
      expect(r.payload.readUInt32LE(next)).toBe(4); // Full by default
      expect(r.payload.readUInt32LE(next + 4)).toBe(0);
    }
    expect(result).toMatchObject({ path: path.join(dir, 'out.dmp'), bytes: 9, type: 'full', command: 'GenerateCoreDump2' });
  });

  it('falls back to v1, which carries a 0/1 diagnostics field instead of flags', async () => {
    respond = (req, socket) => {
      if (req.id !== 0x01) return socket.end(error(UNKNOWN_COMMAND));
      fs.writeFileSync(readWstr(req.payload, 0).value, 'x');
      socket.end(ok());
    };
    const result = await writeDump(target(), path.join(dir, 'v1.dmp'), {
      type: 'Triage',
      diagnosticsLogging: true,
      crashReport: true,
      checkDiskSpace: false,
    });
    expect(result.command).toBe('GenerateCoreDump');
    expect(requests.map((r) => r.id)).toEqual([0x03, 0x02, 0x01]);
    const v2 = requests[1]!.payload;
    const v1 = requests[2]!.payload;
    const at = readWstr(v1, 0).next;
    expect([v2.readUInt32LE(at), v2.readUInt32LE(at + 4)]).toEqual([3, 0x1 | 0x4]);
    expect([v1.readUInt32LE(at), v1.readUInt32LE(at + 4)]).toEqual([3, 1]);
  });

  it('reports the createdump message of a v3 error and does not fall back on other errors', async () => {
    respond = (_req, socket) => socket.end(error(0x80004005, wstr('ptrace(ATTACH, 4242) FAILED Operation not permitted (1)\n')));
    const err = (await writeDump(target(), path.join(dir, 'x.dmp'), { checkDiskSpace: false }).catch(
      (e: unknown) => e,
    )) as DiagnosticsIpcError;
    expect(err).toBeInstanceOf(DiagnosticsIpcError);
    expect(err.code).toBe('ERR_SOCKWATCH_DIAGNOSTICS');
    expect(err.hresultName).toBe('E_FAIL');
    expect(err.hresult).toBe(0x80004005);
    expect(err.detail).toBe('ptrace(ATTACH, 4242) FAILED Operation not permitted (1)');
    expect(err.message).toMatch(
      /^Dump\.GenerateCoreDump3 failed: .*E_FAIL.*0x80004005.*ptrace\(ATTACH, 4242\) FAILED Operation not permitted/,
    );
    expect(err.message).toMatch(/needs ptrace permission/);
    expect(requests).toHaveLength(1);
  });

  it('refuses before contacting the runtime when the disk is too small (injected statfs)', async () => {
    respond = () => expect.fail('no request expected');
    const statfs = async () => ({ availableBytes: 1024 * 1024 });
    const err = await writeDump(target(), path.join(dir, 'big.dmp'), { statfs }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InsufficientDiskSpaceError);
    expect((err as Error).message).toMatch(
      new RegExp(`^not enough disk space for a full dump of process ${process.pid} in ${dir}: needs about .* MiB .*, 1\\.0 MiB free$`),
    );
    expect(connections).toBe(0);
    expect(fs.existsSync(path.join(dir, 'big.dmp'))).toBe(false);
  });

  it('names a missing destination directory', async () => {
    respond = () => expect.fail('no request expected');
    await expect(writeDump(target(), path.join(dir, 'missing', 'x.dmp'), { checkDiskSpace: false })).rejects.toThrow(
      `dump directory ${path.join(dir, 'missing')} does not exist`,
    );
  });
});

describe('ProcessInfo fallbacks and transport errors (fake server)', () => {
  const infoV2 = Buffer.concat([
    u64(77n),
    Buffer.alloc(16, 0xab),
    wstr('/usr/bin/dotnet app.dll'),
    wstr('Linux'),
    wstr('arm64'),
    wstr('app'),
    wstr('6.0.36'),
  ]);

  it('falls back from ProcessInfo3 to ProcessInfo2', async () => {
    respond = (req, socket) => socket.end(req.id === 0x08 ? error(UNKNOWN_COMMAND) : ok(infoV2));
    const info = await getProcessInfo(target());
    expect(requests.map((r) => [r.set, r.id])).toEqual([
      [0x04, 0x08],
      [0x04, 0x04],
    ]);
    expect(info).toMatchObject({ pid: 77, arch: 'arm64', clrProductVersion: '6.0.36', entrypointAssembly: 'app', command: 'ProcessInfo2' });
  });

  it('connects through a socket path longer than sun_path (108 bytes)', async () => {
    respond = (_req, socket) => socket.end(ok(Buffer.concat([i32(0), infoV2])));
    let deep = dir;
    while (deep.length < 150) deep = path.join(deep, 'a-rather-long-directory-name');
    await fsp.mkdir(deep, { recursive: true });
    const longPath = path.join(deep, 'dotnet-diagnostic-77-1234-socket');
    await fsp.rename(socketPath, longPath); // the listening socket keeps working under its new name
    socketPath = longPath;
    expect(Buffer.byteLength(longPath)).toBeGreaterThan(108);
    const info = await getProcessInfo(target());
    expect(info.pid).toBe(77);
  });

  it('says the connection closed when a reply is cut short', async () => {
    respond = (_req, socket) => socket.end(ok(Buffer.alloc(40)).subarray(0, 30));
    const err = (await getProcessInfo(target()).catch((e: unknown) => e)) as DiagnosticsIpcError;
    expect(err).toBeInstanceOf(DiagnosticsIpcError);
    expect(err.code).toBe('ERR_SOCKWATCH_DIAGNOSTICS_CLOSED');
    expect(err.legacyCode).toBe('CONNECTION_CLOSED');
    expect(err.message).toMatch(/Process\.ProcessInfo3: the runtime closed the connection after 10 of 40 expected bytes/);
  });

  it('explains a stale socket (nobody listening)', async () => {
    respond = () => undefined;
    const stale = path.join(dir, 'stale-socket');
    await fsp.rename(socketPath, stale);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await startFakeServer(socketPath); // keep afterEach happy
    const err = (await getProcessInfo({ pid: process.pid, socketPath: stale }).catch((e: unknown) => e)) as DiagnosticsIpcError;
    expect(err.code).toBe('ECONNREFUSED');
    expect(err.message).toContain(`cannot connect to ${stale}: nobody listens on it`);
  });
});

describe('EventPipe session protocol (fake server)', () => {
  it('streams on the first connection, stops on a second one, and keeps the rundown sent after the stop', async () => {
    const sessionId = 0x1122334455667788n;
    let stream: net.Socket | undefined;
    const header = Buffer.concat([Buffer.from('Nettrace', 'latin1'), i32(20), Buffer.from('!FastSerialization.1', 'latin1')]);
    respond = (req, socket) => {
      if (req.set === 0x02 && req.id === 0x03) {
        stream = socket;
        socket.write(Buffer.concat([ok(u64(sessionId)), header]));
        return;
      }
      if (req.set === 0x02 && req.id === 0x01) {
        expect(req.payload.readBigUInt64LE(0)).toBe(sessionId);
        socket.end(ok(u64(sessionId)));
        // rundown after the stop, then the end-of-stream tag
        setTimeout(() => stream!.end(Buffer.concat([Buffer.from('RUNDOWN'), Buffer.from([0x01])])), 50);
        return;
      }
      expect.fail(`unexpected command ${req.set}/${req.id}`);
    };
    const file = path.join(dir, 't.nettrace');
    const result = await collectTrace(target(), file, { durationMs: 100 });

    expect(requests.map((r) => [r.connection, r.set, r.id])).toEqual([
      [1, 0x02, 0x03],
      [2, 0x02, 0x01],
    ]);
    const start = requests[0]!.payload;
    expect([start.readUInt32LE(0), start.readUInt32LE(4), start[8], start.readUInt32LE(9)]).toEqual([256, 1, 1, 6]);
    expect(result).toMatchObject({ sessionId, stoppedBy: 'duration', endedCleanly: true, bytes: header.length + 8 });
    const written = await fsp.readFile(file);
    expect(written.subarray(0, header.length).equals(header)).toBe(true);
    expect(written.subarray(header.length).toString('latin1')).toBe('RUNDOWN\x01');
  });

  it('flags a trace whose rundown never ends as not ended cleanly', async () => {
    respond = (req, socket) => {
      if (req.id === 0x03) socket.write(Buffer.concat([ok(u64(1n)), Buffer.from('Nettrace')]));
      else socket.end(ok(u64(1n)));
    };
    const result = await collectTrace(target(), path.join(dir, 't.nettrace'), { durationMs: 50, rundownTimeoutMs: 200 });
    expect(result.endedCleanly).toBe(false);
    expect(result.stoppedBy).toBe('duration');
  });

  it('fails on an unwritable trace path before starting a session', async () => {
    respond = () => expect.fail('no request expected');
    await expect(collectTrace(target(), path.join(dir, 'missing', 't.nettrace'), { durationMs: 50 })).rejects.toMatchObject({
      code: 'ENOENT',
    });
    expect(connections).toBe(0);
  });

  it('rejects a stream that is not nettrace', async () => {
    respond = (req, socket) => {
      if (req.id === 0x03) socket.write(Buffer.concat([ok(u64(1n)), Buffer.from('garbage!')]));
      else socket.end(ok(u64(1n)));
    };
    await expect(collectTrace(target(), path.join(dir, 't.nettrace'), { durationMs: 50, rundownTimeoutMs: 100 })).rejects.toThrow(
      /does not start with "Nettrace"/,
    );
  });
});
