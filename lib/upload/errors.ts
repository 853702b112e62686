// Errors that leave the upload module. The SDK's RestError carries the request (URL with the SAS
// signature) and may quote the URL in its message, so it never leaves as is: it becomes an
// UploadError holding only redacted text, the status and the service error code.
import { parseRetryAfter } from '../base/backoff';
import { REDACTED, redactText } from '../base/redact';
import { legacyCodeOf } from '../base/errors';

export interface UploadErrorInit {
  /** The operation that failed: stageBlock, commitBlockList, getBlockList, getProperties, verify, file. */
  operation: string;
  retryable: boolean;
  statusCode?: number;
  /**
   * A network code (ECONNREFUSED…, Node's scheme) or one of the project's (lib/base/errors.ts):
   * ERR_SOCKWATCH_UPLOAD_REJECTED for a service answer, _UPLOAD_FAILED, _UPLOAD_TIMEOUT, _FILE_CHANGED,
   * _VERIFY_FAILED.
   */
  code?: string;
  /** The storage service's own error code (AuthenticationFailed, ContainerNotFound, BlobNotFound…). */
  serviceCode?: string;
  /** From a Retry-After header, when the service sent one. */
  retryAfterMs?: number;
}

/** A failed upload step. `message` is redacted; `retryable` says whether the retry loop tries again. */
export class UploadError extends Error {
  readonly operation: string;
  readonly retryable: boolean;
  readonly statusCode?: number;
  readonly code?: string;
  /** The storage service's own error code (AuthenticationFailed, ContainerNotFound…), when it sent one. */
  readonly serviceCode?: string;
  /**
   * The 0.1.0 code of a project condition (timeout, FILE_CHANGED, VERIFY_FAILED).
   * @deprecated match on `code` instead; removed in 0.3.0.
   */
  readonly legacyCode?: string;
  readonly retryAfterMs?: number;
  /** How many attempts were made, set when the error ends the upload. */
  attempts?: number;

  constructor(message: string, init: UploadErrorInit) {
    super(message);
    this.name = 'UploadError';
    this.operation = init.operation;
    this.retryable = init.retryable;
    if (init.statusCode !== undefined) this.statusCode = init.statusCode;
    if (init.code !== undefined) this.code = init.code;
    if (init.serviceCode !== undefined) this.serviceCode = init.serviceCode;
    const legacy = init.code === undefined ? undefined : legacyCodeOf(init.code);
    if (legacy !== undefined) this.legacyCode = legacy;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
  }

  /** A short reason for a retry log line: "ECONNREFUSED", "HTTP 503 ServerBusy" (the service's code), "ERR_SOCKWATCH_UPLOAD_TIMEOUT". */
  get reason(): string {
    if (this.statusCode !== undefined) return `HTTP ${this.statusCode}${this.serviceCode ? ` ${this.serviceCode}` : ''}`;
    return this.code ?? this.message;
  }
}

/** The caller's AbortSignal fired. Staged blocks and the upload record stay for a later resume. */
export class UploadAbortedError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(what: string) {
    super(`upload of ${what} was aborted`);
    this.name = 'AbortError';
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'REQUEST_SEND_ERROR',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** HTTP statuses worth another attempt: timeouts, throttling and server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Replaces every secret value (e.g. the SAS signature) and every secret-looking URL part. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join(REDACTED);
  return redactText(out);
}

interface SdkErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  statusCode?: unknown;
  response?: { headers?: { get?: (name: string) => string | undefined } };
  details?: { errorCode?: unknown };
}

function networkCode(e: SdkErrorShape): string | undefined {
  const code = typeof e.code === 'string' ? e.code.toUpperCase() : '';
  const text = `${typeof e.message === 'string' ? e.message : ''}`.toUpperCase();
  // The pipeline reports socket failures as REQUEST_SEND_ERROR with the errno in the message.
  for (const c of NETWORK_CODES) if (c !== 'REQUEST_SEND_ERROR' && (code === c || text.includes(c))) return c;
  if (NETWORK_CODES.has(code)) return code;
  return undefined;
}

/** What a status means for the operator; 403 and 404 are final. */
function hint(status: number, code: string | undefined): string {
  if (status === 403) return ': the SAS is wrong, expired, revoked or lacks permission (needs r and w)';
  if (status === 404 && code === 'ContainerNotFound') return ': the container does not exist (it is never created by the uploader)';
  if (status === 404) return ': not found';
  return '';
}

/**
 * Converts anything an SDK call threw into an UploadError with a redacted message.
 * Nothing of the original error is kept (its request object holds the signed URL).
 */
export function toUploadError(err: unknown, operation: string, secrets: readonly string[]): UploadError {
  if (err instanceof UploadError) return err;
  const e: SdkErrorShape = typeof err === 'object' && err !== null ? (err as SdkErrorShape) : { message: String(err) };
  const rawMessage = typeof e.message === 'string' ? e.message : String(err);
  const firstLine = scrub(rawMessage.split('\n')[0]!.trim(), secrets);
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  if (status !== undefined && status > 0) {
    const serviceCode = typeof e.details?.errorCode === 'string' ? e.details.errorCode : typeof e.code === 'string' ? e.code : undefined;
    const code = serviceCode === undefined ? undefined : scrub(serviceCode, secrets);
    return new UploadError(`${operation} failed with HTTP ${status}${code ? ` ${code}` : ''}${hint(status, code)} (${firstLine})`, {
      operation,
      statusCode: status,
      code: 'ERR_SOCKWATCH_UPLOAD_REJECTED',
      ...(code !== undefined ? { serviceCode: code } : {}),
      retryable: isRetryableStatus(status),
      retryAfterMs: parseRetryAfter(e.response?.headers?.get?.('retry-after')),
    });
  }
  const net = networkCode(e) ?? (e.code === 'PARSE_ERROR' ? 'PARSE_ERROR' : undefined); // PARSE_ERROR: a truncated reply
  if (net !== undefined) {
    return new UploadError(`${operation} failed: ${firstLine}`, { operation, code: net, retryable: true });
  }
  return new UploadError(`${operation} failed: ${firstLine}`, {
    operation,
    code: 'ERR_SOCKWATCH_UPLOAD_FAILED',
    ...(typeof e.code === 'string' ? { serviceCode: scrub(e.code, secrets) } : {}),
    retryable: false,
  });
}
