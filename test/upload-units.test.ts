// Pure units of lib/upload: SAS parsing, redaction of SDK errors, backoff, block ids, options,
// the upload record. No network.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { RestError } from '@azure/storage-blob';
import { afterAll, describe, expect, it } from 'vitest';
import { backoffDelay, sleep } from '../lib/base/backoff';
import { blockId, newUploadId, planBlocks } from '../lib/upload/blocks';
import { UploadError, scrub, toUploadError } from '../lib/upload/errors';
import { formatUploadEvent } from '../lib/upload/events';
import { normalizeUploadOptions } from '../lib/upload/options';
import { SasExpiredError, parseContainerSasUrl, urlSecrets } from '../lib/upload/sas-url';
import { readUploadRecord, uploadRecordPath, writeUploadRecord, type UploadRecord } from '../lib/upload/upload-record';

const SIG = 'b/yHCI1ZRl1XlS3XC7F7cGahiEF1PADF31buzsAQt+Q=';
const SIG_ENC = encodeURIComponent(SIG);
const FUTURE = '2099-01-01T00:00:00Z';
const AZURE = `https://acct.blob.core.windows.net/dumps?sv=2026-04-06&se=${encodeURIComponent(FUTURE)}&sr=c&sp=racwl&sig=${SIG_ENC}`;
const AZURITE = `http://127.0.0.1:10000/devstoreaccount1/dumps?sv=2026-04-06&sr=c&sp=racwdlt&sig=${SIG_ENC}`;

function expectNoSecret(text: string): void {
  expect(text).not.toContain(SIG);
  expect(text).not.toContain(SIG_ENC);
  expect(text).not.toContain('yHCI1ZRl1Xl');
}

