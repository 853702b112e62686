// QueueWatcher against the real kernel: real sockets on loopback with queues above the thresholds,
// held by this process or by python children. Short intervals; no assertion depends on timing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { QueueWatcher, type QueueAlert, type QueueTickStats, type QueueWatcherOptions, type QueueSuppressedEvent } from '../lib/queues';
import { listSockets } from '../lib/sampler';
import {
  cleanupSockets,
  connect,
  eventually,
  neverAcceptingListener,
  pausedServer,
  python,
  sendUdp,
  stuckSender,
  udpSocket,
  unreadConnections,
  waitAccepted,
} from './helpers/sockets';
import { sleep, waitFor } from './helpers/wait';

const watchers: QueueWatcher[] = [];
afterEach(async () => {
  while (watchers.length) await watchers.pop()!.stop();
});
afterAll(cleanupSockets);

const selfComm = fs.readFileSync('/proc/self/comm', 'utf8').trim();

interface Run {
  watcher: QueueWatcher;
  alerts: QueueAlert[];
  ticks: QueueTickStats[];
  suppressed: QueueSuppressedEvent[];
  errors: Error[];
  waitFor(pred: (alerts: QueueAlert[]) => boolean, what: string, ms?: number): Promise<void>;
}

function watch(options: QueueWatcherOptions): Run {
  const watcher = new QueueWatcher({ intervalMs: 20, recvThreshold: 'off', sendThreshold: 'off', acceptThreshold: 'off', ...options });
  watchers.push(watcher);
  const run: Run = {
    watcher,
    alerts: [],
    ticks: [],
    suppressed: [],
    errors: [],
    waitFor: (pred, what, ms) =>
      waitFor(what, () => pred(run.alerts), {
        ms,
        detail: () => `alerts: ${JSON.stringify(run.alerts.map((a) => `${a.event}:${a.type}`))}`,
      }),
  };
  watcher.on('alert', (a) => run.alerts.push(a));
  watcher.on('tick', (t) => run.ticks.push(t));
  watcher.on('suppressed', (s) => run.suppressed.push(s));
  watcher.on('error', (e) => run.errors.push(e));
  watcher.start();
  return run;
}

/** Waits until the kernel shows the queue (data on loopback arrives asynchronously). */
async function queueIs(port: number, remotePort: number, recvQ: number): Promise<void> {
  const rows = await eventually(
    () => listSockets({ tcp: true, localAddresses: ['127.0.0.1'], localPorts: [port] }),
    (rs) => rs.some((r) => r.remotePort === remotePort && r.recvQ === recvQ),
  );
  expect(rows.some((r) => r.remotePort === remotePort && r.recvQ === recvQ)).toBe(true);
}

