// Contract with the real kernel: sockets made here with known state, read back through sock_diag.
import { afterAll, describe, expect, it } from 'vitest';
import { Sampler, type SocketRecord } from '../lib/sampler';
import { endpoints } from '../lib/sampler';
import {
  cleanupSockets,
  connect,
  eventually,
  neverAcceptingListener,
  nonReadingUdp,
  pausedServer,
  sendUdp,
  stuckSender,
  ssRows,
  udpSocket,
  waitAccepted,
} from './helpers/sockets';

const sampler = new Sampler();
afterAll(async () => {
  await sampler.close();
  await cleanupSockets();
});

function find(records: SocketRecord[], local: string, remote?: string): SocketRecord | undefined {
  return records.find((r) => {
    const e = endpoints(r);
    return e.local === local && (remote === undefined || e.remote === remote);
  });
}

async function all(opts: Parameters<Sampler['sample']>[0] = {}): Promise<SocketRecord[]> {
  return (await sampler.sample({ ...opts, all: true, maxRecords: 1e6 })).records;
}

describe.each([
  ['IPv4', '127.0.0.1', 4],
  ['IPv6', '::1', 6],
] as const)('TCP receive queue over %s', (_name, host, family) => {
  it('reports exactly the unread bytes of a server socket', async () => {
    const { port, accepted } = await pausedServer(host);
    const client = await connect(host, port);
    await waitAccepted(accepted, 1);
    client.write(Buffer.alloc(12345, 7));
    const local = endpoints({ localAddress: host, localPort: port, remoteAddress: host, remotePort: client.localPort! });
    const rec = await eventually(
      async () => find(await all({ tcp: true, localPorts: [port] }), local.local, local.remote),
      (r) => r?.recvQ === 12345,
    );
    expect(rec).toMatchObject({ protocol: 'tcp', family, stateName: 'established', recvQ: 12345, sendQ: 0, uid: process.getuid!() });
    expect(rec!.inode).toBeGreaterThan(0);
    expect(typeof rec!.cookie).toBe('bigint');
    // A threshold just below the value makes it an offender, at the value it does not. By address and
    // port: another test's socket may have the same port number on another address.
    const below = await sampler.sample({ tcp: true, localAddresses: [host], localPorts: [port], recvThreshold: 12344 });
    expect(below.records.map((r) => r.localPort)).toEqual([port]);
    expect(below.records[0].exceeded).toEqual(['RECV']);
    const at = await sampler.sample({ tcp: true, localAddresses: [host], localPorts: [port], recvThreshold: 12345 });
    expect(at.records).toEqual([]);
  });
});

describe('TCP send queue', () => {
  it('client send queue plus server receive queue equals the bytes the kernel took', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const sender = await stuckSender('127.0.0.1', port);
    const sent = Number(sender.line.split(' ')[1]);
    const cport = sender.port;
    await waitAccepted(accepted, 1);
    // Wait (up to 15 s, a loaded machine is slow to settle) until the bytes sit in both queues: on
    // loopback they move from the client's send queue to the server's receive queue over time.
    // Only the two ends on 127.0.0.1: other addresses may hold the same port numbers on a busy host.
    const recs = await eventually(
      async () =>
        (await all({ tcp: true, ipv4: true, localPorts: [port, cport], states: ['established'] })).filter(
          (r) => r.localAddress === '127.0.0.1' && r.remoteAddress === '127.0.0.1' && (r.remotePort === port || r.remotePort === cport),
        ),
      (rs) =>
        rs.length === 2 &&
        rs.reduce((s, r) => s + r.recvQ + r.sendQ, 0) === sent &&
        rs.find((r) => r.localPort === cport)!.sendQ > 0 &&
        rs.find((r) => r.localPort === port)!.recvQ > 0,
      1500,
    );
    const server = recs.find((r) => r.localPort === port)!;
    const cli = recs.find((r) => r.localPort === cport)!;
    expect(cli.sendQ).toBeGreaterThan(0);
    expect(server.recvQ).toBeGreaterThan(0);
    expect(server.recvQ + cli.sendQ).toBe(sent);
    // The client's exact 4-tuple: its ephemeral port may also be in use toward other destinations.
    const stuck = await sampler.sample({
      tcp: true,
      localAddresses: ['127.0.0.1'],
      localPorts: [cport],
      remoteAddresses: ['127.0.0.1'],
      remotePorts: [port],
      sendThreshold: cli.sendQ - 1,
    });
    expect(stuck.records).toHaveLength(1);
    expect(stuck.records[0].exceeded).toEqual(['SEND']);
    // The exact 4-tuple: an ephemeral port can be shared by connections to other destinations.
    const ss = (await ssRows()).find((r) => r.local === `127.0.0.1:${cport}` && r.peer === `127.0.0.1:${port}`);
    expect(ss?.sendQ).toBe(cli.sendQ);
  });
});