describe('parseContainerSasUrl', () => {
  it('splits an Azure host-style container SAS URL', () => {
    const info = parseContainerSasUrl(AZURE);
    expect(info).toMatchObject({
      containerUrl: 'https://acct.blob.core.windows.net/dumps',
      accountName: 'acct',
      containerName: 'dumps',
      permissions: 'racwl',
    });
    expect(info.expiresOn?.toISOString()).toBe('2099-01-01T00:00:00.000Z');
    expectNoSecret(info.redactedUrl);
    expect(info.redactedUrl).toContain('sig=REDACTED');
  });

  it('splits an Azurite path-style URL (account in the path), without expiry', () => {
    const info = parseContainerSasUrl(AZURITE);
    expect(info).toMatchObject({
      containerUrl: 'http://127.0.0.1:10000/devstoreaccount1/dumps',
      accountName: 'devstoreaccount1',
      containerName: 'dumps',
    });
    expect(info.expiresOn).toBeUndefined();
  });

  it.each([
    ['not a url ?sig=' + SIG_ENC, /is not a valid URL/],
    [`ftp://acct.blob.core.windows.net/dumps?sig=${SIG_ENC}`, /must use https: or http:/],
    ['https://acct.blob.core.windows.net/dumps?sv=1', /has no SAS signature/],
    [`https://acct.blob.core.windows.net/?sig=${SIG_ENC}`, /names no container/],
    [`https://acct.blob.core.windows.net/dumps/a.dmp?sr=c&sig=${SIG_ENC}`, /points below a container/],
    [`https://acct.blob.core.windows.net/dumps?sr=b&sig=${SIG_ENC}`, /not a container SAS \(sr=b/],
    [`https://acct.blob.core.windows.net/dumps?se=soon&sig=${SIG_ENC}`, /unreadable expiry/],
    [`https://user:${SIG_ENC}@acct.blob.core.windows.net/dumps?sig=${SIG_ENC}`, /user name or password/],
  ])('rejects %s with a TypeError that names containerSasUrl and hides the signature', (input, why) => {
    let caught: unknown;
    try {
      parseContainerSasUrl(input);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TypeError);
    const message = (caught as Error).message;
    expect(message).toMatch(/^containerSasUrl /);
    expect(message).toMatch(why);
    expectNoSecret(message);
  });

  it('rejects a non-string', () => {
    expect(() => parseContainerSasUrl(42 as unknown as string)).toThrow(/containerSasUrl must be a string \(got number\)/);
  });

  it('throws SasExpiredError showing the expiry, not the signature; allowExpired returns it', () => {
    const url = AZURE.replace(encodeURIComponent(FUTURE), encodeURIComponent('2020-05-01T10:00:00Z'));
    let caught: unknown;
    try {
      parseContainerSasUrl(url);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SasExpiredError);
    expect((caught as SasExpiredError).code).toBe('ERR_SOCKWATCH_SAS_EXPIRED');
    expect((caught as SasExpiredError).legacyCode).toBe('SAS_EXPIRED');
    expect((caught as Error).message).toContain('expired at 2020-05-01T10:00:00.000Z');
    expect((caught as Error).message).toContain('https://acct.blob.core.windows.net/dumps');
    expectNoSecret((caught as Error).message);
    expect(parseContainerSasUrl(url, { allowExpired: true }).expiresOn?.getUTCFullYear()).toBe(2020);
    expect(() => parseContainerSasUrl(AZURE, { now: new Date('2100-01-01') })).toThrow(SasExpiredError);
  });

  it('lists the secret values as written and decoded, longest first', () => {
    const secrets = urlSecrets(AZURE);
    expect(secrets).toContain(SIG);
    expect(secrets).toContain(SIG_ENC);
    expect(secrets.some((s) => s.includes('2026-04-06'))).toBe(false);
    expect(urlSecrets('::bad')).toEqual([]);
  });
});

describe('toUploadError', () => {
  const secrets = urlSecrets(AZURE);
  // The shape of the SDK's request: the signed URL is in it (RestError options want a PipelineRequest).
  const signedUrl = AZURE.replace('/dumps?', '/dumps/a.dmp?comp=block&');
  const request = { url: signedUrl, headers: new Map() } as unknown as NonNullable<ConstructorParameters<typeof RestError>[1]>['request'];

  it('keeps status and service code, marks 403 final, and drops the request that holds the signed URL', () => {
    const raw = new RestError(`Server failed to authenticate the request. url=${signedUrl}\nRequestId:1`, {
      statusCode: 403,
      code: 'AuthenticationFailed',
      request,
    });
    const err = toUploadError(raw, 'stageBlock', secrets);
    expect(err).toBeInstanceOf(UploadError);
    expect(err).toMatchObject({
      statusCode: 403,
      code: 'ERR_SOCKWATCH_UPLOAD_REJECTED',
      serviceCode: 'AuthenticationFailed',
      retryable: false,
      operation: 'stageBlock',
    });
    expect(err.message).toMatch(/^stageBlock failed with HTTP 403 AuthenticationFailed: the SAS is wrong, expired/);
    expect(err.reason).toBe('HTTP 403 AuthenticationFailed');
    expectNoSecret(err.message);
    expectNoSecret(inspect(err, { depth: 10 }));
    expectNoSecret(JSON.stringify(err));
    expect(err.message).not.toContain('RequestId');
  });

  it.each([
    [408, true],
    [429, true],
    [500, true],
    [503, true],
    [400, false],
    [404, false],
    [409, false],
  ])('HTTP %i is retryable: %s', (status, retryable) => {
    const err = toUploadError(new RestError('x', { statusCode: status, request }), 'getBlockList', secrets);
    expect(err.retryable).toBe(retryable);
  });

  it('reads Retry-After in seconds', () => {
    const headers = { get: (name: string) => (name === 'retry-after' ? '3' : undefined) };
    const response = { headers, request, status: 429 } as unknown as NonNullable<ConstructorParameters<typeof RestError>[1]>['response'];
    const raw = new RestError('busy', { statusCode: 429, request, response });
    expect(toUploadError(raw, 'stageBlock', secrets).retryAfterMs).toBe(3000);
  });

  it('classifies socket errors as retryable with their errno name', () => {
    const raw = new RestError('connect ECONNREFUSED 127.0.0.1:9', { code: 'ECONNREFUSED', request });
    expect(toUploadError(raw, 'getBlockList', secrets)).toMatchObject({ code: 'ECONNREFUSED', retryable: true });
    const sent = new RestError('read ECONNRESET', { code: 'REQUEST_SEND_ERROR', request });
    const err = toUploadError(sent, 'stageBlock', secrets);
    expect(err).toMatchObject({ code: 'ECONNRESET', retryable: true });
    expect(err.reason).toBe('ECONNRESET');
  });

  it('redacts a signature quoted in any unknown error, decoded or not', () => {
    const err = toUploadError(new Error(`boom sig ${SIG} and ${SIG_ENC} at ${AZURE}`), 'commitBlockList', secrets);
    expect(err.retryable).toBe(false);
    expectNoSecret(err.message);
    expect(scrub(`x ${SIG} y`, secrets)).toBe('x REDACTED y');
  });
});

describe('backoff', () => {
  const opts = { baseMs: 1000, capMs: 8000 };
  it('doubles per failure, with half of it jittered, capped', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, opts, undefined, () => 0))).toEqual([500, 1000, 2000, 4000, 4000]);
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, opts, undefined, () => 1))).toEqual([1000, 2000, 4000, 8000, 8000]);
  });
  it('waits at least Retry-After, never past the cap', () => {
    expect(backoffDelay(1, opts, 3000, () => 0)).toBe(3000);
    expect(backoffDelay(1, opts, 60_000, () => 0)).toBe(8000);
    expect(backoffDelay(1, { ...opts, retryAfterCapMs: 20_000 }, 60_000, () => 0)).toBe(20_000);
    expect(backoffDelay(4, opts, 0, () => 0)).toBe(4000); // Retry-After: 0 never shortens the backoff
  });
  it('sleep rejects at once when aborted', async () => {
    const ac = new AbortController();
    const p = sleep(60_000, ac.signal, () => new Error('stopped'));
    ac.abort();
    await expect(p).rejects.toThrow('stopped');
  });
});

