// A durable outbox for alerts: every alert is on disk before anyone tries to deliver it.
//
// Layout of the state directory:
//   outbox.lock                 owner pid (see base/pid-lock.ts)
//   outbox.meta                 {"v":1}: the outbox format (base/state-version.ts: a newer one is
//                               refused with one line; a 0.1.0 outbox has none and is read as v1)
//   outbox-<first seq>.log      append-only segments of alert records, one checksummed line each
//   acks.log                    append-only resolutions: delivered, dead (dead-lettered), dropped
//   dead-letter.jsonl           alerts that will never be delivered, with the reason (plain JSON lines)
//   quarantine/                 damaged bytes found on open, one file per damaged run
// Every file is opened through lib/base/fs.ts (0600, never through a symbolic link).
//
// Durability: each record is written with one write(2) on an O_APPEND fd before append() returns, so
// it survives SIGKILL (the bytes are in the page cache). fsync protects against power loss only; the
// default 'batch' mode fsyncs at most every fsyncIntervalMs (100 ms), 'always' after every write,
// 'never' not at all. On open, every record without a resolution comes back (at-least-once, original
// id and timestamp kept). Damaged records are never skipped silently: each damaged run (bad checksum,
// bad shape, torn tail) is copied to quarantine/ first, counted in recovery.damaged and emitted as
// 'damaged' (file, offset, bytes, records); a torn tail of a file appended to is then cut off, and
// the event says so. Nothing shortens a file without that event.
//
// Space: a segment is deleted once all its records are resolved. When acked records pin an old
// segment (one slow alert among thousands delivered), its few pending records are copied forward
// and the segment is deleted, so segment files stay near maxBytes (at most about twice). acks.log
// is rewritten when more than half of its lines refer to deleted segments. Pending alerts are bounded by
// maxRecords and maxBytes: when full the oldest records appended as `expendable` (the CLI marks
// repeats so) are dropped first, then the oldest of the rest (first crossings, resolutions): counted
// and emitted as 'dropped'.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { decodeLines, encodeLine, writeAllSync, type DamagedRun } from './line-codec';
import { ensureDir, openNoFollow, readFileNoFollow, writeFileAtomic, OPEN_APPEND, OPEN_CREATE_NEW } from '../base/fs';
import { assertKnownVersion } from '../base/state-version';
import { SockwatchError } from '../base/errors';
import { StateDirLock, StateDirLockedError, errnoCode } from '../base/pid-lock';
import { TypedEmitter } from '../base/emitter';
import * as v from '../base/validate';
import { redactText, redactUrl } from '../base/redact';

export type FsyncMode = 'always' | 'batch' | 'never';

export interface OutboxOptions {
  /** State directory; created if missing. */
  dir: string;
  /** Most undelivered alerts kept (default 100,000). */
  maxRecords?: number;
  /** Most bytes of undelivered alerts kept (default 64 MiB). */
  maxBytes?: number;
  /** When to fsync (default 'batch'): SIGKILL never loses a record in any mode. */
  fsync?: FsyncMode;
  /** Batch fsync delay in ms (default 100). */
  fsyncIntervalMs?: number;
  /** A new segment starts past this size (default min(8 MiB, maxBytes / 4), at least 4 KiB). */
  segmentMaxBytes?: number;
  /** dead-letter.jsonl is rotated to dead-letter.jsonl.1 past this size (default 16 MiB). */
  deadLetterMaxBytes?: number;
}

export const OUTBOX_DEFAULTS = {
  maxRecords: 100_000,
  maxBytes: 64 * 1024 * 1024,
  fsync: 'batch' as FsyncMode,
  fsyncIntervalMs: 100,
  deadLetterMaxBytes: 16 * 1024 * 1024,
};

export const DEAD_LETTER_FILE = 'dead-letter.jsonl';
export const ACKS_FILE = 'acks.log';
export const META_FILE = 'outbox.meta';
export const QUARANTINE_DIR = 'quarantine';
/** The outbox format this version writes and reads (0.1.0 outboxes, without outbox.meta, are v1). */
export const OUTBOX_FORMAT_VERSION = 1;