describe('LISTEN sockets', () => {
  it('recv queue is the accept queue and send queue the backlog limit', async () => {
    const holder = await neverAcceptingListener('127.0.0.1', 7);
    for (let i = 0; i < 3; i++) await connect('127.0.0.1', holder.port);
    // Our listener by address and port: another test's listener may have the same port on another address.
    const ours = { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [holder.port] };
    const rec = await eventually(
      async () => find(await all({ ...ours, states: ['listen'] }), `127.0.0.1:${holder.port}`),
      (r) => r?.recvQ === 3,
    );
    expect(rec).toMatchObject({ stateName: 'listen', recvQ: 3, sendQ: 7 });
    // Bytes thresholds never apply to listeners; the accept threshold does.
    const bytes = await sampler.sample({ ...ours, recvThreshold: 0, sendThreshold: 0 });
    expect(bytes.records.filter((r) => r.stateName === 'listen')).toEqual([]);
    const accept = await sampler.sample({ ...ours, states: ['listen'], acceptThreshold: 2 });
    expect(accept.records.map((r) => r.exceeded)).toEqual([['ACCEPT']]);
    const notFull = await sampler.sample({ ...ours, states: ['listen'], acceptThreshold: 'limit' });
    expect(notFull.records).toEqual([]);
    for (let i = 0; i < 5; i++) await connect('127.0.0.1', holder.port);
    const full = await eventually(
      () => sampler.sample({ ...ours, states: ['listen'], acceptThreshold: 'limit' }),
      (r) => r.records.length === 1,
    );
    expect(full.records[0].recvQ).toBeGreaterThanOrEqual(7);
    expect(full.records[0].exceeded).toEqual(['ACCEPT']);
  });
});

describe('UDP', () => {
  /** Our UDP socket on 127.0.0.1:port once its receive memory has stopped changing (> 0, the same over
   *  five scans): a datagram sent on loopback may be queued later than send() returns on a loaded
   *  machine (softirq deferred to ksoftirqd), so a first non-zero value may not hold every datagram. */
  async function steadyUdp(port: number): Promise<SocketRecord | undefined> {
    const seen: number[] = [];
    return eventually(
      async () => find(await all({ udp: true, localAddresses: ['127.0.0.1'], localPorts: [port], skmem: true }), `127.0.0.1:${port}`),
      (r) => {
        seen.push(r?.recvQ ?? 0);
        const last = seen.slice(-5);
        return last.length === 5 && last[0] > 0 && last.every((q) => q === last[0]);
      },
      2000,
    );
  }

  it('queued datagrams show as kernel memory, in agreement with ss', async () => {
    const holder = await nonReadingUdp('127.0.0.1');
    const sender = await udpSocket('udp4', '127.0.0.1');
    await sendUdp(sender, '127.0.0.1', holder.port, Buffer.alloc(100), 10);
    const rec = await steadyUdp(holder.port);
    expect(rec).toMatchObject({ protocol: 'udp', stateName: 'unconn' });
    // truesize: more than the payload, a whole number of equal skbs
    expect(rec!.recvQ).toBeGreaterThan(10 * 100);
    expect(rec!.recvQ % 10).toBe(0);
    expect(rec!.skmem!.rmemAlloc).toBe(rec!.recvQ);
    const ss = (await ssRows()).find((r) => r.netid === 'udp' && r.local === `127.0.0.1:${holder.port}`);
    expect(ss?.recvQ).toBe(rec!.recvQ);
    expect(ss?.skmem?.rb).toBe(rec!.skmem!.rcvbuf);
    expect(ss?.skmem?.d).toBe(rec!.skmem!.drops);
  });

  it('connected UDP sockets are ESTABLISHED, unconnected ones UNCONN, over both families', async () => {
    const a = await udpSocket('udp6', '::1');
    const b = await udpSocket('udp6', '::1');
    await new Promise<void>((res) => b.connect(a.address().port, '::1', () => res()));
    const recs = await all({ udp: true, ipv6: true, localPorts: [a.address().port, b.address().port] });
    expect(find(recs, `[::1]:${a.address().port}`)?.stateName).toBe('unconn');
    expect(find(recs, `[::1]:${b.address().port}`, `[::1]:${a.address().port}`)?.stateName).toBe('established');
    expect(recs.every((r) => r.family === 6)).toBe(true);
  });

  it('the /proc/net/udp path reads the same sockets and queues as udp_diag', async () => {
    const holder = await nonReadingUdp('127.0.0.1');
    const sender = await udpSocket('udp4', '127.0.0.1');
    await sendUdp(sender, '127.0.0.1', holder.port, Buffer.alloc(200), 3);
    const viaDiag = await steadyUdp(holder.port);
    expect(viaDiag!.recvQ).toBeGreaterThan(600);
    const proc = await sampler.sample({ udp: true, all: true, forceProcUdp: true, maxRecords: 1e6 });
    expect(proc.udpFromProc).toBe(true);
    const viaProc = find(proc.records, `127.0.0.1:${holder.port}`);
    expect(viaProc).toMatchObject({ recvQ: viaDiag!.recvQ, inode: viaDiag!.inode, uid: viaDiag!.uid, stateName: 'unconn' });
  });
});

