// The state one uploadFile call shares between its steps, and the wrapper of every SDK call.
import * as fs from 'node:fs';
import type { BlockBlobClient } from '@azure/storage-blob';
import { UploadAbortedError, UploadError, toUploadError } from './errors';
import type { UploadEvent } from './events';
import type { NormalizedUploadOptions } from './options';
import type { ContainerSasUrl } from './sas-url';

export interface UploadResult {
  blobName: string;
  /** The blob's URL without the query string (safe to log). */
  blobUrl: string;
  size: number;
  /** Base64 MD5 of the file, stored as the blob's Content-MD5. */
  contentMD5: string;
  uploadId: string;
  totalBlocks: number;
  /** Blocks this call sent. */
  stagedBlocks: number;
  /** Blocks found already staged by an earlier, interrupted run. */
  reusedBlocks: number;
  attempts: number;
  localDeleted: boolean;
}

export interface Upload {
  opts: NormalizedUploadOptions;
  sas: ContainerSasUrl;
  secrets: string[];
  blob: BlockBlobClient;
  recordFile: string;
  emit: (event: UploadEvent) => void;
  /** Blocks sent by this call, over all attempts. */
  stagedBlocks: number;
  /** Blocks of the current upload id that an earlier run had staged. */
  reused: { uploadId: string; blocks: number };
}

export function checkAborted(up: Upload): void {
  if (up.opts.signal?.aborted) throw new UploadAbortedError(up.opts.filePath);
}

/** One SDK call with a client-side time limit; every failure becomes a redacted UploadError. */
export async function remote<T>(up: Upload, operation: string, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  checkAborted(up);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, up.opts.tryTimeoutMs);
  const parent = up.opts.signal;
  const forward = (): void => controller.abort();
  parent?.addEventListener('abort', forward, { once: true });
  try {
    return await call(controller.signal);
  } catch (err) {
    if (parent?.aborted) throw new UploadAbortedError(up.opts.filePath);
    if (timedOut) {
      throw new UploadError(`${operation} timed out after ${up.opts.tryTimeoutMs} ms`, {
        operation,
        code: 'ERR_SOCKWATCH_UPLOAD_TIMEOUT',
        retryable: true,
      });
    }
    throw toUploadError(err, operation, up.secrets);
  } finally {
    clearTimeout(timer);
    parent?.removeEventListener('abort', forward);
  }
}

export async function statFile(file: string): Promise<fs.Stats | undefined> {
  try {
    return await fs.promises.stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export function fileChanged(operation: string): UploadError {
  return new UploadError('the file changed during the upload; starting over', {
    operation,
    code: 'ERR_SOCKWATCH_FILE_CHANGED',
    retryable: true,
  });
}
