// uploadFile against a real Azurite (in memory): multi-block round trip, resume after an abort,
// a file changed between runs, the committed-but-unconfirmed state, final errors (403, 404,
// expired SAS), retries through a real faulty HTTP front (503, 429, hang, reset), and the SAS
// signature in no event, error or record.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SasExpiredError, UploadAbortedError, UploadError, uploadFile, type UploadEvent, type UploadFileOptions } from '../lib/upload';
import { readUploadRecord, uploadRecordPath } from '../lib/upload/upload-record';
import { startAzurite, createContainerSas, keyContainerClient, type Azurite } from './helpers/azurite';
import { faultyFront, type FaultyFront } from './helpers/faulty-front';

const BLOCK = 256 * 1024;
let azurite: Azurite;
let sasUrl: string;
let tmp: string;
/** Every event of every upload in this file, checked for the signature at the end. */
const allEvents: UploadEvent[] = [];

function sigOf(url: string): string[] {
  const raw = /[?&]sig=([^&]+)/.exec(url)![1]!;
  return [raw, decodeURIComponent(raw)];
}

function expectNoSig(text: string, url = sasUrl): void {
  for (const s of sigOf(url)) expect(text).not.toContain(s);
}

function makeFile(name: string, size: number): { file: string; data: Buffer } {
  const data = randomBytes(size);
  const file = path.join(tmp, name);
  fs.writeFileSync(file, data);
  return { file, data };
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

async function download(blobName: string, container = 'dumps'): Promise<Buffer> {
  return keyContainerClient(azurite.url, container).getBlockBlobClient(blobName).downloadToBuffer();
}

function run(opts: Partial<UploadFileOptions> & { filePath: string }, events: UploadEvent[] = []) {
  return uploadFile({
    containerSasUrl: sasUrl,
    blockSize: BLOCK,
    retryDelayMs: 50,
    maxRetryDelayMs: 200,
    ...opts,
    onEvent: (e) => {
      events.push(e);
      allEvents.push(e);
      opts.onEvent?.(e);
    },
  });
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-upload-'));
  azurite = await startAzurite();
  sasUrl = await createContainerSas(azurite.url, 'dumps');
});

afterAll(async () => {
  await azurite?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
  const text = JSON.stringify(allEvents);
  expect(allEvents.length).toBeGreaterThan(0);
  expectNoSig(text);
});

