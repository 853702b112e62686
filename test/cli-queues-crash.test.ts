// `sockwatch queues --url` killed with SIGKILL at random moments (seeded, so a failure replays)
// and restarted on the same state directory: every alert it printed (printed only after the alert
// is in the outbox) reaches the receiver, with its original ts; duplicates stay bounded.
import * as os from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli, type CliProcess } from './helpers/cli';
import { receiver } from './helpers/http-receiver';
import { cleanupSockets, unreadConnection } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { sleep } from './helpers/wait';

const SEED = 0x5eed_c0de;
const KILLS = 5;
const CONCURRENCY = 4;

afterAll(async () => {
  await killCliProcesses();
  await runCleanups();
  await cleanupSockets();
});

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Only complete lines count as printed: a line cut by SIGKILL is not in `lines`.
const start = (args: string[]): CliProcess => startCli(args, { subcommand: 'queues', cwd: os.tmpdir() });

describe('sockwatch queues under SIGKILL', () => {
  it('loses no alert across random SIGKILLs and restarts', async () => {
    const random = prng(SEED);
    // Some failures, so kills also land while retries are pending.
    const replies = Array.from({ length: 400 }, () => (random() < 0.15 ? 500 : 200));
    const rx = await receiver({ replies });
    const dir = tmpDir('crash');
    // Four sockets above the threshold; --repeat 0.1 makes a steady flow of new alerts.
    const ports: number[] = [];
    const offenders: Array<() => void> = [];
    for (let i = 0; i < 4; i++) {
      const o = await unreadConnection('127.0.0.1', 2000);
      ports.push(o.port);
      offenders.push(o.close);
    }
    const args = [
      '--url',
      `${rx.url}/alerts`,
      '--state-dir',
      dir,
      '--recv-threshold',
      '1000',
      '--repeat',
      '0.1',
      '--interval',
      '20',
      '--backoff-base',
      '10',
      '--backoff-cap',
      '100',
      '--concurrency',
      String(CONCURRENCY),
      '--tcp',
      '--sport',
      ports.join(','),
    ];
    const printed = new Map<string, string>(); // id → the line's time (ISO with µs)
    const record = (r: CliProcess) => {
      for (const line of r.lines) {
        const m = /^(\S+) .* id ([0-9a-f]{32})$/.exec(line);
        if (m) printed.set(m[2], m[1]);
      }
    };

    for (let i = 0; i < KILLS; i++) {
      const r = start(args);
      // Wait for the first alert of this run, then a random while longer.
      for (let t = 0; t < 2000 && r.lines.length === 0 && r.child.exitCode === null; t++) await sleep(10);
      await sleep(50 + Math.floor(random() * 400));
      r.child.kill('SIGKILL');
      const end = await r.exited;
      expect(end.signal, r.stderr()).toBe('SIGKILL');
      record(r);
    }
    expect(printed.size).toBeGreaterThan(KILLS);

    // A last run, with no offender left, only delivers what earlier runs left, then stops cleanly.
    offenders.forEach((close) => close());
    const last = start(args);
    for (let t = 0; t < 2000 && !/watching queues/.test(last.stderr()); t++) await sleep(10);
    const ids = () => new Set(rx.values('id'));
    for (let t = 0; t < 2000 && ![...printed.keys()].every((id) => ids().has(id)); t++) await sleep(10);
    last.child.kill('SIGTERM');
    expect((await last.exited).code).toBe(0);
    expect(last.lines).toEqual([]);

    const received = ids();
    const lost = [...printed.keys()].filter((id) => !received.has(id));
    expect(lost).toEqual([]);

    // Every copy of an alert carries the same parameters (ts included), equal to what was printed.
    const byId = new Map<string, Set<string>>();
    for (const req of rx.requests) {
      const p = Object.fromEntries(req.query);
      if (!byId.has(p.id)) byId.set(p.id, new Set());
      byId.get(p.id)!.add(req.rawQuery);
      const iso = printed.get(p.id);
      if (iso) {
        const [whole, frac] = p.ts.split('.');
        expect(`${new Date(Number(whole) * 1000).toISOString().slice(0, 19)}.${frac}Z`).toBe(iso);
      }
    }
    for (const variants of byId.values()) expect(variants.size).toBe(1);

    // Duplicates only from crashes: at most the requests in flight at each kill.
    const delivered = rx.requests.filter((r) => r.reply === 200).map((r) => Object.fromEntries(r.query).id);
    const duplicates = delivered.length - new Set(delivered).size;
    expect(duplicates).toBeLessThanOrEqual(KILLS * CONCURRENCY);
  });
});