describe('blocks', () => {
  it('gives equal-length ids of at most 64 bytes that differ by index and upload', () => {
    const a = newUploadId();
    const b = newUploadId();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(a).not.toBe(b);
    const ids = [0, 7, 49_999].map((i) => blockId(a, i));
    expect(new Set(ids.map((id) => id.length)).size).toBe(1);
    expect(Buffer.from(ids[0]!, 'base64').length).toBeLessThanOrEqual(64);
    expect(Buffer.from(ids[2]!, 'base64').toString()).toBe(`${a}-049999`);
    expect(blockId(a, 1)).toBe(blockId(a, 1));
    expect(blockId(b, 1)).not.toBe(blockId(a, 1));
  });
  it('plans full blocks and a short last one', () => {
    const plan = planBlocks(newUploadId(), 10, 4);
    expect(plan.map((b) => [b.offset, b.length])).toEqual([
      [0, 4],
      [4, 4],
      [8, 2],
    ]);
    expect(planBlocks(newUploadId(), 0, 4)).toEqual([]);
  });
  it('refuses more than 50,000 blocks, naming blockSize', () => {
    expect(() => planBlocks(newUploadId(), 50_001, 1)).toThrow(RangeError);
    expect(() => planBlocks(newUploadId(), 50_001, 1)).toThrow(/^blockSize 1 splits/);
  });
});