describe('other states and families', () => {
  it('TIME_WAIT sockets are reported with zero queues and inode', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const client = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    const cport = client.localPort!;
    client.end(); // the client closes first: it goes through FIN_WAIT to TIME_WAIT
    accepted[0].resume();
    accepted[0].end();
    const rec = await eventually(
      async () => find(await all({ tcp: true, states: ['time-wait'], localPorts: [cport] }), `127.0.0.1:${cport}`, `127.0.0.1:${port}`),
      (r) => r !== undefined,
    );
    expect(rec).toMatchObject({ stateName: 'time-wait', recvQ: 0, sendQ: 0, inode: 0, remotePort: port });
  });

  it('v4-mapped connections on a dual-stack listener are IPv6 with ::ffff: addresses', async () => {
    const { port, accepted } = await pausedServer('::');
    const client = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    const recs = await all({ tcp: true, localPorts: [port], states: ['established'] });
    const rec = find(recs, `[::ffff:127.0.0.1]:${port}`, `[::ffff:127.0.0.1]:${client.localPort}`);
    expect(rec?.family).toBe(6);
    // IPv4 sockets only: none of ours (an IPv4 hostcond also matches the mapped address, so a sampler
    // that asked for IPv6 sockets too would return ours). Other tests may use the port elsewhere.
    const v4only = await all({ tcp: true, ipv4: true, localAddresses: ['127.0.0.1'], localPorts: [port], states: ['established'] });
    expect(v4only).toEqual([]);
  });

  // SYN_RECV request sockets need a handshake that never completes: see test/netns.test.ts.
});

