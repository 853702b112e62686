// Block planning: deterministic, equal-length block ids, so a later run can tell which blocks of
// an upload the service already holds.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';

/** Service limits of a block blob. */
export const MAX_BLOCK_SIZE = 4000 * 1024 * 1024;
export const MAX_BLOCKS = 50_000;

export interface BlockPlan {
  index: number;
  offset: number;
  length: number;
  /** Base64 block id, the same length for every block of every upload. */
  id: string;
}

export function newUploadId(): string {
  return randomBytes(16).toString('hex');
}

/** base64("<32 hex>-<6-digit index>"): 39 bytes before encoding (the service allows 64). */
export function blockId(uploadId: string, index: number): string {
  return Buffer.from(`${uploadId}-${String(index).padStart(6, '0')}`, 'utf8').toString('base64');
}

export function planBlocks(uploadId: string, size: number, blockSize: number): BlockPlan[] {
  const count = Math.ceil(size / blockSize);
  if (count > MAX_BLOCKS) {
    throw new RangeError(
      `blockSize ${blockSize} splits ${size} bytes into ${count} blocks; a blob holds at most ${MAX_BLOCKS} (use at least ${Math.ceil(size / MAX_BLOCKS)})`,
    );
  }
  const blocks: BlockPlan[] = [];
  for (let index = 0; index < count; index++) {
    const offset = index * blockSize;
    blocks.push({ index, offset, length: Math.min(blockSize, size - offset), id: blockId(uploadId, index) });
  }
  return blocks;
}

/** Streams the file through MD5; returns the digest. */
export async function md5OfFile(file: string, signal?: AbortSignal): Promise<Buffer> {
  const hash = createHash('md5');
  const stream = fs.createReadStream(file, { highWaterMark: 1024 * 1024, signal });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest();
}

/** Reads exactly `length` bytes at `offset`, or fewer if the file got shorter. */
export async function readBlock(handle: fs.promises.FileHandle, buffer: Buffer, offset: number, length: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}
