// Option validation in TypeScript: messages name the bad option.
import { describe, expect, it } from 'vitest';
import { compileSampleOptions, parsePortSpec, Sampler } from '../lib/sampler';
import { parseEndpoint, formatEndpoint, addressBytes } from '../lib/address';
import { stateMask } from '../lib/states';

describe('sample options', () => {
  it.each([
    [{ recvThreshold: -1 }, RangeError, /recvThreshold/],
    [{ sendThreshold: 1.5 }, RangeError, /sendThreshold/],
    [{ recvThreshold: Number.NaN }, TypeError, /recvThreshold/],
    [{ acceptThreshold: 'full' as unknown as number }, TypeError, /acceptThreshold/],
    [{ states: ['estab', 'bogus'] }, RangeError, /states: unknown socket state "bogus"/],
    [{ localPorts: [70000] }, RangeError, /localPorts: port 70000/],
    [{ remotePorts: ['9-3'] }, RangeError, /remotePorts: range 9-3 is empty/],
    [{ excludeLocalPorts: ['http'] }, TypeError, /excludeLocalPorts: "http"/],
    [{ maxRecords: -2 }, RangeError, /maxRecords/],
    [{ aggregate: { states: ['nope'] } }, RangeError, /aggregate.states/],
  ])('%j is rejected', (o, type, msg) => {
    expect(() => compileSampleOptions(o)).toThrow(type);
    expect(() => compileSampleOptions(o)).toThrow(msg);
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

  it('a missing netns file is named in the error', () => {
    expect(() => new Sampler({ netns: '/var/run/netns/does-not-exist' })).toThrow(
      /netns \/var\/run\/netns\/does-not-exist: no such namespace/,
    );
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
