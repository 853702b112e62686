// The last step: check the committed blob against the file, then clean up.
import * as fs from 'node:fs';
import { UploadError } from './errors';
import { removeUploadRecord, type UploadRecord } from './upload-record';
import { remote, type Upload, type UploadResult } from './upload-context';

/** Confirms the committed blob (size, MD5), then removes the local file (unless kept) and the record. */
export async function confirmUpload(
  up: Upload,
  record: UploadRecord,
  md5: Buffer,
  alreadyDeleted: boolean,
): Promise<Omit<UploadResult, 'attempts'>> {
  const problem = await compare(up, record, md5);
  if (problem !== undefined) {
    // A local file still exists: start over under a new upload id (the commit consumed the staged
    // blocks). Without it nothing can be redone, so the record stays for the operator to see.
    if (!alreadyDeleted) await removeUploadRecord(up.recordFile);
    throw new UploadError(`verification of ${record.blobName} failed: ${problem}`, {
      operation: 'verify',
      code: 'ERR_SOCKWATCH_VERIFY_FAILED',
      retryable: !alreadyDeleted,
    });
  }
  const contentMD5 = md5.toString('base64');
  up.emit({ type: 'confirmed', blobName: record.blobName, size: record.size, contentMD5 });

  let localDeleted = alreadyDeleted;
  if (!up.opts.keepLocal && !alreadyDeleted) {
    await fs.promises.rm(up.opts.filePath, { force: true });
    localDeleted = true;
    up.emit({ type: 'local-deleted', filePath: up.opts.filePath });
  }
  await removeUploadRecord(up.recordFile);
  return {
    blobName: record.blobName,
    blobUrl: `${up.sas.containerUrl}/${record.blobName.split('/').map(encodeURIComponent).join('/')}`,
    size: record.size,
    contentMD5,
    uploadId: record.uploadId,
    totalBlocks: Math.ceil(record.size / record.blockSize),
    stagedBlocks: up.stagedBlocks,
    reusedBlocks: up.reused.uploadId === record.uploadId ? up.reused.blocks : 0,
    localDeleted,
  };
}

/** What is wrong with the committed blob, or undefined when size and MD5 match. */
async function compare(up: Upload, record: UploadRecord, md5: Buffer): Promise<string | undefined> {
  let props;
  try {
    props = await remote(up, 'getProperties', (abortSignal) => up.blob.getProperties({ abortSignal }));
  } catch (err) {
    if (err instanceof UploadError && err.statusCode === 404) return 'the committed blob is not there';
    throw err;
  }
  if (props.contentLength !== record.size) {
    return `committed size ${String(props.contentLength)} differs from the file's ${record.size} bytes`;
  }
  if (props.contentMD5 !== undefined && !md5.equals(Buffer.from(props.contentMD5))) {
    return `stored Content-MD5 ${Buffer.from(props.contentMD5).toString('base64')} differs from the file's ${md5.toString('base64')}`;
  }
  return undefined;
}
