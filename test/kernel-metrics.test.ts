// The exporter's per-scan figures against the real kernel: queue histograms, sockets over thresholds,
// per-family state counts, the fullest listeners, and the aggregation's excluded local ports and
// IPv4-mapped merge. Every figure is computed in the native pass; here it is checked against
// sockets made with known queues, and against the records of the same pass bucketed in JS.
import { afterAll, describe, expect, it } from 'vitest';
import {
  CompiledSampleOptions,
  DEFAULT_QUEUE_HISTOGRAM_BOUNDS,
  Sampler,
  compileSampleOptions,
  type QueueHistogram,
  type SampleOptions,
  type SampleResult,
  type SocketRecord,
} from '../lib/sampler';
import {
  acceptingServer,
  cleanupSockets,
  connect,
  eventually,
  neverAcceptingListener,
  nonReadingUdp,
  pausedServer,
  sendUdp,
  stuckSender,
  udpSocket,
  unreadConnection,
  waitAccepted,
} from './helpers/sockets';

const sampler = new Sampler();
afterAll(async () => {
  await sampler.close();
  await cleanupSockets();
});

/** A histogram built in JS from values, Prometheus `le` buckets (a value equal to a bound is in it). */
function bucketed(values: number[], bounds: readonly number[]): QueueHistogram {
  const counts = new Array<number>(bounds.length + 1).fill(0);
  for (const x of values) {
    const i = bounds.findIndex((b) => x <= b);
    counts[i < 0 ? bounds.length : i]++;
  }
  return { bounds: [...bounds], counts, sum: values.reduce((a, b) => a + b, 0), count: values.length };
}

/** The histograms the records of one pass must give: every record but TCP LISTEN. */
function expectedHistograms(records: SocketRecord[], bounds: readonly number[]) {
  const of = (protocol: 'tcp' | 'udp') =>
    records.filter((r) => r.protocol === protocol && !(protocol === 'tcp' && r.stateName === 'listen'));
  const side = (protocol: 'tcp' | 'udp') => ({
    recv: bucketed(
      of(protocol).map((r) => r.recvQ),
      bounds,
    ),
    send: bucketed(
      of(protocol).map((r) => r.sendQ),
      bounds,
    ),
  });
  return { tcp: side('tcp'), udp: side('udp') };
}