describe('native aggregation and counts', () => {
  it('counts per state and aggregates outbound connections per remote endpoint', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const clients = [];
    for (let i = 0; i < 6; i++) clients.push(await connect('127.0.0.1', port));
    await waitAccepted(accepted, 6);
    // Exact selection (our client ports and the server port, on 127.0.0.1: port numbers alone may be
    // in use on other addresses by other tests), so parallel tests never count.
    const mine = {
      tcp: true,
      localAddresses: ['127.0.0.1'],
      remoteAddresses: ['127.0.0.1'],
      remotePorts: [port],
      localPorts: clients.map((c) => c.localPort!),
    };
    const r = await sampler.sample({ ...mine, aggregate: { cookies: true } });
    const agg = r.aggregates.find((a) => a.remote === `127.0.0.1:${port}`);
    expect(agg).toMatchObject({ total: 6, states: { established: 6 } });
    expect(r.tcpStates.established).toBe(6);
    expect(r.records).toEqual([]); // no thresholds: no records cross into JS
    expect(r.aggCookies).toHaveLength(6);
    // Only the sockets of an owner set are aggregated.
    const all6 = await all(mine);
    const two = all6.slice(0, 2);
    const owned = await sampler.sample({ ...mine, aggregate: { ownerInodes: two.map((x) => x.inode) } });
    expect(owned.aggregates[0].total).toBe(2);
    const byCookie = await sampler.sample({ ...mine, aggregate: { ownerCookies: [two[0].cookie] } });
    expect(byCookie.aggregates[0].total).toBe(1);
  });

  it('sorts aggregates by total and applies the top-N and min-total cuts in native code', async () => {
    const a = await pausedServer('127.0.0.1');
    const b = await pausedServer('127.0.0.1');
    const ca = [];
    for (let i = 0; i < 3; i++) ca.push(await connect('127.0.0.1', a.port));
    const cb = await connect('127.0.0.1', b.port);
    const mine = {
      tcp: true,
      localAddresses: ['127.0.0.1'],
      remoteAddresses: ['127.0.0.1'],
      remotePorts: [a.port, b.port],
      localPorts: [...ca, cb].map((c) => c.localPort!),
    };
    const full = await sampler.sample({ ...mine, aggregate: { cookies: true } });
    expect(full.aggregates.map((x) => [x.remotePort, x.total])).toEqual([
      [a.port, 3],
      [b.port, 1],
    ]);
    const top = await sampler.sample({ ...mine, aggregate: { top: 1, cookies: true } });
    expect(top.aggregates.map((x) => x.remotePort)).toEqual([a.port]);
    expect(top.aggregatesTotal).toBe(2);
    // Every aggregated socket keeps its cookie: those of the returned list point into it, that of
    // the cut destination has the index aggregates.length ("other").
    expect(top.aggCookies).toHaveLength(4);
    const cutCookie = full.aggCookies![[...full.aggCookieIndex!].indexOf(1)];
    const indexOf = new Map([...top.aggCookies!].map((c, i) => [c, top.aggCookieIndex![i]]));
    expect(indexOf.get(cutCookie)).toBe(1);
    expect([...top.aggCookieIndex!].sort()).toEqual([0, 0, 0, 1]);
    const min = await sampler.sample({ ...mine, aggregate: { minTotal: 2 } });
    expect(min.aggregates.map((x) => x.total)).toEqual([3]);
  });

  it('returns at most maxRecords records but counts every offender', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    for (let i = 0; i < 5; i++) (await connect('127.0.0.1', port)).write('hello');
    await waitAccepted(accepted, 5);
    const r = await eventually(
      () => sampler.sample({ tcp: true, localAddresses: ['127.0.0.1'], localPorts: [port], recvThreshold: 0, maxRecords: 2 }),
      (x) => x.offendersTotal === 5,
    );
    expect(r.records).toHaveLength(2);
    expect(r.offendersTotal).toBe(5);
  });
});

describe('exact lookup', () => {
  it('finds one socket by 4-tuple and cookie, and nothing with a wrong cookie', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const client = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    client.write(Buffer.alloc(777));
    const rec = await eventually(
      async () => find(await all({ tcp: true, localPorts: [port] }), `127.0.0.1:${port}`, `127.0.0.1:${client.localPort}`),
      (r) => r?.recvQ === 777,
    );
    const key = { protocol: 'tcp' as const, local: `127.0.0.1:${port}`, remote: `127.0.0.1:${client.localPort}` };
    const hit = await sampler.lookup({ ...key, cookie: rec!.cookie, skmem: true });
    expect(hit).toMatchObject({ recvQ: 777, cookie: rec!.cookie, inode: rec!.inode });
    expect(hit!.skmem!.rcvbuf).toBeGreaterThan(0);
    const miss = await sampler.lookup({ ...key, cookie: rec!.cookie + 1000n });
    expect(miss).toBeNull();
    // The kernel answers a miss with the listener of the local port; an exact lookup does not.
    expect(await sampler.lookup({ ...key, remote: '127.0.0.1:1' })).toBeNull();
    // UDP too: a connected socket by 4-tuple and cookie, an unconnected one by local address.
    const u1 = await udpSocket('udp4', '127.0.0.1');
    const u2 = await udpSocket('udp4', '127.0.0.1');
    await new Promise<void>((res) => u2.connect(u1.address().port, '127.0.0.1', () => res()));
    const ukey = { protocol: 'udp' as const, local: `127.0.0.1:${u2.address().port}`, remote: `127.0.0.1:${u1.address().port}` };
    const udp = await sampler.lookup(ukey);
    expect(udp).toMatchObject({ protocol: 'udp', stateName: 'established', localPort: u2.address().port });
    expect((await sampler.lookup({ ...ukey, cookie: udp!.cookie }))?.cookie).toBe(udp!.cookie);
    expect(sampler.lookupSync({ protocol: 'udp', local: `127.0.0.1:${u1.address().port}`, remote: '0.0.0.0:0' })?.stateName).toBe('unconn');
    const v6 = await pausedServer('::1');
    const c6 = await connect('::1', v6.port);
    expect((await sampler.lookup({ protocol: 'tcp', local: `[::1]:${c6.localPort}`, remote: `[::1]:${v6.port}` }))?.family).toBe(6);
  });
});
