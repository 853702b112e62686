// Per-socket queue state across samples: the pure part of the watcher (no I/O, no timers).
//
// Each (socket cookie, queue type) pair is tracked on its own. A tick has two steps:
//   plan(sample)          which tracked pairs are missing from this sample's offenders and need an
//                         exact re-check (a dump is not a snapshot: one absence proves nothing);
//   apply(plan, checks)   updates every pair's history and returns the events.
//
// Rules:
// - alert: the pair offended in at least N of its last M observed samples (N-of-M, default 1/1);
// - repeat: while alerted and still offending, every repeatMs after the crossing (numbered 1, 2…);
// - resolved: alerted, and at or below the threshold in M consecutive observed samples, or the
//   socket was not found in 2 consecutive samples (closed);
// - a pair that is neither alerted nor offending in its window is forgotten.
// Events beyond maxEventsPerTick are deferred: the transition is not taken and is re-evaluated on
// the next tick. New offenders beyond maxTracked are counted as untracked, never stored.
// Restarts: episodes() lists the open (alerted) pairs for lib/queues/episodes.ts; restore() puts them
// back as alerted, so the next run sends no new alert, repeats on the same schedule (from the next
// slot after the restart: one that was due may already have gone out) and resolves them. A restored pair is checked against its 4-tuple the first time its cookie is seen again: a
// different socket with the same cookie ends the old episode (closed) and starts its own.
import type { AcceptThreshold, ByteThreshold } from '../base/validate';
import { endpoints, type SampleResult, type SocketRecord } from '../sampler';
import { TCP_STATES } from '../states';
import { alertId } from './alert-params';
import type { Episode } from './episodes';
import type { QueueAlert, QueueEventKind, QueueType } from './types';
import { withToJson } from './alert-json';

/** Thresholds after validation (lib/base/validate.ts: a number or 'off'). */
export interface Thresholds {
  recv: ByteThreshold;
  send: ByteThreshold;
  accept: AcceptThreshold;
}

export interface TrackerOptions {
  thresholds: Thresholds;
  confirm: { n: number; m: number };
  /** 0: never repeat. */
  repeatMs: number;
  notifyResolved: boolean;
  maxTracked: number;
  maxEventsPerTick: number;
  maxRechecksPerTick: number;
  host: string;
}

export interface TrackedQueue {
  readonly key: string;
  readonly cookie: bigint;
  readonly type: QueueType;
  /** The latest record seen for this socket. */
  record: SocketRecord;
  /** Last M observations, newest in bit 0 (1 = offending). */
  history: number;
  active: boolean;
  since: number;
  repeats: number;
  /** Consecutive re-checks that did not find the socket. */
  misses: number;
  /** Restored from an earlier run and not seen since: its 4-tuple is checked when its cookie is. */
  restored?: boolean;
  /** The plan() that last saw it among the offenders (internal). */
  planned?: number;
}

export interface TickPlan {
  timestamp: number;
  seen: Array<{ key: string; type: QueueType; record: SocketRecord }>;
  /** Tracked pairs absent from the offenders whose socket is in this sample anyway (another type offends). */
  fresh: Array<{ entry: TrackedQueue; record: SocketRecord }>;
  /** Tracked pairs to re-check by exact lookup (at most maxRechecksPerTick). */
  recheck: TrackedQueue[];
  /** Offenders beyond the sample's record cap. */
  beyondRecords: number;
  /**
   * Repeats falling due after this time (unix s) wait for a later tick. The watcher sets it on ticks
   * whose sample held only changed records (wantsFullSample was false at this time): a repeat then
   * goes out with a full sample's record, one tick later at most.
   */
  repeatsUntil?: number;
}

/** Re-check outcome by cookie: the socket now, null when not found; a missing cookie means unknown. */
export type RecheckResults = Map<bigint, SocketRecord | null>;

export interface TickOutcome {
  events: QueueAlert[];
  deferred: number;
  untracked: number;
}