describe('queue histograms', () => {
  it('bucket the queues of known sockets exactly as their records, LISTEN left out', async () => {
    const unread = await unreadConnection('127.0.0.1', 12345);
    const one = await unreadConnection('::1', 1);
    const { port: idlePort, accepted: idleAccepted } = await pausedServer('127.0.0.1');
    await connect('127.0.0.1', idlePort);
    await waitAccepted(idleAccepted, 1);
    const { port: stuckPort, accepted: stuckAccepted } = await pausedServer('127.0.0.1');
    const sender = await stuckSender('127.0.0.1', stuckPort);
    await waitAccepted(stuckAccepted, 1);
    const udp = await nonReadingUdp('127.0.0.1');
    const tx = await udpSocket('udp4', '127.0.0.1');
    await sendUdp(tx, '127.0.0.1', udp.port, Buffer.alloc(500), 3);
    const ports = [unread.port, one.port, idlePort, stuckPort, sender.port, udp.port];
    // Our sockets are all on 127.0.0.1 or ::1; other tests may use these port numbers on other addresses.
    const opts: SampleOptions = {
      localAddresses: ['127.0.0.1', '::1'],
      localPorts: ports,
      all: true,
      maxRecords: 1e6,
      queueHistogram: true,
    };
    // Loopback moves bytes from the sender's queue to the receiver's for a while: wait until two
    // passes agree on every queue, then compare within one pass (records and histogram together).
    let prev = '';
    const r = await eventually(
      () => sampler.sample(opts),
      (res) => {
        const key = JSON.stringify(res.records.map((x) => [x.localPort, x.remotePort, x.recvQ, x.sendQ]).sort());
        const same = key === prev;
        prev = key;
        return (
          same &&
          res.records.some((x) => x.localPort === sender.port && x.sendQ > 0) &&
          res.records.some((x) => x.protocol === 'udp' && x.recvQ > 0)
        );
      },
      500,
    );
    const h = r.queueHistograms!;
    expect(h).toEqual(expectedHistograms(r.records, DEFAULT_QUEUE_HISTOGRAM_BOUNDS));
    // The known ones, by hand: 12345 unread bytes fall in (4096, 16384], 1 byte in (0, 1024].
    const nonListen = r.records.filter((x) => x.protocol === 'tcp' && x.stateName !== 'listen');
    expect(h.tcp.recv.count).toBe(nonListen.length);
    expect(h.tcp.recv.count).toBeLessThan(r.records.filter((x) => x.protocol === 'tcp').length); // listeners exist, not counted
    expect(h.tcp.recv.counts[3]).toBeGreaterThanOrEqual(1);
    expect(h.tcp.recv.counts[1]).toBeGreaterThanOrEqual(1);
    expect(h.tcp.send.sum).toBe(nonListen.reduce((a, x) => a + x.sendQ, 0));
    expect(h.tcp.send.sum).toBeGreaterThan(0);
    // (UDP and TCP port numbers are separate spaces: another process's UDP socket may hold one of the TCP ports.)
    expect(h.udp.recv.count).toBe(r.records.filter((x) => x.protocol === 'udp').length);
    expect(h.udp.recv.count).toBeGreaterThanOrEqual(1);
    expect(h.udp.recv.sum).toBeGreaterThan(0);
    // Bounds are inclusive upper limits: 12345 is in the bucket of 12345, not of 12344.
    const custom = await sampler.sample({
      tcp: true,
      // The exact 4-tuple: the ports alone may match a socket on another loopback address.
      localAddresses: ['127.0.0.1'],
      localPorts: [unread.port],
      remoteAddresses: ['127.0.0.1'],
      remotePorts: [unread.clientPort],
      states: ['established'],
      queueHistogram: { bounds: [0, 12344, 12345] },
    });
    expect(custom.queueHistograms!.tcp.recv).toEqual({ bounds: [0, 12344, 12345], counts: [0, 0, 1, 0], sum: 12345, count: 1 });
    const below = await sampler.sample({
      tcp: true,
      localAddresses: ['127.0.0.1'],
      localPorts: [unread.port],
      remoteAddresses: ['127.0.0.1'],
      remotePorts: [unread.clientPort],
      states: ['established'],
      queueHistogram: { bounds: [100, 12344] },
    });
    expect(below.queueHistograms!.tcp.recv.counts).toEqual([0, 0, 1]);
    expect(below.queueHistograms!.udp.recv).toEqual({ bounds: [100, 12344], counts: [0, 0, 0], sum: 0, count: 0 });
  });

  it('are absent unless asked for, and agree with the records of a whole-host pass', async () => {
    const u = await unreadConnection('127.0.0.1', 70000);
    const plain = await sampler.sample({ maxRecords: 0 });
    expect(plain.queueHistograms).toBeUndefined();
    // Loopback delivers the 70000 bytes over time: wait for a pass that has all of them unread on our
    // server socket (by its 4-tuple), then compare within that pass.
    const r = await eventually(
      () => sampler.sample({ all: true, maxRecords: 1e7, queueHistogram: { bounds: [0, 65536, 100000] } }),
      (res) =>
        res.records.some(
          (x) =>
            x.localAddress === '127.0.0.1' &&
            x.localPort === u.port &&
            x.remoteAddress === '127.0.0.1' &&
            x.remotePort === u.clientPort &&
            x.recvQ === 70000,
        ),
      500,
    );
    expect(r.queueHistograms).toEqual(expectedHistograms(r.records, [0, 65536, 100000]));
    expect(r.queueHistograms!.tcp.recv.counts[2]).toBeGreaterThanOrEqual(1);
  });

  it('count the sockets over each threshold, past maxRecords', async () => {
    const a = await unreadConnection('127.0.0.1', 5000);
    const b = await unreadConnection('127.0.0.1', 6000);
    const lst = await neverAcceptingListener('127.0.0.1', 8);
    await connect('127.0.0.1', lst.port);
    // Our sockets by address and port: other tests may use these port numbers on other addresses.
    const mine = { localAddresses: ['127.0.0.1'], localPorts: [a.port, b.port, lst.port] };
    const thresholds = { recvThreshold: 4999, sendThreshold: 0, acceptThreshold: 0 } as const;
    const count = (res: SampleResult, q: 'RECV' | 'SEND' | 'ACCEPT') => res.records.filter((x) => x.exceeded.includes(q)).length;
    // Two passes (records, then counts only) agree once loopback has settled: a send queue may hold
    // bytes not yet acknowledged for a moment. A native count that differs from its records never does.
    let all: SampleResult | undefined;
    const none = await eventually(
      async () => {
        all = await sampler.sample({ ...mine, ...thresholds, all: true, maxRecords: 1e6 });
        return sampler.sample({ ...mine, ...thresholds, maxRecords: 0 });
      },
      (res) =>
        count(all!, 'RECV') === 2 &&
        count(all!, 'ACCEPT') === 1 &&
        res.overThreshold.recv === 2 &&
        res.overThreshold.accept === 1 &&
        res.overThreshold.send === count(all!, 'SEND'),
      500,
    );
    expect(none.records).toEqual([]);
    expect(none.overThreshold).toEqual({ recv: count(all!, 'RECV'), send: count(all!, 'SEND'), accept: count(all!, 'ACCEPT') });
    expect(none.overThreshold).toMatchObject({ recv: 2, accept: 1 });
    expect((await sampler.sample({ ...mine, maxRecords: 0 })).overThreshold).toEqual({ recv: 0, send: 0, accept: 0 });
  });
});

