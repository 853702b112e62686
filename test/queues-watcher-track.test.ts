// QueueWatcher over change-tracking scans, against the real kernel: offenders held still on their
// own loopback address (paused servers), so a tick's records are exactly the changes.
import * as net from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { QueueWatcher, type QueueAlert, type QueueTickStats } from '../lib/queues';
import { Sampler } from '../lib/sampler';
import { cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';
import { waitFor } from './helpers/wait';

const HOST = '127.83.42.1';
const N = 20;

const watchers: QueueWatcher[] = [];
afterEach(async () => {
  while (watchers.length) await watchers.pop()!.stop();
});
afterAll(cleanupSockets);

/** `n` connections to one paused server on HOST; each accepted side holds 2000 unread bytes. */
async function offenders(n: number): Promise<{ port: number; accepted: net.Socket[] }> {
  const { port, accepted } = await pausedServer(HOST);
  for (let i = 0; i < n; i++) {
    const c = await connect(HOST, port);
    c.on('error', () => undefined);
    c.write(Buffer.alloc(2000, 1));
  }
  await waitAccepted(accepted, n);
  accepted.forEach((s) => s.on('error', () => undefined));
  return { port, accepted };
}

const samplers: Sampler[] = [];
afterAll(async () => {
  for (const s of samplers) await s.close();
});

function watch(port: number, repeatMs: number): { alerts: QueueAlert[]; ticks: QueueTickStats[]; lookups: number } {
  // A real sampler whose exact lookups are counted.
  const sampler = new Sampler();
  samplers.push(sampler);
  const lookup = sampler.lookup.bind(sampler);
  const w = new QueueWatcher({
    sampler,
    intervalMs: 20,
    recvThreshold: 1000,
    sendThreshold: 'off',
    acceptThreshold: 'off',
    filter: { localAddresses: [HOST], localPorts: [port] },
    notifyResolved: true,
    repeatMs,
    owners: false,
  });
  watchers.push(w);
  const run = { alerts: [] as QueueAlert[], ticks: [] as QueueTickStats[], lookups: 0 };
  sampler.lookup = (o) => {
    run.lookups++;
    return lookup(o);
  };
  w.on('alert', (a) => run.alerts.push(a));
  w.on('tick', (t) => run.ticks.push(t));
  w.on('error', (e) => {
    throw e;
  });
  w.start();
  return run;
}

describe('QueueWatcher with change-tracking scans', () => {
  it('a steady storm brings no records to JS; a drained socket resolves from its cleared record, a closed one by lookup', async () => {
    const { port, accepted } = await offenders(N);
    const run = watch(port, 0);
    await waitFor('every alert', () => run.alerts.length === N);
    const settled = run.ticks.length;
    await waitFor('ten more ticks', () => run.ticks.length >= settled + 10);
    const steady = run.ticks.slice(settled);
    expect(steady.every((t) => t.records === 0 && t.offendersTotal === N && t.tracked === N && t.rechecks === 0)).toBe(true);
    expect(run.alerts.every((a) => a.event === 'alert' && a.bytes === 2000)).toBe(true);

    // Drained: the dump shows it under the threshold (cleared), no lookup needed.
    const drained = accepted[0];
    drained.resume();
    await waitFor('the drained socket resolved', () => run.alerts.some((a) => a.event === 'resolved'));
    const resolved = run.alerts.find((a) => a.event === 'resolved')!;
    expect(resolved).toMatchObject({ bytes: 0, local: `${HOST}:${port}` });
    expect(resolved.closed).toBeUndefined();
    expect(run.lookups).toBe(0);

    // Closed with unread bytes (RST): gone from the dump, re-checked by lookup twice, then resolved closed.
    accepted[1].destroy();
    await waitFor('the closed socket resolved', () => run.alerts.some((a) => a.event === 'resolved' && a.closed === true));
    expect(run.lookups).toBeGreaterThanOrEqual(2);
    expect(run.alerts.filter((a) => a.event === 'alert')).toHaveLength(N);
  });

  it('repeats carry the queue as it is: the ticks that send them scan the full set', async () => {
    const { port } = await offenders(N);
    const run = watch(port, 300);
    await waitFor('two rounds of repeats', () => run.alerts.filter((a) => a.event === 'repeat' && a.repeat === 2).length === N, 20_000);
    const repeatTicks = run.ticks.filter((t) => t.events > 0 && t.tick > 1);
    expect(repeatTicks.length).toBeGreaterThan(0);
    // The full set came with every tick that sent repeats (or the repeat's bytes could lag by up to the step).
    for (const t of repeatTicks) expect(t.records).toBe(N);
    expect(run.alerts.filter((a) => a.event === 'repeat').every((a) => a.bytes === 2000)).toBe(true);
    // Between them, quiet ticks bring nothing.
    expect(run.ticks.some((t) => t.tick > 1 && t.records === 0)).toBe(true);
  });
});
