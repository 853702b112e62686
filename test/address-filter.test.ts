// Address filters (--src/--dst, localAddresses/remoteAddresses) compiled to the kernel's hostcond
// bytecode and run by the real kernel against sockets made here on several 127.0.0.x addresses and
// ::1 (loopback only), including IPv4-mapped sockets of a dual-stack listener. Each filter's result is
// compared four ways: with what the test expects (written out by hand, not computed by the compiler),
// with the JS evaluator of the same bytecode, with `ss` given the same filter, and, for UDP, with the
// native evaluator of the /proc/net/udp fallback.
import { execFileSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import * as net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { addressBytes } from '../lib/address';
import { addressPrefix, runBytecode } from '../lib/bytecode';
import { OutboundWatcher } from '../lib/outbound/watcher';
import { QueueWatcher } from '../lib/queues/watcher';
import { Sampler, compileSampleOptions, type SampleOptions, type SocketRecord } from '../lib/sampler';
import { killCliProcesses, runCli, type CliResult } from './helpers/cli';
import { cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';

const sampler = new Sampler();
const hex = (a: string) => addressBytes(a).toString('hex');
const tupleKey = (la: string, lp: number, ra: string, rp: number) => `${hex(la)}:${lp}>${hex(ra)}:${rp}`;
const recordKey = (r: SocketRecord) => tupleKey(r.localAddress, r.localPort, r.remoteAddress, r.remotePort);

/** The 4-tuples of every TCP socket this file made. */
const tcpTuples = new Set<string>();
/** Our TCP sockets as the kernel reports them (unfiltered). */
let tcpMine: SocketRecord[] = [];
let portA = 0; // listener on 127.0.0.1
let portB = 0; // listener on 127.0.0.2
let portC = 0; // listener on ::1
let portD = 0; // dual-stack listener on ::

function addSocket(s: net.Socket): void {
  tcpTuples.add(tupleKey(s.localAddress!, s.localPort!, s.remoteAddress!, s.remotePort!));
}

async function listener(host: string): Promise<{ port: number; accepted: net.Socket[] }> {
  const { server, port, accepted } = await pausedServer(host);
  const a = server.address() as net.AddressInfo;
  tcpTuples.add(tupleKey(a.address, port, a.family === 'IPv6' ? '::' : '0.0.0.0', 0));
  return { port, accepted };
}

beforeAll(async () => {
  const a = await listener('127.0.0.1');
  const b = await listener('127.0.0.2');
  const c = await listener('::1');
  const d = await listener('::'); // dual-stack: IPv4 clients become ::ffff:a.b.c.d sockets
  [portA, portB, portC, portD] = [a.port, b.port, c.port, d.port];
  const clients = [
    await connect('127.0.0.1', portA, '127.0.0.2'),
    await connect('127.0.0.1', portA, '127.0.0.3'),
    await connect('127.0.0.2', portB, '127.0.0.1'),
    await connect('::1', portC, '::1'),
    await connect('127.0.0.1', portD, '127.0.0.3'),
    await connect('::1', portD, '::1'),
    // An IPv6 socket talking IPv4 through mapped addresses on both ends.
    await connect('::ffff:127.0.0.1', portA, '::ffff:127.0.0.4'),
  ];
  await waitAccepted(a.accepted, 3);
  await waitAccepted(b.accepted, 1);
  await waitAccepted(c.accepted, 1);
  await waitAccepted(d.accepted, 2);
  for (const s of [...clients, ...a.accepted, ...b.accepted, ...c.accepted, ...d.accepted]) addSocket(s);
  tcpMine = await kernelTcp({});
  expect(tcpMine).toHaveLength(tcpTuples.size); // 4 listeners + 7 clients + 7 accepted
  expect(tcpTuples.size).toBe(18);
  // The dual-stack listener's accepted IPv4 client really is an IPv6 socket with mapped addresses.
  expect(tcpMine.some((r) => r.family === 6 && r.localAddress === '::ffff:127.0.0.1' && r.remoteAddress === '::ffff:127.0.0.3')).toBe(true);
});

afterAll(async () => {
  await sampler.close();
  await cleanupSockets();
});

afterEach(async () => {
  await killCliProcesses();
});

async function kernelTcp(o: SampleOptions): Promise<SocketRecord[]> {
  const r = await sampler.sample({ tcp: true, all: true, maxRecords: 1e6, ...o });
  return r.records.filter((x) => tcpTuples.has(recordKey(x))).sort((x, y) => recordKey(x).localeCompare(recordKey(y)));
}

const keys = (rs: SocketRecord[]) => rs.map(recordKey).sort();

/** Cookies (hex, as ss -e prints them after sk:) of the sockets `ss` selects with `expr`. */
function ssCookies(args: string[], expr: string): Set<string> {
  // Other test files may hold tens of thousands of loopback sockets meanwhile: room for all of ss's lines.
  const out = execFileSync('ss', [...args, '-anHe', expr], { encoding: 'utf8', maxBuffer: 1 << 30 });
  return new Set([...out.matchAll(/\bsk:([0-9a-f]+)/g)].map((m) => m[1]));
}

/** The 4-tuple's IPv4 form when it is an IPv4-mapped address. */
const v4 = (a: string) => a.replace(/^::ffff:/i, '');
const in127 = (a: string) => a.includes('.') && v4(a).startsWith('127.');

type Case = [name: string, options: () => SampleOptions, ss: () => string, expected: (r: SocketRecord) => boolean];

const cases: Case[] = [
  [
    'dst /32 (IPv4 prefix also matches the mapped remote address)',
    () => ({ remoteAddresses: ['127.0.0.1/32'] }),
    () => 'dst 127.0.0.1/32',
    (r) => v4(r.remoteAddress) === '127.0.0.1',
  ],
  [
    'a bare address is a host (/32)',
    () => ({ localAddresses: ['127.0.0.2'] }),
    () => 'src 127.0.0.2',
    (r) => v4(r.localAddress) === '127.0.0.2',
  ],
  [
    'src /8: IPv4 and v4-mapped, not ::1 nor ::',
    () => ({ localAddresses: ['127.0.0.0/8'] }),
    () => 'src 127.0.0.0/8',
    (r) => in127(r.localAddress),
  ],
  ['src /128 of ::1', () => ({ localAddresses: ['::1/128'] }), () => 'src ::1/128', (r) => r.localAddress === '::1'],
  [
    'several dst are or-ed',
    () => ({ remoteAddresses: ['127.0.0.2', '127.0.0.3/32'] }),
    () => '( dst 127.0.0.2/32 or dst 127.0.0.3/32 )',
    (r) => ['127.0.0.2', '127.0.0.3'].includes(v4(r.remoteAddress)),
  ],
  [
    'src and dst are and-ed',
    () => ({ localAddresses: ['127.0.0.3'], remoteAddresses: ['127.0.0.0/8'] }),
    () => 'src 127.0.0.3/32 and dst 127.0.0.0/8',
    (r) => v4(r.localAddress) === '127.0.0.3' && in127(r.remoteAddress),
  ],
  [
    'a v4-mapped prefix means its IPv4 prefix (IPv4 and mapped sockets)',
    () => ({ remoteAddresses: ['::ffff:127.0.0.1/128'] }),
    () => 'dst 127.0.0.1/32', // ss would match only the mapped sockets with an IPv6 condition
    (r) => v4(r.remoteAddress) === '127.0.0.1',
  ],
  [
    '0.0.0.0/0: every IPv4 and mapped socket',
    () => ({ localAddresses: ['0.0.0.0/0'] }),
    () => 'src 0.0.0.0/0',
    (r) => r.localAddress.includes('.'),
  ],
  ['::/0: every IPv6 socket, mapped ones too', () => ({ localAddresses: ['::/0'] }), () => 'src ::/0', (r) => r.family === 6],
  [
    'with ports: src /8 and local port of the dual-stack listener',
    () => ({ localAddresses: ['127.0.0.0/8'], localPorts: [portD] }),
    () => `src 127.0.0.0/8 and sport = :${portD}`,
    (r) => in127(r.localAddress) && r.localPort === portD,
  ],
  [
    'with an address and an IPv6 family choice',
    () => ({ localAddresses: ['127.0.0.1', '::1'], ipv6: true }),
    () => 'src ::ffff:127.0.0.1/128 or src ::1/128', // ss -6 takes IPv6 conditions only; the same sockets here
    (r) => r.family === 6 && (v4(r.localAddress) === '127.0.0.1' || r.localAddress === '::1'),
  ],
];

describe('address filters run by the kernel (TCP)', () => {
  for (const [name, options, ssExpr, expected] of cases) {
    it(name, async () => {
      const o = options();
      const want = keys(tcpMine.filter(expected));
      expect(want.length).toBeGreaterThan(0);
      expect(want.length).toBeLessThan(tcpMine.length);
      // The kernel runs the bytecode.
      expect(keys(await kernelTcp(o))).toEqual(want);
      // The JS evaluator of the same bytecode agrees (families are the kernel's choice, so only ours).
      const bc = compileSampleOptions(o).bytecode!;
      const familyOk = (r: SocketRecord) => (o.ipv6 ? r.family === 6 : true);
      const js = tcpMine.filter(
        (r) => familyOk(r) && runBytecode(bc, r.localPort, r.remotePort, { family: r.family, src: r.localAddress, dst: r.remoteAddress }),
      );
      expect(keys(js)).toEqual(want);
      // ss with the same filter selects the same sockets of ours (by cookie).
      const ss = ssCookies(o.ipv6 ? ['-t', '-6'] : ['-t'], ssExpr());
      expect(keys(tcpMine.filter((r) => ss.has(r.cookie.toString(16))))).toEqual(want);
    });
  }

  it('compiles a hostcond as ss does: family, prefix length, port -1, address', () => {
    const bc = compileSampleOptions({ remoteAddresses: ['10.1.0.0/16'] }).bytecode!;
    // D_COND yes=16 no=20, {AF_INET, 16, pad, port -1}, 10.1.0.0
    expect([...bc]).toEqual([8, 16, 20, 0, 2, 16, 0, 0, 0xff, 0xff, 0xff, 0xff, 10, 1, 0, 0]);
    const v6 = compileSampleOptions({ localAddresses: ['fd00::1/8'] }).bytecode!;
    expect(v6.length).toBe(4 + 8 + 16);
    expect([...v6.subarray(0, 6)]).toEqual([7, 28, 32, 0, 10, 8]);
    expect(v6.subarray(12).toString('hex')).toBe('fd' + '00'.repeat(15)); // host bits cleared
  });

  it('the JS evaluator refuses an address condition without addresses', () => {
    const bc = compileSampleOptions({ remoteAddresses: ['10.0.0.0/8'] }).bytecode!;
    expect(() => runBytecode(bc, 1, 2)).toThrow(TypeError);
  });
});

describe('OutboundWatcher (what snat counts) with address options', () => {
  it('counts only destinations in --dst, mapped connections folded into their IPv4 destination', async () => {
    const w = new OutboundWatcher({ sampler, excludeLocalPorts: [], remoteAddresses: ['127.0.0.1/32'], localAddresses: ['127.0.0.0/8'] });
    const poll = await w.poll();
    const byRemote = new Map(poll.destinations.map((d) => [d.remote, d.total]));
    // To 127.0.0.1:A: from 127.0.0.2, 127.0.0.3 and the mapped ::ffff:127.0.0.4 (folded into IPv4).
    expect(byRemote.get(`127.0.0.1:${portA}`)).toBe(3);
    // To the dual-stack listener through 127.0.0.1: the IPv4 client (the ::1 client is not in 127/8).
    expect(byRemote.get(`127.0.0.1:${portD}`)).toBe(1);
    for (const d of poll.destinations) expect(d.remoteAddress).toBe('127.0.0.1');
    const other = await new OutboundWatcher({ sampler, excludeLocalPorts: [], remoteAddresses: ['127.0.0.2'] }).poll();
    expect(new Map(other.destinations.map((d) => [d.remote, d.total])).get(`127.0.0.1:${portA}`)).toBeUndefined();
    expect(other.destinations.find((d) => d.remote === `127.0.0.2:${portB}`)?.total).toBe(1);
  });
});

describe('the /proc/net/udp fallback evaluates the same address conditions in C++', () => {
  const udpTuples = new Set<string>();
  const sockets: dgram.Socket[] = [];
  let udpMine: SocketRecord[] = [];

  async function bound(type: 'udp4' | 'udp6', address: string): Promise<dgram.Socket> {
    const s = dgram.createSocket({ type, ipv6Only: false });
    s.bind(0, address);
    await once(s, 'listening');
    sockets.push(s);
    return s;
  }

  function addUdp(s: dgram.Socket, remote?: { address: string; port: number }): void {
    const a = s.address();
    udpTuples.add(tupleKey(a.address, a.port, remote?.address ?? (a.family === 'IPv6' ? '::' : '0.0.0.0'), remote?.port ?? 0));
  }

  async function udpRecords(o: SampleOptions, forceProcUdp: boolean): Promise<SocketRecord[]> {
    const r = await sampler.sample({ udp: true, all: true, maxRecords: 1e6, forceProcUdp, ...o });
    if (forceProcUdp) expect(r.udpFromProc).toBe(true);
    return r.records.filter((x) => udpTuples.has(recordKey(x)));
  }

  beforeAll(async () => {
    const s2 = await bound('udp4', '127.0.0.2');
    const s3 = await bound('udp4', '127.0.0.3');
    const s6 = await bound('udp6', '::1');
    const dual = await bound('udp6', '::');
    dual.connect(s2.address().port, '::ffff:127.0.0.2');
    await once(dual, 'connect');
    const c3 = await bound('udp4', '127.0.0.3');
    c3.connect(s2.address().port, '127.0.0.2');
    await once(c3, 'connect');
    for (const s of [s2, s3, s6]) addUdp(s);
    addUdp(dual, { address: '::ffff:127.0.0.2', port: s2.address().port });
    addUdp(c3, { address: '127.0.0.2', port: s2.address().port });
    udpMine = await udpRecords({}, true);
    expect(udpMine).toHaveLength(5);
  });

  afterAll(() => {
    for (const s of sockets) s.close();
  });

  const udpCases: [string, SampleOptions, (r: SocketRecord) => boolean][] = [
    ['src /32', { localAddresses: ['127.0.0.3'] }, (r) => r.localAddress === '127.0.0.3'],
    [
      'dst /32 matches the mapped remote of the dual-stack socket',
      { remoteAddresses: ['127.0.0.2/32'] },
      (r) => v4(r.remoteAddress) === '127.0.0.2',
    ],
    ['src /128', { localAddresses: ['::1'] }, (r) => r.localAddress === '::1'],
    // IPv4 condition, prefix 0: the family test comes first, so "::" and "::1" fail (as in the kernel).
    ['0.0.0.0/0 keeps only IPv4 and mapped addresses', { localAddresses: ['0.0.0.0/0'] }, (r) => r.localAddress.includes('.')],
    ['0.0.0.0/0 on the remote side', { remoteAddresses: ['0.0.0.0/0'] }, (r) => r.remoteAddress.includes('.')],
    [
      'src and dst',
      { localAddresses: ['127.0.0.0/8'], remoteAddresses: ['127.0.0.2'] },
      (r) => in127(r.localAddress) && v4(r.remoteAddress) === '127.0.0.2',
    ],
  ];
  for (const [name, o, expected] of udpCases) {
    it(name, async () => {
      const want = keys(udpMine.filter(expected));
      expect(keys(await udpRecords(o, true))).toEqual(want); // native evaluator
      expect(keys(await udpRecords(o, false))).toEqual(want); // kernel (udp_diag; the fallback again where there is none)
      const bc = compileSampleOptions(o).bytecode!;
      const js = udpMine.filter((r) =>
        runBytecode(bc, r.localPort, r.remotePort, { family: r.family, src: r.localAddress, dst: r.remoteAddress }),
      );
      expect(keys(js)).toEqual(want);
    });
  }
});

describe('bad prefixes', () => {
  it.each([
    ['10.0.0.0/33', RangeError, /options\.remoteAddresses\[0\]: prefix length 33 is out of range 0-32/],
    ['fe80::/129', RangeError, /options\.remoteAddresses\[0\]: prefix length 129 is out of range 0-128/],
    ['nonsense', TypeError, /options\.remoteAddresses\[0\] must be an IPv4 or IPv6 address or CIDR prefix.*"nonsense"/],
    ['10.0.0.0/', TypeError, /options\.remoteAddresses\[0\] must be/],
    ['fe80::1%eth0', TypeError, /options\.remoteAddresses\[0\] must be/],
    ['10.0.0.0/8/8', TypeError, /options\.remoteAddresses\[0\] must be/],
  ])('Sampler remoteAddresses %s', async (bad, type, message) => {
    await expect(sampler.sample({ remoteAddresses: [bad] })).rejects.toThrow(type);
    await expect(sampler.sample({ remoteAddresses: [bad] })).rejects.toThrow(message);
  });

  it('a string where a list is expected is a TypeError', async () => {
    await expect(sampler.sample({ localAddresses: '10.0.0.0/8' as unknown as string[] })).rejects.toThrow(
      /options\.localAddresses must be an array/,
    );
    await expect(sampler.sample({ localAddresses: [8 as unknown as string] })).rejects.toThrow(TypeError);
  });

  it('QueueWatcher filter and OutboundWatcher options name the option', () => {
    expect(() => new QueueWatcher({ recvThreshold: 0, filter: { remoteAddresses: ['10.0.0.0/33'] } })).toThrow(
      /options\.filter\.remoteAddresses\[0\]: prefix length 33/,
    );
    expect(() => new OutboundWatcher({ remoteAddresses: ['nonsense'], sampler })).toThrow(/options\.remoteAddresses\[0\] must be/);
    expect(() => new OutboundWatcher({ localAddresses: ['fe80::/129'], sampler })).toThrow(RangeError);
  });

  it('parses brackets, host bits and v4-mapped prefixes', () => {
    expect(addressPrefix('[fd00::]/8', 'x')).toEqual({ family: 6, bytes: Buffer.from('fd' + '00'.repeat(15), 'hex'), bits: 8 });
    expect(addressPrefix('10.1.2.3/8', 'x')).toEqual({ family: 4, bytes: Buffer.from([10, 0, 0, 0]), bits: 8 });
    expect(addressPrefix('::ffff:10.1.0.0/112', 'x')).toEqual({ family: 4, bytes: Buffer.from([10, 1, 0, 0]), bits: 16 });
    expect(addressPrefix('::ffff:0:0/64', 'x').family).toBe(6); // shorter than the mapped head: stays IPv6
  });

  /** Exit 2 and exactly one line on stderr naming the flag; nothing on stdout. */
  function expectUsageError(r: CliResult, line: RegExp): void {
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(line);
    expect(r.code).toBe(2);
  }

  it.each([
    [['list', '--dst', '10.0.0.0/33'], /--dst.*prefix length 33/],
    [['list', '--src', 'fe80::/129'], /--src.*prefix length 129/],
    [['list', '--src', 'nonsense'], /--src must be an IPv4 or IPv6 address/],
    [['list', '--dst', '127.0.0.1,nonsense'], /--dst must be .*"nonsense"/],
    [['list', '--dst', ''], /--dst: expected an IPv4 or IPv6 address/],
    [['queues', '--url', 'http://127.0.0.1:9/hook', '--dst', '10.0.0.0/33'], /--dst.*prefix length 33/],
    [['snat', '--src', 'nonsense'], /--src must be an IPv4 or IPv6 address/],
    [['snat', '--dst', 'fe80::/129'], /--dst.*prefix length 129/],
  ])('sockwatch %j exits 2 with one line', async (args, line) => {
    expectUsageError(await runCli(args), line);
  });
});

describe('the CLI filters by address', () => {
  it('list --src/--dst (repeated) selects our sockets as the library does', async () => {
    const r = await runCli(['list', '-t', '--format', 'json', '--src', '127.0.0.3', '--src', '::1', '--dst', '127.0.0.1/32']);
    expect(r.code).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { local: string; remote: string });
    const listed = new Set(rows.map((x) => `${x.local}>${x.remote}`));
    const ours = (await kernelTcp({ localAddresses: ['127.0.0.3', '::1'], remoteAddresses: ['127.0.0.1/32'] })).map((x) => {
      const f = (a: string, p: number) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
      return `${f(x.localAddress, x.localPort)}>${f(x.remoteAddress, x.remotePort)}`;
    });
    // 127.0.0.3 → 127.0.0.1:A, and 127.0.0.3 → the dual-stack listener through 127.0.0.1 (the ::1
    // sockets talk to ::1, not to 127.0.0.1).
    expect(ours).toHaveLength(2);
    for (const k of ours) expect(listed.has(k)).toBe(true);
    for (const x of rows) expect(v4(x.remote.replace(/^\[|\]?:\d+$/g, ''))).toBe('127.0.0.1');
  });
});