/** Does this record offend for this queue type? Mirrors the addon's rule. */
export function exceeds(type: QueueType, r: SocketRecord, t: Thresholds): boolean {
  const listener = r.protocol === 'tcp' && r.state === TCP_STATES.listen;
  if (type === 'ACCEPT') {
    if (!listener || t.accept === 'off') return false;
    return t.accept === 'limit' ? r.sendQ > 0 && r.recvQ >= r.sendQ : r.recvQ > t.accept;
  }
  if (listener) return false;
  const limit = type === 'RECV' ? t.recv : t.send;
  return limit !== 'off' && (type === 'RECV' ? r.recvQ : r.sendQ) > limit;
}

export function queueSize(type: QueueType, r: SocketRecord): number {
  return type === 'SEND' ? r.sendQ : r.recvQ;
}

export function thresholdFor(type: QueueType, r: SocketRecord, t: Thresholds): number {
  const t0 = type === 'ACCEPT' ? t.accept : type === 'RECV' ? t.recv : t.send;
  if (t0 === 'limit') return r.sendQ;
  return t0 === 'off' ? 0 : t0;
}

/** Same protocol and 4-tuple: the cookie still names the socket it named. */
function sameSocket(a: SocketRecord, b: SocketRecord): boolean {
  return (
    a.protocol === b.protocol &&
    a.localAddress === b.localAddress &&
    a.localPort === b.localPort &&
    a.remoteAddress === b.remoteAddress &&
    a.remotePort === b.remotePort
  );
}

type Seen = TickPlan['seen'][number];

/**
 * A record's observations (one per exceeded queue type, with its tracker key), made once per record
 * object: the watcher's change-tracking scans hand the same record objects to plan() tick after
 * tick, so a steady storm allocates nothing here.
 */
const recordSeen = new WeakMap<SocketRecord, readonly Seen[]>();
function seenOf(record: SocketRecord): readonly Seen[] {
  let seen = recordSeen.get(record);
  if (seen === undefined) {
    seen = record.exceeded.map((type) => Object.freeze({ key: `${record.cookie}/${type}`, type, record }));
    recordSeen.set(record, seen);
  }
  return seen;
}

function popcount(v: number): number {
  let n = 0;
  for (let x = v >>> 0; x !== 0; x &= x - 1) n++;
  return n;
}

export class QueueTracker {
  private readonly entries = new Map<string, TrackedQueue>();
  private readonly mask: number;
  private activeCount = 0;
  /** Increases whenever the set of open episodes changes (alert, resolve, restore). */
  private changeCount = 0;
  /** Increases whenever an open episode's repeat number changes. */
  private repeatCount = 0;
  /** Numbers plan() calls (TrackedQueue.planned). */
  private plans = 0;

  constructor(private readonly o: TrackerOptions) {
    this.mask = o.confirm.m >= 32 ? 0xffffffff : (1 << o.confirm.m) - 1;
  }

  get tracked(): number {
    return this.entries.size;
  }

  get active(): number {
    return this.activeCount;
  }

  /** Increases whenever the set of open episodes changes (what episodes() returns). */
  get changes(): number {
    return this.changeCount;
  }

  /** Increases whenever a repeat number of an open episode changes. */
  get repeatChanges(): number {
    return this.repeatCount;
  }

  /** The open (alerted, unresolved) episodes, to persist across restarts. */
  episodes(): Episode[] {
    const out: Episode[] = [];
    for (const e of this.entries.values()) {
      if (!e.active) continue;
      out.push({
        type: e.type,
        cookie: e.cookie,
        since: e.since,
        id: alertId(this.o.host, e.cookie, e.type, e.since, 'alert', 0),
        repeat: e.repeats,
        lastAt: this.o.repeatMs > 0 ? e.since + (e.repeats * this.o.repeatMs) / 1000 : e.since,
        record: e.record,
      });
    }
    return out;
  }

  /** The repeat slot due at `ts` for an episode that crossed at `since` (0 without repeats). */
  private dueRepeat(since: number, ts: number): number {
    if (this.o.repeatMs <= 0) return 0;
    return Math.max(0, Math.floor(((ts - since) * 1000 + 0.001) / this.o.repeatMs));
  }