describe('state counts per protocol and family', () => {
  it('equal the records of an all:true pass, and add up to the per-protocol counts', async () => {
    await unreadConnection('127.0.0.1', 10);
    await unreadConnection('::1', 10);
    await nonReadingUdp('::1');
    await nonReadingUdp('127.0.0.1');
    const r = await sampler.sample({ all: true, maxRecords: 1e7 });
    expect(r.records.length).toBe(r.socketsSeen);
    const expected: Record<string, Record<string, Record<string, number>>> = { tcp: { 4: {}, 6: {} }, udp: { 4: {}, 6: {} } };
    for (const x of r.records) {
      const m = expected[x.protocol][x.family];
      m[x.stateName] = (m[x.stateName] ?? 0) + 1;
    }
    expect(r.stateCountsByFamily).toEqual(expected);
    for (const p of ['tcp', 'udp'] as const) {
      const sum: Record<string, number> = {};
      for (const f of [4, 6] as const) for (const [s, n] of Object.entries(r.stateCountsByFamily[p][f])) sum[s] = (sum[s] ?? 0) + n;
      expect(sum).toEqual(p === 'tcp' ? r.tcpStates : r.udpStates);
    }
    expect(r.stateCountsByFamily.tcp[6].established).toBeGreaterThanOrEqual(2);
    expect(r.stateCountsByFamily.udp[4].unconn).toBeGreaterThanOrEqual(1);
  });
});

/** A listener that never accepts, with `pending` connections waiting in its accept queue. */
async function filledListener(host: string, backlog: number, pending: number): Promise<number> {
  const l = await neverAcceptingListener(host, backlog);
  for (let i = 0; i < pending; i++) await connect(host, l.port);
  return l.port;
}

describe('listeners', () => {
  it('returns the top N by accept-queue fill, ties to the longer queue, chosen natively', async () => {
    const half = await filledListener('127.0.0.1', 2, 1); // 1/2
    const halfLonger = await filledListener('::1', 4, 2); // 2/4: same ratio, longer queue
    const full = await filledListener('127.0.0.1', 3, 3); // 3/3
    const low = await filledListener('127.0.0.1', 10, 1); // 1/10
    const ports = [half, halfLonger, full, low];
    // By address and port: another test's listener may have one of these port numbers on another address.
    const opts: SampleOptions = {
      tcp: true,
      states: ['listen'],
      localAddresses: ['127.0.0.1', '::1'],
      localPorts: ports,
      listeners: { top: 3 },
      maxRecords: 0,
    };
    const r = await eventually(
      () => sampler.sample(opts),
      (res) => res.listeners.length === 3 && res.listeners[0].acceptQueue === 3 && res.listeners[2].acceptQueue === 1,
    );
    expect(r.listeners).toEqual([
      { family: 4, localAddress: '127.0.0.1', localPort: full, acceptQueue: 3, backlog: 3 },
      { family: 6, localAddress: '::1', localPort: halfLonger, acceptQueue: 2, backlog: 4 },
      { family: 4, localAddress: '127.0.0.1', localPort: half, acceptQueue: 1, backlog: 2 },
    ]);
    const all = await sampler.sample({ ...opts, listeners: { top: 100 } });
    expect(all.listeners.map((l) => l.localPort)).toEqual([full, halfLonger, half, low]);
    expect((await sampler.sample({ ...opts, listeners: undefined })).listeners).toEqual([]);
  });
});

