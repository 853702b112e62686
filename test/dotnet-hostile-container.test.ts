// A hostile container and the diagnostics socket. sockwatch runs as root on the host and reaches a .NET
// target in another mount namespace through /proc/PID/root. A container that wants the host agent to talk
// to a host socket plants absolute symbolic links: by the name of a diagnostics socket, or as its TMPDIR.
// Resolved in one go, such a link resolves against the host's root (the sanity checks below show it), so
// discovery must not list them and a connect must not follow them. Real processes in real namespaces
// (unshare: root only); the host sockets are real Unix listeners that count who reaches them.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { findDiagnosticSocket, listDotnetProcesses } from '../lib/dotnet/discovery';
import { getProcessInfo } from '../lib/dotnet/process-info';
import { connectUnixSocket } from '../lib/dotnet/unix-socket';
import { onCleanup, runCleanups } from './helpers/cleanup';

const canUnshare =
  process.getuid?.() === 0 &&
  spawnSync('unshare', ['--mount', '--pid', '--fork', '--mount-proc', 'true'], { timeout: 10_000 }).status === 0;

/** A Unix listener on the host that counts connections. */
async function hostSocket(file: string): Promise<{ accepted: () => number }> {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(file, resolve));
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { accepted: () => n };
}

/** pid 1 of a new pid + mount namespace with a private /tmp, after `setup` ran inside; its host pid. */
async function container(setup: string[], env: Record<string, string> = {}): Promise<number> {
  const script = ['mount -t tmpfs none /tmp', ...setup, 'echo ready', 'exec sleep 600'].join(' && ');
  const child = spawn(
    'unshare',
    ['--mount', '--pid', '--fork', '--kill-child', '--mount-proc', '--propagation', 'private', 'sh', '-c', script],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      // cwd /: a checkout under /tmp is hidden by the container's own /tmp (pyenv's python3 shim needs its cwd)
      cwd: '/',
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'TMPDIR')), ...env },
    },
  );
  onCleanup(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`container setup exited ${code}`)));
  });
  const inner = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]);
  expect(inner).toBeGreaterThan(0);
  return inner;
}

describe.skipIf(!canUnshare)('diagnostics sockets of a hostile container (root on the host)', () => {
  let hostDir: string;
  beforeAll(async () => {
    hostDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'sw-hostile-'));
  });
  afterAll(async () => {
    await runCleanups();
    await fsp.rm(hostDir, { recursive: true, force: true });
  });

  it('a link by the name of a diagnostics socket is neither listed nor connected to', async () => {
    const host = await hostSocket(path.join(hostDir, 'agent.sock'));
    const pid = await container([`ln -s ${path.join(hostDir, 'agent.sock')} /tmp/dotnet-diagnostic-1-111-socket`]);
    const planted = `/proc/${pid}/root/tmp/dotnet-diagnostic-1-111-socket`;
    // Sanity: resolved in one go, the planted name reaches the host's socket.
    await new Promise<void>((resolve, reject) => net.createConnection({ path: planted }, resolve).once('error', reject).unref());
    await expect.poll(host.accepted).toBe(1);

    expect((await listDotnetProcesses()).map((p) => p.pid)).not.toContain(pid);
    await expect(findDiagnosticSocket(pid)).rejects.toMatchObject({ code: 'ERR_SOCKWATCH_NO_DOTNET' });
    await expect(connectUnixSocket(planted)).rejects.toThrow(`refusing to connect to ${planted}: a symbolic link inside the target's root`);
    // An endpoint handed in by a library user goes through the same connect.
    await expect(getProcessInfo({ pid, socketPath: planted })).rejects.toThrow(/a symbolic link inside the target's root/);
    expect(host.accepted()).toBe(1);
  });

  it('a TMPDIR that is a link out of the container is not searched', async () => {
    // A real socket with the right name on the host, in the directory the container's TMPDIR points to.
    const outside = path.join(hostDir, 'outside');
    fs.mkdirSync(outside);
    const host = await hostSocket(path.join(outside, 'dotnet-diagnostic-1-222-socket'));
    const pid = await container([`ln -s ${outside} /tmp/t`], { TMPDIR: '/tmp/t' });
    const through = `/proc/${pid}/root/tmp/t/dotnet-diagnostic-1-222-socket`;
    // Sanity: the naive path lists the host's directory.
    expect(fs.readdirSync(`/proc/${pid}/root/tmp/t`)).toEqual(['dotnet-diagnostic-1-222-socket']);

    expect((await listDotnetProcesses()).map((p) => p.pid)).not.toContain(pid);
    await expect(findDiagnosticSocket(pid)).rejects.toMatchObject({
      code: 'ERR_SOCKWATCH_NO_DOTNET',
      message: expect.stringContaining(
        'its TMPDIR /tmp/t goes through a symbolic link inside its container, which sockwatch does not follow',
      ),
    });
    await expect(connectUnixSocket(through)).rejects.toThrow(
      `refusing to follow /proc/${pid}/root/tmp/t: not a directory (or a symbolic link)`,
    );
    expect(host.accepted()).toBe(0);
  });

  it('a real socket inside the container is reached through /proc/self/fd, not by its long path', async () => {
    const pid = await container([
      'mkdir -p /tmp/a-rather-long-directory-name-to-push-the-path-past-sun-path/x',
      // python3 holds a listener inside; its accept count comes back over the socket itself
      `python3 -c "
import socket, os
s = socket.socket(socket.AF_UNIX); s.bind('/tmp/a-rather-long-directory-name-to-push-the-path-past-sun-path/x/dotnet-diagnostic-1-333-socket'); s.listen(4)
if os.fork() == 0:
    c, _ = s.accept(); c.sendall(b'inside'); os._exit(0)
" `,
    ]);
    const inside = `/proc/${pid}/root/tmp/a-rather-long-directory-name-to-push-the-path-past-sun-path/x/dotnet-diagnostic-1-333-socket`;
    expect(Buffer.byteLength(inside)).toBeGreaterThan(107);
    const socket = await connectUnixSocket(inside);
    const got = await new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    socket.destroy();
    expect(got).toBe('inside');
  });
});
