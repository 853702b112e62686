// Resumable block upload of one local file to a container SAS URL.
//
// One attempt: read or start the upload record → ask the service which of our blocks it already
// holds (Get Block List) → stage the missing ones (bounded concurrency, per-block MD5) → commit
// the list in order with the whole file's MD5 and the metadata → check size and MD5 with Get Blob
// Properties → delete the local file (unless keepLocal) and the record.
// The whole attempt is retried with backoff (lib/base/backoff.ts); the SDK's own per-request retry is
// off (maxTries 1) so that this loop alone decides, reports and counts retries. With
// retryUntilAborted, transient failures are retried past maxAttempts until success or the signal;
// terminal ones (403, 404, an expired SAS) end the upload at once. The record stays either way.
// The SAS arrives parsed (options.ts → sas-url.ts); only the SDK client is handed the signed URL.
import type * as fs from 'node:fs';
import { AnonymousCredential, ContainerClient, type BlockBlobClient } from '@azure/storage-blob';
import { backoffDelay, sleep } from '../base/backoff';
import { constants as osConstants } from 'node:os';
import { systemError } from '../base/errors';
import { md5OfFile, newUploadId, planBlocks } from './blocks';
import { confirmUpload } from './confirm';
import { UploadAbortedError, UploadError, scrub } from './errors';
import { normalizeUploadOptions, type UploadFileOptions } from './options';
import { stageBlocks } from './stage-blocks';
import { checkAborted, fileChanged, remote, statFile, type Upload, type UploadResult } from './upload-context';
import { readUploadRecord, UPLOAD_RECORD_VERSION, uploadRecordPath, writeUploadRecord, type UploadRecord } from './upload-record';

export type { UploadResult };

/**
 * Uploads `filePath` as a block blob, resuming the blocks an interrupted run staged. Resolves once
 * the committed blob is confirmed (size and MD5). Rejects with UploadError (redacted message,
 * `retryable`, `statusCode`), UploadAbortedError, SasExpiredError, or a TypeError/RangeError for
 * bad options.
 */
export async function uploadFile(options: UploadFileOptions): Promise<UploadResult> {
  const opts = normalizeUploadOptions(options);
  const sas = opts.containerSas;
  let blob: BlockBlobClient;
  try {
    // Pipeline options must be the third argument: in second place the SDK takes them for a
    // credential and fails with a misleading "containerName" error.
    const container = new ContainerClient(sas.revealSignedUrl(), new AnonymousCredential(), {
      retryOptions: { maxTries: 1, tryTimeoutInMs: opts.tryTimeoutMs },
      userAgentOptions: { userAgentPrefix: 'sockwatch' },
    });
    blob = container.getBlockBlobClient(opts.blobName);
  } catch (err) {
    throw new TypeError(
      `containerSasUrl ${sas.redactedUrl} is not usable: ${scrub(String((err as Error)?.message ?? err), sas.secretValues())}`,
    );
  }
  const up: Upload = {
    opts,
    sas,
    secrets: sas.secretValues(),
    blob,
    recordFile: uploadRecordPath(opts.filePath, opts.stateDir),
    emit: opts.onEvent,
    stagedBlocks: 0,
    reused: { uploadId: '', blocks: 0 },
  };

  for (let attempt = 1; ; attempt++) {
    checkAborted(up);
    // A SAS that expired while we were retrying: terminal, with its reason (not a 403 to decode).
    if (attempt > 1) sas.checkNotExpired();
    up.emit({ type: 'attempt', attempt, maxAttempts: opts.maxAttempts });
    try {
      const result = await runAttempt(up);
      return { ...result, attempts: attempt };
    } catch (err) {
      if (opts.signal?.aborted) throw new UploadAbortedError(opts.filePath);
      if (!(err instanceof UploadError)) throw err;
      if (!err.retryable || (attempt >= opts.maxAttempts && !opts.retryUntilAborted)) {
        err.attempts = attempt;
        throw err;
      }
      const delayMs = backoffDelay(attempt, { baseMs: opts.retryDelayMs, capMs: opts.maxRetryDelayMs }, err.retryAfterMs);
      up.emit({
        type: 'retry',
        attempt: attempt + 1,
        maxAttempts: opts.maxAttempts,
        ...(attempt >= opts.maxAttempts ? { untilAborted: true as const } : {}),
        delayMs,
        reason: err.reason,
        ...(err.statusCode === undefined ? {} : { statusCode: err.statusCode }),
      });
      await sleep(delayMs, opts.signal, () => new UploadAbortedError(opts.filePath));
    }
  }
}

/** Why a record cannot be resumed for this file and target, or undefined when it can. */
function mismatch(record: UploadRecord, up: Upload, stat: fs.Stats | undefined): string | undefined {
  if (record.filePath !== up.opts.filePath) return 'record of another file';
  if (stat !== undefined && (record.size !== stat.size || record.mtimeMs !== stat.mtimeMs)) return 'file changed (size or mtime)';
  if (record.blobName !== up.opts.blobName) return 'blob name changed';
  if (record.containerUrl !== up.sas.containerUrl) return 'container changed';
  if (!record.committed && record.blockSize !== up.opts.blockSize) return 'block size changed';
  return undefined;
}