describe('aggregation for the exporter', () => {
  it('excludeLocalPorts leaves those sockets out of the aggregates only', async () => {
    const { port, accepted } = await acceptingServer('127.0.0.1');
    const c1 = await connect('127.0.0.1', port);
    const c2 = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 2);
    // Both ports of every socket ours: an ephemeral port number is shared by connections to other
    // destinations (the kernel only keeps 4-tuples unique), so a local port alone may match others'.
    const ports = [port, c1.localPort!, c2.localPort!];
    const base: SampleOptions = {
      tcp: true,
      localAddresses: ['127.0.0.1'],
      remoteAddresses: ['127.0.0.1'],
      localPorts: ports,
      remotePorts: ports,
      states: ['established'],
      maxRecords: 0,
      queueHistogram: true,
    };
    const plain = await sampler.sample({ ...base, aggregate: true });
    const excl = await sampler.sample({ ...base, aggregate: { excludeLocalPorts: [port] } });
    expect(plain.aggregatedSockets).toBe(4);
    expect(plain.aggregates.map((a) => a.remote).sort()).toEqual(
      [`127.0.0.1:${port}`, `127.0.0.1:${c1.localPort}`, `127.0.0.1:${c2.localPort}`].sort(),
    );
    expect(excl.aggregates.map((a) => [a.remote, a.total])).toEqual([[`127.0.0.1:${port}`, 2]]);
    expect(excl.aggregatedSockets).toBe(2);
    expect(excl.aggregatesTotal).toBe(1);
    // Still counted and histogrammed.
    expect(excl.socketsSeen).toBe(4);
    expect(excl.queueHistograms!.tcp.recv.count).toBe(4);
    // A range, and the top cut: aggregatedSockets keeps the sockets of the endpoints cut.
    const range = await sampler.sample({ ...base, aggregate: { excludeLocalPorts: [`${port}-${port}`], top: 1 } });
    expect(range.aggregatedSockets).toBe(2);
    const top = await sampler.sample({ ...base, aggregate: { top: 1 } });
    expect(top.aggregates).toHaveLength(1);
    expect(top.aggregatedSockets).toBe(4);
    expect(top.aggregatedSockets - top.aggregates[0].total).toBe(2); // "other"
  });

  it('mergeMapped counts a dual-stack socket to ::ffff:a.b.c.d as the IPv4 endpoint', async () => {
    const { port, accepted } = await acceptingServer('127.0.0.1');
    const v4 = await connect('127.0.0.1', port);
    const mapped = await connect('::ffff:127.0.0.1', port); // an AF_INET6 socket with a mapped peer
    await waitAccepted(accepted, 2);
    const base: SampleOptions = {
      tcp: true,
      // An IPv4 prefix matches the mapped socket's ::ffff:127.0.0.1 too; the port numbers alone may be others'.
      localAddresses: ['127.0.0.1'],
      remoteAddresses: ['127.0.0.1'],
      localPorts: [v4.localPort!, mapped.localPort!],
      remotePorts: [port],
      states: ['established'],
      maxRecords: 1e6,
      all: true,
    };
    const plain = await sampler.sample({ ...base, aggregate: true });
    const mappedRec = plain.records.find((x) => x.localPort === mapped.localPort)!;
    expect(mappedRec).toMatchObject({ family: 6, remoteAddress: '::ffff:127.0.0.1' });
    expect(plain.records.find((x) => x.localPort === v4.localPort)).toMatchObject({ family: 4 });
    expect(plain.aggregates.map((a) => [a.family, a.remote, a.total]).sort()).toEqual(
      [
        [4, `127.0.0.1:${port}`, 1],
        [6, `[::ffff:127.0.0.1]:${port}`, 1],
      ].sort(),
    );
    const merged = await sampler.sample({ ...base, aggregate: { mergeMapped: true } });
    expect(merged.aggregates).toEqual([
      { family: 4, remoteAddress: '127.0.0.1', remotePort: port, remote: `127.0.0.1:${port}`, total: 2, states: { established: 2 } },
    ]);
    expect(merged.aggregatedSockets).toBe(2);
  });
});

