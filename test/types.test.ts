// The type contract and the alert's JSON form. Rule: test/types/contract.ts holds, as
// `@ts-expect-error` lines, the mistakes the public types must reject; tsc compiling it with exit 0
// is the test (a type that stops catching one fails as "unused @ts-expect-error"). The JSON form is
// checked on a real alert from a real watcher over a real unread loopback connection.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QueueWatcher, type QueueAlert } from '../lib';
import { cleanupSockets, unreadConnection } from './helpers/sockets';

afterAll(cleanupSockets);

const root = path.resolve(__dirname, '..');

describe('types', () => {
  it('tsc accepts the valid spellings and rejects every mistake in test/types/contract.ts', async () => {
    const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(process.execPath, [tsc, '--noEmit', '-p', 'test/types/tsconfig.json'], { cwd: root }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
      });
    });
    expect(result.out).toBe('');
    expect(result.code).toBe(0);
  }, 120_000);
});

describe('alert JSON', () => {
  it('JSON.stringify(alert) works: the cookie as a decimal string; the data stays plain', async () => {
    const conn = await unreadConnection('127.0.0.1', 4000);
    const watcher = new QueueWatcher({
      intervalMs: 20,
      recvThreshold: 1000,
      sendThreshold: 'off',
      acceptThreshold: 'off',
      owners: false,
      filter: { tcp: true, localAddresses: ['127.0.0.1'], localPorts: [conn.port] }, // the port alone may be another test's elsewhere
    });
    const alert = await new Promise<QueueAlert>((resolve, reject) => {
      watcher.once('alert', resolve);
      watcher.once('error', reject);
      watcher.start();
    });
    await watcher.stop();
    conn.close();
    expect(alert).toMatchObject({ event: 'alert', type: 'RECV', state: 'established' });
    expect(typeof alert.cookie).toBe('bigint');
    const json = JSON.parse(JSON.stringify(alert)) as Record<string, unknown>;
    expect(json.cookie).toBe(alert.cookie.toString());
    expect(json).toEqual({ ...alert, cookie: alert.cookie.toString() });
    expect(Object.keys(alert)).not.toContain('toJSON'); // spreads and deep equality see only the data
  });
});
