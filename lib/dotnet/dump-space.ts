// How much disk a dump will need, and whether the destination has it.
//
// Estimate: a Full dump written by createdump holds every readable mapping of the process (anonymous
// memory: GC heap, stacks, native heap; and file-backed module images); untouched committed pages are
// written too. So the sum of the readable mappings in /proc/PID/maps (plus a few MiB of ELF headers
// and notes) is the right bound, and it is what we use; on a small .NET 10 app it matched the real
// Full dump within 0.1 %. VmRSS would undercount (it leaves out committed-but-not-resident pages and the
// non-resident parts of images) and VmSize would overcount wildly (the GC reserves hundreds of GB of
// PROT_NONE address space, which createdump skips). WithHeap leaves out most of the module images,
// so it needs the readable anonymous mappings plus a quarter of the file-backed ones (measured: about
// an eighth). Normal and Triage dumps hold stacks and a few data structures: we
// ask for a tenth of the anonymous memory, at least 64 MiB. On top of each estimate we keep a margin
// (64 MiB) so the disk is not filled to the last byte. When /proc/PID/maps cannot be read we fall
// back to VmRSS.

import * as fsp from 'node:fs/promises';
import { SockwatchError } from '../base/errors';
import type { DumpTypeName } from './dump-types';

const MiB = 1024 * 1024;
export const DUMP_SPACE_MARGIN_BYTES = 64 * MiB;
/** ELF headers and notes (thread registers, auxv, file list) on top of the memory itself. */
const ELF_OVERHEAD_BYTES = 4 * MiB;

export interface MemoryFootprint {
  /** Readable anonymous (and memfd / deleted-file) mappings. */
  anonymousBytes: number;
  /** Readable mappings backed by files on disk (module images, mapped files). */
  fileBytes: number;
  /** Where the numbers come from. */
  source: 'maps' | 'VmRSS';
}

/** Sums readable mappings of a /proc/PID/maps text. */
export function footprintFromMaps(maps: string): MemoryFootprint {
  let anonymousBytes = 0;
  let fileBytes = 0;
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
    if (!m || !m[3]!.startsWith('r')) continue;
    const size = Number(BigInt('0x' + m[2]) - BigInt('0x' + m[1]));
    const name = m[4]!.trim();
    if (name === '[vvar]' || name === '[vvar_vclock]' || name === '[vsyscall]' || name === '[vdso]') continue;
    const fileBacked = name.startsWith('/') && !name.startsWith('/memfd:') && !name.endsWith('(deleted)') && !name.startsWith('/dev/');
    if (fileBacked) fileBytes += size;
    else anonymousBytes += size;
  }
  return { anonymousBytes, fileBytes, source: 'maps' };
}

/** Reads the memory footprint of a process (maps, else VmRSS). */
export async function readMemoryFootprint(pid: number): Promise<MemoryFootprint> {
  try {
    return footprintFromMaps(await fsp.readFile(`/proc/${pid}/maps`, 'utf8'));
  } catch {
    const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
    return { anonymousBytes: kb * 1024, fileBytes: 0, source: 'VmRSS' };
  }
}

/** Bytes the dump file itself is expected to take (without the safety margin). */
export function estimateDumpBytes(footprint: MemoryFootprint, type: DumpTypeName): number {
  switch (type) {
    case 'full':
      return footprint.anonymousBytes + footprint.fileBytes + ELF_OVERHEAD_BYTES;
    case 'withheap':
      return footprint.anonymousBytes + Math.ceil(footprint.fileBytes / 4) + ELF_OVERHEAD_BYTES;
    case 'normal':
    case 'triage':
      return Math.min(footprint.anonymousBytes + footprint.fileBytes, Math.max(64 * MiB, Math.ceil(footprint.anonymousBytes / 10)));
  }
}

export interface FsSpace {
  /** Free bytes available to unprivileged users (f_bavail × f_bsize). */
  availableBytes: number;
}

/** fs.statfs as bytes available; injectable for tests and unusual filesystems. */
export type StatfsFn = (dir: string) => Promise<FsSpace>;

export const statfsAvailable: StatfsFn = async (dir) => {
  const s = await fsp.statfs(dir);
  return { availableBytes: Number(s.bavail) * Number(s.bsize) };
};

export function formatBytes(n: number): string {
  if (n >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(1)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${n} bytes`;
}

/** Thrown when the dump would not fit (code ERR_SOCKWATCH_NO_DISK_SPACE; nothing was written yet). */
export class InsufficientDiskSpaceError extends SockwatchError {
  constructor(
    readonly directory: string,
    readonly requiredBytes: number,
    readonly availableBytes: number,
    what: string,
  ) {
    super(
      'ERR_SOCKWATCH_NO_DISK_SPACE',
      `not enough disk space for ${what} in ${directory}: needs about ${formatBytes(requiredBytes)} ` +
        `(estimate plus ${formatBytes(DUMP_SPACE_MARGIN_BYTES)} margin), ${formatBytes(availableBytes)} free`,
    );
    this.name = 'InsufficientDiskSpaceError';
  }
}

/** Throws InsufficientDiskSpaceError unless `dir` has estimate + margin bytes free. */
export async function ensureDiskSpace(
  dir: string,
  estimateBytes: number,
  what: string,
  statfs: StatfsFn = statfsAvailable,
): Promise<{ requiredBytes: number; availableBytes: number }> {
  const requiredBytes = estimateBytes + DUMP_SPACE_MARGIN_BYTES;
  const { availableBytes } = await statfs(dir);
  if (availableBytes < requiredBytes) throw new InsufficientDiskSpaceError(dir, requiredBytes, availableBytes, what);
  return { requiredBytes, availableBytes };
}
