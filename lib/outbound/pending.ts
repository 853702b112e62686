// Pending uploads: a collected dump or trace whose upload has not been confirmed yet. Written as
// soon as the file is complete and removed once the blob is confirmed, so a run stopped or killed
// in between leaves a record the next run resumes (the upload module keeps its own record of the
// staged blocks beside it). The SAS URL is never stored: the next run brings its own.
// Format versions follow lib/upload/upload-record.ts: PENDING_VERSION (1 since 0.1.0) is read and
// written; a newer record is refused with one line and left in place, never misread or deleted.
import * as fs from 'node:fs';
import { ensureDir, writeFileAtomic } from '../base/fs';
import * as path from 'node:path';
import { newerVersion, StateFormatError } from '../base/state-version';

/** The format of the pending-upload records this sockwatch writes and reads (0.1.0 wrote the same). */
export const PENDING_VERSION = 1;

export type CollectionKind = 'dump' | 'trace';

export interface PendingUpload {
  version: typeof PENDING_VERSION;
  kind: CollectionKind;
  instance: string;
  /** Absolute path of the local file. */
  filePath: string;
  blobName: string;
  /** Block size the upload started with (a resumed upload must use the same). */
  blockSize: number;
  metadata: Record<string, string>;
  keepLocal: boolean;
  createdAt: string;
}

const PREFIX = 'pending-';
const SUFFIX = '.json';

export function pendingPath(stateDir: string, filePath: string): string {
  return path.join(stateDir, `${PREFIX}${path.basename(filePath)}${SUFFIX}`);
}

function isPending(v: unknown): v is PendingUpload {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    r.version === PENDING_VERSION &&
    (r.kind === 'dump' || r.kind === 'trace') &&
    typeof r.instance === 'string' &&
    typeof r.filePath === 'string' &&
    typeof r.blobName === 'string' &&
    Number.isSafeInteger(r.blockSize) &&
    typeof r.metadata === 'object' &&
    r.metadata !== null &&
    typeof r.keepLocal === 'boolean'
  );
}

/** Writes the record atomically (temp file, fsync, rename). */
export function writePending(stateDir: string, record: PendingUpload): string {
  ensureDir(stateDir);
  const file = pendingPath(stateDir, record.filePath);
  writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`, { fsync: true });
  return file;
}

export function removePending(stateDir: string, filePath: string): void {
  fs.rmSync(pendingPath(stateDir, filePath), { force: true });
}

/**
 * Every readable pending record in `stateDir`, oldest first; unreadable ones are reported, not thrown,
 * and so are records of a newer format (`refused`, with the one line to show), left untouched.
 */
export function listPending(stateDir: string): { records: PendingUpload[]; unreadable: string[]; refused: StateFormatError[] } {
  let names: string[];
  try {
    names = fs.readdirSync(stateDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], unreadable: [], refused: [] };
    throw err;
  }
  const records: PendingUpload[] = [];
  const unreadable: string[] = [];
  const refused: StateFormatError[] = [];
  for (const name of names) {
    if (!name.startsWith(PREFIX) || !name.endsWith(SUFFIX)) continue;
    const file = path.join(stateDir, name);
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      unreadable.push(file);
      continue;
    }
    const newer = newerVersion(parsed, PENDING_VERSION);
    if (newer !== undefined) refused.push(new StateFormatError(file, newer, PENDING_VERSION, 'pending-upload record'));
    else if (isPending(parsed)) records.push(parsed);
    else unreadable.push(file);
  }
  records.sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
  return { records, unreadable, refused };
}