export interface OutboxRecord {
  /** Outbox sequence number: unique in this state directory, increasing. */
  readonly seq: number;
  /** The alert's stable id (given, or params.id, or a random UUID). */
  readonly id: string;
  /** Creation time, ms since the epoch. */
  readonly createdAt: number;
  readonly params: Readonly<Record<string, string>>;
  /** Dropped before the others when the outbox is full (a repeat of an alert already sent). */
  readonly expendable?: boolean;
}

export interface AppendOptions {
  id?: string;
  createdAt?: number;
  /** Drop this record before any other when the outbox is full (default false). */
  expendable?: boolean;
}

export interface DeadLetterReason {
  status?: number;
  body?: string;
  message?: string;
  url?: string;
  /** A redirect's target (3xx): recorded, never followed. Redacted when written. */
  location?: string;
}

export type DropReason = 'maxRecords' | 'maxBytes';

export interface OutboxDroppedEvent {
  record: OutboxRecord;
  reason: DropReason;
}

/** A damaged run of one file found on open: its bytes were copied to `quarantine` before anything else. */
export interface OutboxDamagedEvent {
  /** The segment or acks.log. */
  file: string;
  offset: number;
  bytes: number;
  /** Records (lines) in the run. */
  records: number;
  /** Where the bytes are kept (undefined if copying failed: then the file is not shortened). */
  quarantine: string | undefined;
  /** The run was the tail of a file appended to and was cut off (after the copy). */
  truncated: boolean;
}

export interface OutboxEvents {
  dropped: OutboxDroppedEvent;
  /** Emitted after open (next tick) for every damaged run found; also in recovery.damaged. */
  damaged: OutboxDamagedEvent;
  /** A background fsync failed. With no listener this throws, like any EventEmitter 'error'. */
  error: Error;
}

export interface OutboxRecovery {
  /** Undelivered records found on open. */
  records: number;
  segments: number;
  /** Damaged lines skipped in the middle of a file. */
  corruptLines: number;
  /** Bytes of torn or damaged tails cut off. */
  tornBytes: number;
  /** Records dropped on open because they exceeded the bounds. */
  dropped: number;
  /** Every damaged run, with where its bytes are kept. */
  damaged: OutboxDamagedEvent[];
}

export interface OutboxStats {
  pending: number;
  pendingBytes: number;
  diskBytes: number;
  segments: number;
  appendedTotal: number;
  deliveredTotal: number;
  deadLetteredTotal: number;
  droppedTotal: number;
}

type Resolution = 'delivered' | 'dead' | 'dropped';

interface Segment {
  firstSeq: number;
  path: string;
  bytes: number;
  /** Every record line physically in this file (pending or resolved). */
  seqs: Set<number>;
  /** Pending records whose current copy lives here, and their bytes. */
  home: number;
  homeBytes: number;
}

interface Entry {
  record: OutboxRecord;
  bytes: number;
  segment: Segment;
}

const SEGMENT_RE = /^outbox-(\d{16})\.log$/;
const ACKS_REWRITE_SLACK = 1024;

export class Outbox extends TypedEmitter<OutboxEvents> {
  readonly dir: string;
  readonly maxRecords: number;
  readonly maxBytes: number;
  readonly fsyncMode: FsyncMode;
  readonly recovery: OutboxRecovery;
  /** The pid whose stale lock was taken over on open, if any. */
  readonly lockTakenOverFrom: number | undefined;

  private readonly fsyncIntervalMs: number;
  private readonly segmentMaxBytes: number;
  private readonly deadLetterMaxBytes: number;
  private readonly lock: StateDirLock;
  private readonly pendingMap = new Map<number, Entry>();
  /** Pending expendable records, oldest first: dropped before anything else when full. */
  private readonly pendingExpendable = new Set<number>();
  private readonly resolvedLive = new Map<number, Resolution>();
  private segments: Segment[] = [];
  private activeFd = -1;
  private acksFd = -1;
  private acksBytes = 0;
  private acksLines = 0;
  private nextSeq = 1;
  private pendingBytesTotal = 0;
  private closed = false;
  private dirty = { segment: false, acks: false, dir: false };
  private fsyncTimer: NodeJS.Timeout | undefined;
  private counters = { appended: 0, delivered: 0, dead: 0, dropped: 0 };

