// `sockwatch queues --url` killed with SIGKILL at random moments (seeded, so a failure replays)
// and restarted on the same state directory: every alert it printed (printed only after the alert
// is in the outbox) reaches the receiver, with its original ts; duplicates stay bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HttpReceiver } from './helpers/http-receiver';
import { cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';

const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const SEED = 0x5eed_c0de;
const KILLS = 5;
const CONCURRENCY = 4;

const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
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

interface Run {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[]): Run {
  const child = spawn(process.execPath, [cli, 'queues', ...args], { cwd: os.tmpdir() });
  children.push(child);
  const lines: string[] = [];
  let partial = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop()!; // a line cut by SIGKILL is not counted as printed
    lines.push(...parts);
  });
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, stderr: () => err, exited };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sockwatch queues under SIGKILL', () => {
  it('loses no alert across random SIGKILLs and restarts', async () => {
    const random = prng(SEED);
    // Some failures, so kills also land while retries are pending.
    const replies = Array.from({ length: 400 }, () => (random() < 0.15 ? 500 : 200));
    const rx = await HttpReceiver.start({ replies });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-crash-'));
    try {
      // Four sockets above the threshold; --repeat 0.1 makes a steady flow of new alerts.
      const ports: number[] = [];
      const offenders: Array<() => void> = [];
      for (let i = 0; i < 4; i++) {
        const { port, accepted } = await pausedServer('127.0.0.1');
        const c = await connect('127.0.0.1', port);
        c.on('error', () => undefined);
        await waitAccepted(accepted, 1);
        c.write(Buffer.alloc(2000, 1));
        ports.push(port);
        offenders.push(() => accepted[0].destroy());
      }
      const args = [
        '--url', `${rx.url}/alerts`, '--state-dir', dir, '--recv-threshold', '1000', '--repeat', '0.1',
        '--interval', '20', '--backoff-base', '10', '--backoff-cap', '100', '--concurrency', String(CONCURRENCY),
        '--tcp', '--sport', ports.join(','),
      ];
      const printed = new Map<string, string>(); // id → the line's time (ISO with µs)
      const record = (r: Run) => {
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
    } finally {
      await rx.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
