// The upload record: what a later run needs to resume an upload after a crash or SIGKILL.
// Written atomically (temp file, fsync, rename, fsync of the directory), so a reader sees the old
// record or the new one, never a torn one.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { ensureDir, writeFileAtomic } from '../base/fs';
import * as path from 'node:path';

export interface UploadRecord {
  version: 1;
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
    r.version === 1 &&
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

/** Reads a record; a missing file gives `unreadable: false`, a damaged one `unreadable: true`. */
export async function readUploadRecord(file: string): Promise<ReadRecordResult> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { record: undefined, unreadable: false };
    throw err;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (isRecord(parsed)) return { record: parsed };
  } catch {
    // fall through: damaged
  }
  return { record: undefined, unreadable: true };
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