  /** Opens (creating if needed) and recovers the outbox in options.dir. Throws if the dir is unusable or locked. */
  static open(options: OutboxOptions): Outbox {
    return new Outbox(options);
  }

  private constructor(options: OutboxOptions) {
    super();
    const o = validateOptions(options);
    this.dir = o.dir;
    this.maxRecords = o.maxRecords;
    this.maxBytes = o.maxBytes;
    this.fsyncMode = o.fsync;
    this.fsyncIntervalMs = o.fsyncIntervalMs;
    this.segmentMaxBytes = o.segmentMaxBytes;
    this.deadLetterMaxBytes = o.deadLetterMaxBytes;
    try {
      ensureDir(this.dir);
      this.lock = StateDirLock.acquire(this.dir);
    } catch (err) {
      throw dirError(this.dir, err);
    }
    this.lockTakenOverFrom = this.lock.takenOverFrom;
    try {
      this.checkFormat(); // before recovery touches anything
      this.recovery = this.recover();
    } catch (err) {
      this.closeFds();
      this.lock.release();
      throw dirError(this.dir, err);
    }
    for (const d of this.recovery.damaged) process.nextTick(() => this.emit('damaged', d));
  }

  /** Undelivered records, oldest first. */
  pending(): OutboxRecord[] {
    return [...this.pendingMap.values()].map((e) => e.record);
  }

  get size(): number {
    return this.pendingMap.size;
  }

  /** The record if it is still undelivered. */
  get(seq: number): OutboxRecord | undefined {
    return this.pendingMap.get(seq)?.record;
  }

  /** Writes an alert durably and returns its record. May drop the oldest alerts to stay in bounds. */
  append(params: Record<string, string>, options: AppendOptions = {}): OutboxRecord {
    this.assertOpen();
    const record = makeRecord(this.nextSeq, params, options);
    const line = encodeLine(toLine(record));
    if (line.length > this.maxBytes) {
      throw new RangeError(`alert record is ${line.length} bytes, more than the outbox maxBytes (${this.maxBytes})`);
    }
    let active = this.active();
    if (active.bytes > 0 && active.bytes + line.length > this.segmentMaxBytes) active = this.rotate();
    writeAllSync(this.activeFd, line, active.bytes);
    this.nextSeq++;
    active.bytes += line.length;
    this.addToSegment(active, record.seq, line.length);
    this.pendingMap.set(record.seq, { record, bytes: line.length, segment: active });
    if (record.expendable) this.pendingExpendable.add(record.seq);
    this.pendingBytesTotal += line.length;
    this.counters.appended++;
    this.markDirty('segment');
    this.enforceBounds(true);
    this.compact();
    return record;
  }

  /** Marks a record delivered. False if it was already resolved (delivered, dead-lettered or dropped). */
  ack(seq: number): boolean {
    this.assertOpen();
    return this.resolve(seq, 'delivered');
  }

  /** Writes the record and the reason to dead-letter.jsonl, then resolves it. False if already resolved. */
  deadLetter(seq: number, reason: DeadLetterReason): boolean {
    this.assertOpen();
    const entry = this.pendingMap.get(seq);
    if (!entry) return false;
    const { record } = entry;
    const line = `${JSON.stringify({
      id: record.id,
      createdAt: new Date(record.createdAt).toISOString(),
      deadLetteredAt: new Date().toISOString(),
      params: record.params,
      reason: {
        ...(reason.status !== undefined ? { status: reason.status } : {}),
        ...(reason.message !== undefined ? { message: redactText(reason.message) } : {}),
        ...(reason.body !== undefined ? { body: redactText(reason.body) } : {}),
        ...(reason.url !== undefined ? { url: redactUrl(reason.url) } : {}),
        ...(reason.location !== undefined ? { location: redactUrl(reason.location) } : {}),
      },
    })}\n`;
    this.appendDeadLetter(line);
    return this.resolve(seq, 'dead');
  }

  stats(): OutboxStats {
    return {
      pending: this.pendingMap.size,
      pendingBytes: this.pendingBytesTotal,
      diskBytes: this.diskBytes(),
      segments: this.segments.length,
      appendedTotal: this.counters.appended,
      deliveredTotal: this.counters.delivered,
      deadLetteredTotal: this.counters.dead,
      droppedTotal: this.counters.dropped,
    };
  }