// Every filter names the address with the port: another test's socket may have the same port
// number on another address (and then be an offender here, or count in offendersTotal).
describe('QueueWatcher on real sockets', () => {
  it('alerts RECV with exact fields and owner, then resolves when the reader drains the queue', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    c.write(Buffer.alloc(5000, 1));
    await queueIs(port, c.localPort!, 5000);
    const run = watch({
      recvThreshold: 1000,
      notifyResolved: true,
      filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [port] },
    });
    await run.waitFor((a) => a.length >= 1, 'the RECV alert');
    const a = run.alerts[0];
    expect(a).toMatchObject({
      event: 'alert',
      type: 'RECV',
      bytes: 5000,
      threshold: 1000,
      protocol: 'tcp',
      family: 4,
      state: 'established',
      local: `127.0.0.1:${port}`,
      remote: `127.0.0.1:${c.localPort}`,
      host: os.hostname(),
      repeat: 0,
      pid: process.pid,
      comm: selfComm,
      uid: process.getuid!(),
    });
    expect(a.since).toBe(a.timestamp);
    expect(a.id).toMatch(/^[0-9a-f]{32}$/);
    expect(a.inode).toBeGreaterThan(0);
    // The tick that produced it saw exactly this one offender.
    expect(run.ticks.find((t) => t.timestamp === a.timestamp)).toMatchObject({ offendersTotal: 1, records: 1 });

    accepted[0].resume();
    await run.waitFor((al) => al.some((x) => x.event === 'resolved'), 'the resolved event');
    const resolved = run.alerts.filter((x) => x.event === 'resolved');
    expect(resolved).toHaveLength(1);
    expect(resolved[0]).toMatchObject({
      type: 'RECV',
      bytes: 0,
      since: a.since,
      cookie: a.cookie,
      local: a.local,
      remote: a.remote,
      pid: process.pid,
    });
    expect(resolved[0].closed).toBeUndefined();
    expect(resolved[0].id).not.toBe(a.id);
    expect(run.alerts.filter((x) => x.event === 'alert')).toHaveLength(1);
  });

  it('repeats while above, every repeatMs after the crossing, with distinct ids', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    c.write(Buffer.alloc(3000, 1));
    await queueIs(port, c.localPort!, 3000);
    const run = watch({ recvThreshold: 100, repeatMs: 100, filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [port] } });
    await run.waitFor((a) => a.filter((x) => x.event === 'repeat').length >= 2, 'two repeats');
    const [first, r1, r2] = run.alerts;
    expect(first.event).toBe('alert');
    expect(r1).toMatchObject({ event: 'repeat', since: first.since, bytes: 3000 });
    expect(r2).toMatchObject({ event: 'repeat', since: first.since });
    expect(r1.repeat).toBeGreaterThanOrEqual(1);
    expect(r2.repeat).toBeGreaterThan(r1.repeat);
    expect(r1.timestamp - first.since).toBeGreaterThanOrEqual(r1.repeat * 0.1 - 1e-6);
    expect(new Set(run.alerts.map((x) => x.id)).size).toBe(run.alerts.length);
  });

  it('reports a closed socket as resolved (closed) after it is gone from two samples', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    c.on('error', () => undefined); // the RST below
    c.write(Buffer.alloc(2000, 1));
    await queueIs(port, c.localPort!, 2000);
    const run = watch({
      recvThreshold: 100,
      notifyResolved: true,
      filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [port] },
    });
    await run.waitFor((a) => a.length >= 1, 'the alert');
    accepted[0].destroy(); // unread data: RST, the socket is gone at once
    await run.waitFor((a) => a.some((x) => x.event === 'resolved'), 'the resolved event');
    expect(run.alerts.at(-1)).toMatchObject({ event: 'resolved', type: 'RECV', closed: true, bytes: 0, cookie: run.alerts[0].cookie });
  });

  it('alerts SEND for a stuck sender held by another process, with its pid and comm', async () => {
    const { port } = await pausedServer('127.0.0.1');
    const sender = await stuckSender('127.0.0.1', port);
    const run = watch({ sendThreshold: 1000, filter: { tcp: true, remoteAddresses: ['127.0.0.1'], remotePorts: [port] } });
    await run.waitFor((a) => a.length >= 1, 'the SEND alert');
    expect(run.alerts[0]).toMatchObject({
      event: 'alert',
      type: 'SEND',
      threshold: 1000,
      local: `127.0.0.1:${sender.port}`,
      remote: `127.0.0.1:${port}`,
      pid: sender.pid,
      comm: 'python3',
    });
    expect(run.alerts[0].bytes).toBeGreaterThan(1000);
  });

  it('alerts ACCEPT when a listener that never accepts has its backlog full', async () => {
    const l = await neverAcceptingListener('127.0.0.1', 2);
    await connect('127.0.0.1', l.port);
    await connect('127.0.0.1', l.port);
    const run = watch({
      acceptThreshold: 'limit',
      recvThreshold: 0,
      sendThreshold: 0,
      filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [l.port], states: ['listen'] },
    });
    await run.waitFor((a) => a.length >= 1, 'the ACCEPT alert');
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]).toMatchObject({
      type: 'ACCEPT',
      bytes: 2,
      threshold: 2,
      state: 'listen',
      local: `127.0.0.1:${l.port}`,
      remote: '0.0.0.0:0',
      pid: l.pid,
      comm: 'python3',
    });
  });

  it('uses a numeric accept threshold as "strictly greater"', async () => {
    const l = await neverAcceptingListener('127.0.0.1', 8);
    await connect('127.0.0.1', l.port);
    await connect('127.0.0.1', l.port);
    const run = watch({ acceptThreshold: 1, filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [l.port] } });
    await run.waitFor((a) => a.length >= 1, 'the ACCEPT alert');
    expect(run.alerts[0]).toMatchObject({ type: 'ACCEPT', bytes: 2, threshold: 1 });
  });

  it('watches IPv6 sockets, endpoints in brackets', async () => {
    const { port, accepted } = await pausedServer('::1');
    const c = await connect('::1', port);
    await waitAccepted(accepted, 1);
    c.write(Buffer.alloc(1500, 1));
    const run = watch({ recvThreshold: 1000, filter: { ipv6: true, localAddresses: ['::1'], localPorts: [port] } });
    await run.waitFor((a) => a.length >= 1, 'the IPv6 alert');
    expect(run.alerts[0]).toMatchObject({ type: 'RECV', family: 6, bytes: 1500, local: `[::1]:${port}`, remote: `[::1]:${c.localPort}` });
  });

  it('UDP: alerts on receive memory and resolves when the socket drains (re-checked without a full dump)', async () => {
    // A python UDP socket that reads everything pending when it gets SIGUSR1.
    const holder = await python(`
import socket, signal, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 0)); s.setblocking(False)
drain = [False]
signal.signal(signal.SIGUSR1, lambda *a: drain.__setitem__(0, True))
print(s.getsockname()[1], flush=True)
while True:
    time.sleep(0.01)
    if drain[0]:
        try:
            while True: s.recv(65536)
        except BlockingIOError:
            pass
`);
    const tx = await udpSocket('udp4', '127.0.0.1');
    await sendUdp(tx, '127.0.0.1', holder.port, Buffer.alloc(200, 1), 20);
    const run = watch({
      recvThreshold: 4096,
      notifyResolved: true,
      filter: { udp: true, localAddresses: ['127.0.0.1'], localPorts: [holder.port] },
    });
    await run.waitFor((a) => a.length >= 1, 'the UDP alert');
    expect(run.alerts[0]).toMatchObject({
      type: 'RECV',
      protocol: 'udp',
      state: 'unconn',
      local: `127.0.0.1:${holder.port}`,
      remote: '0.0.0.0:0',
      pid: holder.pid,
      comm: 'python3',
    });
    expect(run.alerts[0].bytes).toBeGreaterThan(4096);
    holder.child.kill('SIGUSR1');
    await run.waitFor((a) => a.some((x) => x.event === 'resolved'), 'the UDP resolved event');
    const resolved = run.alerts.find((x) => x.event === 'resolved')!;
    expect(resolved).toMatchObject({ type: 'RECV', protocol: 'udp', bytes: 0 });
    expect(resolved.closed).toBeUndefined(); // found below the threshold, not mistaken for closed
  });

  it('N-of-M: with confirm 3/3 the alert comes from the third offending sample', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    c.write(Buffer.alloc(800, 1));
    await queueIs(port, c.localPort!, 800);
    const run = watch({
      recvThreshold: 100,
      confirm: { n: 3, m: 3 },
      filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [port] },
    });
    await run.waitFor((a) => a.length >= 1, 'the confirmed alert');
    const a = run.alerts[0];
    const offendingTicksUpToAlert = run.ticks.filter((t) => t.timestamp <= a.timestamp && t.offendersTotal === 1);
    expect(offendingTicksUpToAlert.length).toBeGreaterThanOrEqual(3);
    expect(run.ticks.findIndex((t) => t.timestamp === a.timestamp)).toBeGreaterThanOrEqual(2);
  });

  it('is an async iterable of alerts that ends when the watcher stops', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    c.write(Buffer.alloc(900, 1));
    const watcher = new QueueWatcher({
      intervalMs: 20,
      recvThreshold: 100,
      sendThreshold: 'off',
      acceptThreshold: 'off',
      repeatMs: 50,
      filter: { localAddresses: ['127.0.0.1'], localPorts: [port] },
    });
    watchers.push(watcher);
    const it1 = watcher.alerts();
    watcher.start();
    const got: QueueAlert[] = [];
    for await (const a of watcher) {
      got.push(a);
      if (got.length === 2) break;
    }
    expect(got.map((a) => a.event)).toEqual(['alert', 'repeat']);
    const first = await it1.next();
    expect(first.value).toMatchObject({ event: 'alert', id: got[0].id });
    await watcher.stop();
    // Drains what was buffered, then ends.
    let rest = 0;
    for (;;) {
      const r = await it1.next();
      if (r.done) break;
      rest++;
    }
    expect(rest).toBeGreaterThanOrEqual(1);
    expect(watcher.running).toBe(false);
  });

  it('validates its options with errors naming them', () => {
    expect(() => new QueueWatcher({ recvThreshold: -1 })).toThrow(RangeError);
    expect(() => new QueueWatcher({ recvThreshold: -1 })).toThrow(/options.recvThreshold must be a non-negative integer/);
    expect(() => new QueueWatcher({ sendThreshold: 'lots' as never })).toThrow(TypeError);
    expect(() => new QueueWatcher({ sendThreshold: 'lots' as never })).toThrow(/options.sendThreshold must be .* or 'off' \(got "lots"\)/);
    expect(() => new QueueWatcher({ acceptThreshold: 'full' as never })).toThrow(
      /options.acceptThreshold must be a non-negative integer number of connections, 'limit' or 'off'/,
    );
    expect(() => new QueueWatcher({ recvThreshold: 'off', sendThreshold: 'off', acceptThreshold: 'off' })).toThrow(/nothing to watch/);
    expect(() => new QueueWatcher({ intervalMs: 5 })).toThrow(/options.intervalMs must be a number of ms of at least 10 \(got 5\)/);
    expect(() => new QueueWatcher({ confirm: { n: 4, m: 3 } })).toThrow(/options.confirm.n must be an integer from 1 to 3 \(got 4\)/);
    expect(() => new QueueWatcher({ confirm: { n: 1, m: 40 } })).toThrow(/options.confirm.m must be an integer from 1 to 32/);
    expect(() => new QueueWatcher({ maxAlertsPerTick: 0 })).toThrow(/options.maxAlertsPerTick must be an integer of at least 1/);
    expect(() => new QueueWatcher({ filter: { ports: [1] } as never })).toThrow(/options.filter: unknown option "ports"/);
    expect(() => new QueueWatcher({ filter: { localPorts: ['99999'] } })).toThrow(
      /options.filter.localPorts\[0\]: port 99999 is out of range/,
    );
  });

  it('rejects unknown keys naming the nearest, strict booleans, native bounds, neither protocol', () => {
    expect(() => new QueueWatcher({ intervalMS: 10 } as never)).toThrow(TypeError);
    expect(() => new QueueWatcher({ intervalMS: 10 } as never)).toThrow(/unknown option "intervalMS" \(did you mean "intervalMs"\?\)/);
    expect(() => new QueueWatcher({ notifyResolved: 'false' as never })).toThrow(TypeError);
    expect(() => new QueueWatcher({ maxRecords: 2 ** 32 })).toThrow(RangeError);
    expect(() => new QueueWatcher({ maxRecords: '5' as never })).toThrow(TypeError);
    expect(() => new QueueWatcher({ filter: { tcp: false, udp: false } })).toThrow(/neither protocol/);
    expect(() => new QueueWatcher({ filter: { states: 'listen' as never } })).toThrow(TypeError);
    expect(() => new QueueWatcher({ filter: { states: 'listen' as never } })).toThrow(/options.filter.states must be an array of strings/);
  });
});