  /**
   * Puts open episodes of an earlier run (same host, boot and namespace) back as alerted pairs.
   * Returns how many were restored; those beyond maxTracked or already tracked are not.
   * `now` (unix s) is the restart: a repeat slot already due then may have gone out before the
   * earlier run died (its repeat number is saved after the event, at most every few seconds), so it
   * is not sent again: the next repeat is the next slot on the schedule. One id, one event: a
   * repeat id is never sent twice with different parameters.
   */
  restore(episodes: Episode[], now: number = Date.now() / 1000): number {
    let n = 0;
    for (const ep of episodes) {
      const key = `${ep.cookie}/${ep.type}`;
      if (this.entries.has(key) || this.entries.size >= this.o.maxTracked) continue;
      this.entries.set(key, {
        key,
        cookie: ep.cookie,
        type: ep.type,
        record: ep.record,
        history: this.mask,
        active: true,
        since: ep.since,
        repeats: Math.max(ep.repeat, this.dueRepeat(ep.since, now)),
        misses: 0,
        restored: true,
      });
      this.activeCount++;
      n++;
    }
    if (n > 0) this.changeCount++;
    return n;
  }

  /** 'resolved' events (closed) for episodes whose sockets are gone (an earlier boot's), at `ts`. */
  closedEvents(episodes: Episode[], ts: number): QueueAlert[] {
    return episodes.map((ep) =>
      this.event(
        {
          key: '',
          cookie: ep.cookie,
          type: ep.type,
          record: ep.record,
          history: 0,
          active: true,
          since: ep.since,
          repeats: ep.repeat,
          misses: 0,
        },
        'resolved',
        ts,
        true,
      ),
    );
  }

  /** Every tracked pair (for inspection and tests). */
  list(): TrackedQueue[] {
    return [...this.entries.values()];
  }

  /**
   * Whether the next sample should carry every offender's current record rather than only those
   * that changed by more than the scan's step (the watcher's change-tracking scans): when a pair is
   * inside its confirm window (an alert or resolution may fall due with this sample's record) or a
   * repeat is due at `now` (unix s). Otherwise the events a sample can bring come from records that
   * are fresh anyway: added, changed, cleared, or re-checked by lookup.
   */
  wantsFullSample(now: number): boolean {
    for (const e of this.entries.values()) {
      if (e.active ? e.history !== this.mask : e.history !== 0) return true;
      if (e.active && this.dueRepeat(e.since, now) > e.repeats) return true;
    }
    return false;
  }

  plan(sample: Pick<SampleResult, 'timestamp' | 'records' | 'offendersTotal'>): TickPlan {
    const seen: Seen[] = [];
    const planned = ++this.plans;
    for (const record of sample.records) {
      for (const s of seenOf(record)) {
        const e = this.entries.get(s.key);
        if (e !== undefined) e.planned = planned;
        seen.push(s);
      }
    }
    // By cookie, made only when some tracked pair is missing (never in a steady storm).
    let byCookie: Map<bigint, SocketRecord> | undefined;
    const fresh: TickPlan['fresh'] = [];
    const recheck: TrackedQueue[] = [];
    for (const entry of this.entries.values()) {
      if (entry.planned === planned) continue;
      byCookie ??= new Map(sample.records.map((r) => [r.cookie, r]));
      const record = byCookie.get(entry.cookie);
      if (record) fresh.push({ entry, record });
      else if (recheck.length < this.o.maxRechecksPerTick) recheck.push(entry);
    }
    // Round robin: re-checked pairs go to the back, so a capped re-check reaches every pair.
    for (const entry of recheck) {
      this.entries.delete(entry.key);
      this.entries.set(entry.key, entry);
    }
    return { timestamp: sample.timestamp, seen, fresh, recheck, beyondRecords: Math.max(0, sample.offendersTotal - sample.records.length) };
  }

