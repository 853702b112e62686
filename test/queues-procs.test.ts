// SocketOwners: socket inode → pid/comm. Real /proc for real sockets (this process and a python
// child); a hand-made procfs tree (symlinks named like /proc/PID/fd/N) where exact scan counts
// matter, since the real /proc changes under a parallel test run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SocketOwners } from '../lib/queues/owners';
import { listSockets } from '../lib/sampler';
import { cleanupSockets, connect, nonReadingUdp, pausedServer } from './helpers/sockets';

const owners: SocketOwners[] = [];
const dirs: string[] = [];
afterEach(() => {
  owners.splice(0).forEach((o) => o.close());
  dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
});
afterAll(cleanupSockets);

function make(options: ConstructorParameters<typeof SocketOwners>[0] = {}): SocketOwners {
  const o = new SocketOwners(options);
  owners.push(o);
  return o;
}

/** A fake procfs: pid → { comm, fds: fd → link target }. */
function fakeProc(tree: Record<number, { comm: string; fds: Record<number, string> }>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-proc-'));
  dirs.push(root);
  fs.mkdirSync(path.join(root, 'self')); // not a pid: skipped
  for (const [pid, p] of Object.entries(tree)) {
    fs.mkdirSync(path.join(root, pid, 'fd'), { recursive: true });
    fs.writeFileSync(path.join(root, pid, 'comm'), `${p.comm}\n`);
    for (const [fd, target] of Object.entries(p.fds)) fs.symlinkSync(target, path.join(root, pid, 'fd', fd));
  }
  return root;
}

/** The inode of our loopback socket: protocol, address and port, and for TCP the remote port, all
 *  match (a port number alone can be another process's socket of the other protocol or address). */
async function inodeOf(protocol: 'tcp' | 'udp', localPort: number, remotePort?: number): Promise<number> {
  const rows = await listSockets({ [protocol]: true, ipv4: true, localPorts: [localPort] });
  const r = rows.filter(
    (x) =>
      x.protocol === protocol &&
      x.localAddress === '127.0.0.1' &&
      x.localPort === localPort &&
      (remotePort === undefined || x.remotePort === remotePort),
  );
  expect(r).toHaveLength(1);
  expect(r[0]!.inode).toBeGreaterThan(0);
  return r[0]!.inode;
}

describe('SocketOwners on the real /proc', () => {
  it('finds this process and a python child by socket inode', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    const udp = await nonReadingUdp('127.0.0.1');
    const mine = await inodeOf('tcp', c.localPort!, port);
    const theirs = await inodeOf('udp', udp.port);
    const o = make();
    const found = await o.resolve([mine, theirs]);
    expect(found.get(mine)).toMatchObject({ pid: process.pid, comm: fs.readFileSync('/proc/self/comm', 'utf8').trim() });
    expect(fs.readlinkSync(`/proc/self/fd/${found.get(mine)!.fd}`)).toBe(`socket:[${mine}]`);
    expect(found.get(theirs)).toMatchObject({ pid: udp.pid, comm: 'python3' });
    expect(o.stats().scans).toBe(1);
    // Cached: no scan for a second ask.
    const again = await o.resolve([mine]);
    expect(again.get(mine)?.pid).toBe(process.pid);
    expect(o.stats().scans).toBe(1);
    void accepted;
  });

  it('drops a cached owner whose descriptor is gone (re-validated once older than ttlMs)', async () => {
    const { port } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    const inode = await inodeOf('tcp', c.localPort!, port);
    const o = make({ ttlMs: 0 });
    expect((await o.resolve([inode])).get(inode)?.pid).toBe(process.pid);
    expect(o.get(inode)?.pid).toBe(process.pid);
    c.destroy();
    await new Promise((r) => c.once('close', r));
    expect(o.get(inode)).toBeUndefined();
  });
});

