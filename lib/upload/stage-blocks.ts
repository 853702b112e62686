// Staging the missing blocks of an upload: read, hash, Put Block, with bounded concurrency.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { readBlock, type BlockPlan } from './blocks';
import type { UploadRecord } from './upload-record';
import { fileChanged, remote, type Upload } from './upload-context';

/** Stages `missing` with at most `concurrency` requests in flight; the first failure stops new ones. */
export async function stageBlocks(up: Upload, record: UploadRecord, plan: BlockPlan[], missing: BlockPlan[]): Promise<void> {
  if (missing.length === 0) return;
  const totalBytes = record.size;
  let doneBlocks = plan.length - missing.length;
  let doneBytes = totalBytes - missing.reduce((sum, b) => sum + b.length, 0);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const handle = await fs.promises.open(up.opts.filePath, 'r');
  try {
    const worker = async (): Promise<void> => {
      const buffer = Buffer.allocUnsafe(Math.min(record.blockSize, record.size));
      while (failure === undefined && next < missing.length) {
        const block = missing[next++]!;
        try {
          const n = await readBlock(handle, buffer, block.offset, block.length);
          if (n !== block.length) throw fileChanged('stageBlock');
          const body = buffer.subarray(0, n);
          const transactionalContentMD5 = createHash('md5').update(body).digest();
          await remote(up, 'stageBlock', (abortSignal) =>
            up.blob.stageBlock(block.id, body, n, {
              abortSignal,
              transactionalContentMD5,
              contentChecksumAlgorithm: 'Customized',
            }),
          );
        } catch (error) {
          failure ??= { error };
          return;
        }
        up.stagedBlocks++;
        doneBlocks++;
        doneBytes += block.length;
        up.emit({
          type: 'block-staged',
          index: block.index,
          bytes: block.length,
          doneBlocks,
          totalBlocks: plan.length,
          doneBytes,
          totalBytes,
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(up.opts.concurrency, missing.length) }, worker));
  } finally {
    await handle.close();
  }
  if (failure !== undefined) throw failure.error;
}
