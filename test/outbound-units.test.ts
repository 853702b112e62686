// Pure pieces of the outbound watch: the script-compatible log format, the hourly file roll-over
// (injected clock), the distinct-connection window, owner files (pidfile and locks) with real dead
// and live processes, argument parsing, and the wording of collection steps.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSnatArgs } from '../lib/cli/snat';
import { UsageError } from '../lib/cli/errors';
import type { CollectionStep } from '../lib/outbound/collector';
import { HourlyLog } from '../lib/outbound/hourly-log';
import { formatPollBlock, hourKey, logDirName, pollRecord, statsFileName } from '../lib/outbound/log-format';
import { acquireOwnerFile, readOwnerFile, releaseOwnerFile } from '../lib/base/pid-lock';
import { formatStep } from '../lib/outbound/step-format';
import { removeStaleLocks, stopRunningInstance } from '../lib/outbound/stop-instance';
import type { DestinationCount, OutboundPoll } from '../lib/outbound/watcher';
import { DistinctWindow } from '../lib/outbound/window';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-outbound-units-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function dest(remote: string, total: number, states: Record<string, number>, distinctInWindow = total): DestinationCount {
  const m = /^\[?(.+?)\]?:(\d+)$/.exec(remote)!;
  return {
    remote,
    family: remote.startsWith('[') ? 6 : 4,
    remoteAddress: m[1]!,
    remotePort: Number(m[2]),
    total,
    states,
    distinctInWindow,
  };
}

function poll(destinations: DestinationCount[], time: Date, over: Partial<OutboundPoll> = {}): OutboundPoll {
  const busiest = destinations[0];
  return {
    time,
    threshold: 100,
    thresholdOn: 'current',
    windowMs: 240_000,
    destinations,
    ...(busiest ? { busiest } : {}),
    busiestCount: busiest?.total ?? 0,
    exceeded: (busiest?.total ?? 0) > 100,
    socketsCounted: destinations.reduce((s, d) => s + d.total, 0),
    scanMs: 0.25,
    ...over,
  };
}

