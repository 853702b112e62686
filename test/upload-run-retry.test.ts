// Uploads within a snat run (DiagnosticsCollector, resuming a pending upload) against a real Azurite
// behind a real faulty HTTP front: storage down for longer than the upload's 5 attempts is retried
// until it comes back; a terminal refusal (403) stops at once with its reason; a stop ends the
// retrying. The pending record and the upload record stay unless the upload is confirmed.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiagnosticsCollector, type CollectionStep } from '../lib/outbound/collector';
import { formatStep } from '../lib/outbound/step-format';
import { listPending, writePending, type PendingUpload } from '../lib/outbound/pending';
import { parseContainerSasUrl } from '../lib/upload/sas-url';
import { uploadRecordPath } from '../lib/upload/upload-record';
import { createContainerSas, keyContainerClient, startAzurite, type Azurite } from './helpers/azurite';
import { faultyFront, type FaultyFront } from './helpers/faulty-front';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

let azurite: Azurite;
let front: FaultyFront;
let frontSas: string;
let tmp: string;

beforeAll(async () => {
  tmp = tmpDir('upload-run-retry-');
  azurite = await startAzurite();
  const sas = await createContainerSas(azurite.url, 'runs');
  front = await faultyFront(new URL(azurite.url));
  // Path-style SAS: the signature does not cover the host, so the same SAS works via the front.
  frontSas = sas.replace(azurite.baseUrl, front.url);
}, 120_000);

afterAll(async () => {
  await front?.close();
  await azurite?.stop();
});

function signature(): string {
  return decodeURIComponent(/[?&]sig=([^&]+)/.exec(frontSas)![1]!);
}

/** A collected file with its pending record, and a collector that resumes it. */
function setup(name: string): { collector: DiagnosticsCollector; steps: CollectionStep[]; file: string; data: Buffer; stateDir: string } {
  const dir = path.join(tmp, name);
  const stateDir = path.join(dir, 'state');
  fs.mkdirSync(stateDir, { recursive: true });
  const data = randomBytes(300 * 1024);
  const file = path.join(dir, `dump_${name}.dmp`);
  fs.writeFileSync(file, data);
  const pending: PendingUpload = {
    version: 1,
    kind: 'dump',
    instance: name,
    filePath: file,
    blobName: path.basename(file),
    blockSize: 128 * 1024,
    metadata: {},
    keepLocal: true,
    createdAt: new Date().toISOString(),
  };
  writePending(stateDir, pending);
  const collector = new DiagnosticsCollector({
    instance: name,
    dump: true,
    target: 1,
    outputDir: dir,
    lockDir: dir,
    stateDir,
    containerSas: parseContainerSasUrl(frontSas),
    retryDelayMs: 20,
    maxRetryDelayMs: 100,
    concurrency: 1,
  });
  const steps: CollectionStep[] = [];
  collector.on('step', (s) => steps.push(s));
  return { collector, steps, file, data, stateDir };
}

const retries = (steps: CollectionStep[]) =>
  steps.filter((s) => s.step === 'upload-event' && s.event.type === 'retry').map((s) => (s.step === 'upload-event' ? s.event : undefined)!);

describe('an upload within a run', () => {
  it('keeps retrying while the storage is down past its 5 attempts, then uploads when it is back', async () => {
    const { collector, steps, file, data, stateDir } = setup('down');
    front.down = '503';
    try {
      expect(collector.resumePending().resumed).toHaveLength(1);
      // Well past the 5 attempts after which 0.1.0 gave up until the next start.
      await waitFor('retries past the 5th attempt', () => retries(steps).length >= 8, { ms: 30_000, everyMs: 20 });
      expect(steps.some((s) => s.step === 'upload-failed')).toBe(false);
      front.down = 'reset'; // a different transient failure: still retried
      await waitFor('a reset retried', () => retries(steps).some((r) => r.type === 'retry' && r.reason === 'ECONNRESET'), {
        ms: 30_000,
        everyMs: 20,
      });
    } finally {
      front.down = undefined;
    }
    await waitFor('uploaded', () => steps.some((s) => s.step === 'uploaded'), { ms: 30_000, everyMs: 20 });
    await collector.stop();
    expect(await keyContainerClient(azurite.url, 'runs').getBlockBlobClient(path.basename(file)).downloadToBuffer()).toEqual(data);
    const rs = retries(steps);
    expect(rs.slice(0, 4).map((r) => (r.type === 'retry' ? `${r.attempt}/${r.maxAttempts} ${r.reason}` : ''))).toEqual([
      '2/5 HTTP 503',
      '3/5 HTTP 503',
      '4/5 HTTP 503',
      '5/5 HTTP 503',
    ]);
    // Past the 5th: numbered on, marked as retried until the run ends, delays within the cap.
    for (const r of rs.slice(4)) expect(r).toMatchObject({ type: 'retry', untilAborted: true });
    expect(rs.every((r) => r.type === 'retry' && r.delayMs <= 100)).toBe(true);
    expect(rs.map((r) => (r.type === 'retry' ? r.attempt : 0))).toEqual(rs.map((_, i) => i + 2));
    const sixth = steps.find((s) => s.step === 'upload-event' && s.event.type === 'retry' && s.event.attempt === 6)!;
    expect(formatStep(sixth)).toMatch(
      /: Memory dump upload: retry 6 in \d+(\.\d)? s: HTTP 503 \(5 attempts failed; retrying until it succeeds or the run ends\)$/,
    );
    expect(collector.state('dump')).toBe('done');
    expect(listPending(stateDir).records).toHaveLength(0);
    expect(JSON.stringify(steps)).not.toContain(signature());
  }, 120_000);

  it('stops at once on a 403 with the reason; the pending and upload records stay', async () => {
    const { collector, steps, file, stateDir } = setup('refused');
    front.down = '403';
    try {
      collector.resumePending();
      await waitFor('failed', () => steps.some((s) => s.step === 'upload-failed'), { ms: 30_000, everyMs: 20 });
    } finally {
      front.down = undefined;
    }
    await collector.stop();
    expect(retries(steps)).toHaveLength(0);
    const failed = steps.find((s) => s.step === 'upload-failed')!;
    expect(failed).toMatchObject({ attempts: 1 });
    expect(formatStep(failed)).toMatch(
      /ERROR: failed to upload the memory dump after 1 attempt: \w+ failed with HTTP 403 AuthenticationFailed: the SAS is wrong, expired, revoked or lacks permission/,
    );
    expect(collector.state('dump')).toBe('failed');
    expect(listPending(stateDir).records.map((p) => p.filePath)).toEqual([file]);
    expect(fs.existsSync(uploadRecordPath(file, stateDir))).toBe(true);
    expect(JSON.stringify(steps)).not.toContain(signature());
  }, 60_000);

  it('a stop ends the retrying: interrupted, both records kept for the next start', async () => {
    const { collector, steps, file, stateDir } = setup('stopped');
    front.down = 'reset';
    try {
      collector.resumePending();
      await waitFor('retries past the 5th attempt', () => retries(steps).length >= 6, { ms: 30_000, everyMs: 20 });
      await collector.stop();
    } finally {
      front.down = undefined;
    }
    expect(steps.some((s) => s.step === 'upload-interrupted')).toBe(true);
    expect(steps.some((s) => s.step === 'upload-failed' || s.step === 'uploaded')).toBe(false);
    expect(listPending(stateDir).records.map((p) => p.filePath)).toEqual([file]);
    expect(fs.existsSync(uploadRecordPath(file, stateDir))).toBe(true);
  }, 60_000);
});
