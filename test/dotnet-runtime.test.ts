// Dumps and EventPipe traces from the REAL .NET fixture app, over its diagnostics socket.
// createdump needs ptrace over the target: this runs as root on a kernel that allows it. If a
// sandbox forbids ptrace, the dump test fails with createdump's own message (GenerateCoreDump3).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDump } from '../lib/dotnet/dump';
import { DUMP_SPACE_MARGIN_BYTES } from '../lib/dotnet/dump-space';
import { getProcessInfo } from '../lib/dotnet/process-info';
import { collectTrace } from '../lib/dotnet/trace';
import { dotnetSkipReason, hasDotnet, startDotnetApp, type DotnetApp } from './helpers/dotnet';

const skipReason = dotnetSkipReason();
if (skipReason) console.warn(`dotnet-runtime.test.ts ${skipReason}`);

function readHead(file: string, n: number): Buffer {
  const buf = Buffer.alloc(n);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, buf, 0, n, 0);
  } finally {
    fs.closeSync(fd);
  }
  return buf;
}

function expectElfCore(file: string): void {
  const head = readHead(file, 18);
  expect([...head.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]); // \x7fELF
  expect(head.readUInt16LE(16)).toBe(4); // e_type ET_CORE
}

const utf16 = (s: string) => Buffer.from(s, 'utf16le');

/** Resolves once the trace file has data, i.e. the session is running (no fixed sleeps). */
async function traceStarted(file: string): Promise<void> {
  for (;;) {
    try {
      if (fs.statSync(file).size > 0) return;
    } catch {
      // not created yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!hasDotnet())('dumps and traces of a real .NET app', () => {
  let server: http.Server;
  let port: number;
  let app: DotnetApp;
  let out: string;
  /** Size of the Full dump of `app`, for the Normal dump to be compared with. */
  let fullDumpBytes: number | undefined;
  const extraApps: DotnetApp[] = [];

  beforeAll(async () => {
    out = await fsp.mkdtemp(path.join(os.tmpdir(), 'sw-dotnet-rt-'));
    // Connection: close makes every request of the app a new connection (ConnectStart events).
    server = http.createServer((_req, res) => {
      res.setHeader('Connection', 'close');
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as import('node:net').AddressInfo).port;
    app = await startDotnetApp('127.0.0.1', port, 2, { http: true });
  });

  afterAll(async () => {
    await Promise.all([app, ...extraApps].filter(Boolean).map((a) => a.stop()));
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (out) await fsp.rm(out, { recursive: true, force: true });
  });

  it('writes a Full dump (the default) that is an ELF core file, within the size estimate', async () => {
    const file = path.join(out, 'full.dmp');
    const result = await writeDump(app.pid, file);
    try {
      expect(result).toMatchObject({ path: file, type: 'full', command: 'GenerateCoreDump3' });
      expectElfCore(file);
      expect(result.bytes).toBe(fs.statSync(file).size);
      expect(result.bytes).toBeGreaterThan(8 * 1024 * 1024);
      fullDumpBytes = result.bytes;
      // the disk-space check asks for at least as much as the dump really took
      expect(result.estimatedBytes! + DUMP_SPACE_MARGIN_BYTES).toBeGreaterThanOrEqual(result.bytes);
      // the process survives being dumped
      expect((await getProcessInfo(app.pid)).pid).toBe(app.pid);
    } finally {
      await fsp.rm(file, { force: true });
    }
  });

  it('writes a much smaller Normal dump', async () => {
    const file = path.join(out, 'mini.dmp');
    const result = await writeDump(app.pid, file, { type: 'Normal' });
    expect(result.type).toBe('normal');
    expectElfCore(file);
    expect(result.bytes).toBeGreaterThan(1024 * 1024);
    expect(result.bytes).toBeLessThan(result.estimatedBytes! + DUMP_SPACE_MARGIN_BYTES);
    // "much smaller": at most half of a Full dump of the same process (measured by the test above,
    // or here when that one did not get that far)
    let full = fullDumpBytes;
    if (full === undefined) {
      const fullFile = path.join(out, 'compare-full.dmp');
      full = (await writeDump(app.pid, fullFile, { type: 'Full' })).bytes;
      await fsp.rm(fullFile, { force: true });
    }
    expect(result.bytes).toBeLessThan(full / 2);
  });

  it('collects a nettrace that ends cleanly and holds System.Net events', async () => {
    const file = path.join(out, 'trace.nettrace');
    const result = await collectTrace(app.pid, file, { durationMs: 3000 });
    expect(result).toMatchObject({ path: file, stoppedBy: 'duration', endedCleanly: true });
    const bytes = fs.readFileSync(file);
    expect(result.bytes).toBe(bytes.length);
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('Nettrace');
    expect(bytes.subarray(12, 32).toString('latin1')).toBe('!FastSerialization.1');
    expect(bytes[bytes.length - 1]).toBe(0x01); // end-of-stream tag after the rundown
    // event metadata carries provider and event names in UTF-16
    expect(bytes.includes(utf16('System.Net.Sockets'))).toBe(true);
    expect(bytes.includes(utf16('ConnectStart'))).toBe(true);
    expect(bytes.includes(utf16('System.Net.Http'))).toBe(true);
    expect(bytes.includes(utf16('RequestStart'))).toBe(true);
    // method names of the app itself (JIT and rundown events), needed to resolve stacks
    expect(bytes.includes(utf16('GetLoop'))).toBe(true);
  });

  it('ends a trace early on abort, still stopping it cleanly', async () => {
    const ac = new AbortController();
    const file = path.join(out, 'aborted.nettrace');
    const pending = collectTrace(app.pid, file, { durationMs: 120_000, signal: ac.signal });
    await traceStarted(file);
    ac.abort();
    const result = await pending;
    expect(result.stoppedBy).toBe('signal');
    expect(result.endedCleanly).toBe(true);
    expect(readHead(result.path, 8).toString('latin1')).toBe('Nettrace');
  });

  it('returns what it has when the target exits during a trace', async () => {
    const doomed = await startDotnetApp('127.0.0.1', port, 0);
    extraApps.push(doomed);
    const file = path.join(out, 'exit.nettrace');
    const pending = collectTrace(doomed.pid, file, { durationMs: 120_000 });
    await traceStarted(file);
    await doomed.stop();
    const result = await pending;
    expect(result.stoppedBy).toBe('target-exit');
    expect(readHead(result.path, 8).toString('latin1')).toBe('Nettrace');
  });
});