/** A pid that existed and is gone now (a child that ran and was reaped). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('log format', () => {
  it('writes the table, the verdict and the trailer as the script did (netstat state names, largest first)', () => {
    const t = new Date(2025, 1, 12, 9, 5, 7); // local time
    const p = poll(
      [
        dest('10.1.2.3:1433', 130, { established: 120, 'time-wait': 10 }, 181),
        dest('[2001:db8::1]:443', 7, { 'close-wait': 1, 'fin-wait-1': 2, 'fin-wait-2': 4 }),
      ],
      t,
    );
    expect(formatPollBlock(p)).toEqual([
      '-'.repeat(80),
      'Remote Address:Port                           Total    States (Count)',
      '-'.repeat(80),
      '10.1.2.3:1433                                 130       ESTABLISHED(120) TIME_WAIT(10)  | 240s: 181 distinct',
      '[2001:db8::1]:443                             7         FIN_WAIT2(4) FIN_WAIT1(2) CLOSE_WAIT(1)  | 240s: 7 distinct',
      '2025-02-12 09:05:07: Connection threshold exceeded',
      '2025-02-12 09:05:07: 10.1.2.3:1433 has 130 connections (threshold 100)',
      '-'.repeat(80),
      'Current timestamp: 2025-02-12 09:05:07',
    ]);
    const quiet = formatPollBlock(poll([dest('10.0.0.9:5432', 3, { established: 3 })], t));
    expect(quiet).toContain('2025-02-12 09:05:07: Connection count within threshold');
    expect(quiet.some((l) => l.includes('has 3'))).toBe(false);
    // an empty poll still has the header and the verdict
    expect(formatPollBlock(poll([], t))).toContain('2025-02-12 09:05:07: Connection count within threshold');
    // window basis says what was counted; an exited --pid process is noted
    const w = formatPollBlock(
      poll([dest('10.1.2.3:1433', 2, { established: 2 }, 150)], t, {
        thresholdOn: 'window',
        busiestCount: 150,
        exceeded: true,
        pid: 42,
        pidAlive: false,
      }),
    );
    expect(w).toContain('2025-02-12 09:05:07: 10.1.2.3:1433 has 150 distinct connections in the last 240s (threshold 100)');
    expect(w.some((l) => l.includes('process 42 has exited'))).toBe(true);
  });

  it('has a JSON record per poll', () => {
    const t = new Date(Date.UTC(2025, 1, 12, 9, 5, 7));
    const r = pollRecord(poll([dest('10.1.2.3:1433', 130, { established: 130 })], t));
    expect(r).toMatchObject({
      time: '2025-02-12T09:05:07.000Z',
      type: 'poll',
      exceeded: true,
      threshold: 100,
      windowSeconds: 240,
      busiest: { remote: '10.1.2.3:1433', count: 130 },
      destinations: [{ remote: '10.1.2.3:1433', total: 130, states: { established: 130 }, distinctInWindow: 130 }],
    });
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it('names files by local hour and the directory by instance', () => {
    const t = new Date(2025, 0, 3, 7, 59, 59);
    expect(hourKey(t)).toBe('2025-01-03_07');
    expect(statsFileName(t)).toBe('outbound_conns_stats_2025-01-03_07.log');
    expect(statsFileName(t, 'jsonl')).toBe('outbound_conns_stats_2025-01-03_07.jsonl');
    expect(logDirName('pl0SmallDwxxx')).toBe('outconn-logs-pl0SmallDwxxx');
    expect(logDirName('../x y')).toBe('outconn-logs-__x_y'); // no way out of the log dir
  });
});

describe('HourlyLog', () => {
  it('starts a new file when the local hour changes, and a JSON-lines twin; secrets are redacted', () => {
    let now = new Date(2025, 1, 12, 9, 59, 58);
    const log = new HourlyLog({ baseDir: tmp, instance: 'inst-a', now: () => now });
    expect(log.dir).toBe(path.join(tmp, 'outconn-logs-inst-a'));
    log.write(['line one'], { type: 'x', n: 1n });
    now = new Date(2025, 1, 12, 9, 59, 59, 999);
    log.write(['line two https://acct.blob.core.windows.net/c?sv=1&sig=TOPSECRETSIG']);
    now = new Date(2025, 1, 12, 10, 0, 0);
    log.write(['line three'], { type: 'y', url: 'https://a.blob.core.windows.net/c?sig=TOPSECRETSIG' });
    const nine = path.join(log.dir, 'outbound_conns_stats_2025-02-12_09.log');
    const ten = path.join(log.dir, 'outbound_conns_stats_2025-02-12_10.log');
    expect(fs.readFileSync(nine, 'utf8')).toBe('line one\nline two https://acct.blob.core.windows.net/c?sv=1&sig=REDACTED\n');
    expect(fs.readFileSync(ten, 'utf8')).toBe('line three\n');
    expect(log.textPath()).toBe(ten);
    const json9 = fs.readFileSync(path.join(log.dir, 'outbound_conns_stats_2025-02-12_09.jsonl'), 'utf8').trim().split('\n');
    expect(json9.map((l) => JSON.parse(l))).toEqual([{ type: 'x', n: '1' }]);
    const json10 = fs.readFileSync(path.join(log.dir, 'outbound_conns_stats_2025-02-12_10.jsonl'), 'utf8');
    expect(json10).not.toContain('TOPSECRETSIG');
    expect(JSON.parse(json10).type).toBe('y');
  });
});

describe('DistinctWindow', () => {
  const remotes = [
    { remote: '10.0.0.1:443', family: 4 as const, remoteAddress: '10.0.0.1', remotePort: 443 },
    { remote: '10.0.0.2:443', family: 4 as const, remoteAddress: '10.0.0.2', remotePort: 443 },
  ];
  it('counts each cookie once per destination and forgets what the window passed', () => {
    const w = new DistinctWindow(1000);
    w.observe(0, [1n, 2n, 3n], [0, 0, 1], remotes);
    w.observe(500, [2n, 4n], [0, 0], remotes);
    expect(w.counts(500)).toEqual(
      new Map([
        ['10.0.0.1:443', 3],
        ['10.0.0.2:443', 1],
      ]),
    );
    expect(w.size).toBe(4);
    // at 1200: cookies 1 and 3 (last seen at 0) are out; 2 and 4 (seen at 500) are in
    expect(w.counts(1200)).toEqual(new Map([['10.0.0.1:443', 2]]));
    expect(w.destination('10.0.0.2:443')).toBeUndefined();
    expect(w.destination('10.0.0.1:443')).toEqual({ family: 4, remoteAddress: '10.0.0.1', remotePort: 443 });
    expect(w.counts(10_000).size).toBe(0);
    expect(w.size).toBe(0);
  });
  it('rejects inconsistent input', () => {
    expect(() => new DistinctWindow(0)).toThrow(RangeError);
    const w = new DistinctWindow(10);
    expect(() => w.observe(0, [1n], [], remotes)).toThrow(/same length/);
    expect(() => w.observe(0, [1n], [5], remotes)).toThrow(/out of range/);
  });
});

describe('owner files (pidfile and locks)', () => {
  it('records the owner, refuses a second owner while it lives, and is released only by it', () => {
    const file = path.join(tmp, 'own-1.lock');
    const a = acquireOwnerFile(file, { what: 'memory dump', instance: 'i1' });
    expect(a.acquired).toBe(true);
    const text = fs.readFileSync(file, 'utf8');
    expect(text.split('\n')[0]).toBe(String(process.pid));
    expect(readOwnerFile(file)).toMatchObject({ pid: process.pid, what: 'memory dump', instance: 'i1' });
    expect(readOwnerFile(file)?.start).toMatch(/^\d+$/);
    const again = acquireOwnerFile(file);
    expect(again.acquired).toBe(false);
    expect(again.owner.pid).toBe(process.pid);
    expect(releaseOwnerFile(file)).toBe(true);
    expect(fs.existsSync(file)).toBe(false);
    expect(releaseOwnerFile(file)).toBe(false);
  });

  it('takes over a file whose owner is dead, whose pid was reused, or that is garbage', () => {
    const dead = deadPid();
    const file = path.join(tmp, 'own-2.lock');
    fs.writeFileSync(file, `${dead}\n${JSON.stringify({ pid: dead, start: '1' })}\n`);
    const r = acquireOwnerFile(file);
    expect(r.acquired).toBe(true);
    expect(r.acquired && r.takenOverFrom?.pid).toBe(dead);
    releaseOwnerFile(file);
    // pid 1 is alive but was started at another time than the file says: reused pid, stale
    fs.writeFileSync(file, `1\n${JSON.stringify({ pid: 1, start: '999999999999' })}\n`);
    expect(acquireOwnerFile(file).acquired).toBe(true);
    releaseOwnerFile(file);
    fs.writeFileSync(file, 'not a pid\n');
    expect(acquireOwnerFile(file).acquired).toBe(true);
    releaseOwnerFile(file);
  });

  it('keeps a file of another live process (pid and start time match)', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      const stat = fs.readFileSync(`/proc/${child.pid}/stat`, 'latin1');
      const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      const file = path.join(tmp, 'own-3.lock');
      fs.writeFileSync(file, `${child.pid}\n${JSON.stringify({ pid: child.pid, start })}\n`);
      const r = acquireOwnerFile(file);
      expect(r.acquired).toBe(false);
      expect(r.owner.pid).toBe(child.pid);
      expect(releaseOwnerFile(file)).toBe(false); // not ours
      expect(removeStaleLocks(tmp)).toEqual([]); // not a lock name
      fs.renameSync(file, path.join(tmp, 'dump_taken_x.lock'));
      expect(removeStaleLocks(tmp)).toEqual([]); // alive owner
      child.kill('SIGKILL');
      await once(child, 'exit');
      expect(removeStaleLocks(tmp)).toEqual([path.join(tmp, 'dump_taken_x.lock')]);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('stopRunningInstance sends SIGTERM to the pidfile owner, waits, and removes its files', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'stop-'));
    // A stand-in for a running instance: it writes its pidfile and a lock (with its own start time) and
    // exits on SIGTERM.
    const script = `
      const { acquireOwnerFile } = require(${JSON.stringify(path.resolve(__dirname, '../dist/base/pid-lock.js'))});
      acquireOwnerFile(${JSON.stringify(path.join(dir, 'sockwatch-snat.pid'))}, { what: 'sockwatch snat' });
      acquireOwnerFile(${JSON.stringify(path.join(dir, 'trace_taken_i.lock'))}, { what: 'profiler trace' });
      process.on('SIGTERM', () => process.exit(0));
      console.log('READY'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout!.on('data', (d) => String(d).includes('READY') && resolve()));
      const exit = once(child, 'exit');
      const r = await stopRunningInstance(dir);
      expect(r).toMatchObject({ wasRunning: true, stopped: true, signals: ['SIGTERM'] });
      expect(r.owner?.pid).toBe(child.pid);
      expect((await exit)[0]).toBe(0);
      expect(r.removed.sort()).toEqual([path.join(dir, 'sockwatch-snat.pid'), path.join(dir, 'trace_taken_i.lock')]);
      expect(fs.readdirSync(dir)).toEqual([]);
      // nothing running: nothing to do
      expect(await stopRunningInstance(dir)).toMatchObject({ wasRunning: false, removed: [] });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('stopRunningInstance falls back to SIGKILL when SIGTERM is ignored', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'stopkill-'));
    const script = `
      const { acquireOwnerFile } = require(${JSON.stringify(path.resolve(__dirname, '../dist/base/pid-lock.js'))});
      acquireOwnerFile(${JSON.stringify(path.join(dir, 'sockwatch-snat.pid'))});
      process.on('SIGTERM', () => {});
      console.log('READY'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout!.on('data', (d) => String(d).includes('READY') && resolve()));
      const r = await stopRunningInstance(dir, { graceMs: 300 });
      expect(r.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(r.stopped).toBe(true);
      expect(fs.existsSync(path.join(dir, 'sockwatch-snat.pid'))).toBe(false);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('sockwatch snat arguments', () => {
  it('has the script defaults and maps the flags', () => {
    const d = parseSnatArgs([], {});
    expect(d).toMatchObject({ help: false, clean: false });
    if (d.help) throw new Error('unexpected');
    expect(d.session).toMatchObject({
      dump: false,
      trace: false,
      thresholdOn: 'current',
      excludeLocalPorts: [80, 443, 2222],
      keepRunning: false,
    });
    expect(d.session.threshold).toBeUndefined(); // the watcher's default 100
    const all = parseSnatArgs(
      [
        '-t',
        '7',
        '-f',
        '0.5',
        '-d',
        '0.25',
        '--pid',
        '123',
        '--dump-type',
        'WithHeap',
        '--trace-duration',
        '2',
        '--window',
        '--window-seconds',
        '60',
        '--exclude-ports',
        '80,8000-8100',
        '--keep-running',
        '--keep-local',
        '--log-dir',
        tmp,
        '--state-dir',
        'st',
        'enable-dump-trace',
      ],
      { SOCKWATCH_UPLOAD_BLOCK_SIZE: '65536' },
    );
    if (all.help) throw new Error('unexpected');
    expect(all.session).toMatchObject({
      dump: true,
      trace: true,
      threshold: 7,
      intervalMs: 500,
      durationMs: 900_000,
      pid: 123,
      dumpType: 'withheap',
      traceDurationMs: 2000,
      thresholdOn: 'window',
      windowMs: 60_000,
      excludeLocalPorts: ['80', '8000-8100'],
      keepRunning: true,
      keepLocal: true,
      logDir: tmp,
      stateDir: path.resolve('st'),
      blockSize: 65536,
    });
    expect(parseSnatArgs(['-c'], {})).toMatchObject({ clean: true });
    expect(parseSnatArgs(['enable-trace'], {})).toMatchObject({ session: { dump: false, trace: true } });
    expect(parseSnatArgs(['--help'], {})).toEqual({ help: true });
  });

  it.each([
    [['-t', 'many'], /-t: "many" is not a non-negative integer/],
    [['-f', '0'], /-f: "0" must be greater than 0/],
    [['-f', '-1'], /-f/],
    [['-d', 'soon'], /-d: "soon" is not a positive number/],
    [['--pid', '0'], /--pid must be an integer of at least 1 \(got 0\)/],
    [['-d', '-1'], /^-d: "-1" must not be negative$/],
    [['-f', '-1'], /^-f: "-1" must not be negative$/],
    [['--dump-type', 'huge'], /--dump-type must be one of Normal, WithHeap, Triage, Full/],
    [['--exclude-ports', '80,99999'], /--exclude-ports: port 99999 is out of range/],
    [['enable-everything'], /unknown argument "enable-everything"/],
    [['enable-dump', 'enable-trace'], /one collection argument at most/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--window-seconds', '0'], /--window-seconds/],
  ])('%j is a usage error', (argv, re) => {
    expect(() => parseSnatArgs(argv as string[], {})).toThrow(UsageError);
    expect(() => parseSnatArgs(argv as string[], {})).toThrow(re);
  });
});

describe('collection step lines', () => {
  const time = new Date(2025, 1, 12, 10, 0, 5);
  type StepInput = CollectionStep extends infer S ? (S extends unknown ? Omit<S, 'time'> : never) : never;
  const line = (s: StepInput) => formatStep({ time, ...s } as CollectionStep);
  it('reads like the script', () => {
    expect(line({ kind: 'dump', step: 'lock-acquired', lockFile: '/x/dump_taken_i.lock' })).toBe(
      '2025-02-12 10:00:05: Acquiring lock for dumping...',
    );
    expect(line({ kind: 'trace', step: 'lock-acquired', lockFile: '/x/trace_taken_i.lock', takenOverFrom: 77 })).toBe(
      '2025-02-12 10:00:05: Acquiring lock for tracing... (took over the stale lock of process 77, which is no longer running)',
    );
    expect(line({ kind: 'dump', step: 'collecting', filePath: '/x/dump_i_20250212_100005.dmp', pid: 9, dumpType: 'full' })).toBe(
      '2025-02-12 10:00:05: Collecting memory dump... (full dump of process 9 to dump_i_20250212_100005.dmp)',
    );
    expect(line({ kind: 'trace', step: 'collected', filePath: '/x/t.nettrace', bytes: 3 * 1024 * 1024 })).toBe(
      '2025-02-12 10:00:05: Profiler trace has been collected (t.nettrace, 3.0 MiB).',
    );
    expect(
      line({
        kind: 'dump',
        step: 'upload-event',
        filePath: '/x/d.dmp',
        event: { type: 'retry', attempt: 2, maxAttempts: 5, delayMs: 4000, reason: 'ECONNREFUSED' },
      }),
    ).toBe('2025-02-12 10:00:05: Memory dump upload: retry 2/5 in 4 s: ECONNREFUSED');
    expect(
      line({ kind: 'dump', step: 'upload-failed', filePath: '/x/d.dmp', error: 'HTTP 403 AuthenticationFailed', attempts: 5 }),
    ).toMatch(/ERROR: failed to upload the memory dump after 5 attempts: HTTP 403 AuthenticationFailed\. The file is kept/);
    expect(
      line({ kind: 'dump', step: 'upload-progress', filePath: '/x/d.dmp', doneBytes: 1, totalBytes: 2, doneBlocks: 1, totalBlocks: 2 }),
    ).toBeUndefined();
  });
});