describe('normalizeUploadOptions', () => {
  const base = { containerSasUrl: AZURITE, filePath: '/tmp/x/core.1234' };
  it('fills defaults', () => {
    const o = normalizeUploadOptions(base);
    expect(o).toMatchObject({
      blobName: 'core.1234',
      blockSize: 8 * 1024 * 1024,
      concurrency: 4,
      maxAttempts: 5,
      keepLocal: false,
      contentType: 'application/octet-stream',
    });
  });
  it.each([
    [{ blockSize: 0 }, RangeError, /^options.blockSize must be an integer from 1 to/],
    [{ blockSize: 1.5 }, RangeError, /^options.blockSize must be an integer from 1 to .* \(got 1.5\)/],
    [{ concurrency: 0 }, RangeError, /^options.concurrency must be an integer from 1 to 64/],
    [{ maxAttempts: '5' }, TypeError, /^options.maxAttempts must be an integer from 1 to 1000 \(got "5"\)/],
    [{ retryDelayMs: 5000, maxRetryDelayMs: 1000 }, RangeError, /^options.maxRetryDelayMs \(1000\) must not be below options.retryDelayMs/],
    [{ tryTimeoutMs: 10 }, RangeError, /^options.tryTimeoutMs must be an integer from 1000/],
    [{ blobName: '' }, RangeError, /^options.blobName must be a non-empty string/],
    [{ blobName: 5 }, TypeError, /^options.blobName must be a non-empty string \(got 5\)/],
    [{ keepLocal: 'yes' }, TypeError, /^options.keepLocal must be true or false \(got "yes"\)/],
    [{ keepLokal: true }, TypeError, /^options: unknown option "keepLokal" \(did you mean "keepLocal"\?\)/],
    [{ metadata: { '1host': 'a' } }, TypeError, /^metadata name "1host" must be a C# identifier/],
    [{ metadata: { host: 'caf\u00e9' } }, TypeError, /^metadata\.host must be a string of printable ASCII/],
    [{ signal: {} }, TypeError, /^options.signal must be an AbortSignal/],
  ])('rejects %o', (extra, type, message) => {
    expect(() => normalizeUploadOptions({ ...base, ...(extra as object) })).toThrow(type);
    expect(() => normalizeUploadOptions({ ...base, ...(extra as object) })).toThrow(message);
  });
});

describe('upload record', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-record-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('lives next to the file, or in stateDir under a per-path name', () => {
    expect(uploadRecordPath('/a/b/core.1')).toBe('/a/b/core.1.upload.json');
    const s1 = uploadRecordPath('/a/b/core.1', '/state');
    const s2 = uploadRecordPath('/c/core.1', '/state');
    expect(path.dirname(s1)).toBe('/state');
    expect(s1).toMatch(/^\/state\/core\.1\.[0-9a-f]{12}\.upload\.json$/);
    expect(s1).not.toBe(s2);
  });

  it('round-trips, leaves no temp file, and reports a damaged file as unreadable', async () => {
    const file = path.join(dir, 'sub', 'x.upload.json');
    const record: UploadRecord = {
      version: 1,
      filePath: '/x',
      size: 10,
      mtimeMs: 1.5,
      blockSize: 4,
      uploadId: newUploadId(),
      blobName: 'x',
      containerUrl: 'http://h/a/c',
      committed: false,
      createdAt: new Date().toISOString(),
    };
    await writeUploadRecord(file, record);
    expect(await readUploadRecord(file)).toEqual({ record });
    expect(fs.readdirSync(path.dirname(file))).toEqual(['x.upload.json']);
    fs.writeFileSync(file, '{"version":1,"filePa');
    expect(await readUploadRecord(file)).toEqual({ record: undefined, unreadable: true });
    expect(await readUploadRecord(path.join(dir, 'none.json'))).toEqual({ record: undefined, unreadable: false });
  });
});

describe('formatUploadEvent', () => {
  it('formats retry lines like the old script', () => {
    expect(formatUploadEvent({ type: 'retry', attempt: 2, maxAttempts: 5, delayMs: 4000, reason: 'ECONNREFUSED' })).toBe(
      'retry 2/5 in 4 s: ECONNREFUSED',
    );
    expect(formatUploadEvent({ type: 'retry', attempt: 3, maxAttempts: 5, delayMs: 1500, reason: 'HTTP 503' })).toBe(
      'retry 3/5 in 1.5 s: HTTP 503',
    );
    expect(
      formatUploadEvent({ type: 'block-staged', index: 0, bytes: 1, doneBlocks: 1, totalBlocks: 1, doneBytes: 1, totalBytes: 1 }),
    ).toBeUndefined();
  });
});
