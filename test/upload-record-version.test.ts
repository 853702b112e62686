// Format versions of the state records snat keeps (upload records, pending-upload records): the
// 0.1.0 form (version 1, written byte for byte as below) is read; a newer version is refused with one
// line naming the file and the versions, and the file is left exactly as it was (never misread,
// never deleted, never written over). No network: the refusal comes before any request.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SockwatchError } from '../lib/base/errors';
import { DiagnosticsCollector } from '../lib/outbound/collector';
import { listPending, PENDING_VERSION } from '../lib/outbound/pending';
import { uploadFile } from '../lib/upload';
import { StateFormatError } from '../lib/base/state-version';
import { readUploadRecord, UPLOAD_RECORD_VERSION, uploadRecordPath } from '../lib/upload/upload-record';
import { parseContainerSasUrl } from '../lib/upload/sas-url';
import { tmpDir } from './helpers/tmp';

const SIG = 'c2lnbmF0dXJlLW5vdC1zaG93bg%3D%3D';
const SAS = `https://acct.blob.core.windows.net/diag?sv=2022-11-02&sr=c&sp=rcw&se=2099-01-01T00%3A00%3A00Z&sig=${SIG}`;

/** An upload record as 0.1.0 wrote it (JSON.stringify(record, null, 2) + newline). */
function uploadRecord010(filePath: string, size: number, mtimeMs: number, version = 1): string {
  return `${JSON.stringify(
    {
      version,
      filePath,
      size,
      mtimeMs,
      blockSize: 8388608,
      uploadId: '0123456789abcdef0123456789abcdef',
      blobName: path.basename(filePath),
      containerUrl: 'https://acct.blob.core.windows.net/diag',
      committed: false,
      createdAt: '2026-11-01T10:00:00.000Z',
    },
    null,
    2,
  )}\n`;
}

/** A pending-upload record as 0.1.0 wrote it. */
function pending010(filePath: string, version = 1): string {
  return `${JSON.stringify(
    {
      version,
      kind: 'dump',
      instance: 'inst',
      filePath,
      blobName: path.basename(filePath),
      blockSize: 8388608,
      metadata: { instance: 'inst', kind: 'dump' },
      keepLocal: false,
      createdAt: '2026-11-01T10:00:00.000Z',
    },
    null,
    2,
  )}\n`;
}

describe('upload records', () => {
  it('this version writes and reads format 1, the 0.1.0 form', async () => {
    expect(UPLOAD_RECORD_VERSION).toBe(1);
    const dir = tmpDir('record-v1-');
    const file = path.join(dir, 'dump_a.dmp');
    fs.writeFileSync(file, 'x'.repeat(10));
    const st = fs.statSync(file);
    const rec = uploadRecordPath(file, dir);
    fs.writeFileSync(rec, uploadRecord010(file, st.size, st.mtimeMs));
    const read = await readUploadRecord(rec);
    expect(read.record).toMatchObject({ version: 1, filePath: file, size: 10, committed: false, blobName: 'dump_a.dmp' });
  });

  it('a newer format is refused with one line and left as it was', async () => {
    const dir = tmpDir('record-v2-');
    const file = path.join(dir, 'dump_b.dmp');
    fs.writeFileSync(file, 'y'.repeat(10));
    const st = fs.statSync(file);
    const rec = uploadRecordPath(file, dir);
    const text = uploadRecord010(file, st.size, st.mtimeMs, 2);
    fs.writeFileSync(rec, text);
    const err = await readUploadRecord(rec).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateFormatError);
    expect(err).toBeInstanceOf(SockwatchError);
    expect(err).toMatchObject({ code: 'ERR_SOCKWATCH_STATE_VERSION', version: 2, known: 1, file: rec });
    expect((err as Error).message).toBe(
      `upload record ${rec} has format v2, written by a newer sockwatch (this one knows v1); left as is: run the newer version, or move the file away to start over`,
    );
    expect((err as Error).message).not.toContain('\n');

    // uploadFile does not start over on top of it (0.1.0 discarded it as "unreadable" and replaced it)
    const events: string[] = [];
    const up = await uploadFile({ containerSasUrl: SAS, filePath: file, stateDir: dir, onEvent: (e) => events.push(e.type) }).catch(
      (e: unknown) => e,
    );
    expect(up).toBeInstanceOf(StateFormatError);
    expect(events).not.toContain('record-discarded');
    expect(fs.readFileSync(rec, 'utf8')).toBe(text);
    expect(fs.readdirSync(dir).sort()).toEqual([path.basename(file), path.basename(rec)].sort());
  });

  it('a damaged record is still just unreadable (not a version question)', async () => {
    const dir = tmpDir('record-bad-');
    const rec = path.join(dir, 'x.upload.json');
    for (const text of ['{"version": 1, "filePath": 3}', '{"version": "2"}', 'not json', '{"version": 0}']) {
      fs.writeFileSync(rec, text);
      expect(await readUploadRecord(rec)).toEqual({ record: undefined, unreadable: true });
    }
  });
});

describe('pending-upload records', () => {
  it('the 0.1.0 form is read; a newer one is refused with one line and left; garbage is unreadable', () => {
    expect(PENDING_VERSION).toBe(1);
    const dir = tmpDir('pending-versions-');
    const old = path.join(dir, 'pending-dump_old.dmp.json');
    const newer = path.join(dir, 'pending-dump_new.dmp.json');
    const bad = path.join(dir, 'pending-dump_bad.dmp.json');
    fs.writeFileSync(old, pending010('/x/dump_old.dmp'));
    const newerText = pending010('/x/dump_new.dmp', 3);
    fs.writeFileSync(newer, newerText);
    fs.writeFileSync(bad, '{"version": 1');
    const r = listPending(dir);
    expect(r.records.map((p) => p.filePath)).toEqual(['/x/dump_old.dmp']);
    expect(r.unreadable).toEqual([bad]);
    expect(r.refused).toHaveLength(1);
    expect(r.refused[0]).toMatchObject({ code: 'ERR_SOCKWATCH_STATE_VERSION', version: 3, known: 1, file: newer });
    expect(r.refused[0]!.message).toBe(
      `pending-upload record ${newer} has format v3, written by a newer sockwatch (this one knows v1); left as is: run the newer version, or move the file away to start over`,
    );
    expect(fs.readFileSync(newer, 'utf8')).toBe(newerText);
  });

  it('a run resumes the 0.1.0 record and leaves the newer one untouched', async () => {
    const dir = tmpDir('pending-run-');
    const newer = path.join(dir, 'pending-dump_new.dmp.json');
    const newerText = pending010(path.join(dir, 'dump_new.dmp'), 2);
    fs.writeFileSync(newer, newerText);
    const collector = new DiagnosticsCollector({
      instance: 'inst',
      outputDir: dir,
      lockDir: dir,
      stateDir: dir,
      containerSas: parseContainerSasUrl(SAS),
    });
    const r = collector.resumePending();
    expect(r.resumed).toHaveLength(0);
    expect(r.refused.map((e) => e.message)).toEqual([
      expect.stringMatching(/^pending-upload record .* has format v2, written by a newer sockwatch/),
    ]);
    await collector.stop();
    expect(fs.readFileSync(newer, 'utf8')).toBe(newerText);
  });
});
