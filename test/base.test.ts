// The shared floor (lib/base): the lock file's format and liveness rule with real live and dead
// processes, the /proc/PID/stat parser on this process and on hostile names, the instance-name rule
// and the one backoff rule.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backoffBound, backoffDelay, parseRetryAfter, sleep } from '../lib/base/backoff';
import { safeInstanceName } from '../lib/base/instance-name';
import {
  LOCK_FORMAT_VERSION,
  StateDirLock,
  StateDirLockedError,
  acquireOwnerFile,
  bootId,
  ownerState,
  readOwnerFile,
  releaseOwnerFile,
  removeOwnerFileIfDeadOr,
} from '../lib/base/pid-lock';
import { parseProcStat, processStartTime, startTimeFromStat } from '../lib/base/proc';
import { unmapV4 } from '../lib/address';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-base-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid!;
const lockPath = (name: string): string => path.join(fs.mkdtempSync(path.join(tmp, 'l-')), name);
const v1 = (o: Record<string, unknown>): string => `${String(o.pid)}\n${JSON.stringify({ v: 1, ...o })}\n`;

describe('pid lock', () => {
  it('writes format v1: pid line, then JSON with host, boot id and start time; mode 0600', () => {
    const file = lockPath('a.lock');
    const got = acquireOwnerFile(file, { what: 'test' });
    expect(got.acquired).toBe(true);
    const [line1, line2] = fs.readFileSync(file, 'utf8').split('\n');
    expect(line1).toBe(String(process.pid));
    const rec = JSON.parse(line2!);
    expect(rec).toMatchObject({ v: LOCK_FORMAT_VERSION, pid: process.pid, host: os.hostname(), what: 'test' });
    expect(rec.boot).toBe(fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    expect(rec.start).toBe(processStartTime(process.pid));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(acquireOwnerFile(file).acquired).toBe(false); // this process holds it already
    expect(releaseOwnerFile(file)).toBe(true);
    expect(fs.readdirSync(path.dirname(file))).toEqual([]);
  });

  it('keeps a live owner of this host and boot, takes over after a reboot, a dead pid or a reused pid', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      const live = { pid: child.pid!, start: processStartTime(child.pid!)!, host: os.hostname(), boot: bootId() };
      const file = lockPath('b.lock');
      fs.writeFileSync(file, v1(live));
      const held = acquireOwnerFile(file);
      expect(held).toMatchObject({ acquired: false, owner: { pid: child.pid } });
      expect(removeOwnerFileIfDeadOr(file)).toBe(false);
      const cases: Array<[string, Record<string, unknown>]> = [
        ['other boot', { ...live, boot: '00000000-0000-0000-0000-000000000000' }],
        ['dead pid', { ...live, pid: deadPid() }],
        ['reused pid', { ...live, start: '1' }],
      ];
      for (const [name, owner] of cases) {
        fs.writeFileSync(file, v1(owner));
        const r = acquireOwnerFile(file);
        expect(r.acquired, name).toBe(true);
        expect(r.acquired && r.takenOverFrom?.pid, name).toBe(owner.pid);
        releaseOwnerFile(file);
      }
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses a lock of another host with one line naming the host and the file', () => {
    const file = lockPath('c.lock');
    const content = v1({ pid: process.ppid, host: 'other-host-7', boot: 'x' });
    fs.writeFileSync(file, content);
    expect(ownerState(readOwnerFile(file)!)).toBe('elsewhere');
    let err: unknown;
    try {
      acquireOwnerFile(file);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_SOCKWATCH_LOCKED', legacyCode: 'ELOCKED' });
    expect((err as Error).message).toContain('other-host-7');
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).not.toContain('\n');
    expect(removeOwnerFileIfDeadOr(file)).toBe(false);
    expect(fs.readFileSync(file, 'utf8')).toBe(content); // never taken over
    const dir = path.dirname(file);
    fs.renameSync(file, path.join(dir, 'outbox.lock'));
    expect(() => StateDirLock.acquire(dir)).toThrow(StateDirLockedError);
    expect(() => StateDirLock.acquire(dir)).toThrow(/other-host-7/);
  });

  it('refuses a symbolic link at the lock path and leaves its target alone', () => {
    const file = lockPath('d.lock');
    const target = path.join(path.dirname(file), 'victim');
    fs.writeFileSync(target, 'keep me\n');
    fs.symlinkSync(target, file);
    expect(() => acquireOwnerFile(file)).toThrow(
      expect.objectContaining({ code: 'ELOOP', message: expect.stringContaining('symbolic link') }),
    );
    fs.rmSync(target);
    fs.symlinkSync('/nonexistent/x', `${file}.2`);
    expect(() => acquireOwnerFile(`${file}.2`)).toThrow(/symbolic link/);
    expect(fs.readdirSync(path.dirname(file)).sort()).toEqual(['d.lock', 'd.lock.2']);
  });

  it('refuses a newer format version, never misreads it', () => {
    const file = lockPath('e.lock');
    const content = `${process.ppid}\n${JSON.stringify({ v: LOCK_FORMAT_VERSION + 1, pid: deadPid() })}\n`;
    fs.writeFileSync(file, content);
    expect(() => acquireOwnerFile(file)).toThrow(
      expect.objectContaining({ code: 'ERR_SOCKWATCH_LOCK_VERSION', message: expect.stringMatching(/newer sockwatch/) }),
    );
    expect(() => readOwnerFile(file)).toThrow(/format v2/);
    expect(fs.readFileSync(file, 'utf8')).toBe(content);
  });

  it('reads both 0.1.0 formats and migrates them to v1 when taking over', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      const start = processStartTime(child.pid!)!;
      const outboxOld = JSON.stringify({ pid: child.pid, start }); // 0.1.0 outbox.lock
      const ownerOld = `${child.pid}\n${JSON.stringify({ what: 'memory dump', pid: child.pid, start })}\n`; // 0.1.0 owner file
      for (const content of [outboxOld, ownerOld]) {
        const file = lockPath('f.lock');
        fs.writeFileSync(file, content);
        expect(readOwnerFile(file)).toMatchObject({ pid: child.pid, start });
        expect(acquireOwnerFile(file).acquired).toBe(false); // a live 0.1.0 owner keeps it
      }
      const file = lockPath('g.lock');
      fs.writeFileSync(file, JSON.stringify({ pid: deadPid(), start }));
      expect(acquireOwnerFile(file).acquired).toBe(true);
      expect(readOwnerFile(file)).toMatchObject({ v: 1, pid: process.pid, host: os.hostname() });
      releaseOwnerFile(file);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('/proc/PID/stat', () => {
  it('reads this process, and parses from the last ")" when comm holds spaces and parentheses', () => {
    const own = parseProcStat(fs.readFileSync('/proc/self/stat', 'latin1'));
    expect(own?.pid).toBe(process.pid);
    expect(own?.startTime).toBe(processStartTime(process.pid));
    const rest = Array.from({ length: 50 }, (_, i) => String(i + 4)); // fields 4.. ; field 22 is rest[18]
    const parsed = parseProcStat(`123 (a) (b) c) S ${rest.join(' ')}\n`);
    expect(parsed).toEqual({ pid: 123, comm: 'a) (b) c', state: 'S', ppid: 4, flags: 9, startTime: '22' });
    expect(startTimeFromStat('garbage')).toBeUndefined();
    expect(processStartTime(deadPid())).toBeUndefined();
  });
});

describe('instance name', () => {
  it('keeps the script names for normal names and makes others safe', () => {
    expect(safeInstanceName('RD0003FF1A2B3C')).toBe('RD0003FF1A2B3C');
    expect(safeInstanceName('web-01.prod_a')).toBe('web-01.prod_a');
    expect(safeInstanceName('web/01 x')).toBe('web_01_x');
    expect(safeInstanceName('../etc')).toBe('__etc');
    expect(safeInstanceName('')).toBe('unknown');
    expect(() => safeInstanceName(7 as unknown as string)).toThrow(TypeError);
  });

  it('has one v4-mapped rule', () => {
    expect(unmapV4('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(unmapV4('::FFFF:1.2.3.4')).toBe('1.2.3.4');
    expect(unmapV4('::1')).toBeUndefined();
    expect(unmapV4('10.0.0.1')).toBeUndefined();
  });
});

describe('backoff', () => {
  const opts = { baseMs: 500, capMs: 60_000 };
  it('draws equal-jitter delays within [bound/2, bound], bound = min(cap, base * 2^(n-1))', () => {
    expect([1, 2, 3, 4].map((n) => backoffBound(n, 500, 60_000))).toEqual([500, 1000, 2000, 4000]);
    expect(backoffBound(30, 500, 60_000)).toBe(60_000);
    expect(backoffDelay(1, opts, undefined, () => 0)).toBe(250);
    expect(backoffDelay(4, opts, undefined, () => 0.5)).toBe(3000);
    expect(backoffDelay(30, opts, undefined, () => 1)).toBe(60_000);
    expect(backoffDelay(30, opts, undefined, () => 0)).toBe(30_000);
  });

  it('lets Retry-After raise the delay, up to its cap', () => {
    expect(backoffDelay(1, opts, 5000, () => 0)).toBe(5000);
    expect(backoffDelay(4, opts, 0, () => 0)).toBe(2000); // Retry-After: 0 never shortens the backoff
    expect(backoffDelay(1, opts, 3_600_000, () => 0)).toBe(60_000);
    expect(backoffDelay(1, { ...opts, retryAfterCapMs: 10_000 }, 3_600_000, () => 0)).toBe(10_000);
    expect(backoffDelay(10, opts, 0, () => 1)).toBe(60_000);
  });

  it('parses Retry-After as whole seconds or an HTTP date', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(['7'], now)).toBe(7000);
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sun, 31 Dec 2023 00:00:00 GMT', now)).toBe(0);
    for (const bad of ['soon', '-5', '1.5', '', undefined, null]) expect(parseRetryAfter(bad, now)).toBeUndefined();
  });

  it('sleeps abortably', async () => {
    const ac = new AbortController();
    const p = sleep(60_000, ac.signal, () => new Error('stopped'));
    ac.abort();
    await expect(p).rejects.toThrow('stopped');
    await expect(sleep(1, ac.signal, () => new Error('already'))).rejects.toThrow('already');
  });
});