describe('offender storm', () => {
  it('keeps state, records and alerts per tick bounded, reports what it suppressed, and keeps ticking', async () => {
    // 2 × 3000 accepted sockets with 1 unread byte each, held by two python processes (each under
    // the 20,000-fd limit).
    const [h1, h2] = await Promise.all([unreadConnections(3000, 4096), unreadConnections(3000, 4096)]);
    const MAX_RECORDS = 500;
    const PER_TICK = 100;
    const run = watch({
      recvThreshold: 0,
      maxRecords: MAX_RECORDS,
      maxAlertsPerTick: PER_TICK,
      intervalMs: 30,
      // By address too: offendersTotal and every alert's bytes are asserted exactly.
      filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [h1.port, h2.port], states: ['established'] },
    });
    // Every tracked socket gets its alert (100 per tick), then the loop keeps going.
    await run.waitFor((a) => a.length >= MAX_RECORDS, `${MAX_RECORDS} alerts`, 40_000);
    const ticksAtCap = run.ticks.length;
    const until = Date.now() + 30_000;
    while (run.ticks.length < ticksAtCap + 10 && Date.now() < until) await sleep(20);
    expect(run.ticks.length).toBeGreaterThanOrEqual(ticksAtCap + 10);

    expect(run.ticks.some((t) => t.offendersTotal === 6000)).toBe(true);
    for (const t of run.ticks) {
      expect(t.records).toBeLessThanOrEqual(MAX_RECORDS);
      expect(t.tracked).toBeLessThanOrEqual(MAX_RECORDS);
      expect(t.events).toBeLessThanOrEqual(PER_TICK);
    }
    // Exactly one alert per tracked socket, never more than the state bound.
    expect(run.alerts).toHaveLength(MAX_RECORDS);
    expect(new Set(run.alerts.map((a) => a.cookie)).size).toBe(MAX_RECORDS);
    expect(run.alerts.every((a) => a.event === 'alert' && a.bytes === 1)).toBe(true);
    // What was left out is reported, with counts.
    expect(run.suppressed.length).toBeGreaterThan(0);
    expect(run.suppressed.some((s) => s.deferred > 0)).toBe(true);
    // (a dump is not a snapshot: under churn one can miss a socket, hence "about")
    expect(run.suppressed.every((s) => s.untracked >= 6000 - MAX_RECORDS - 50)).toBe(true);
    // Owners were resolved for the storm's sockets too.
    expect(run.alerts.filter((a) => a.pid === h1.pid || a.pid === h2.pid).length).toBeGreaterThan(0);
    expect(run.errors).toEqual([]);
    const s = run.watcher.stats();
    expect(s.tracked).toBeLessThanOrEqual(MAX_RECORDS);
    expect(s.alerts).toBe(MAX_RECORDS);
  });
});