describe('uploadFile on Azurite', () => {
  it('uploads a multi-block file; bytes, MD5, size and metadata match; the local file and record are removed', async () => {
    const { file, data } = makeFile('core.1001', 3 * 1024 * 1024 + 12345);
    const events: UploadEvent[] = [];
    const result = await run({ filePath: file, blobName: 'host1/core.1001', metadata: { host: 'host1', pid: '1001' } }, events);

    expect(result).toMatchObject({
      blobName: 'host1/core.1001',
      size: data.length,
      contentMD5: md5(data),
      totalBlocks: 13,
      stagedBlocks: 13,
      reusedBlocks: 0,
      attempts: 1,
      localDeleted: true,
    });
    expect(result.blobUrl).toBe(`${azurite.url}/dumps/host1/core.1001`);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(uploadRecordPath(file))).toBe(false);

    const blob = keyContainerClient(azurite.url, 'dumps').getBlockBlobClient('host1/core.1001');
    const props = await blob.getProperties();
    expect(props.contentLength).toBe(data.length);
    expect(Buffer.from(props.contentMD5!).toString('base64')).toBe(md5(data));
    expect(props.metadata).toEqual({ host: 'host1', pid: '1001' });
    expect(props.contentType).toBe('application/octet-stream');
    const committed = await blob.getBlockList('committed');
    expect(committed.committedBlocks!.map((b) => b.size)).toEqual([...Array(12).fill(BLOCK), 3 * 1024 * 1024 + 12345 - 12 * BLOCK]);
    expect(new Set(committed.committedBlocks!.map((b) => b.name.length)).size).toBe(1);
    expect((await download('host1/core.1001')).equals(data)).toBe(true);

    const staged = events.filter((e) => e.type === 'block-staged');
    expect(staged.map((e) => (e.type === 'block-staged' ? e.index : -1)).sort((a, b) => a - b)).toEqual([...Array(13).keys()]);
    expect(events.map((e) => e.type).filter((t) => t !== 'block-staged')).toEqual([
      'attempt',
      'plan',
      'committed',
      'confirmed',
      'local-deleted',
    ]);
    const last = staged.at(-1)!;
    expect(last.type === 'block-staged' && last.doneBytes).toBe(data.length);
  });

  it('keeps the local file with keepLocal, and uploads an empty file', async () => {
    const { file } = makeFile('empty.bin', 0);
    const result = await run({ filePath: file, keepLocal: true });
    expect(result).toMatchObject({ size: 0, totalBlocks: 0, localDeleted: false });
    expect(fs.existsSync(file)).toBe(true);
    expect((await download('empty.bin')).length).toBe(0);
  });

  it('resumes after an abort: stages only the missing blocks and reuses the rest', async () => {
    const { file, data } = makeFile('core.2002', 2 * 1024 * 1024);
    const stateDir = path.join(tmp, 'state');
    const ac = new AbortController();
    let staged = 0;
    const first = run(
      {
        filePath: file,
        stateDir,
        concurrency: 1,
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === 'block-staged' && ++staged === 3) ac.abort();
        },
      },
      [],
    );
    await expect(first).rejects.toBeInstanceOf(UploadAbortedError);
    await expect(first).rejects.toMatchObject({ name: 'AbortError' });

    const recordFile = uploadRecordPath(file, stateDir);
    const { record } = await readUploadRecord(recordFile);
    expect(record).toMatchObject({ committed: false, size: data.length, blockSize: BLOCK, blobName: 'core.2002' });
    expect(fs.existsSync(`${file}.upload.json`)).toBe(false);
    const list = await keyContainerClient(azurite.url, 'dumps').getBlockBlobClient('core.2002').getBlockList('uncommitted');
    const already = list.uncommittedBlocks!.length;
    expect(already).toBe(3);

    const events: UploadEvent[] = [];
    const result = await run({ filePath: file, stateDir }, events);
    const plan = events.find((e) => e.type === 'plan');
    expect(plan).toMatchObject({ resumed: true, uploadId: record!.uploadId, stagedBlocks: 3, missingBlocks: 5 });
    const indices = events.flatMap((e) => (e.type === 'block-staged' ? [e.index] : []));
    expect(indices.sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 7]);
    expect(result).toMatchObject({ stagedBlocks: 5, reusedBlocks: 3, uploadId: record!.uploadId });
    expect((await download('core.2002')).equals(data)).toBe(true);
    expect(fs.existsSync(recordFile)).toBe(false);
  });

  it('starts over cleanly when the file changed between runs', async () => {
    const { file } = makeFile('core.3003', 1024 * 1024 + 5);
    const ac = new AbortController();
    let staged = 0;
    const first = run({
      filePath: file,
      concurrency: 1,
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === 'block-staged' && ++staged === 2) ac.abort();
      },
    });
    await expect(first).rejects.toBeInstanceOf(UploadAbortedError);
    const before = (await readUploadRecord(uploadRecordPath(file))).record!;

    const changed = randomBytes(1024 * 1024 + 5);
    fs.writeFileSync(file, changed);
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(file, later, later);

    const events: UploadEvent[] = [];
    const result = await run({ filePath: file, keepLocal: true }, events);
    expect(events).toContainEqual({ type: 'record-discarded', reason: 'file changed (size or mtime)' });
    expect(events.find((e) => e.type === 'plan')).toMatchObject({ resumed: false, stagedBlocks: 0, missingBlocks: 5 });
    expect(result.uploadId).not.toBe(before.uploadId);
    expect(result).toMatchObject({ stagedBlocks: 5, reusedBlocks: 0 });
    expect((await download('core.3003')).equals(changed)).toBe(true);
  });

  it('a run stopped after the commit only confirms on the next run', async () => {
    const { file, data } = makeFile('core.4004', 600 * 1024);
    const ac = new AbortController();
    const first = run({
      filePath: file,
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === 'committed') ac.abort();
      },
    });
    await expect(first).rejects.toBeInstanceOf(UploadAbortedError);
    expect((await readUploadRecord(uploadRecordPath(file))).record).toMatchObject({ committed: true });
    expect(fs.existsSync(file)).toBe(true);

    const events: UploadEvent[] = [];
    const result = await run({ filePath: file }, events);
    expect(events.map((e) => e.type)).toEqual(['attempt', 'confirmed', 'local-deleted']);
    expect(result).toMatchObject({ stagedBlocks: 0, localDeleted: true, contentMD5: md5(data) });
    expect(fs.existsSync(uploadRecordPath(file))).toBe(false);
  });

  it('starts over when the blob committed by an earlier run has disappeared', async () => {
    const { file, data } = makeFile('core.4005', 600 * 1024);
    const ac = new AbortController();
    const first = run({
      filePath: file,
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === 'committed') ac.abort();
      },
    });
    await expect(first).rejects.toBeInstanceOf(UploadAbortedError);
    const before = (await readUploadRecord(uploadRecordPath(file))).record!;
    await keyContainerClient(azurite.url, 'dumps').deleteBlob('core.4005');

    const events: UploadEvent[] = [];
    const result = await run({ filePath: file, keepLocal: true }, events);
    expect(events.filter((e) => e.type === 'retry')).toMatchObject([{ attempt: 2, reason: 'ERR_SOCKWATCH_VERIFY_FAILED' }]);
    expect(result).toMatchObject({ attempts: 2, stagedBlocks: 3 });
    expect(result.uploadId).not.toBe(before.uploadId);
    expect((await download('core.4005')).equals(data)).toBe(true);
  });

  it('a run killed after deleting the local file only checks the blob against the record', async () => {
    const { file, data } = makeFile('core.5005', 300 * 1024);
    await run({ filePath: file, keepLocal: true });
    // The state a SIGKILL between "local file deleted" and "record removed" leaves behind.
    const recordFile = uploadRecordPath(file);
    const stat = fs.statSync(file);
    fs.writeFileSync(
      recordFile,
      JSON.stringify({
        version: 1,
        filePath: file,
        size: stat.size,
        mtimeMs: stat.mtimeMs,
        blockSize: BLOCK,
        uploadId: 'ab'.repeat(16),
        blobName: 'core.5005',
        containerUrl: `${azurite.url}/dumps`,
        contentMD5: md5(data),
        committed: true,
        createdAt: new Date().toISOString(),
      }),
    );
    fs.rmSync(file);
    const result = await run({ filePath: file });
    expect(result).toMatchObject({ localDeleted: true, size: data.length, contentMD5: md5(data), stagedBlocks: 0 });
    expect(fs.existsSync(recordFile)).toBe(false);
  });

  it('fails fast on a wrong signature (403): one attempt, a clear message, no signature anywhere', async () => {
    const { file } = makeFile('core.6006', 300 * 1024);
    const wrong = sasUrl.replace(/sig=[^&]+/, `sig=${encodeURIComponent(randomBytes(32).toString('base64'))}`);
    const events: UploadEvent[] = [];
    const err = await run({ filePath: file, containerSasUrl: wrong }, events).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UploadError);
    expect(err).toMatchObject({ statusCode: 403, retryable: false, attempts: 1, operation: 'getBlockList' });
    expect((err as Error).message).toMatch(/HTTP 403 .*the SAS is wrong, expired, revoked or lacks permission/);
    expect(events.filter((e) => e.type === 'retry')).toEqual([]);
    for (const text of [(err as Error).message, (err as Error).stack ?? '', inspect(err, { depth: 10 }), JSON.stringify(events)]) {
      expectNoSig(text, wrong);
    }
    expect(fs.existsSync(file)).toBe(true);
    // The record holds no part of the SAS.
    expectNoSig(fs.readFileSync(uploadRecordPath(file), 'utf8'), wrong);
    expect(fs.readFileSync(uploadRecordPath(file), 'utf8')).not.toContain('sig=');
  });

  it('fails fast when the container does not exist (404), and never creates it', async () => {
    const { file } = makeFile('core.7007', 1000);
    const noContainer = await createContainerSas(azurite.url, 'missing-container', { create: false });
    const err = await run({ filePath: file, containerSasUrl: noContainer }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      name: 'UploadError',
      statusCode: 404,
      code: 'ERR_SOCKWATCH_UPLOAD_REJECTED',
      serviceCode: 'ContainerNotFound',
      attempts: 1,
    });
    expect((err as Error).message).toContain('the container does not exist');
    expect(await keyContainerClient(azurite.url, 'missing-container').exists()).toBe(false);
  });

  it('refuses an expired SAS before any request, and a SAS without read permission', async () => {
    const { file } = makeFile('core.8008', 1000);
    const expired = await createContainerSas(azurite.url, 'dumps', {
      startsOn: new Date(Date.now() - 7_200_000),
      expiresOn: new Date(Date.now() - 3_600_000),
    });
    const events: UploadEvent[] = [];
    const err = await run({ filePath: file, containerSasUrl: expired }, events).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SasExpiredError);
    expect((err as Error).message).toMatch(/expired at \d{4}-\d\d-\d\dT/);
    expectNoSig((err as Error).message, expired);
    expect(events).toEqual([]);
    expect(fs.existsSync(uploadRecordPath(file))).toBe(false);

    const writeOnly = await createContainerSas(azurite.url, 'dumps', { permissions: 'cw' });
    await expect(run({ filePath: file, containerSasUrl: writeOnly })).rejects.toThrow(/sp=cw; uploads need r and w/);
  });
});