describe('SocketOwners scanning rules (fake procfs)', () => {
  const tree = {
    100: { comm: 'alpha', fds: { 0: '/dev/null', 3: 'socket:[5001]', 4: 'pipe:[77]' } },
    200: { comm: 'beta', fds: { 3: 'socket:[5002]', 9: 'socket:[5003]' } },
    300: { comm: 'gamma', fds: { 5: 'socket:[5004]' } },
  };

  it('stops as soon as every wanted inode is found', async () => {
    const o = make({ procRoot: fakeProc(tree), minScanIntervalMs: 0 });
    const found = await o.resolve([5001]);
    expect(found.get(5001)).toEqual({ pid: 100, comm: 'alpha', fd: 3 });
    expect(o.stats().fdsRead).toBe(3); // pid 100 only
    expect((await o.resolve([5003])).get(5003)).toEqual({ pid: 200, comm: 'beta', fd: 9 });
  });

  it('remembers inodes a full scan did not find, and does not scan for them again', async () => {
    const o = make({ procRoot: fakeProc(tree), minScanIntervalMs: 0 });
    const found = await o.resolve([5004, 9999]);
    expect([...found.keys()]).toEqual([5004]);
    expect(o.stats()).toMatchObject({ scans: 1, unknown: 1, cached: 1 });
    expect((await o.resolve([9999])).size).toBe(0);
    expect(o.stats().scans).toBe(1);
  });

  it('rate-limits scans: inodes asked for while one runs wait for the next', async () => {
    const o = make({ procRoot: fakeProc(tree), minScanIntervalMs: 200 });
    const [a, b] = await Promise.all([o.resolve([5001]), o.resolve([5002])]);
    expect(a.get(5001)?.pid).toBe(100);
    expect(b.get(5002)?.pid).toBe(200);
    expect(o.stats().scans).toBe(1); // both were wanted when the scan started
    const c = await o.resolve([5004]);
    expect(c.get(5004)?.pid).toBe(300);
    expect(o.stats().scans).toBe(2);
  });

  it('settles by the deadline with what it knows; the scan goes on', async () => {
    const o = make({ procRoot: fakeProc(tree), minScanIntervalMs: 0 });
    await o.resolve([5001]);
    // Next scan is held back (rate limit), the deadline is now: settles with the cached one only.
    const o2 = make({ procRoot: fakeProc(tree), minScanIntervalMs: 60_000 });
    await o2.resolve([5001]);
    const quick = await o2.resolve([5001, 5002], { deadline: performance.now() });
    expect([...quick.keys()]).toEqual([5001]);
    expect(o2.stats().wanted).toBe(1);
  });

  it('evicts the oldest entries beyond maxEntries', async () => {
    const o = make({ procRoot: fakeProc(tree), maxEntries: 2, minScanIntervalMs: 0 });
    for (const inode of [5001, 5002, 5004]) await o.resolve([inode]); // found in this order
    expect(o.stats().cached).toBe(2);
    expect(o.get(5001)).toBeUndefined(); // the oldest went
    expect(o.get(5002)).toEqual({ pid: 200, comm: 'beta', fd: 3 });
    expect(o.get(5004)).toEqual({ pid: 300, comm: 'gamma', fd: 5 }); // the newest stayed
  });

  it('validates its options', () => {
    expect(() => new SocketOwners({ scanBudget: 0 })).toThrow(/options.scanBudget must be a finite number greater than 0 and at most 1/);
    expect(() => new SocketOwners({ ttlMs: -1 })).toThrow(/options.ttlMs must be a number of ms, not negative \(got -1\)/);
    expect(() => new SocketOwners({ maxEntries: 0 })).toThrow(/options.maxEntries must be an integer of at least 1/);
    expect(() => new SocketOwners({ procRoot: '' })).toThrow(/options.procRoot must be a non-empty string/);
    expect(() => new SocketOwners({ ttlMS: 5 } as never)).toThrow(/unknown option "ttlMS" \(did you mean "ttlMs"\?\)/);
  });
});
