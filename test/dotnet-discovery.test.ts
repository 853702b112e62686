// Discovery and ProcessInfo against the REAL .NET fixture app (test/fixtures/dotnet-app), including
// one run inside its own pid + mount namespace (unshare), which is how a container looks from the host.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { findDiagnosticSocket, listDotnetProcesses, readProcessEnv } from '../lib/dotnet/discovery';
import { getProcessInfo } from '../lib/dotnet/process-info';
import { writeDump } from '../lib/dotnet/dump';
import { collectTrace } from '../lib/dotnet/trace';
import { dotnetSkipReason, hasDotnet, startDotnetApp, type DotnetApp } from './helpers/dotnet';

const skipReason = dotnetSkipReason();
if (skipReason) console.warn(`dotnet-discovery.test.ts ${skipReason}`);

function canUnshare(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('unshare', ['--mount', '--pid', '--fork', '--mount-proc', 'true'], { timeout: 10_000 }).status === 0;
}
const unshareOk = hasDotnet() && canUnshare();
if (hasDotnet() && !unshareOk)
  console.warn('dotnet-discovery.test.ts: namespace tests skipped: unshare --mount --pid needs root and an unconfined kernel');

/** A TCP server on 127.0.0.1 that accepts and holds connections. */
async function holdingServer(): Promise<{ port: number; close(): Promise<void> }> {
  const held = new Set<net.Socket>();
  const server = net.createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of held) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function startTime(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

/** Leaves a socket file at `file` with nobody listening (like a crashed runtime), with the given mtime. */
async function staleSocket(file: string, mtime: Date): Promise<void> {
  const server = net.createServer();
  const temp = `${file}.binding`;
  await new Promise<void>((resolve) => server.listen(temp, resolve));
  await fsp.rename(temp, file);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await fsp.utimes(file, mtime, mtime);
}

/** A non-.NET process (sleep) with the given environment. */
function startSleeper(env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn('sleep', ['300'], { env: { ...process.env, ...env }, stdio: 'ignore' });
}

describe.skipIf(!hasDotnet())('discovery and ProcessInfo of a real .NET app', () => {
  let server: Awaited<ReturnType<typeof holdingServer>>;
  let app: DotnetApp;
  let appInTmp: DotnetApp;
  let tmp: string;
  const sleepers: ChildProcess[] = [];
  const apps: DotnetApp[] = [];

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'sw-dotnet-disc-'));
    server = await holdingServer();
    [app, appInTmp] = await Promise.all([
      startDotnetApp('127.0.0.1', server.port, 2),
      startDotnetApp('127.0.0.1', server.port, 1, { env: { TMPDIR: tmp, SOCKWATCH_TEST_MARK: 'mark-42' } }),
    ]);
    apps.push(app, appInTmp);
  });

  afterAll(async () => {
    for (const s of sleepers) s.kill('SIGKILL');
    await Promise.all(apps.map((a) => a.stop()));
    await server?.close();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('lists the app with its pid, socket, comm and command line', async () => {
    const list = await listDotnetProcesses();
    const entry = list.find((p) => p.pid === app.pid);
    expect(entry).toBeDefined();
    const expectedSocket = path.join(os.tmpdir(), `dotnet-diagnostic-${app.pid}-${startTime(app.pid)}-socket`);
    expect(entry).toMatchObject({
      pid: app.pid,
      nsPid: app.pid,
      socketPath: expectedSocket,
      sameMountNamespace: true,
      rootPrefix: '',
      comm: 'dotnet-app',
      socketKey: startTime(app.pid),
    });
    expect(entry!.cmdline.slice(1)).toEqual(['127.0.0.1', String(server.port), '2']);
    expect(fs.statSync(entry!.socketPath).isSocket()).toBe(true);
    expect(list.some((p) => p.pid === appInTmp.pid)).toBe(true);
  });

  it('looks in the TMPDIR from the target environment, and reads that environment', async () => {
    const found = await findDiagnosticSocket(appInTmp.pid);
    expect(path.dirname(found.socketPath)).toBe(tmp);
    expect(found.tmpDir).toBe(tmp);
    const env = readProcessEnv(appInTmp.pid);
    expect(env.get('TMPDIR')).toBe(tmp);
    expect(env.get('SOCKWATCH_TEST_MARK')).toBe('mark-42');
  });

  it('reads ProcessInfo from the runtime', async () => {
    const info = await getProcessInfo(app.pid);
    expect(info.pid).toBe(app.pid);
    expect(info.pid).toBe(app.reportedPid);
    expect(info.command).toBe('ProcessInfo3');
    expect(info.clrProductVersion).toMatch(/^10\.\d+\.\d+/);
    expect(info.entrypointAssembly).toBe('dotnet-app');
    expect(info.os).toBe('Linux');
    expect(info.arch).toBe(process.arch === 'arm64' ? 'arm64' : 'x64');
    expect(info.commandLine).toContain(`dotnet-app.dll 127.0.0.1 ${server.port} 2`);
    expect(info.runtimeCookie).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    // the same runtime answers again on a new connection with the same identity
    expect((await getProcessInfo(app.pid)).runtimeCookie).toBe(info.runtimeCookie);
  });

  it('reaches the real socket through a path longer than sun_path', async () => {
    const real = (await findDiagnosticSocket(app.pid)).socketPath;
    // A directory deep enough, holding a link to the real socket (a path through /proc/PID/root is
    // walked link by link instead: test/dotnet-hostile-container.test.ts)
    const deep = path.join(tmp, 'a-directory-name-long-enough'.repeat(4));
    await fsp.mkdir(deep, { recursive: true });
    const longPath = path.join(deep, 'diagnostics');
    await fsp.symlink(real, longPath);
    expect(Buffer.byteLength(longPath)).toBeGreaterThan(108);
    const info = await getProcessInfo({ pid: app.pid, socketPath: longPath });
    expect(info.pid).toBe(app.pid);
  });

  it('prefers the socket keyed by the start time over newer stale ones', async () => {
    const future = new Date(Date.now() + 60_000);
    await staleSocket(path.join(tmp, `dotnet-diagnostic-${appInTmp.pid}-1-socket`), future);
    const found = await findDiagnosticSocket(appInTmp.pid);
    expect(found.socketKey).toBe(startTime(appInTmp.pid));
    expect((await getProcessInfo(found)).pid).toBe(appInTmp.pid);
  });

  it('takes the newest socket by mtime when no key matches the start time', async () => {
    const dir = await fsp.mkdtemp(path.join(tmp, 'm-'));
    const sleeper = startSleeper({ TMPDIR: dir });
    sleepers.push(sleeper);
    const pid = sleeper.pid!;
    await staleSocket(path.join(dir, `dotnet-diagnostic-${pid}-111-socket`), new Date(Date.now() - 60_000));
    await staleSocket(path.join(dir, `dotnet-diagnostic-${pid}-222-socket`), new Date(Date.now() - 1_000));
    await staleSocket(path.join(dir, `dotnet-diagnostic-${pid}-333-socket`), new Date(Date.now() - 120_000));
    await fsp.writeFile(path.join(dir, `dotnet-diagnostic-${pid}-444-socket`), 'a regular file is not a socket');
    const found = await findDiagnosticSocket(pid);
    expect(found.socketKey).toBe('222');
  });

  it('explains clearly when a process has no diagnostics socket', async () => {
    const sleeper = startSleeper();
    sleepers.push(sleeper);
    const pid = sleeper.pid!;
    const err = (await findDiagnosticSocket(pid).catch((e: unknown) => e)) as Error & { code?: string; legacyCode?: string };
    expect(err.code).toBe('ERR_SOCKWATCH_NO_DOTNET');
    expect(err.legacyCode).toBe('ENODOTNET');
    expect(err.message).toContain(`no .NET diagnostics socket for process ${pid}`);
    expect(err.message).toContain(`dotnet-diagnostic-${pid}-*-socket in /tmp`);
    expect(err.message).toContain('no libcoreclr.so mapped');
    expect(err.message).toContain('DOTNET_EnableDiagnostics=0');
    expect(err.message).toContain('different TMPDIR');
    await expect(getProcessInfo(pid)).rejects.toThrow(`no .NET diagnostics socket for process ${pid}`);
  });

  it('names DOTNET_EnableDiagnostics=0 when the app disabled diagnostics', async () => {
    const disabled = await startDotnetApp('127.0.0.1', server.port, 0, { env: { DOTNET_EnableDiagnostics: '0' } });
    apps.push(disabled);
    const err = (await findDiagnosticSocket(disabled.pid).catch((e: unknown) => e)) as Error;
    expect(err.message).toContain('diagnostics are disabled in its environment (DOTNET_EnableDiagnostics=0)');
    expect(err.message).not.toContain('no libcoreclr.so');
    expect((await listDotnetProcesses()).some((p) => p.pid === disabled.pid)).toBe(false);
  });

  it('says when the process does not exist', async () => {
    const beyond = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1;
    await expect(findDiagnosticSocket(beyond)).rejects.toMatchObject({
      code: 'ESRCH',
      message: expect.stringContaining(`process ${beyond} does not exist`),
    });
    expect(() => readProcessEnv(beyond)).toThrow(`process ${beyond} does not exist`);
    await expect(findDiagnosticSocket(-1)).rejects.toThrow(TypeError);
  });
});