describe('retries through a faulty front', () => {
  let front: FaultyFront;
  let frontSas: string;
  beforeAll(async () => {
    front = await faultyFront(new URL(azurite.url));
    // Path-style SAS: the signature does not cover the host, so the same SAS works via the front.
    frontSas = sasUrl.replace(azurite.baseUrl, front.url);
  });
  afterAll(() => front?.close());

  it('retries 503, 429, a reset and a hung request, resumes, and reports each retry', async () => {
    const { file, data } = makeFile('core.9009', 5 * BLOCK);
    front.faults.set('blocklist', ['503', 'pass']);
    front.faults.set('block', ['pass', 'reset', 'pass', '429', 'hang']);
    const events: UploadEvent[] = [];
    const result = await run({ filePath: file, containerSasUrl: frontSas, concurrency: 1, maxAttempts: 8, tryTimeoutMs: 1000 }, events);
    expect((await download('core.9009')).equals(data)).toBe(true);
    const retries = events.filter((e) => e.type === 'retry');
    expect(retries.map((e) => (e.type === 'retry' ? e.reason : ''))).toEqual([
      'HTTP 503',
      'ECONNRESET',
      'HTTP 429',
      'ERR_SOCKWATCH_UPLOAD_TIMEOUT',
    ]);
    expect(retries.map((e) => (e.type === 'retry' ? `${e.attempt}/${e.maxAttempts}` : ''))).toEqual(['2/8', '3/8', '4/8', '5/8']);
    expect(result.attempts).toBe(5);
    // Each retry resumed: every block was staged exactly once in the end (5 blocks, 5 staged).
    expect(result.stagedBlocks).toBe(5);
    const plans = events.filter((e) => e.type === 'plan');
    expect(plans.map((e) => (e.type === 'plan' ? e.stagedBlocks : -1))).toEqual([0, 1, 2, 2]);
    expectNoSig(JSON.stringify(events), frontSas);
  });

  it('gives up after maxAttempts on a lasting 500, with the count in the error', async () => {
    const { file } = makeFile('core.9010', 1000);
    front.faults.set('blocklist', ['503', '503', '503']);
    const events: UploadEvent[] = [];
    const err = await run({ filePath: file, containerSasUrl: frontSas, maxAttempts: 3 }, events).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'UploadError', statusCode: 503, retryable: true, attempts: 3 });
    expect(events.filter((e) => e.type === 'retry')).toHaveLength(2);
    expectNoSig(inspect(err), frontSas);
  });
});
