// Option validation in TypeScript: messages name the bad option. Rule: one case per contract item
// of lib/base/validate.ts (unknown keys with the nearest valid one, TypeError for a wrong type,
// RangeError for a wrong value, numbers bounded to the native type, no options cache), each against
// the public entry points (Sampler, sample, lookup, listSockets, QueueWatcher); kernel-facing ones on
// real loopback sockets.
import * as net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { ACCEPT_AT_LIMIT, THRESHOLD_OFF } from '../lib/native';
import { CompiledSampleOptions, compileSampleOptions, listSockets, parsePortSpec, Sampler, type SampleOptions } from '../lib/sampler';
import { parseEndpoint, formatEndpoint, addressBytes } from '../lib/address';
import { stateMask } from '../lib/states';
import { QueueWatcher } from '../lib/queues';
import { cleanupSockets, eventually, unreadConnection } from './helpers/sockets';

afterAll(cleanupSockets);

describe('sample options', () => {
  it.each([
    [{ recvThreshold: -1 }, RangeError, /options.recvThreshold must be a non-negative integer number of bytes or 'off' \(got -1\)/],
    [{ sendThreshold: 1.5 }, RangeError, /options.sendThreshold/],
    [{ recvThreshold: Number.NaN }, RangeError, /options.recvThreshold .*\(got NaN\)/],
    [{ recvThreshold: '5' as unknown as number }, TypeError, /options.recvThreshold .*\(got "5"\)/],
    [{ acceptThreshold: 'max' as unknown as number }, TypeError, /options.acceptThreshold .*'limit' or 'off' \(got "max"\)/],
    [{ states: ['estab', 'bogus'] as never }, RangeError, /options.states: unknown socket state "bogus"/],
    [{ states: 'established' as never }, TypeError, /options.states must be an array of strings \(got "established"\)/],
    [{ states: [1] as never }, TypeError, /options.states\[0\] must be a string \(got 1\)/],
    // Names of Object.prototype are not states (an `in` check took them for aliases).
    [{ states: ['constructor'] as never }, RangeError, /options.states: unknown socket state "constructor"/],
    [{ states: ['toString'] as never }, RangeError, /options.states: unknown socket state "toString"/],
    [{ localPorts: [70000] }, RangeError, /options.localPorts\[0\]: port 70000/],
    [{ remotePorts: ['9-3'] }, RangeError, /options.remotePorts\[0\]: range 9-3 is empty/],
    [{ excludeLocalPorts: ['http'] }, TypeError, /options.excludeLocalPorts\[0\] must be a port .*\(got "http"\)/],
    [{ maxRecords: -2 }, RangeError, /options.maxRecords must be an integer from 0 to 4294967295/],
    [{ maxRecords: 2 ** 32 }, RangeError, /options.maxRecords must be an integer from 0 to 4294967295 \(got 4294967296\)/],
    [{ maxRecords: '5' as unknown as number }, TypeError, /options.maxRecords must be an integer from 0 to 4294967295 \(got "5"\)/],
    [{ maxRecords: 2 ** 32 + 3 }, RangeError, /options.maxRecords/],
    [{ aggregate: { minTotal: 2 ** 32 } }, RangeError, /options.aggregate.minTotal must be an integer from 0 to 4294967295/],
    [{ skmem: 1 as unknown as boolean }, TypeError, /options.skmem must be true or false \(got 1\)/],
    [{ aggregate: { cookies: 'yes' as unknown as boolean } }, TypeError, /options.aggregate.cookies must be true or false/],
    [{ recvThreshold: 2 ** 53 }, RangeError, /options.recvThreshold/],
    [{ all: 'false' as unknown as boolean }, TypeError, /options.all must be true or false \(got "false"\)/],
    [{ aggregate: 'yes' as unknown as boolean }, TypeError, /options.aggregate must be true, false or an object/],
    [{ tcp: false, udp: false }, RangeError, /options.tcp and options.udp are both false: neither protocol would be scanned/],
    [{ ipv4: false, ipv6: false }, RangeError, /neither family/],
    [{ recvTreshold: 5 } as SampleOptions, TypeError, /options: unknown option "recvTreshold" \(did you mean "recvThreshold"\?\)/],
    [{ localPort: [41100] } as SampleOptions, TypeError, /unknown option "localPort" \(did you mean "localPorts"\?\)/],
    [{ aggregate: { states: ['nope'] as never } }, RangeError, /options.aggregate.states/],
    [{ aggregate: { top: 0 } }, RangeError, /options.aggregate.top must be an integer from 1 to 4294967295/],
    [{ aggregate: { ownerCookies: [1] as unknown as bigint[] } }, TypeError, /options.aggregate.ownerCookies\[0\] must be a bigint/],
    [{ aggregate: { ownerInodes: [2 ** 32] } }, RangeError, /options.aggregate.ownerInodes\[0\]/],
    [{ aggregate: { cokies: true } as never }, TypeError, /options.aggregate: unknown option "cokies" \(did you mean "cookies"\?\)/],
  ])('%j is rejected', (o, type, msg) => {
    expect(() => compileSampleOptions(o)).toThrow(type);
    expect(() => compileSampleOptions(o)).toThrow(msg);
  });

  it("'off' is a threshold everywhere, and the addon's encoding is made in one place", () => {
    expect(compileSampleOptions({ recvThreshold: 'off', sendThreshold: 5, acceptThreshold: 'off' })).toMatchObject({
      recvThreshold: THRESHOLD_OFF,
      sendThreshold: 5,
      acceptThreshold: THRESHOLD_OFF,
    });
    expect(compileSampleOptions({ acceptThreshold: 'limit' }).acceptThreshold).toBe(ACCEPT_AT_LIMIT);
  });

  it('one protocol or family set false means the other', () => {
    expect(compileSampleOptions({ tcp: false })).toMatchObject({ protocols: 2, families: 3 });
    expect(compileSampleOptions({ ipv6: false, udp: true })).toMatchObject({ protocols: 2, families: 1 });
  });

  it('a sampler never caches options by identity: a changed object is re-read and re-validated', () => {
    const s = new Sampler();
    try {
      const o: SampleOptions = { tcp: true, recvThreshold: 'off', maxRecords: 5 };
      s.sampleSync(o);
      o.recvThreshold = -5;
      expect(() => s.sampleSync(o)).toThrow(RangeError);
      o.recvThreshold = 'off';
      o.all = true;
      o.maxRecords = 1;
      expect(s.sampleSync(o).records.length).toBeLessThanOrEqual(1);
    } finally {
      void s.close();
    }
  });

  it('CompiledSampleOptions: validated once, immutable, scans as the plain options do', async () => {
    expect(() => new CompiledSampleOptions({ recvThreshold: -1 })).toThrow(RangeError);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    // By address and port: another test's socket may have this port number on another address.
    const o: SampleOptions = { tcp: true, states: ['listen'], localAddresses: ['127.0.0.1'], localPorts: [port], all: true };
    const compiled = new CompiledSampleOptions(o);
    expect(Object.isFrozen(compiled)).toBe(true);
    o.states = ['time-wait']; // the compiled options do not follow their source object
    const s = new Sampler();
    try {
      const records = s.sampleSync(compiled).records;
      expect(records.map((r) => [r.stateName, r.localPort])).toEqual([['listen', port]]);
      expect(s.sampleSync(o).records).toEqual([]); // the plain object is read as it is now
    } finally {
      await s.close();
      server.close();
    }
  });

  it('Sampler, lookup and listSockets reject unknown keys and wrong types', async () => {
    expect(() => new Sampler({ netnz: '/x' } as never)).toThrow(/options: unknown option "netnz" \(did you mean "netns"\?\)/);
    const s = new Sampler();
    try {
      const base = { protocol: 'tcp' as const, local: '127.0.0.1:1', remote: '127.0.0.1:2' };
      expect(() => s.lookupSync({ ...base, cokie: 5n } as never)).toThrow(/unknown option "cokie" \(did you mean "cookie"\?\)/);
      await expect(s.lookup({ ...base, cokie: 5n } as never)).rejects.toThrow(/unknown option "cokie"/);
      expect(() => s.lookupSync({ ...base, cookie: 5 as never })).toThrow(TypeError);
      expect(() => s.lookupSync({ ...base, protocol: 'sctp' as never })).toThrow(/options.protocol must be one of 'tcp', 'udp'/);
      expect(() => s.lookupSync({ ...base, skmem: 'yes' as never })).toThrow(TypeError);
      expect(() => s.sampleSync({ tcp: true, recvTreshold: 5 } as never)).toThrow(TypeError);
      await expect(s.sample({ tcp: true, recvTreshold: 5 } as never)).rejects.toThrow(/recvTreshold/);
    } finally {
      await s.close();
    }
    await expect(listSockets({ tcp: true, localPort: [41100] } as never)).rejects.toThrow(
      /filter: unknown option "localPort" \(did you mean "localPorts"\?\)/,
    );
    await expect(listSockets({ all: true } as never)).rejects.toThrow(/unknown option "all"/);
  });

  it('defaults to both protocols, both families, every state', () => {
    const r = compileSampleOptions({});
    expect(r).toMatchObject({ protocols: 3, families: 3, recvThreshold: -1, sendThreshold: -1, acceptThreshold: -1 });
    expect(r.udpStates).toBe((1 << 1) | (1 << 7));
    expect(r.bytecode).toBeUndefined();
  });

  it('syn-recv also asks for request sockets; groups expand', () => {
    expect(stateMask(['syn-recv'])).toBe((1 << 3) | (1 << 12));
    expect(stateMask(['connected']) & (1 << 10)).toBe(0);
    expect(stateMask(['ESTABLISHED', 'time_wait'])).toBe((1 << 1) | (1 << 6));
  });

  it('port specs', () => {
    expect(parsePortSpec('80', 'x')).toEqual({ from: 80, to: 80 });
    expect(parsePortSpec(' 1024 - 2048 ', 'x')).toEqual({ from: 1024, to: 2048 });
    expect(parsePortSpec({ from: 1, to: 2 }, 'x')).toEqual({ from: 1, to: 2 });
  });

  it('a missing netns file is named in the error, a system error with code, errno and syscall', () => {
    expect(() => new Sampler({ netns: '/var/run/netns/does-not-exist' })).toThrow(
      /netns \/var\/run\/netns\/does-not-exist: no such namespace/,
    );
    let err: unknown;
    try {
      new Sampler({ netns: '/var/run/netns/does-not-exist' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open' });
    expect(() => new Sampler({ netns: '' })).toThrow(/options.netns must be a non-empty string/);
    expect(() => new Sampler({ netns: 5 as never })).toThrow(TypeError);
  });

  it('a threshold changed on the same options object after a first call takes effect (real unread bytes)', async () => {
    const conn = await unreadConnection('127.0.0.1', 500);
    const s = new Sampler();
    try {
      const o: SampleOptions = { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [conn.port], recvThreshold: 100 };
      const first = await eventually(
        () => s.sampleSync(o),
        (r) => r.records.length === 1,
      );
      expect(first.records[0]).toMatchObject({ localPort: conn.port, recvQ: 500, exceeded: ['RECV'] });
      o.recvThreshold = 1000;
      expect(s.sampleSync(o)).toMatchObject({ records: [], offendersTotal: 0 });
      expect((await s.sample(o)).records).toEqual([]);
      o.recvThreshold = 499;
      expect((await s.sample(o)).records.map((r) => r.recvQ)).toEqual([500]);
      o.recvThreshold = -5;
      await expect(s.sample(o)).rejects.toThrow(RangeError);
    } finally {
      await s.close();
      conn.close();
    }
  });

  it('listSockets with a misspelled key fails instead of listing the whole host; spelled right it selects', async () => {
    const conn = await unreadConnection('127.0.0.1', 10);
    await expect(listSockets({ tcp: true, localPort: [conn.port] } as never)).rejects.toThrow(TypeError);
    const records = await listSockets({ tcp: true, localPorts: [conn.port] });
    expect(records.length).toBeGreaterThanOrEqual(2); // the listener and the accepted socket
    expect(records.every((r) => r.localPort === conn.port)).toBe(true);
    await expect(listSockets({ tcp: true }, { netnz: '/x' } as never)).rejects.toThrow(/unknown option "netnz"/);
    conn.close();
  });

  it("QueueWatcher: unknown keys with the nearest, 'off' thresholds, strict booleans, uint32 bounds", async () => {
    expect(() => new QueueWatcher({ intervalMS: 10 } as never)).toThrow(TypeError);
    expect(() => new QueueWatcher({ intervalMS: 10 } as never)).toThrow(
      /options: unknown option "intervalMS" \(did you mean "intervalMs"\?\)/,
    );
    expect(() => new QueueWatcher({ filter: { localPort: [1] } as never })).toThrow(
      /options.filter: unknown option "localPort" \(did you mean "localPorts"\?\)/,
    );
    expect(() => new QueueWatcher({ notifyResolved: 'false' as never })).toThrow(
      /options.notifyResolved must be true or false \(got "false"\)/,
    );
    expect(() => new QueueWatcher({ maxRecords: 2 ** 32 })).toThrow(RangeError);
    expect(() => new QueueWatcher({ maxRecords: '5' as never })).toThrow(TypeError);
    expect(() => new QueueWatcher({ acceptThreshold: 'max' as never })).toThrow(/'limit'/);
    expect(() => new QueueWatcher({ filter: { tcp: false, udp: false } })).toThrow(RangeError);
    const w = new QueueWatcher({ recvThreshold: 'off', sendThreshold: 'off', acceptThreshold: 'limit', owners: false });
    expect(w.thresholds).toEqual({ recv: 'off', send: 'off', accept: 'limit' });
    await w.stop();
  });
});

describe('addresses', () => {
  it('formats IPv6 in brackets and parses both forms', () => {
    expect(formatEndpoint('::1', 443)).toBe('[::1]:443');
    expect(formatEndpoint('10.0.0.1', 80)).toBe('10.0.0.1:80');
    expect(parseEndpoint('[::ffff:127.0.0.1]:80')).toEqual({ address: '::ffff:127.0.0.1', port: 80 });
    expect(() => parseEndpoint('1.2.3.4')).toThrow(/expected ip:port/);
    expect(() => parseEndpoint('999.1.1.1:80', 'remote')).toThrow(/remote: "999.1.1.1" is not an IP/);
  });

  it('address bytes in network order', () => {
    expect([...addressBytes('10.1.2.3')]).toEqual([10, 1, 2, 3]);
    expect(addressBytes('::1').toString('hex')).toBe('00000000000000000000000000000001');
    expect(addressBytes('::ffff:127.0.0.1').toString('hex')).toBe('00000000000000000000ffff7f000001');
    expect(addressBytes('fe80::1:2').toString('hex')).toBe('fe800000000000000000000000010002');
  });
});
