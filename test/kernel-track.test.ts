// Change tracking (SampleOptions.track) against the real kernel: sockets made here with unread bytes
// held still on the accepted side (a paused server), so every queue is known between scans.
import * as net from 'node:net';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { loadBinding } from '../lib/native';
import { Sampler, type SampleOptions, type SampleResult, type SocketRecord } from '../lib/sampler';
import { ownLoopbackNet } from './helpers/own-address';
import { cleanupSockets, connect, eventually, pausedServer, waitAccepted } from './helpers/sockets';

// An address of its own per test, so no other sockets (another test's) enter its scans: the scans
// select by address only. From this process's pid (ownLoopbackNet), not a fixed 127.83.41.N, which the
// same file run at the same time from another clone of the repository would share.
let HOST = '';
let base: SampleOptions = {};
beforeEach(() => {
  HOST = ownLoopbackNet().host(1);
  base = { localAddresses: [HOST], recvThreshold: 1000, track: { step: 100 } };
});

afterAll(cleanupSockets);

interface Held {
  client: net.Socket;
  accepted: net.Socket;
  port: number;
}

/** A connection whose accepted side (local HOST:port) holds `bytes` unread (once `settled` sees them all, given one). */
async function held(bytes: number, settled?: Sampler): Promise<Held> {
  const { port, accepted } = await pausedServer(HOST);
  const client = await connect(HOST, port);
  client.on('error', () => undefined);
  await waitAccepted(accepted, 1);
  accepted[0].on('error', () => undefined);
  client.write(Buffer.alloc(bytes, 1));
  if (settled) await settle(settled, port, bytes);
  return { client, accepted: accepted[0], port };
}

const sorted = (ps: number[]): number[] => [...ps].sort((a, b) => a - b);
const ports = (rs: SocketRecord[]): number[] => sorted(rs.map((r) => r.localPort));

/** The queue of the server side on `port` as a plain scan sees it. */
async function recvQ(s: Sampler, port: number): Promise<number | undefined> {
  const r = await s.sample({ localAddresses: [HOST], localPorts: [port], states: ['established'], all: true });
  return r.records[0]?.recvQ;
}

async function settle(s: Sampler, port: number, bytes: number): Promise<void> {
  expect(
    await eventually(
      () => recvQ(s, port),
      (q) => q === bytes,
    ),
  ).toBe(bytes);
}

function changes(r: SampleResult): Record<string, number[]> {
  const c = r.changes!;
  return { added: ports(c.added), changed: ports(c.changed), cleared: ports(c.cleared), gone: ports(c.gone) };
}

const none = { added: [], changed: [], cleared: [], gone: [] };

