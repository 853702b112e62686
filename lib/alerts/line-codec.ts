// One record per line: `<crc32 as 8 hex digits> <json>\n`. JSON never holds a raw newline, so a line
// boundary is always a record boundary; the checksum catches torn and damaged lines.
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';

const NEWLINE = 0x0a;
const SPACE = 0x20;

export function encodeLine(value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const crc = crc32(json).toString(16).padStart(8, '0');
  return Buffer.concat([Buffer.from(`${crc} `, 'latin1'), json, Buffer.from('\n', 'latin1')]);
}

/** A run of consecutive damaged bytes: complete lines that failed their checksum, or a torn tail. */
export interface DamagedRun {
  offset: number;
  length: number;
  /** Lines in it (a torn last line without its newline counts as one). */
  lines: number;
}

export interface DecodedLines {
  /** Parsed values of the valid lines, in file order. */
  values: unknown[];
  /** Byte offset and length of each value's line (parallel to values). */
  spans: Array<{ offset: number; length: number }>;
  /** Every damaged run, in file order; the last may be the tail (offset goodEnd). */
  damaged: DamagedRun[];
  /** Byte offset just past the last valid line: where appending may safely continue. */
  goodEnd: number;
  /** Damaged complete lines before goodEnd (skipped). */
  corruptLines: number;
  /** Bytes after goodEnd: a torn or damaged tail. */
  tailBytes: number;
}

export function decodeLines(buf: Buffer): DecodedLines {
  const values: unknown[] = [];
  const spans: DecodedLines['spans'] = [];
  const damaged: DamagedRun[] = [];
  let goodEnd = 0;
  let corruptLines = 0;
  let badSinceGood = 0;
  let start = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(NEWLINE, start);
    if (nl < 0) break; // torn tail: no newline
    const value = decodeOne(buf.subarray(start, nl));
    if (value === undefined) {
      badSinceGood++;
    } else {
      if (badSinceGood > 0) damaged.push({ offset: goodEnd, length: start - goodEnd, lines: badSinceGood });
      values.push(value);
      spans.push({ offset: start, length: nl + 1 - start });
      corruptLines += badSinceGood;
      badSinceGood = 0;
      goodEnd = nl + 1;
    }
    start = nl + 1;
  }
  if (buf.length > goodEnd)
    damaged.push({ offset: goodEnd, length: buf.length - goodEnd, lines: badSinceGood + (start < buf.length ? 1 : 0) });
  return { values, spans, damaged, goodEnd, corruptLines, tailBytes: buf.length - goodEnd };
}

function decodeOne(line: Buffer): unknown {
  if (line.length < 10 || line[8] !== SPACE) return undefined;
  const crc = Number.parseInt(line.toString('latin1', 0, 8), 16);
  const json = line.subarray(9);
  if (!/^[0-9a-f]{8}$/.test(line.toString('latin1', 0, 8)) || crc32(json) !== crc) return undefined;
  try {
    return JSON.parse(json.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * write(2) until every byte is written. On failure the file is cut back to `rollbackTo`, so a later
 * append never lands after half a record.
 */
export function writeAllSync(fd: number, data: Buffer, rollbackTo: number): void {
  let off = 0;
  try {
    while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
  } catch (err) {
    try {
      fs.ftruncateSync(fd, rollbackTo);
    } catch {
      /* the checksum still rejects the torn line on the next open */
    }
    throw err;
  }
}
