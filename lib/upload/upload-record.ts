// The upload record: what a later run needs to resume an upload after a crash or SIGKILL.
// Written atomically (temp file, fsync, rename, fsync of the directory), so a reader sees the old
// record or the new one, never a torn one.
// Format versions (rule for every state record, pending-upload records too): `version` is the format
// this sockwatch writes (UPLOAD_RECORD_VERSION, 1 since 0.1.0); an older known form is read, a newer
// one is refused with one line (StateFormatError, base/state-version.ts) and left as is: never misread, never deleted.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { ensureDir, writeFileAtomic } from '../base/fs';
import { newerVersion, StateFormatError } from '../base/state-version';
import * as path from 'node:path';

/** The format of the upload records this sockwatch writes and reads (0.1.0 wrote the same). */
export const UPLOAD_RECORD_VERSION = 1;

export interface UploadRecord {
  version: typeof UPLOAD_RECORD_VERSION;
  /** Absolute path of the local file. */
  filePath: string;
  size: number;
  mtimeMs: number;
  blockSize: number;
  /** Random hex id; block ids derive from it and the block index. */
  uploadId: string;
  blobName: string;
  /** Container URL without the query string (never the SAS). */
  containerUrl: string;
  /** Base64 MD5 of the whole file, once computed. */
  contentMD5?: string;
  /** Put Block List succeeded; what is left is the check and the cleanup. */
  committed: boolean;
  createdAt: string;
}

/**
 * Where the record of `filePath` lives: next to the file (`<file>.upload.json`), or in `stateDir`
 * under a name made unique by a hash of the absolute path.
 */
export function uploadRecordPath(filePath: string, stateDir?: string): string {
  const abs = path.resolve(filePath);
  if (stateDir === undefined) return `${abs}.upload.json`;
  const tag = createHash('sha256').update(abs).digest('hex').slice(0, 12);
  return path.join(path.resolve(stateDir), `${path.basename(abs)}.${tag}.upload.json`);
}

function isRecord(v: unknown): v is UploadRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    r.version === UPLOAD_RECORD_VERSION &&
    typeof r.filePath === 'string' &&
    Number.isSafeInteger(r.size) &&
    typeof r.mtimeMs === 'number' &&
    Number.isSafeInteger(r.blockSize) &&
    typeof r.uploadId === 'string' &&
    /^[0-9a-f]{32}$/.test(r.uploadId) &&
    typeof r.blobName === 'string' &&
    typeof r.containerUrl === 'string' &&
    typeof r.committed === 'boolean' &&
    (r.contentMD5 === undefined || typeof r.contentMD5 === 'string')
  );
}

export type ReadRecordResult = { record: UploadRecord } | { record: undefined; unreadable: boolean };

/**
 * Reads a record; a missing file gives `unreadable: false`, a damaged one `unreadable: true`. A
 * record of a newer format throws StateFormatError (the caller must not start over on top of it).
 */
export async function readUploadRecord(file: string): Promise<ReadRecordResult> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { record: undefined, unreadable: false };
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { record: undefined, unreadable: true };
  }
  const newer = newerVersion(parsed, UPLOAD_RECORD_VERSION);
  if (newer !== undefined) throw new StateFormatError(file, newer, UPLOAD_RECORD_VERSION, 'upload record');
  return isRecord(parsed) ? { record: parsed } : { record: undefined, unreadable: true };
}

/** Writes the record so that a crash at any point leaves either the old or the new version. */
export async function writeUploadRecord(file: string, record: UploadRecord): Promise<void> {
  const dir = path.dirname(file);
  ensureDir(dir);
  writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`, { fsync: true });
  await syncDirectory(dir);
}

export async function removeUploadRecord(file: string): Promise<void> {
  await fs.promises.rm(file, { force: true });
}

async function syncDirectory(dir: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic.
  } finally {
    await handle?.close();
  }
}
