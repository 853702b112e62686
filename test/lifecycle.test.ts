// The Sampler's lifecycle contract (lib/sampler.ts's lifecycle rule): sample() and lookup() queue in
// call order, the sync forms refuse to run beside them (ERR_SOCKWATCH_SAMPLER_BUSY), every call made
// after close() started fails with ERR_SOCKWATCH_SAMPLER_CLOSED and the caller's stack, and the
// native memory (fd, receive buffer) is reported to V8, freed by close() and by the collector.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SockwatchError } from '../lib/base/errors';
import { Sampler } from '../lib/sampler';
import { cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';

const root = path.join(__dirname, '..');
const fixture = path.join(__dirname, 'fixtures', 'lifecycle', 'memory.cjs');

let port = 0;
let key = { protocol: 'tcp' as const, local: '', remote: '' };
beforeAll(async () => {
  const srv = await pausedServer('127.0.0.1');
  port = srv.port;
  // Enough sockets that a scan is still running when the next call is made.
  for (let batch = 0; batch < 4; batch++) {
    await Promise.all(Array.from({ length: 250 }, () => connect('127.0.0.1', port)));
    await waitAccepted(srv.accepted, (batch + 1) * 250);
  }
  const c = await connect('127.0.0.1', port);
  key = { protocol: 'tcp', local: `127.0.0.1:${c.localPort}`, remote: `127.0.0.1:${port}` };
});
afterAll(cleanupSockets);

describe('calls queue', () => {
  it('lookup() during an async scan waits for it instead of failing, every time', async () => {
    const s = new Sampler();
    try {
      const order: string[] = [];
      for (let i = 0; i < 50; i++) {
        const scan = s.sample({ tcp: true }).then(() => order.push('scan'));
        const found = s.lookup(key).then((r) => {
          order.push('lookup');
          return r;
        });
        expect(s.busy).toBe(true);
        const [, rec] = await Promise.all([scan, found]);
        expect(rec).toMatchObject({ localPort: Number(key.local.split(':')[1]), remotePort: port });
      }
      expect(order).toEqual(Array.from({ length: 50 }, () => ['scan', 'lookup']).flat());
    } finally {
      await s.close();
    }
  });

  it('the sync forms refuse to run beside a queued call, with the project code and 0.1.0 legacy code', async () => {
    const s = new Sampler();
    const scan = s.sample({ tcp: true });
    expect(() => s.lookupSync(key)).toThrow(expect.objectContaining({ code: 'ERR_SOCKWATCH_SAMPLER_BUSY', legacyCode: 'EBUSY' }));
    expect(() => s.sampleSync()).toThrow(/sampleSync: an asynchronous call of this Sampler is queued or running/);
    await scan;
    expect(s.lookupSync(key)?.remotePort).toBe(port);
    await s.close();
  });
});

describe('close', () => {
  it('lets earlier calls finish; every call after close() started fails with the closed error and the caller stack', async () => {
    const s = new Sampler();
    const a = s.sample({ tcp: true });
    const b = s.lookup(key);
    const c = s.sample({ tcp: true, all: true, maxRecords: 1 });
    const closing = s.close();
    expect(s.closed).toBe(true);
    const isClosed = expect.objectContaining({ code: 'ERR_SOCKWATCH_SAMPLER_CLOSED' });
    // While closing: every form, sync ones included (they used to say EBUSY).
    expect(() => s.sampleSync()).toThrow(isClosed);
    expect(() => s.lookupSync(key)).toThrow(isClosed);
    const fromTheCaller = async function lookupAfterClose() {
      return s.lookup(key);
    };
    const late = await fromTheCaller().catch((e: Error) => e);
    expect(late).toBeInstanceOf(SockwatchError);
    expect(late).toMatchObject({ code: 'ERR_SOCKWATCH_SAMPLER_CLOSED' });
    expect((late as Error).stack).toContain('lookupAfterClose');
    await expect(s.sample()).rejects.toThrow(isClosed);
    expect((await a).socketsSeen).toBeGreaterThan(1000);
    expect((await b)?.remotePort).toBe(port);
    expect((await c).records).toHaveLength(1);
    expect(s.close()).toBe(closing); // idempotent: the same promise
    await closing;
    await expect(s.lookup(key)).rejects.toThrow(isClosed);
    expect(() => s.sampleSync()).toThrow(isClosed);
  });
});

describe('native memory', () => {
  it('is reported to V8, freed by close() and by the collector; listSockets reuses one sampler', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', fixture, root, 'counts'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const m = JSON.parse(r.stdout) as {
      open: { fds: number; external: number };
      closed: { fds: number; external: number };
      rssGrowth4000: number;
      unclosed: { maxFds: number; fds: number; external: number };
      listSockets: { fds: number; external: number };
    };
    // 200 open samplers: 200 fds and at least their receive buffers (64 KiB each) known to V8.
    expect(m.open.fds).toBe(200);
    expect(m.open.external).toBeGreaterThanOrEqual(200 * 64 * 1024);
    // close() gives both back.
    expect(m.closed.fds).toBe(0);
    expect(m.closed.external).toBeLessThan(64 * 1024);
    // 4,000 more new + close without a collection: far less than the 250 MiB the buffers would take.
    expect(m.rssGrowth4000).toBeLessThan(64 * 1024 * 1024);
    // 3,000 never closed: the collector frees them.
    expect(m.unclosed.maxFds).toBeLessThanOrEqual(200);
    expect(m.unclosed.fds).toBe(0);
    expect(m.unclosed.external).toBeLessThan(64 * 1024);
    // 50 more listSockets calls after the first: no new fd, no new buffer.
    expect(m.listSockets).toEqual({ fds: 0, external: 0 });
  });

  it('a loop that never closes does not run out of fds: V8 collects on the reported memory alone', () => {
    const r = spawnSync('sh', ['-c', `ulimit -n 2048 && exec "${process.execPath}" "${fixture}" "${root}" pressure`], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const m = JSON.parse(r.stdout) as { created: number; maxFds: number };
    expect(m.created).toBe(8000);
    expect(m.maxFds).toBeLessThan(2048);
  });
});
