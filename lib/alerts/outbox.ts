// A durable outbox for alerts: every alert is on disk before anyone tries to deliver it.
//
// Layout of the state directory:
//   outbox.lock                 owner pid (see base/pid-lock.ts)
//   outbox-<first seq>.log      append-only segments of alert records, one checksummed line each
//   acks.log                    append-only resolutions: delivered, dead (dead-lettered), dropped
//   dead-letter.jsonl           alerts that will never be delivered, with the reason (plain JSON lines)
//
// Durability: each record is written with one write(2) on an O_APPEND fd before append() returns, so
// it survives SIGKILL (the bytes are in the page cache). fsync protects against power loss only; the
// default 'batch' mode fsyncs at most every fsyncIntervalMs (100 ms), 'always' after every write,
// 'never' not at all. On open, a torn or damaged tail is cut off, and every record without a
// resolution comes back (at-least-once, original id and timestamp kept).
//
// Space: a segment is deleted once all its records are resolved. When acked records pin an old
// segment (one slow alert among thousands delivered), its few pending records are copied forward
// and the segment is deleted, so segment files stay near maxBytes (at most about twice). acks.log
// is rewritten when more than half of its lines refer to deleted segments. Pending alerts are bounded by
// maxRecords and maxBytes: when full the oldest are dropped, counted and emitted as 'dropped'.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { decodeLines, encodeLine, writeAllSync } from './line-codec';
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

export interface OutboxRecord {
  /** Outbox sequence number: unique in this state directory, increasing. */
  readonly seq: number;
  /** The alert's stable id (given, or params.id, or a random UUID). */
  readonly id: string;
  /** Creation time, ms since the epoch. */
  readonly createdAt: number;
  readonly params: Readonly<Record<string, string>>;
}

export interface AppendOptions {
  id?: string;
  createdAt?: number;
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

export interface OutboxEvents {
  dropped: OutboxDroppedEvent;
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
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.lock = StateDirLock.acquire(this.dir);
    } catch (err) {
      throw dirError(this.dir, err);
    }
    this.lockTakenOverFrom = this.lock.takenOverFrom;
    try {
      this.recovery = this.recover();
    } catch (err) {
      this.closeFds();
      this.lock.release();
      throw dirError(this.dir, err);
    }
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

  private recover(): OutboxRecovery {
    const report: OutboxRecovery = { records: 0, segments: 0, corruptLines: 0, tornBytes: 0, dropped: 0 };
    fs.rmSync(path.join(this.dir, `${ACKS_FILE}.tmp`), { force: true });

    const acksPath = path.join(this.dir, ACKS_FILE);
    const resolutions = new Map<number, Resolution>();
    let maxSeq = 0;
    const acks = readLog(acksPath, true);
    report.corruptLines += acks.corruptLines;
    report.tornBytes += acks.tailBytes;
    for (const v of acks.values) {
      const a = v as { s?: unknown; r?: unknown };
      if (isSeq(a.s) && (a.r === 'delivered' || a.r === 'dead' || a.r === 'dropped')) {
        resolutions.set(a.s, a.r);
        maxSeq = Math.max(maxSeq, a.s);
      } else report.corruptLines++;
    }
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
      const decoded = readLog(file, isLast);
      report.corruptLines += decoded.corruptLines;
      report.tornBytes += decoded.tailBytes;
      const segment: Segment = {
        firstSeq: Number(SEGMENT_RE.exec(name)![1]),
        path: file,
        bytes: isLast ? decoded.goodEnd : decoded.goodEnd + decoded.tailBytes,
        seqs: new Set(),
        home: 0,
        homeBytes: 0,
      };
      this.segments.push(segment);
      for (const v of decoded.values) {
        const record = fromLine(v);
        if (!record) {
          report.corruptLines++;
          continue;
        }
        segment.seqs.add(record.seq);
        maxSeq = Math.max(maxSeq, record.seq);
        const resolution = resolutions.get(record.seq);
        if (resolution) {
          this.resolvedLive.set(record.seq, resolution);
          continue;
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
      }
    });
    found.sort((a, b) => a.record.seq - b.record.seq);
    for (const e of found) {
      this.pendingMap.set(e.record.seq, e);
      this.pendingBytesTotal += e.bytes;
    }
    const lastFirst = this.segments.at(-1)?.firstSeq ?? 1;
    this.nextSeq = Math.max(maxSeq + 1, lastFirst, 1);
    if (this.segments.length === 0) this.segments.push(this.createSegment(this.nextSeq));
    this.activeFd = fs.openSync(this.active().path, 'a', 0o600);
    this.acksFd = fs.openSync(acksPath, 'a', 0o600);

    report.records = this.pendingMap.size;
    report.segments = this.segments.length;
    const before = this.counters.dropped;
    this.enforceBounds(false);
    report.dropped = this.counters.dropped - before;
    this.compact();
    return report;
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

  /** Drops the oldest pending records until both bounds hold. Events are emitted now, or on the next tick during open. */
  private enforceBounds(emitNow: boolean): void {
    while (this.pendingMap.size > this.maxRecords || this.pendingBytesTotal > this.maxBytes) {
      const reason: DropReason = this.pendingMap.size > this.maxRecords ? 'maxRecords' : 'maxBytes';
      const oldest = this.pendingMap.values().next().value as Entry;
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
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      writeAllSync(fd, data, 0);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (this.dirty.acks && this.fsyncMode !== 'never') fs.fdatasyncSync(this.acksFd);
    fs.renameSync(tmp, acksPath);
    fs.closeSync(this.acksFd);
    this.acksFd = fs.openSync(acksPath, 'a', 0o600);
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
    this.activeFd = fs.openSync(seg.path, 'a', 0o600);
    this.markDirty('dir');
    return seg;
  }

  private createSegment(firstSeq: number): Segment {
    const file = path.join(this.dir, `outbox-${String(firstSeq).padStart(16, '0')}.log`);
    fs.closeSync(fs.openSync(file, 'a', 0o600));
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
    const fd = fs.openSync(file, 'a', 0o600);
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
}

function toLine(r: OutboxRecord): RecordLine {
  return { s: r.seq, i: r.id, t: r.createdAt, p: r.params as Record<string, string> };
}

function fromLine(v: unknown): OutboxRecord | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const l = v as Partial<RecordLine>;
  if (!isSeq(l.s) || typeof l.i !== 'string' || typeof l.t !== 'number' || !Number.isFinite(l.t)) return undefined;
  if (typeof l.p !== 'object' || l.p === null || Array.isArray(l.p)) return undefined;
  if (!Object.values(l.p).every((x) => typeof x === 'string')) return undefined;
  return Object.freeze({ seq: l.s, id: l.i, createdAt: l.t, params: Object.freeze({ ...l.p }) });
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
  return Object.freeze({ seq, id, createdAt, params: Object.freeze(copy) });
}

function isSeq(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) > 0;
}

/** Reads and decodes a log file; the file we append to next has its bad tail cut off. */
function readLog(file: string, truncateTail: boolean): ReturnType<typeof decodeLines> {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { values: [], goodEnd: 0, corruptLines: 0, tailBytes: 0 };
    throw err;
  }
  const decoded = decodeLines(buf);
  if (truncateTail && decoded.tailBytes > 0) fs.truncateSync(file, decoded.goodEnd);
  return decoded;
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
  if (err instanceof StateDirLockedError) return err;
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