async function loadRecord(up: Upload, stat: fs.Stats | undefined): Promise<UploadRecord | undefined> {
  const read = await readUploadRecord(up.recordFile);
  if (read.record === undefined) {
    if (read.unreadable) up.emit({ type: 'record-discarded', reason: 'unreadable record' });
    return undefined;
  }
  const why = mismatch(read.record, up, stat);
  if (why === undefined) return read.record;
  up.emit({ type: 'record-discarded', reason: why });
  return undefined;
}

async function runAttempt(up: Upload): Promise<Omit<UploadResult, 'attempts'>> {
  const { opts } = up;
  const stat = await statFile(opts.filePath);
  let record = await loadRecord(up, stat);

  if (stat === undefined) {
    // Killed after deleting the local file but before removing the record: only the check is left.
    if (record?.committed && record.contentMD5 !== undefined && !opts.keepLocal) {
      return confirmUpload(up, record, Buffer.from(record.contentMD5, 'base64'), true);
    }
    throw Object.assign(systemError(osConstants.errno.ENOENT, 'stat', `no such file to upload, '${opts.filePath}'`), {
      path: opts.filePath,
    });
  }
  if (!stat.isFile()) throw new TypeError(`filePath ${JSON.stringify(opts.filePath)} is not a regular file`);

  if (record === undefined) {
    record = {
      version: UPLOAD_RECORD_VERSION,
      filePath: opts.filePath,
      size: stat.size,
      mtimeMs: stat.mtimeMs,
      blockSize: opts.blockSize,
      uploadId: newUploadId(),
      blobName: opts.blobName,
      containerUrl: up.sas.containerUrl,
      committed: false,
      createdAt: new Date().toISOString(),
    };
    planBlocks(record.uploadId, record.size, record.blockSize); // throws RangeError before anything is written
    await writeUploadRecord(up.recordFile, record);
    return uploadWithRecord(up, record, false);
  }
  return uploadWithRecord(up, record, true);
}

async function uploadWithRecord(up: Upload, record: UploadRecord, resumed: boolean): Promise<Omit<UploadResult, 'attempts'>> {
  const plan = planBlocks(record.uploadId, record.size, record.blockSize);
  if (record.committed) {
    return confirmUpload(up, record, await contentMD5(up, record), false);
  }

  const list = await blockList(up);
  const committedNow =
    plan.length > 0 &&
    list.committed.length === plan.length &&
    plan.every((b, i) => list.committed[i]!.name === b.id && list.committed[i]!.size === b.length);
  const missing = committedNow ? [] : plan.filter((b) => list.uncommitted.get(b.id) !== b.length);
  const alreadyStaged = plan.length - missing.length;
  if (up.reused.uploadId !== record.uploadId) up.reused = { uploadId: record.uploadId, blocks: alreadyStaged };
  up.emit({
    type: 'plan',
    uploadId: record.uploadId,
    resumed,
    size: record.size,
    blockSize: record.blockSize,
    totalBlocks: plan.length,
    stagedBlocks: alreadyStaged,
    missingBlocks: missing.length,
  });

  await stageBlocks(up, record, plan, missing);
  const md5 = await contentMD5(up, record);
  const after = await statFile(up.opts.filePath);
  if (after === undefined || after.size !== record.size || after.mtimeMs !== record.mtimeMs) throw fileChanged('commitBlockList');

  if (!committedNow) {
    await remote(up, 'commitBlockList', (abortSignal) =>
      up.blob.commitBlockList(
        plan.map((b) => b.id),
        {
          abortSignal,
          metadata: up.opts.metadata,
          blobHTTPHeaders: { blobContentMD5: md5, blobContentType: up.opts.contentType },
        },
      ),
    );
  }
  record.committed = true;
  await writeUploadRecord(up.recordFile, record);
  up.emit({ type: 'committed', blobName: record.blobName });
  return confirmUpload(up, record, md5, false);
}

async function blockList(up: Upload): Promise<{ committed: { name: string; size: number }[]; uncommitted: Map<string, number> }> {
  try {
    const res = await remote(up, 'getBlockList', (abortSignal) => up.blob.getBlockList('all', { abortSignal }));
    const uncommitted = new Map<string, number>();
    for (const b of res.uncommittedBlocks ?? []) uncommitted.set(b.name, b.size);
    return { committed: (res.committedBlocks ?? []).map((b) => ({ name: b.name, size: b.size })), uncommitted };
  } catch (err) {
    // No blob and no staged block yet: nothing to resume.
    if (err instanceof UploadError && err.statusCode === 404 && err.serviceCode === 'BlobNotFound') {
      return { committed: [], uncommitted: new Map() };
    }
    throw err;
  }
}

async function contentMD5(up: Upload, record: UploadRecord): Promise<Buffer> {
  if (record.contentMD5 !== undefined) return Buffer.from(record.contentMD5, 'base64');
  let md5: Buffer;
  try {
    md5 = await md5OfFile(up.opts.filePath, up.opts.signal);
  } catch (err) {
    checkAborted(up);
    throw err;
  }
  record.contentMD5 = md5.toString('base64');
  await writeUploadRecord(up.recordFile, record);
  return md5;
}