describe.skipIf(!unshareOk)('a real .NET app in its own pid + mount namespace (container-like)', () => {
  let server: Awaited<ReturnType<typeof holdingServer>>;
  let app: DotnetApp;
  let out: string;

  beforeAll(async () => {
    out = await fsp.mkdtemp(path.join(os.tmpdir(), 'sw-dotnet-ns-'));
    server = await holdingServer();
    // A private /tmp (tmpfs) and pid namespace: the socket is /tmp/dotnet-diagnostic-1-*-socket inside.
    // (privateTmp keeps the app visible when the checkout itself lives under /tmp)
    const wrapper = ['unshare', '--mount', '--pid', '--kill-child', '--mount-proc'];
    app = await startDotnetApp('127.0.0.1', server.port, 1, { wrapper, privateTmp: true });
  });

  afterAll(async () => {
    await app?.stop();
    await server?.close();
    if (out) await fsp.rm(out, { recursive: true, force: true });
  });

  it('finds the socket through /proc/PID/root with the namespace pid from NSpid', async () => {
    expect(app.reportedPid).toBe(1);
    const found = (await listDotnetProcesses()).find((p) => p.pid === app.pid);
    expect(found).toMatchObject({ nsPid: 1, sameMountNamespace: false, rootPrefix: `/proc/${app.pid}/root`, tmpDir: '/tmp' });
    expect(found!.socketPath).toMatch(new RegExp(`^/proc/${app.pid}/root/tmp/dotnet-diagnostic-1-\\d+-socket$`));
    expect(fs.existsSync(found!.socketPath.slice(`/proc/${app.pid}/root`.length))).toBe(false); // not in our /tmp
    const info = await getProcessInfo(app.pid);
    expect(info.pid).toBe(1);
  });

  it('writes the dump inside the container and brings it out to our path', async () => {
    const dest = path.join(out, 'ns.dmp');
    const result = await writeDump(app.pid, dest, { type: 'Normal' });
    expect(result.path).toBe(dest);
    const head = Buffer.alloc(18);
    const fd = fs.openSync(dest, 'r');
    fs.readSync(fd, head, 0, 18, 0);
    fs.closeSync(fd);
    expect(head.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))).toBe(true);
    expect(head.readUInt16LE(16)).toBe(4); // ET_CORE
    expect(fs.statSync(dest).size).toBe(result.bytes);
    const leftovers = fs.readdirSync(`/proc/${app.pid}/root/tmp`).filter((n) => n.startsWith('sockwatch-dump-'));
    expect(leftovers).toEqual([]);
  });

  it('collects a trace from the container', async () => {
    const result = await collectTrace(app.pid, path.join(out, 'ns.nettrace'), { durationMs: 1000 });
    expect(result.endedCleanly).toBe(true);
    expect(fs.readFileSync(result.path).subarray(0, 8).toString('latin1')).toBe('Nettrace');
  });
});
