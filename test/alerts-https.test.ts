// HTTPS delivery to a real TLS receiver on 127.0.0.1 with a self-signed certificate made by openssl
// in the test. Skipped, with the reason in the test name, where openssl is missing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { HttpDelivery, Outbox } from '../lib/alerts';
import type { DeliveredEvent, RetryScheduledEvent } from '../lib';
import { HttpReceiver } from './helpers/http-receiver';
import { selfSignedCert } from './helpers/tls';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const title = hasOpenssl ? 'HttpDelivery over https' : 'HttpDelivery over https (SKIPPED: openssl not found on PATH)';

describe.skipIf(!hasOpenssl)(title, () => {
  let dir: string;
  let cert: string;
  let rx: HttpReceiver;
  const open: Array<{ delivery: HttpDelivery; outbox: Outbox }> = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-https-'));
    const { keyFile, certFile } = selfSignedCert(dir, '127.0.0.1');
    cert = fs.readFileSync(certFile, 'utf8');
    rx = await HttpReceiver.start({ tls: { key: fs.readFileSync(keyFile), cert } });
  });

  afterAll(async () => {
    for (const { delivery, outbox } of open) {
      await delivery.stop({ graceMs: 0 });
      outbox.close();
    }
    await rx?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function make(name: string, ca?: string): { delivery: HttpDelivery; delivered: DeliveredEvent[]; retries: RetryScheduledEvent[] } {
    const outbox = Outbox.open({ dir: path.join(dir, name) });
    const delivery = new HttpDelivery({ url: `${rx.url}/tls?k=v`, outbox, ca, backoffBaseMs: 20, backoffCapMs: 100 });
    open.push({ delivery, outbox });
    const delivered: DeliveredEvent[] = [];
    const retries: RetryScheduledEvent[] = [];
    delivery.on('delivered', (e) => delivered.push(e));
    delivery.on('retry', (e) => retries.push(e));
    return { delivery, delivered, retries };
  }

  it('delivers when the receiver certificate is trusted through the ca option', async () => {
    const { delivery, delivered } = make('trusted', cert);
    delivery.start();
    delivery.enqueue({ id: 'tls-1', type: 'send' });
    await delivery.whenIdle();
    expect(delivered).toHaveLength(1);
    expect(rx.requests.find((r) => r.query.some(([k, v]) => k === 'id' && v === 'tls-1'))?.query).toEqual([
      ['k', 'v'],
      ['id', 'tls-1'],
      ['type', 'send'],
    ]);
  });

  it('does not send to an untrusted certificate, and keeps the alert for a retry', async () => {
    const { delivery, delivered, retries } = make('untrusted');
    delivery.start();
    const before = rx.requests.length;
    delivery.enqueue({ id: 'tls-2' });
    const deadline = Date.now() + 20_000;
    while (retries.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(retries.length).toBeGreaterThanOrEqual(2);
    expect(retries[0]!.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(delivered).toHaveLength(0);
    expect(rx.requests.length).toBe(before);
    expect(delivery.outbox.size).toBe(1);
  });
});
