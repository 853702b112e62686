// Port filters compiled to inet_diag bytecode, run by the kernel against sockets made here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileFilter, portRulesFilter, runBytecode } from '../lib/bytecode';
import { Sampler, compileSampleOptions, endpoints, type SampleOptions } from '../lib/sampler';
import { cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';

const sampler = new Sampler();
let ports: number[] = [];
/** Every socket this file made: local:remote keys with their ports. */
let mine: { key: string; sport: number; dport: number }[] = [];

beforeAll(async () => {
  // Three listeners with two connections each: 3 LISTEN + 6 server-side + 6 client-side sockets.
  // They are known by exact 4-tuple, so sockets of tests running in parallel never count.
  for (let i = 0; i < 3; i++) {
    const { port, accepted } = await pausedServer('127.0.0.1');
    ports.push(port);
    mine.push({ key: `127.0.0.1:${port}>0.0.0.0:0`, sport: port, dport: 0 });
    for (let j = 0; j < 2; j++) {
      const c = await connect('127.0.0.1', port);
      const cport = c.localPort!;
      mine.push({ key: `127.0.0.1:${cport}>127.0.0.1:${port}`, sport: cport, dport: port });
      mine.push({ key: `127.0.0.1:${port}>127.0.0.1:${cport}`, sport: port, dport: cport });
    }
    await waitAccepted(accepted, 2);
  }
  ports = ports.sort((a, b) => a - b);
  expect(await kernelSelects({})).toHaveLength(15);
});

afterAll(async () => {
  await sampler.close();
  await cleanupSockets();
});

async function kernelSelects(o: SampleOptions): Promise<string[]> {
  const r = await sampler.sample({ tcp: true, ipv4: true, all: true, maxRecords: 1e6, ...o });
  const keys = new Set(r.records.map((x) => `${endpoints(x).local}>${endpoints(x).remote}`));
  return mine
    .filter((m) => keys.has(m.key))
    .map((m) => m.key)
    .sort();
}

function expected(pred: (sport: number, dport: number) => boolean): string[] {
  return mine
    .filter((m) => pred(m.sport, m.dport))
    .map((m) => m.key)
    .sort();
}

describe('bytecode run by the kernel', () => {
  const cases: [string, () => SampleOptions, (s: number, d: number) => boolean][] = [
    ['one local port', () => ({ localPorts: [ports[0]] }), (s) => s === ports[0]],
    ['two local ports (or)', () => ({ localPorts: [ports[0], ports[2]] }), (s) => s === ports[0] || s === ports[2]],
    ['exclude local ports (and not)', () => ({ excludeLocalPorts: [ports[0], ports[1]] }), (s) => s !== ports[0] && s !== ports[1]],
    ['remote port', () => ({ remotePorts: [ports[1]] }), (_s, d) => d === ports[1]],
    [
      'local range and excluded remote',
      () => ({ localPorts: [`${ports[0]}-${ports[2]}`], excludeRemotePorts: [0] }),
      (s, d) => s >= ports[0] && s <= ports[2] && d !== 0,
    ],
    [
      'remote any-of and local excluded',
      () => ({ remotePorts: [ports[0], ports[1]], excludeLocalPorts: [ports[2]] }),
      (s, d) => (d === ports[0] || d === ports[1]) && s !== ports[2],
    ],
    ['a range that matches nothing of ours', () => ({ localPorts: ['1-2'] }), () => false],
  ];
  for (const [name, opts, pred] of cases) {
    it(name, async () => {
      const o = opts();
      const want = expected(pred);
      expect(await kernelSelects(o)).toEqual(want);
      // The JS evaluator of the same bytecode agrees with the kernel.
      const bc = compileSampleOptions(o).bytecode!;
      expect(
        mine
          .filter((m) => runBytecode(bc, m.sport, m.dport))
          .map((m) => m.key)
          .sort(),
      ).toEqual(want);
    });
  }

  it('compiles "not X" as X followed by a jump to the reject position, as ss does', () => {
    const bc = compileFilter(portRulesFilter({ excludeLocalPorts: [{ from: 80, to: 80 }] }))!;
    // S_COND yes=12 no=16, hostcond {AF_UNSPEC, prefix 0, port 80}, then JMP yes=4 no=8
    expect([...bc]).toEqual([7, 12, 16, 0, 0, 0, 0, 0, 80, 0, 0, 0, 1, 4, 8, 0]);
  });

  it('no rules: no bytecode', () => {
    expect(compileFilter(portRulesFilter({}))).toBeUndefined();
  });
});
