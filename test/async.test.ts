// The asynchronous scan: the event loop stays free, one scan in flight, close() waits, and the
// context-aware addon loads in worker threads.
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as os from 'node:os';
import { SockwatchError } from '../lib/base/errors';
import { FAMILY_V4, PROTO_TCP, THRESHOLD_OFF, addonPath, loadBinding, type NativeScanRequest } from '../lib/native';
import { Sampler } from '../lib/sampler';
import { cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';

let port = 0;
beforeAll(async () => {
  const srv = await pausedServer('127.0.0.1');
  port = srv.port;
  // In batches, so the accept queue never overflows on a loaded machine.
  for (let batch = 0; batch < 6; batch++) {
    await Promise.all(Array.from({ length: 250 }, () => connect('127.0.0.1', port)));
    await waitAccepted(srv.accepted, (batch + 1) * 250);
  }
});
afterAll(cleanupSockets);

describe('async scan', () => {
  it('does not block the event loop while the kernel is walked', async () => {
    const s = new Sampler();
    let ticks = 0;
    let running = true;
    const spin = () => {
      ticks++;
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    // Event-loop turns that ran while each scan was in flight. On a loaded machine the worker may
    // finish one scan before the loop turns twice, so look for it over several scans; a blocking
    // implementation never lets the loop turn while a scan runs.
    const turnsPerScan: number[] = [];
    for (let i = 0; i < 20 && !turnsPerScan.some((n) => n > 1); i++) {
      const before = ticks;
      const r = await s.sample({ tcp: true, recvThreshold: 1 << 30 });
      turnsPerScan.push(ticks - before);
      expect(r.socketsSeen).toBeGreaterThanOrEqual(3000);
    }
    running = false;
    expect(Math.max(...turnsPerScan)).toBeGreaterThan(1);
    // The synchronous scan, by contrast, holds the loop: no tick can run during it.
    let syncTicks = 0;
    let on = true;
    const spin2 = () => {
      syncTicks++;
      if (on) setImmediate(spin2);
    };
    setImmediate(spin2);
    const start = syncTicks;
    s.sampleSync({ tcp: true, recvThreshold: 1 << 30 });
    expect(syncTicks - start).toBe(0);
    on = false;
    await s.close();
  });

  it('queues a second scan behind the first and refuses a sync scan meanwhile (SAMPLER_BUSY)', async () => {
    const s = new Sampler();
    // Our listener's sockets by address and port (the port alone may be another test's, changing between scans).
    const ours = { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [port], recvThreshold: 1 << 30 };
    const a = s.sample(ours);
    const b = s.sample(ours);
    expect(s.busy).toBe(true);
    expect(() => s.sampleSync({ tcp: true })).toThrow(expect.objectContaining({ code: 'ERR_SOCKWATCH_SAMPLER_BUSY', legacyCode: 'EBUSY' }));
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.socketsSeen).toBe(rb.socketsSeen);
    expect(s.busy).toBe(false);
    await s.close();
  });

  it('close() during a scan waits for it; later scans fail with a clear error', async () => {
    const s = new Sampler();
    const p = s.sample({ tcp: true });
    const closed = s.close();
    const r = await p;
    await closed;
    expect(r.socketsSeen).toBeGreaterThan(0);
    expect(s.closed).toBe(true);
    await expect(s.sample()).rejects.toMatchObject({ code: 'ERR_SOCKWATCH_SAMPLER_CLOSED', legacyCode: 'ERR_SAMPLER_CLOSED' });
    expect(() => s.sampleSync()).toThrow(/closed/);
    await s.close(); // idempotent
  });

  it('async native failures are SystemErrors named by Node, with the caller stack', async () => {
    // An opcode the kernel does not know: inet_diag_bc_audit refuses the request with EINVAL,
    // which comes back on the pool thread as NLMSG_ERROR.
    const native = new (loadBinding().Sampler)();
    const request: NativeScanRequest = {
      protocols: PROTO_TCP,
      families: FAMILY_V4,
      tcpStates: 0xfff,
      udpStates: 0,
      bytecode: Buffer.from([0xee, 4, 8, 0]),
      recvThreshold: THRESHOLD_OFF,
      sendThreshold: THRESHOLD_OFF,
      acceptThreshold: THRESHOLD_OFF,
      maxRecords: 0,
      flags: 0,
      aggStates: 0,
      aggTop: 0,
      aggMinTotal: 0,
    };
    async function scanFromTheCaller(): Promise<unknown> {
      return native.scan(request).catch((e: unknown) => e);
    }
    const err = (await scanFromTheCaller()) as Error & { code?: string; errno?: number; syscall?: string };
    native.close();
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: 'EINVAL', errno: -os.constants.errno.EINVAL, syscall: 'recvmsg' });
    expect(err.message).toMatch(/^recvmsg EINVAL: /);
    expect(err.stack).toContain('scanFromTheCaller');

    // A closed sampler is the project's own condition, not an errno.
    const s = new Sampler();
    await s.close();
    const closed = await s.sample().catch((e: Error) => e);
    expect(closed).toBeInstanceOf(SockwatchError);
    expect(closed).toMatchObject({ code: 'ERR_SOCKWATCH_SAMPLER_CLOSED' });
  });
});

describe('worker threads', () => {
  it('loads the addon in two workers at once and scans in each', async () => {
    const root = path.join(__dirname, '..');
    // Through the library's own loader (dist/ is lib/ compiled by the global setup), so the worker
    // loads the same addon file as the library does (a stale build/ never shadows the prebuild).
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const b = require(workerData.root + '/dist/native.js').loadBinding();
      parentPort.postMessage(require(workerData.root + '/dist/native.js').addonPath());
      const s = new b.Sampler();
      s.scan({ protocols: 1, families: 1, tcpStates: 0xfff, udpStates: 0, recvThreshold: -1, sendThreshold: -1,
               acceptThreshold: -1, maxRecords: 0, flags: 0, aggStates: 0, aggTop: 0, aggMinTotal: 0 })
        .then((r) => { s.close(); parentPort.postMessage(r.socketsSeen); });
    `;
    const run = () =>
      new Promise<number>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { root } });
        w.on('message', (m: number | string) => {
          if (typeof m === 'string') {
            if (m !== addonPath()) reject(new Error(`the worker loaded ${m}, the library ${addonPath()}`));
            return;
          }
          resolve(m);
          void w.terminate();
        });
        w.once('error', reject);
      });
    const [a, b] = await Promise.all([run(), run()]);
    expect(a).toBeGreaterThanOrEqual(3000);
    expect(b).toBeGreaterThanOrEqual(3000);
  });
});