describe('options', () => {
  it.each([
    [{ queueHistogram: 'yes' }, TypeError, /options.queueHistogram must be true, false or an object \(got "yes"\)/],
    [{ queueHistogram: { bound: [1] } }, TypeError, /options.queueHistogram: unknown option "bound" \(did you mean "bounds"\?\)/],
    [{ queueHistogram: { bounds: 5 } }, TypeError, /options.queueHistogram.bounds must be an array/],
    [{ queueHistogram: { bounds: [] } }, RangeError, /options.queueHistogram.bounds must have 1 to 64 bounds \(got 0\)/],
    [{ queueHistogram: { bounds: Array.from({ length: 65 }, (_, i) => i) } }, RangeError, /must have 1 to 64 bounds \(got 65\)/],
    [{ queueHistogram: { bounds: [0, 10, 10] } }, RangeError, /bounds must be strictly increasing \(10 then 10 at \[2\]\)/],
    [{ queueHistogram: { bounds: [5, 1] } }, RangeError, /strictly increasing/],
    [{ queueHistogram: { bounds: [-1] } }, RangeError, /options.queueHistogram.bounds\[0\] must be a non-negative integer \(got -1\)/],
    [{ queueHistogram: { bounds: [1.5] } }, RangeError, /bounds\[0\]/],
    [{ queueHistogram: { bounds: [Infinity] } }, RangeError, /bounds\[0\]/],
    [{ queueHistogram: { bounds: [Number.NaN] } }, RangeError, /bounds\[0\]/],
    [{ queueHistogram: { bounds: ['1'] } }, TypeError, /bounds\[0\]/],
    [{ listeners: true }, TypeError, /options.listeners must be an object like \{top: 10\}/],
    [{ listeners: {} }, TypeError, /options.listeners.top must be an integer from 1 to 4294967295 \(got undefined\)/],
    [{ listeners: { top: 0 } }, RangeError, /options.listeners.top must be an integer from 1/],
    [{ listeners: { top: 5, n: 1 } }, TypeError, /options.listeners: unknown option "n"/],
    [{ aggregate: { excludeLocalPorts: [70000] } }, RangeError, /options.aggregate.excludeLocalPorts\[0\]: port 70000/],
    [{ aggregate: { excludeLocalPorts: 80 } }, TypeError, /options.aggregate.excludeLocalPorts must be an array/],
    [{ aggregate: { mergeMapped: 1 } }, TypeError, /options.aggregate.mergeMapped must be true or false/],
    [{ aggregate: { mergeMaped: true } }, TypeError, /did you mean "mergeMapped"/],
  ])('%j is refused', (opts, type, message) => {
    expect(() => compileSampleOptions(opts as SampleOptions)).toThrow(type);
    expect(() => compileSampleOptions(opts as SampleOptions)).toThrow(message);
    expect(() => sampler.sampleSync(opts as SampleOptions)).toThrow(message);
  });

  it('CompiledSampleOptions carry the histogram, listeners and aggregation options', async () => {
    const { port, accepted } = await acceptingServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    const ports = [port, c.localPort!];
    const compiled = new CompiledSampleOptions({
      tcp: true,
      states: ['established'],
      localAddresses: ['127.0.0.1'],
      remoteAddresses: ['127.0.0.1'],
      localPorts: ports,
      remotePorts: ports,
      maxRecords: 0,
      queueHistogram: { bounds: [0] },
      aggregate: { excludeLocalPorts: [port], mergeMapped: true },
    });
    const r: SampleResult = sampler.sampleSync(compiled);
    expect(r.queueHistograms!.tcp.recv).toEqual({ bounds: [0], counts: [2, 0], sum: 0, count: 2 });
    expect(r.aggregates.map((a) => a.remote)).toEqual([`127.0.0.1:${port}`]);
    expect(r.aggregatedSockets).toBe(1);
    const listening = new CompiledSampleOptions({
      tcp: true,
      states: ['listen'],
      localAddresses: ['127.0.0.1'],
      localPorts: [port],
      maxRecords: 0,
      listeners: { top: 1 },
    });
    expect(sampler.sampleSync(listening).listeners).toEqual([
      { family: 4, localAddress: '127.0.0.1', localPort: port, acceptQueue: 0, backlog: 511 },
    ]);
  });
});
