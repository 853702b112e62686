// OutboundWatcher against the real kernel: real TCP connections on 127.0.0.1 to a server of this
// test. Counting is restricted to one process (pid) wherever a verdict is asserted, so sockets of
// other tests running at the same time cannot change it.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OutboundWatcher, type OutboundPoll } from '../lib/outbound';

let server: net.Server;
let port: number;
const accepted = new Set<net.Socket>();
const clients: net.Socket[] = [];
const watchers: OutboundWatcher[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  server = net.createServer((s) => {
    accepted.add(s);
    s.on('error', () => undefined);
    s.on('close', () => accepted.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as net.AddressInfo).port;
});

afterEach(async () => {
  await Promise.all(watchers.splice(0).map((w) => w.stop()));
  clients.splice(0).forEach((c) => c.destroy());
  children.splice(0).forEach((c) => c.kill('SIGKILL'));
});

afterAll(async () => {
  accepted.forEach((s) => s.destroy());
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function open(n: number, host = '127.0.0.1'): Promise<net.Socket[]> {
  const out: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = net.connect({ host, port });
    c.on('error', () => undefined);
    await once(c, 'connect');
    clients.push(c);
    out.push(c);
  }
  return out;
}

/**
 * A watcher stopped after each test. With a pid it counts that process's own sockets ('process')
 * unless a test asks otherwise: in the host's namespace, shared with every other test on the machine,
 * 'auto' may count the whole namespace (lib/outbound/attribution.ts) when no other process holds a
 * TCP socket on a port not excluded at that moment.
 */
function watcher(o: ConstructorParameters<typeof OutboundWatcher>[0]): OutboundWatcher {
  const w = new OutboundWatcher(o?.pid !== undefined && o.attribution === undefined ? { attribution: 'process', ...o } : o);
  watchers.push(w);
  return w;
}

const dest = () => `127.0.0.1:${port}`;
const find = (p: OutboundPoll, remote = dest()) => p.destinations.find((d) => d.remote === remote);

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('OutboundWatcher', () => {
  it('counts connections per destination with per-state counts; exceeded only when strictly greater', async () => {
    await open(5);
    const base = { pid: process.pid, excludeLocalPorts: [port] };
    const at5 = await watcher({ ...base, threshold: 5 }).poll();
    expect(find(at5)).toMatchObject({
      remote: dest(),
      family: 4,
      remoteAddress: '127.0.0.1',
      remotePort: port,
      total: 5,
      states: { established: 5 },
    });
    expect(at5.busiest?.remote).toBe(dest());
    expect(at5.busiestCount).toBe(5);
    expect(at5.exceeded).toBe(false);
    expect(at5).toMatchObject({ threshold: 5, thresholdOn: 'current', pid: process.pid, pidAlive: true, socketsCounted: 5 });
    const at4 = await watcher({ ...base, threshold: 4 }).poll();
    expect(at4.exceeded).toBe(true);
  });

  it('counts dual-stack (IPv4-mapped IPv6) connections with the IPv4 ones of the same destination', async () => {
    await open(2);
    const mapped = await open(3, '::ffff:127.0.0.1'); // AF_INET6 sockets, as .NET's TcpClient makes
    expect(mapped[0]!.remoteFamily).toBe('IPv6');
    const p = await watcher({ pid: process.pid, excludeLocalPorts: [port] }).poll();
    expect(p.destinations).toHaveLength(1);
    expect(p.destinations[0]).toMatchObject({
      remote: dest(),
      family: 4,
      remoteAddress: '127.0.0.1',
      total: 5,
      states: { established: 5 },
      distinctInWindow: 5,
    });
  });

  it('leaves out connections whose local port is excluded (the accepted side of our own server)', async () => {
    await open(3);
    await until('accepted', async () => (accepted.size >= 3 ? true : undefined));
    const all = await watcher({ pid: process.pid, excludeLocalPorts: [80, 443, 2222] }).poll();
    // The server's accepted sockets have local port `port` and the clients' ephemeral ports as remotes.
    const clientPorts = clients.map((c) => c.localPort!);
    for (const p of clientPorts) expect(find(all, `127.0.0.1:${p}`)?.total).toBe(1);
    const excluded = await watcher({ pid: process.pid, excludeLocalPorts: [80, 443, 2222, port] }).poll();
    for (const p of clientPorts) expect(find(excluded, `127.0.0.1:${p}`)).toBeUndefined();
    expect(find(excluded)?.total).toBe(3);
    // a range works the same
    const ranged = await watcher({ pid: process.pid, excludeLocalPorts: [`${port}-${port}`] }).poll();
    expect(ranged.destinations.map((d) => d.remote)).toEqual([dest()]);
  });

  it('counts distinct connections within the window, including ones already closed', async () => {
    let now = 1_000_000;
    const w = watcher({
      pid: process.pid,
      excludeLocalPorts: [port],
      threshold: 5,
      windowMs: 240_000,
      thresholdOn: 'window',
      now: () => now,
    });
    const first = await open(6);
    const p1 = await w.poll();
    expect(find(p1)).toMatchObject({ total: 6, distinctInWindow: 6 });
    expect(p1.exceeded).toBe(true);
    // Reset closes leave no TIME_WAIT: these connections are gone from the kernel.
    first.forEach((c) => c.resetAndDestroy());
    await until('sockets gone', async () =>
      (await w.poll()).destinations.find((d) => d.remote === dest())?.total === 0 ? true : undefined,
    );
    now += 60_000;
    await open(2);
    const p2 = await w.poll();
    expect(find(p2)).toMatchObject({ total: 2, distinctInWindow: 8 });
    expect(p2.exceeded).toBe(true);
    expect(p2.busiestCount).toBe(8);
    // the same sockets polled again are not counted twice
    expect(find(await w.poll())?.distinctInWindow).toBe(8);
    // once the window has passed over the closed ones, only the open two remain
    now += 200_000;
    const p3 = await w.poll();
    expect(find(p3)).toMatchObject({ total: 2, distinctInWindow: 2 });
    expect(p3.exceeded).toBe(false);
    // on the current count the same state would not exceed either
    const current = await watcher({ pid: process.pid, excludeLocalPorts: [port], threshold: 5 }).poll();
    expect(current.exceeded).toBe(false);
  });

  it('a destination with no socket now but connections in the window is listed with total 0', async () => {
    let now = 5_000_000;
    const w = watcher({ pid: process.pid, excludeLocalPorts: [port], windowMs: 10_000, now: () => now });
    const socks = await open(3);
    await w.poll();
    socks.forEach((c) => c.resetAndDestroy());
    const p = await until('closed', async () => {
      const r = await w.poll();
      return find(r)?.total === 0 ? r : undefined;
    });
    expect(find(p)).toMatchObject({ total: 0, states: {}, distinctInWindow: 3, family: 4, remotePort: port });
    now += 11_000;
    expect(find(await w.poll())).toBeUndefined();
  });

  it('with a pid in a shared namespace counts only that process, its TIME_WAIT sockets included after it closed them or exited', async () => {
    await open(3); // ours: must not be counted for the child
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const net = require('net'); const socks = [];
         let n = 0;
         for (let i = 0; i < 4; i++) { const c = net.connect(${port}, '127.0.0.1', () => { if (++n === 4) console.log('READY'); }); socks.push(c); }
         process.stdin.on('data', (d) => { if (String(d).includes('close')) { socks.forEach((c) => c.end()); } if (String(d).includes('exit')) process.exit(0); });`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    children.push(child);
    await new Promise<void>((resolve) => child.stdout!.on('data', (d) => String(d).includes('READY') && resolve()));
    // Another process of this namespace holds counted connections (this test process is the watcher,
    // which does not count as another app): the namespace is shared.
    const other = spawn(
      process.execPath,
      ['-e', `const c = require('net').connect(${port}, '127.0.0.1', () => console.log('READY')); setInterval(() => {}, 1000);`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(other);
    await new Promise<void>((resolve) => other.stdout!.on('data', (d) => String(d).includes('READY') && resolve()));
    const w = watcher({ pid: child.pid!, excludeLocalPorts: [port], threshold: 3, attribution: 'auto' });
    const open4 = await w.poll();
    expect(find(open4)).toMatchObject({ total: 4, states: { established: 4 } });
    expect(open4.exceeded).toBe(true);
    expect(open4.destinations).toHaveLength(1);
    // Attribution falls back to the child's own sockets, and says why (naming other processes).
    expect(open4.attribution).toMatchObject({ mode: 'process', foreign: false });
    expect(open4.attribution!.reason).toMatch(/is shared with other processes holding \d+ TCP socket\(s\) on ports not excluded \(pid \d+/);

    // The child closes first: its sockets end in TIME_WAIT, which has no inode (no fd) but the same cookie.
    child.stdin!.write('close\n');
    const closed = await until('time-wait', async () => {
      const p = await w.poll();
      return find(p)?.states['time-wait'] === 4 ? p : undefined;
    });
    expect(find(closed)?.total).toBe(4);
    child.stdin!.write('exit\n');
    await once(child, 'exit');
    const exited = await w.poll();
    expect(exited.pidAlive).toBe(false);
    expect(find(exited)).toMatchObject({ total: 4, states: { 'time-wait': 4 } });
  });

  it('start() polls on the interval and emits poll events; stop() ends it', async () => {
    await open(2);
    const w = watcher({ pid: process.pid, excludeLocalPorts: [port], intervalMs: 50 });
    const polls: OutboundPoll[] = [];
    w.on('poll', (p) => polls.push(p));
    w.start();
    expect(w.running).toBe(true);
    await until('three polls', async () => (polls.length >= 3 ? true : undefined));
    await w.stop();
    const n = polls.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(polls.length).toBe(n);
    expect(find(polls[0]!)?.total).toBe(2);
    expect(() => w.start()).toThrow(/stopped/);
  });

  it('rejects bad options with errors naming the option', () => {
    expect(() => new OutboundWatcher({ threshold: -1 })).toThrow(RangeError);
    expect(() => new OutboundWatcher({ threshold: 1.5 })).toThrow(/threshold/);
    expect(() => new OutboundWatcher({ intervalMs: 0 })).toThrow(/intervalMs/);
    expect(() => new OutboundWatcher({ windowMs: Number.NaN })).toThrow(/windowMs/);
    expect(() => new OutboundWatcher({ thresholdOn: 'later' as never })).toThrow(/thresholdOn/);
    expect(() => new OutboundWatcher({ excludeLocalPorts: ['http'] })).toThrow(/excludeLocalPorts/);
    expect(() => new OutboundWatcher({ states: ['opening'] as never })).toThrow(/states/);
    expect(() => new OutboundWatcher({ pid: 0 })).toThrow(/pid/);
  });

  it('follows the one validation rule: unknown keys, types and ranges named by path', () => {
    expect(() => new OutboundWatcher({ treshold: 5 } as never)).toThrow(
      /options: unknown option "treshold" \(did you mean "threshold"\?\)/,
    );
    expect(() => new OutboundWatcher({ threshold: '5' as never })).toThrow(TypeError);
    expect(() => new OutboundWatcher({ threshold: 1.5 })).toThrow(RangeError);
    expect(() => new OutboundWatcher({ intervalMs: 0 })).toThrow(/options.intervalMs must be a number of ms greater than 0 \(got 0\)/);
    expect(() => new OutboundWatcher({ thresholdOn: 'later' as never })).toThrow(/options.thresholdOn must be one of 'current', 'window'/);
    expect(() => new OutboundWatcher({ states: 'established' as never })).toThrow(/options.states must be an array of strings/);
    expect(() => new OutboundWatcher({ excludeLocalPorts: 80 as never })).toThrow(TypeError);
    expect(() => new OutboundWatcher({ now: 5 as never })).toThrow(/options.now must be a function/);
  });
});