  get droppedTotal(): number {
    return this.counters.dropped;
  }

  /** fsyncs everything written so far (a no-op in 'never' mode). */
  flush(): void {
    if (this.closed) return;
    this.syncNow();
  }

  /** Flushes, closes the files and releases the lock. Idempotent. */
  close(): void {
    if (this.closed) return;
    try {
      if (this.fsyncMode !== 'never') this.syncNow();
    } finally {
      this.closed = true;
      this.closeFds();
      this.lock.release();
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- recovery ----

  /** outbox.meta: a newer format is refused before anything is read or cut; a missing one is written. */
  private checkFormat(): void {
    const file = path.join(this.dir, META_FILE);
    let text: string | undefined;
    try {
      text = readFileNoFollow(file).toString('utf8');
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined; // damaged: rewritten below as this version's
      }
      assertKnownVersion(parsed, OUTBOX_FORMAT_VERSION, file, 'outbox format file');
      if (parsed !== undefined) return;
    }
    writeFileAtomic(file, `${JSON.stringify({ v: OUTBOX_FORMAT_VERSION })}\n`, { fsync: this.fsyncMode !== 'never' });
  }

  private recover(): OutboxRecovery {
    const report: OutboxRecovery = { records: 0, segments: 0, corruptLines: 0, tornBytes: 0, dropped: 0, damaged: [] };
    fs.rmSync(path.join(this.dir, `${ACKS_FILE}.tmp`), { force: true });

    const acksPath = path.join(this.dir, ACKS_FILE);
    const resolutions = new Map<number, Resolution>();
    let maxSeq = 0;
    const acks = readLog(acksPath);
    report.corruptLines += acks.corruptLines;
    report.tornBytes += acks.tailBytes;
    const badAcks: DamagedRun[] = [];
    acks.values.forEach((v, i) => {
      const a = v as { s?: unknown; r?: unknown };
      if (isSeq(a.s) && (a.r === 'delivered' || a.r === 'dead' || a.r === 'dropped')) {
        resolutions.set(a.s, a.r);
        maxSeq = Math.max(maxSeq, a.s);
      } else {
        report.corruptLines++;
        badAcks.push({ ...acks.spans[i]!, lines: 1 });
      }
    });
    this.reportDamage(report, acksPath, acks, badAcks, true);
    this.acksBytes = acks.goodEnd;
    this.acksLines = acks.values.length;

    const names = fs
      .readdirSync(this.dir)
      .filter((n) => SEGMENT_RE.test(n))
      .sort();
    const found: Entry[] = [];
    const bySeq = new Map<number, Entry>();
    names.forEach((name, i) => {
      const file = path.join(this.dir, name);
      const isLast = i === names.length - 1;
      const decoded = readLog(file);
      report.corruptLines += decoded.corruptLines;
      report.tornBytes += decoded.tailBytes;
      const badRecords: DamagedRun[] = [];
      const segment: Segment = {
        firstSeq: Number(SEGMENT_RE.exec(name)![1]),
        path: file,
        bytes: isLast ? decoded.goodEnd : decoded.goodEnd + decoded.tailBytes,
        seqs: new Set(),
        home: 0,
        homeBytes: 0,
      };
      this.segments.push(segment);
      decoded.values.forEach((v, index) => {
        const record = fromLine(v);
        if (!record) {
          report.corruptLines++;
          badRecords.push({ ...decoded.spans[index]!, lines: 1 });
          return;
        }
        segment.seqs.add(record.seq);
        maxSeq = Math.max(maxSeq, record.seq);
        const resolution = resolutions.get(record.seq);
        if (resolution) {
          this.resolvedLive.set(record.seq, resolution);
          return;
        }
        const bytes = encodeLine(toLine(record)).length;
        const earlier = bySeq.get(record.seq);
        if (earlier) {
          // A copy moved forward before a crash: the newest copy is the record's home.
          earlier.segment.home--;
          earlier.segment.homeBytes -= earlier.bytes;
          earlier.segment = segment;
        } else {
          const entry: Entry = { record, bytes, segment };
          bySeq.set(record.seq, entry);
          found.push(entry);
        }
        segment.home++;
        segment.homeBytes += bytes;
      });
      this.reportDamage(report, file, decoded, badRecords, isLast);
    });
    found.sort((a, b) => a.record.seq - b.record.seq);
    for (const e of found) {
      this.pendingMap.set(e.record.seq, e);
      if (e.record.expendable) this.pendingExpendable.add(e.record.seq);
      this.pendingBytesTotal += e.bytes;
    }
    const lastFirst = this.segments.at(-1)?.firstSeq ?? 1;
    this.nextSeq = Math.max(maxSeq + 1, lastFirst, 1);
    if (this.segments.length === 0) this.segments.push(this.createSegment(this.nextSeq));
    this.activeFd = openNoFollow(this.active().path, OPEN_APPEND);
    this.acksFd = openNoFollow(acksPath, OPEN_APPEND);

    report.records = this.pendingMap.size;
    report.segments = this.segments.length;
    const before = this.counters.dropped;
    this.enforceBounds(false);
    report.dropped = this.counters.dropped - before;
    this.compact();
    return report;
  }

  /**
   * Every damaged run of `file` (checksum runs from the decoder plus lines of a bad shape) is copied
   * to quarantine/ and reported; then, for the file appended to next, a damaged tail is cut off.
   */
  private reportDamage(report: OutboxRecovery, file: string, decoded: LogRead, badShape: DamagedRun[], appendTo: boolean): void {
    const runs = [...decoded.damaged, ...badShape].sort((a, b) => a.offset - b.offset);
    for (const run of runs) {
      const isTail = run.offset === decoded.goodEnd && decoded.tailBytes > 0 && run.offset + run.length === decoded.buf.length;
      const quarantine = this.quarantine(file, decoded.buf.subarray(run.offset, run.offset + run.length), run.offset);
      // Cut only what is kept elsewhere first; a tail that could not be copied stays (and is skipped again).
      const truncated = isTail && appendTo && quarantine !== undefined;
      if (truncated) fs.truncateSync(file, decoded.goodEnd);
      report.damaged.push({ file, offset: run.offset, bytes: run.length, records: run.lines, quarantine, truncated });
    }
    if (appendTo && decoded.tailBytes > 0 && !report.damaged.some((d) => d.file === file && d.truncated)) {
      throw new Error(`${file} has a damaged tail that could not be copied to ${QUARANTINE_DIR}/; not cutting it`);
    }
  }

  /** Copies damaged bytes to quarantine/<file>@<offset>-<crc>.bad (kept once: the same bytes on a later open reuse the file). */
  private quarantine(file: string, bytes: Buffer, offset: number): string | undefined {
    try {
      const dir = ensureDir(path.join(this.dir, QUARANTINE_DIR));
      const name = `${path.basename(file)}@${offset}-${crc32(bytes).toString(16).padStart(8, '0')}.bad`;
      const target = path.join(dir, name);
      let fd: number;
      try {
        fd = openNoFollow(target, OPEN_CREATE_NEW);
      } catch (err) {
        if (errnoCode(err) === 'EEXIST') return target;
        throw err;
      }
      try {
        fs.writeFileSync(fd, bytes);
        if (this.fsyncMode !== 'never') fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return target;
    } catch {
      return undefined;
    }
  }

  // ---- resolution and bounds ----

  private resolve(seq: number, how: Resolution): boolean {
    const entry = this.pendingMap.get(seq);
    if (!entry) return false;
    const line = encodeLine({ s: seq, r: how });
    writeAllSync(this.acksFd, line, this.acksBytes);
    this.acksBytes += line.length;
    this.acksLines++;
    this.pendingMap.delete(seq);
    this.pendingExpendable.delete(seq);
    this.pendingBytesTotal -= entry.bytes;
    entry.segment.home--;
    entry.segment.homeBytes -= entry.bytes;
    this.resolvedLive.set(seq, how);
    if (how === 'delivered') this.counters.delivered++;
    else if (how === 'dead') this.counters.dead++;
    else this.counters.dropped++;
    this.markDirty('acks');
    this.compact();
    return true;
  }

  /**
   * Drops pending records until both bounds hold: the oldest repeat first, then the oldest of the rest
   * (a first crossing or a resolution says more than one more repeat). Events are emitted now, or on
   * the next tick during open.
   */
  private enforceBounds(emitNow: boolean): void {
    while (this.pendingMap.size > this.maxRecords || this.pendingBytesTotal > this.maxBytes) {
      const reason: DropReason = this.pendingMap.size > this.maxRecords ? 'maxRecords' : 'maxBytes';
      const repeat = this.pendingExpendable.values().next(); // the oldest expendable record
      const oldest = (repeat.done ? this.pendingMap.values().next().value : this.pendingMap.get(repeat.value)) as Entry;
      this.resolve(oldest.record.seq, 'dropped');
      const event: OutboxDroppedEvent = { record: oldest.record, reason };
      if (emitNow) this.emit('dropped', event);
      else process.nextTick(() => this.emit('dropped', event));
    }
  }

  // ---- space ----

  private compact(): void {
    const active = this.active();
    for (const seg of [...this.segments]) {
      if (seg !== active && seg.home === 0) this.deleteSegment(seg);
    }
    if (this.segmentBytes() > this.maxBytes) {
      for (const seg of [...this.segments]) {
        if (this.segmentBytes() <= this.maxBytes) break;
        if (seg === this.active() || seg.homeBytes * 2 > seg.bytes) continue;
        this.moveForward(seg);
      }
    }
    if (this.acksLines > 2 * this.resolvedLive.size + ACKS_REWRITE_SLACK) this.rewriteAcks();
  }

  /** Copies the pending records of `seg` to the active segment (same seq), then deletes `seg`. */
  private moveForward(seg: Segment): void {
    for (const entry of this.pendingMap.values()) {
      if (entry.segment !== seg) continue;
      const line = encodeLine(toLine(entry.record));
      let active = this.active();
      if (active.bytes > 0 && active.bytes + line.length > this.segmentMaxBytes) active = this.rotate();
      writeAllSync(this.activeFd, line, active.bytes);
      active.bytes += line.length;
      this.addToSegment(active, entry.record.seq, line.length);
      seg.home--;
      seg.homeBytes -= entry.bytes;
      entry.segment = active;
      entry.bytes = line.length;
    }
    this.markDirty('segment');
    if (this.fsyncMode !== 'never') this.syncNow(); // the copies must be durable before the original goes
    if (seg !== this.active() && seg.home === 0) this.deleteSegment(seg);
  }

  private deleteSegment(seg: Segment): void {
    fs.rmSync(seg.path, { force: true });
    this.segments = this.segments.filter((s) => s !== seg);
    for (const seq of seg.seqs) {
      if (this.resolvedLive.has(seq) && !this.segments.some((s) => s.seqs.has(seq))) this.resolvedLive.delete(seq);
    }
    this.markDirty('dir');
  }

  /** Rewrites acks.log with only the resolutions still needed (records still in a segment file). */
  private rewriteAcks(): void {
    const acksPath = path.join(this.dir, ACKS_FILE);
    const tmp = `${acksPath}.tmp`;
    const lines = [...this.resolvedLive].map(([s, r]) => encodeLine({ s, r }));
    const data = Buffer.concat(lines);
    fs.rmSync(tmp, { force: true }); // removes a link planted there, never its target
    const fd = openNoFollow(tmp, OPEN_CREATE_NEW);
    try {
      writeAllSync(fd, data, 0);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (this.dirty.acks && this.fsyncMode !== 'never') fs.fdatasyncSync(this.acksFd);
    fs.renameSync(tmp, acksPath);
    fs.closeSync(this.acksFd);
    this.acksFd = openNoFollow(acksPath, OPEN_APPEND);
    this.acksBytes = data.length;
    this.acksLines = lines.length;
    this.dirty.acks = false;
    fsyncDir(this.dir);
  }

  private rotate(): Segment {
    if (this.fsyncMode !== 'never' && this.dirty.segment) fs.fdatasyncSync(this.activeFd);
    this.dirty.segment = false;
    // Named after the next seq, so an empty newest segment still carries it across restarts.
    const seg = this.createSegment(Math.max(this.nextSeq, this.active().firstSeq + 1));
    fs.closeSync(this.activeFd);
    this.activeFd = -1;
    this.segments.push(seg);
    this.activeFd = openNoFollow(seg.path, OPEN_APPEND);
    this.markDirty('dir');
    return seg;
  }

  private createSegment(firstSeq: number): Segment {
    const file = path.join(this.dir, `outbox-${String(firstSeq).padStart(16, '0')}.log`);
    fs.closeSync(openNoFollow(file, OPEN_APPEND));
    this.dirty.dir = true;
    return { firstSeq, path: file, bytes: fs.statSync(file).size, seqs: new Set(), home: 0, homeBytes: 0 };
  }

  private addToSegment(seg: Segment, seq: number, bytes: number): void {
    seg.seqs.add(seq);
    seg.home++;
    seg.homeBytes += bytes;
  }

  private active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private segmentBytes(): number {
    return this.segments.reduce((n, s) => n + s.bytes, 0);
  }

  private diskBytes(): number {
    return this.segmentBytes() + this.acksBytes;
  }

  private appendDeadLetter(line: string): void {
    const file = path.join(this.dir, DEAD_LETTER_FILE);
    let size = 0;
    try {
      size = fs.statSync(file).size;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    if (size > 0 && size + Buffer.byteLength(line) > this.deadLetterMaxBytes) {
      fs.renameSync(file, `${file}.1`);
      size = 0;
    }
    const fd = openNoFollow(file, OPEN_APPEND);
    try {
      writeAllSync(fd, Buffer.from(line, 'utf8'), size);
      if (this.fsyncMode !== 'never') fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  // ---- fsync ----

  private markDirty(what: 'segment' | 'acks' | 'dir'): void {
    if (this.fsyncMode === 'never') return;
    this.dirty[what] = true;
    if (this.fsyncMode === 'always') {
      this.syncNow();
      return;
    }
    if (this.fsyncTimer) return;
    this.fsyncTimer = setTimeout(() => {
      this.fsyncTimer = undefined;
      if (this.closed) return;
      try {
        this.syncNow();
      } catch (err) {
        this.emit('error', dirError(this.dir, err));
      }
    }, this.fsyncIntervalMs);
    this.fsyncTimer.unref();
  }

  private syncNow(): void {
    if (this.fsyncTimer) {
      clearTimeout(this.fsyncTimer);
      this.fsyncTimer = undefined;
    }
    if (this.dirty.segment) {
      this.dirty.segment = false;
      fs.fdatasyncSync(this.activeFd);
    }
    if (this.dirty.acks) {
      this.dirty.acks = false;
      fs.fdatasyncSync(this.acksFd);
    }
    if (this.dirty.dir) {
      this.dirty.dir = false;
      fsyncDir(this.dir);
    }
  }

  private closeFds(): void {
    if (this.fsyncTimer) clearTimeout(this.fsyncTimer);
    this.fsyncTimer = undefined;
    for (const fd of [this.activeFd, this.acksFd]) {
      if (fd >= 0) {
        try {
          fs.closeSync(fd);
        } catch {
          /* already closed */
        }
      }
    }
    this.activeFd = -1;
    this.acksFd = -1;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`outbox in ${this.dir} is closed`);
  }
}

// ---- helpers ----

interface RecordLine {
  s: number;
  i: string;
  t: number;
  p: Record<string, string>;
  /** 1: expendable (absent in 0.1.0 records). */
  x?: 1;
}

function toLine(r: OutboxRecord): RecordLine {
  const line: RecordLine = { s: r.seq, i: r.id, t: r.createdAt, p: r.params as Record<string, string> };
  if (r.expendable) line.x = 1;
  return line;
}

function fromLine(v: unknown): OutboxRecord | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const l = v as Partial<RecordLine>;
  if (!isSeq(l.s) || typeof l.i !== 'string' || typeof l.t !== 'number' || !Number.isFinite(l.t)) return undefined;
  if (typeof l.p !== 'object' || l.p === null || Array.isArray(l.p)) return undefined;
  if (!Object.values(l.p).every((x) => typeof x === 'string')) return undefined;
  return Object.freeze({
    seq: l.s,
    id: l.i,
    createdAt: l.t,
    params: Object.freeze({ ...l.p }),
    ...(l.x === 1 ? { expendable: true } : {}),
  });
}

function makeRecord(seq: number, params: Record<string, string>, options: AppendOptions): OutboxRecord {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new TypeError('alert params must be an object of string values');
  }
  const copy: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) {
    if (typeof v !== 'string') throw new TypeError(`alert param "${k}" must be a string (got ${typeof v})`);
    copy[k] = v;
  }
  const id = options.id ?? copy.id ?? randomUUID();
  if (typeof id !== 'string' || id === '') throw new TypeError('alert id must be a non-empty string');
  const createdAt = options.createdAt ?? Date.now();
  if (typeof createdAt !== 'number' || !Number.isFinite(createdAt)) {
    throw new TypeError('alert createdAt must be a finite number of ms since the epoch');
  }
  const expendable = v.boolean(options.expendable, 'options.expendable');
  return Object.freeze({ seq, id, createdAt, params: Object.freeze(copy), ...(expendable ? { expendable } : {}) });
}

function isSeq(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) > 0;
}

type LogRead = ReturnType<typeof decodeLines> & { buf: Buffer };

/** Reads (never through a link) and decodes a log file; changes nothing (see reportDamage). */
function readLog(file: string): LogRead {
  let buf: Buffer;
  try {
    buf = readFileNoFollow(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') buf = Buffer.alloc(0);
    else throw err;
  }
  return { ...decodeLines(buf), buf };
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** An error whose message names the state directory; errno details kept as code/cause. */
function dirError(dir: string, err: unknown): Error {
  if (err instanceof StateDirLockedError || err instanceof SockwatchError) return err;
  if (err instanceof Error && (err as { path?: unknown }).path === undefined && (err as { errno?: unknown }).errno === undefined)
    return err;
  const code = errnoCode(err);
  if (!code) return err instanceof Error ? err : new Error(String(err));
  const detail = err instanceof Error ? err.message : String(err);
  const e = new Error(`state directory ${dir} is not usable: ${detail}`, { cause: err }) as Error & { code?: string };
  e.code = code;
  return e;
}

interface ValidOptions {
  dir: string;
  maxRecords: number;
  maxBytes: number;
  fsync: FsyncMode;
  fsyncIntervalMs: number;
  segmentMaxBytes: number;
  deadLetterMaxBytes: number;
}

const OUTBOX_OPTION_KEYS = ['dir', 'maxRecords', 'maxBytes', 'fsync', 'fsyncIntervalMs', 'segmentMaxBytes', 'deadLetterMaxBytes'];

/** Options by the rule of lib/base/validate.ts. */
function validateOptions(options: OutboxOptions): ValidOptions {
  if (options === undefined) throw new TypeError('options must be an object (got undefined)');
  const o = v.optionsObject<OutboxOptions>(options, 'options', OUTBOX_OPTION_KEYS);
  v.nonEmptyString(o.dir, 'options.dir');
  const maxRecords = positiveInt('maxRecords', o.maxRecords, OUTBOX_DEFAULTS.maxRecords);
  const maxBytes = positiveInt('maxBytes', o.maxBytes, OUTBOX_DEFAULTS.maxBytes);
  const fsync = v.oneOf<FsyncMode>(o.fsync, 'options.fsync', ['always', 'batch', 'never'], OUTBOX_DEFAULTS.fsync);
  return {
    dir: path.resolve(o.dir!),
    maxRecords,
    maxBytes,
    fsync,
    fsyncIntervalMs: v.optInteger(o.fsyncIntervalMs, 'options.fsyncIntervalMs', OUTBOX_DEFAULTS.fsyncIntervalMs, {
      min: 1,
      max: v.TIMER_MAX_MS,
    }),
    segmentMaxBytes: positiveInt('segmentMaxBytes', o.segmentMaxBytes, Math.max(4096, Math.min(8 * 1024 * 1024, Math.floor(maxBytes / 4)))),
    deadLetterMaxBytes: positiveInt('deadLetterMaxBytes', o.deadLetterMaxBytes, OUTBOX_DEFAULTS.deadLetterMaxBytes),
  };
}

function positiveInt(name: string, value: unknown, fallback: number): number {
  return v.optInteger(value, `options.${name}`, fallback, { min: 1 });
}
