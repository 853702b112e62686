// The upload's last check against a real Azurite: a committed blob whose stored Content-MD5 differs
// from the file's is never reported as uploaded (rule: a test of a safety check must fail without it).
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadAbortedError, uploadFile, type UploadEvent } from '../lib/upload';
import { readUploadRecord, uploadRecordPath } from '../lib/upload/upload-record';
import { startAzurite, createContainerSas, keyContainerClient, type Azurite } from './helpers/azurite';

const BLOCK = 256 * 1024;
let azurite: Azurite;
let sasUrl: string;
let tmp: string;

const md5 = (data: Buffer): Buffer => createHash('md5').update(data).digest();

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-upload-verify-'));
  azurite = await startAzurite();
  sasUrl = await createContainerSas(azurite.url, 'dumps');
});

afterAll(async () => {
  await azurite?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Uploads until the commit, stops there, then gives the committed blob a wrong Content-MD5. */
async function committedWithWrongMd5(name: string): Promise<{ file: string; data: Buffer }> {
  const data = randomBytes(600 * 1024);
  const file = path.join(tmp, name);
  fs.writeFileSync(file, data);
  const ac = new AbortController();
  const first = uploadFile({
    containerSasUrl: sasUrl,
    filePath: file,
    blockSize: BLOCK,
    retryDelayMs: 50,
    maxRetryDelayMs: 200,
    signal: ac.signal,
    onEvent: (e) => {
      if (e.type === 'committed') ac.abort();
    },
  });
  await expect(first).rejects.toBeInstanceOf(UploadAbortedError);
  const blob = keyContainerClient(azurite.url, 'dumps').getBlockBlobClient(name);
  await blob.setHTTPHeaders({ blobContentMD5: md5(Buffer.from('not the file')) });
  expect(Buffer.from((await blob.getProperties()).contentMD5!).equals(md5(data))).toBe(false);
  return { file, data };
}

describe('upload verification (Content-MD5)', () => {
  it('a stored MD5 that differs from the file is not done: the upload starts over and stores the right bytes', async () => {
    const { file, data } = await committedWithWrongMd5('core.md5a');
    const events: UploadEvent[] = [];
    const result = await uploadFile({
      containerSasUrl: sasUrl,
      filePath: file,
      blockSize: BLOCK,
      retryDelayMs: 50,
      maxRetryDelayMs: 200,
      keepLocal: true,
      onEvent: (e) => events.push(e),
    });
    const retry = events.find((e) => e.type === 'retry');
    expect(retry).toMatchObject({ reason: 'ERR_SOCKWATCH_VERIFY_FAILED' });
    const firstConfirm = events.findIndex((e) => e.type === 'confirmed');
    expect(firstConfirm).toBeGreaterThan(events.indexOf(retry!)); // never confirmed before starting over
    expect(result.attempts).toBe(2);
    const blob = keyContainerClient(azurite.url, 'dumps').getBlockBlobClient('core.md5a');
    expect(Buffer.from((await blob.getProperties()).contentMD5!).equals(md5(data))).toBe(true);
  });

  it('with the local file already deleted, a wrong stored MD5 fails the upload and keeps the record', async () => {
    const { file } = await committedWithWrongMd5('core.md5b');
    fs.rmSync(file); // the state a kill between "local file deleted" and "record removed" leaves
    const err = await uploadFile({
      containerSasUrl: sasUrl,
      filePath: file,
      blockSize: BLOCK,
      retryDelayMs: 50,
      maxRetryDelayMs: 200,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_SOCKWATCH_VERIFY_FAILED', retryable: false });
    expect((err as Error).message).toMatch(/stored Content-MD5 .* differs from the file's/);
    expect((await readUploadRecord(uploadRecordPath(file))).record).toMatchObject({ committed: true });
  });
});