describe('change-tracking scan', () => {
  it('reports added, changed, cleared and gone offenders, and the full set on request', async () => {
    const s = new Sampler();
    try {
      const a = await held(2000, s);

      const first = await s.sample(base);
      expect(first.changes!.reset).toBe(true);
      expect(changes(first)).toEqual({ ...none, added: [a.port] });
      expect(ports(first.records)).toEqual([a.port]);
      expect(first.tracked).toBe(1);
      expect(first.changes!.added[0].recvQ).toBe(2000);

      const quiet = await s.sample(base);
      expect(quiet.changes!.reset).toBe(false);
      expect(changes(quiet)).toEqual(none);
      expect(quiet.records).toEqual([]);
      expect(quiet.tracked).toBe(1);
      expect(quiet.offendersTotal).toBe(1);

      const full = await s.sample({ ...base, track: { step: 100, full: true } });
      expect(full.changes!.reset).toBe(false); // `full` is not an option change
      expect(changes(full)).toEqual(none);
      expect(ports(full.records)).toEqual([a.port]);

      const b = await held(3000, s);
      expect(changes(await s.sample(base))).toEqual({ ...none, added: [b.port] });

      // A move within the step is not a change; past it, it is (measured from the last returned value).
      a.client.write(Buffer.alloc(50, 1));
      await settle(s, a.port, 2050);
      expect(changes(await s.sample(base))).toEqual(none);
      a.client.write(Buffer.alloc(60, 1));
      await settle(s, a.port, 2110);
      const moved = await s.sample(base);
      expect(changes(moved)).toEqual({ ...none, changed: [a.port] });
      expect(moved.changes!.changed[0].recvQ).toBe(2110);
      expect(ports(moved.records)).toEqual([a.port]);

      // b read to the end: under the threshold, in the dump.
      b.accepted.resume();
      await settle(s, b.port, 0);
      const cleared = await s.sample(base);
      expect(changes(cleared)).toEqual({ ...none, cleared: [b.port] });
      expect(cleared.changes!.cleared[0].recvQ).toBe(0);
      expect(cleared.changes!.cleared[0].exceeded).toEqual([]);
      expect(cleared.tracked).toBe(1);

      // a closed with unread bytes (RST): absent from the dump; its last returned record comes back.
      const cookie = moved.changes!.changed[0].cookie;
      a.accepted.destroy();
      await eventually(
        () => recvQ(s, a.port),
        (q) => q === undefined,
      );
      const gone = await s.sample(base);
      expect(changes(gone)).toEqual({ ...none, gone: [a.port] });
      expect(gone.changes!.gone[0]).toMatchObject({ cookie, recvQ: 2110, exceeded: ['RECV'] });
      expect(gone.tracked).toBe(0);
    } finally {
      await s.close();
    }
  });

  it('starts over when a tracked scan has other options, and plain scans leave it alone', async () => {
    const s = new Sampler();
    try {
      const a = await held(2000, s);
      const b = await held(4000, s);
      expect(changes(await s.sample(base))).toEqual({ ...none, added: sorted([a.port, b.port]) });

      // A plain scan in between: its result as always, the followed set untouched.
      const plain = await s.sample({ localAddresses: [HOST], recvThreshold: 1000 });
      expect(plain.changes).toBeUndefined();
      expect(plain.tracked).toBeUndefined();
      expect(ports(plain.records)).toEqual(sorted([a.port, b.port]));
      expect(changes(await s.sample(base))).toEqual(none);

      // Another threshold: a new followed set, every current offender added, nothing cleared.
      const other = await s.sample({ ...base, recvThreshold: 3000 });
      expect(other.changes!.reset).toBe(true);
      expect(changes(other)).toEqual({ ...none, added: [b.port] });
      // Another step is another option too; and back to the first options: a reset again.
      expect((await s.sample({ ...base, recvThreshold: 3000, track: true })).changes!.reset).toBe(true);
      const back = await s.sample(base);
      expect(back.changes!.reset).toBe(true);
      expect(changes(back)).toEqual({ ...none, added: sorted([a.port, b.port]) });
      expect((await s.sample(base)).changes!.reset).toBe(false);

      // sampleSync shares the followed set with sample().
      expect(changes(s.sampleSync(base))).toEqual(none);
    } finally {
      await s.close();
    }
  });

  it('follows at most maxRecords offenders; the rest are counted, and added on a scan after room frees', async () => {
    const s = new Sampler();
    try {
      const a = await held(2000, s);
      const b = await held(2000, s);
      const capped = await s.sample({ ...base, maxRecords: 1 });
      expect(capped.tracked).toBe(1);
      expect(capped.offendersTotal).toBe(2);
      expect(capped.changes!.added).toHaveLength(1);
      const first = capped.changes!.added[0].localPort;
      const other = first === a.port ? b : a;
      expect(changes(await s.sample({ ...base, maxRecords: 1 }))).toEqual(none);
      (first === a.port ? a : b).accepted.resume();
      await settle(s, first, 0);
      // The room is known only once the dump is over: the waiting offender comes in on the next scan.
      const freed = await s.sample({ ...base, maxRecords: 1 });
      expect(changes(freed)).toEqual({ ...none, cleared: [first] });
      expect(freed.tracked).toBe(0);
      expect(changes(await s.sample({ ...base, maxRecords: 1 }))).toEqual({ ...none, added: [other.port] });
    } finally {
      await s.close();
    }
  });

  it('rejects bad track options', () => {
    const s = new Sampler();
    try {
      expect(() => s.sampleSync({ track: 1 as unknown as boolean })).toThrow(TypeError);
      expect(() => s.sampleSync({ track: { step: -1 } })).toThrow(RangeError);
      expect(() => s.sampleSync({ track: { step: 1.5 } })).toThrow(RangeError);
      expect(() => s.sampleSync({ track: { full: 'yes' as unknown as boolean } })).toThrow(TypeError);
      expect(() => s.sampleSync({ track: { stp: 1 } as unknown as boolean })).toThrow(/stp/);
      expect(() => s.sampleSync({ track: true, all: true })).toThrow(RangeError);
    } finally {
      void s.close();
    }
  });

  it('reports the followed set to V8 and frees it on close()', async () => {
    const binding = loadBinding();
    const conns = await Promise.all(Array.from({ length: 20 }, () => held(2000)));
    // What closing a sampler that never tracked gives back (its socket and buffer).
    const plainSampler = new Sampler();
    const e0 = binding.externalMemory();
    await plainSampler.close();
    const socketBytes = e0 - binding.externalMemory();
    expect(socketBytes).toBeGreaterThan(64 * 1024);

    const s = new Sampler();
    await eventually(
      async () => (await s.sample({ localAddresses: [HOST], recvThreshold: 1000 })).offendersTotal,
      (n) => n === 20,
    );
    const open = binding.externalMemory();
    const r = await s.sample(base);
    expect(r.tracked).toBe(20);
    // The growth also holds the result's typed arrays (external too, until collected).
    const grown = binding.externalMemory() - open;
    const atClose = binding.externalMemory();
    await s.close();
    const trackBytes = atClose - binding.externalMemory() - socketBytes;
    // 20 entries of a few hundred bytes each, plus the hash table.
    expect(trackBytes).toBeGreaterThan(20 * 150);
    expect(trackBytes).toBeLessThan(64 * 1024);
    expect(trackBytes).toBeLessThanOrEqual(grown);
    conns.forEach((c) => c.accepted.destroy());
  });
});