  apply(plan: TickPlan, rechecks: RecheckResults): TickOutcome {
    const ts = plan.timestamp;
    const events: QueueAlert[] = [];
    let budget = this.o.maxEventsPerTick;
    let deferred = 0;
    const untrackedCookies = new Set<bigint>();
    const emit = (e: TrackedQueue, kind: QueueEventKind, closed = false): boolean => {
      if (budget <= 0) {
        deferred++;
        return false;
      }
      budget--;
      events.push(this.event(e, kind, ts, closed));
      return true;
    };

    const offending = (e: TrackedQueue): void => {
      e.history = this.shift(e.history, 1);
      if (!e.active) {
        if (popcount(e.history) < this.o.confirm.n) return;
        const before = { since: e.since, repeats: e.repeats };
        e.since = ts;
        e.repeats = 0;
        if (emit(e, 'alert')) {
          e.active = true;
          this.activeCount++;
          this.changeCount++;
        } else Object.assign(e, before);
      } else if (this.o.repeatMs > 0) {
        const due = this.dueRepeat(e.since, Math.min(ts, plan.repeatsUntil ?? ts));
        if (due > e.repeats) {
          const was = e.repeats;
          e.repeats = due;
          if (!emit(e, 'repeat')) e.repeats = was;
          else this.repeatCount++;
        }
      }
    };
    const calm = (e: TrackedQueue): void => {
      e.history = this.shift(e.history, 0);
      if (e.history !== 0) return;
      if (e.active && this.o.notifyResolved && !emit(e, 'resolved')) return;
      this.forget(e);
    };
    const gone = (e: TrackedQueue): void => {
      e.misses++;
      if (e.misses < 2) return;
      if (e.active && this.o.notifyResolved && !emit(e, 'resolved', true)) return;
      this.forget(e);
    };
    const observed = (e: TrackedQueue, record: SocketRecord): void => {
      e.record = record;
      e.misses = 0;
      if (exceeds(e.type, record, this.o.thresholds)) offending(e);
      else calm(e);
    };

    /** A restored pair whose cookie now belongs to another socket: its episode ends (closed). */
    const replaced = (e: TrackedQueue, record: SocketRecord): boolean => {
      if (!e.restored) return false;
      if (sameSocket(e.record, record)) {
        e.restored = false;
        return false;
      }
      if (e.active && this.o.notifyResolved && !emit(e, 'resolved', true)) return true;
      this.forget(e);
      return true;
    };

    for (const { key, type, record } of plan.seen) {
      let e = this.entries.get(key);
      if (e && replaced(e, record)) {
        if (this.entries.has(key)) continue; // resolution deferred: the new socket waits a tick
        e = undefined;
      }
      if (!e) {
        if (this.entries.size >= this.o.maxTracked) {
          untrackedCookies.add(record.cookie);
          continue;
        }
        e = { key, cookie: record.cookie, type, record, history: 0, active: false, since: ts, repeats: 0, misses: 0, planned: 0 };
        this.entries.set(key, e);
      }
      e.record = record;
      e.misses = 0;
      offending(e);
    }
    for (const { entry, record } of plan.fresh) if (this.entries.has(entry.key) && !replaced(entry, record)) observed(entry, record);
    for (const entry of plan.recheck) {
      if (!this.entries.has(entry.key)) continue;
      const r = rechecks.get(entry.cookie);
      if (r === undefined) continue; // not checked this tick
      if (r === null) gone(entry);
      else if (!replaced(entry, r)) observed(entry, r);
    }
    return { events, deferred, untracked: plan.beyondRecords + untrackedCookies.size };
  }

  private forget(e: TrackedQueue): void {
    if (this.entries.delete(e.key) && e.active) {
      this.activeCount--;
      this.changeCount++;
    }
  }

  private shift(history: number, bit: 0 | 1): number {
    return (((history << 1) | bit) & this.mask) >>> 0;
  }

  private event(e: TrackedQueue, kind: QueueEventKind, ts: number, closed: boolean): QueueAlert {
    const r = e.record;
    const { local, remote } = endpoints(r);
    const alert: QueueAlert = {
      id: alertId(this.o.host, e.cookie, e.type, e.since, kind, e.repeats),
      event: kind,
      type: e.type,
      timestamp: ts,
      since: e.since,
      repeat: e.repeats,
      bytes: closed ? 0 : queueSize(e.type, r),
      threshold: thresholdFor(e.type, r, this.o.thresholds),
      protocol: r.protocol,
      family: r.family,
      state: r.stateName,
      local,
      remote,
      cookie: e.cookie,
      inode: r.inode,
      uid: r.uid,
      host: this.o.host,
    };
    if (closed) alert.closed = true;
    return withToJson(alert);
  }
}
