// Validation and defaults of uploadFile options, by the rule of lib/base/validate.ts: wrong type
// TypeError, out of range RangeError, unknown keys rejected, messages naming options.x.
import * as path from 'node:path';
import * as v from '../base/validate';
import { MAX_BLOCK_SIZE } from './blocks';
import type { UploadEventListener } from './events';
import { uploadSas, type ContainerSasUrl } from './sas-url';

export interface UploadFileOptions {
  /** Container SAS URL (needs r and w), as a string or parsed. The container must exist: it is never created. */
  containerSasUrl: string | ContainerSasUrl;
  /** The local file to upload. */
  filePath: string;
  /** Blob name inside the container (default: the file's base name). May contain "/". */
  blobName?: string;
  /** Blob metadata; names must be C#-style identifiers, values printable ASCII. */
  metadata?: Record<string, string>;
  /** Content-Type of the blob (default application/octet-stream). */
  contentType?: string;
  /** Block size in bytes (default 8 MiB, at most 4000 MiB). */
  blockSize?: number;
  /** Blocks staged at the same time (default 4); memory use is about concurrency × blockSize. */
  concurrency?: number;
  /** Attempts of the whole upload, the first included (default 5). */
  maxAttempts?: number;
  /**
   * Past maxAttempts, keep retrying transient failures (network errors, timeouts, 408, 429, 5xx)
   * with the same capped backoff until the upload succeeds or `signal` fires (default false).
   * Terminal failures (403, 404, an expired SAS) still end it at once.
   */
  retryUntilAborted?: boolean;
  /** Backoff after the first failure (default 2000 ms), doubling up to maxRetryDelayMs (default 60000 ms). */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Time limit of one request, also sent to the service as its timeout (default 300000 ms). */
  tryTimeoutMs?: number;
  /** Directory of the upload record (default: next to the file, as `<file>.upload.json`). */
  stateDir?: string;
  /** Keep the local file after the upload is confirmed (default false: delete it). */
  keepLocal?: boolean;
  /** Aborts the upload; staged blocks and the record stay, so a later call resumes. */
  signal?: AbortSignal;
  /** Progress, retries and milestones. A listener that throws ends the upload. */
  onEvent?: UploadEventListener;
}

export interface NormalizedUploadOptions {
  containerSas: ContainerSasUrl;
  filePath: string;
  blobName: string;
  metadata: Record<string, string>;
  contentType: string;
  blockSize: number;
  concurrency: number;
  maxAttempts: number;
  retryUntilAborted: boolean;
  retryDelayMs: number;
  maxRetryDelayMs: number;
  tryTimeoutMs: number;
  stateDir: string | undefined;
  keepLocal: boolean;
  signal: AbortSignal | undefined;
  onEvent: UploadEventListener;
}

export const DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024;

const UPLOAD_OPTION_KEYS = [
  'containerSasUrl',
  'filePath',
  'blobName',
  'metadata',
  'contentType',
  'blockSize',
  'concurrency',
  'maxAttempts',
  'retryUntilAborted',
  'retryDelayMs',
  'maxRetryDelayMs',
  'tryTimeoutMs',
  'stateDir',
  'keepLocal',
  'signal',
  'onEvent',
];

function integer(name: string, value: unknown, fallback: number, min: number, max: number): number {
  return v.optInteger(value, `options.${name}`, fallback, { min, max });
}

function nonEmptyString(name: string, value: unknown): string {
  return v.nonEmptyString(value, `options.${name}`);
}

function validateMetadata(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError('metadata must be an object of string values');
  }
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new TypeError(`metadata name ${JSON.stringify(key)} must be a C# identifier (letters, digits, _; not starting with a digit)`);
    }
    if (typeof v !== 'string' || !/^[\x20-\x7e]*$/.test(v)) {
      throw new TypeError(`metadata.${key} must be a string of printable ASCII characters`);
    }
    out[key] = v;
  }
  return out;
}

export function normalizeUploadOptions(opts: UploadFileOptions): NormalizedUploadOptions {
  if (opts === undefined) throw new TypeError('options must be an object (got undefined)');
  v.optionsObject<UploadFileOptions>(opts, 'options', UPLOAD_OPTION_KEYS);
  const containerSas = uploadSas(
    typeof opts.containerSasUrl === 'object' ? opts.containerSasUrl : nonEmptyString('containerSasUrl', opts.containerSasUrl),
  );
  const filePath = path.resolve(nonEmptyString('filePath', opts.filePath));
  const blobName = opts.blobName === undefined ? path.basename(filePath) : nonEmptyString('blobName', opts.blobName);
  if (blobName.length > 1024) throw new RangeError(`options.blobName must be at most 1024 characters (got ${blobName.length})`);
  if (opts.contentType !== undefined) nonEmptyString('contentType', opts.contentType);
  if (opts.stateDir !== undefined) nonEmptyString('stateDir', opts.stateDir);
  const keepLocal = v.boolean(opts.keepLocal, 'options.keepLocal');
  if (opts.onEvent !== undefined) v.func(opts.onEvent, 'options.onEvent');
  if (opts.signal !== undefined) v.instanceOf(opts.signal, 'options.signal', AbortSignal, 'an AbortSignal');
  const retryDelayMs = integer('retryDelayMs', opts.retryDelayMs, 2000, 0, 3_600_000);
  const maxRetryDelayMs = integer('maxRetryDelayMs', opts.maxRetryDelayMs, Math.max(60_000, retryDelayMs), 0, 3_600_000);
  if (maxRetryDelayMs < retryDelayMs) {
    throw new RangeError(`options.maxRetryDelayMs (${maxRetryDelayMs}) must not be below options.retryDelayMs (${retryDelayMs})`);
  }
  return {
    containerSas,
    filePath,
    blobName,
    metadata: validateMetadata(opts.metadata),
    contentType: opts.contentType ?? 'application/octet-stream',
    blockSize: integer('blockSize', opts.blockSize, DEFAULT_BLOCK_SIZE, 1, MAX_BLOCK_SIZE),
    concurrency: integer('concurrency', opts.concurrency, 4, 1, 64),
    maxAttempts: integer('maxAttempts', opts.maxAttempts, 5, 1, 1000),
    retryUntilAborted: v.boolean(opts.retryUntilAborted, 'options.retryUntilAborted'),
    retryDelayMs,
    maxRetryDelayMs,
    tryTimeoutMs: integer('tryTimeoutMs', opts.tryTimeoutMs, 300_000, 1000, 24 * 3_600_000),
    stateDir: opts.stateDir,
    keepLocal,
    signal: opts.signal,
    onEvent: opts.onEvent ?? (() => undefined),
  };
}
