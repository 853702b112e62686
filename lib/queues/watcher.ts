// QueueWatcher: samples every watched socket's queues on a fixed-rate loop and turns threshold
// crossings into alert events. It knows nothing of HTTP: the CLI (or any caller) decides where
// alerts go.
//
// One tick: one async sock_diag pass (offenders only, thresholds applied in native code, at most
// maxRecords followed) → exact re-checks of tracked sockets missing from it (sampler.lookup, no
// dump) → the tracker's events → owner lookup (pid, comm)
// for the events' inodes → 'alert' events, in order. Owner lookup never holds up sampling: events
// wait for it in a queue, each tick's batch at most ownerWaitMs after its sample.
//
// The pass is a change-tracking scan (SampleOptions.track): the sampler follows the offenders in
// native code and returns only those added, changed (a queue moved by more than TRACK_STEP, a state
// or exceeded threshold changed), cleared or gone, so a steady storm of offenders costs JavaScript
// next to nothing per tick. The watcher mirrors the followed set (cookie → the latest record) and
// hands the tracker that whole set, as a plain scan's records would be: the tracker's rules are
// unchanged. A record in the mirror may lag its queue by up to TRACK_STEP; events use fresh ones:
// alerts of new offenders come with them (added), resolutions with cleared records or lookups, and
// a tick asks for the full set (track.full) whenever the tracker wants it (QueueTracker
// .wantsFullSample: a pair inside its confirm window, an alert deferred by maxAlertsPerTick, or a
// repeat due); a repeat falling due between the start of a tick without it and its scan waits for the
// next tick (a full one). A shared sampler (options.sampler) must not run tracked scans of its own:
// they would take the changes this watcher's next scan is to see.
//
// Scheduling is fixed-rate: tick k starts at start + k × interval; when a tick runs past the next
// start, the ticks missed are skipped and counted (missedTicks), never run in a burst.
//
// Restarts (episodeFile): open episodes are read back when the watcher is built and continued
// (lib/queues/episodes.ts); after a batch of events has been emitted, the episodes as of that batch's
// tick are saved: at once when an episode opened or closed, at most every EPISODE_SAVE_MS when only
// repeat numbers moved (a repeat sent again after a crash carries the same id), and at stop. Saved
// after emitting, never before: a crash in between re-sends an alert, it never loses one.
//
// Options follow lib/base/validate.ts (wrong type TypeError, out of range RangeError, unknown keys
// rejected); thresholds keep its one representation (a number or 'off') down to the sampler.
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { TypedEmitter } from '../base/emitter';
import { SocketOwners } from './owners';
import * as v from '../base/validate';
import {
  compileSampleOptions,
  CompiledSampleOptions,
  endpoints,
  FILTER_OPTION_KEYS,
  Sampler,
  unixNow,
  type SampleResult,
  type SocketRecord,
} from '../sampler';
import { FULL_SOCKET_STATES, type StateName } from '../states';
import { AlertStream } from './alert-stream';
import { currentScope, EpisodeStore, EPISODES_DEFAULT_MAX, type Episode, type EpisodesLoad } from './episodes';
import { QueueTracker, type RecheckResults, type Thresholds, type TrackedQueue } from './tracker';
import type {
  AcceptThreshold,
  ByteThreshold,
  QueueAlert,
  QueueFilter,
  QueueTickStats,
  QueueWatcherEvents,
  QueueWatcherStats,
} from './types';

export interface QueueWatcherOptions {
  /** Receive queue limit in bytes (UDP: kernel memory); offender when strictly greater. Default 1 MiB. */
  recvThreshold?: ByteThreshold;
  /** Send queue limit in bytes. Default 1 MiB. */
  sendThreshold?: ByteThreshold;
  /** Listener accept queue: connections, 'limit' (queue ≥ backlog, the default) or 'off'. */
  acceptThreshold?: AcceptThreshold;
  /** Which sockets (protocols, families, states, ports), as `sockwatch list` selects them. */
  filter?: QueueFilter;
  /** Time between samples, ms (default 250, at least 10). */
  intervalMs?: number;
  /** While a queue stays above, repeat the alert every repeatMs (default 60 000; 0 = never). */
  repeatMs?: number;
  /** Alert when the socket offended in n of its last m samples (default { n: 1, m: 1 }; m ≤ 32). */
  confirm?: { n: number; m: number };
  /** Emit 'resolved' events (default false). */
  notifyResolved?: boolean;
  /** Offender records one sample returns (default 10 000); the rest are only counted. */
  maxRecords?: number;
  /** Socket/queue pairs tracked at once (default maxRecords). */
  maxTracked?: number;
  /** Events per tick (default 1000); the rest are deferred to later ticks and counted. */
  maxAlertsPerTick?: number;
  /** Exact re-checks per tick of tracked sockets missing from a sample (default 500). */
  maxRechecksPerTick?: number;
  /** Resolve the owning process of offenders (default true), or a SocketOwners to share. */
  owners?: boolean | SocketOwners;
  /** Longest an event waits for its owner's pid, ms after its sample (default 1000). */
  ownerWaitMs?: number;
  /** Host name in alerts and ids (default os.hostname()). */
  hostname?: string;
  /** A sampler to use (not closed by stop()); default one of its own. */
  sampler?: Sampler;
  /** Network namespace for its own sampler (/proc/PID/ns/net or /var/run/netns/NAME). */
  netns?: string;
  /** Alerts buffered per async iterator before the oldest are dropped (default 10 000). */
  maxBuffered?: number;
  /**
   * Keep open episodes in this file (e.g. STATE_DIR/episodes.json), so that a restart continues them:
   * no new alert, repeats on schedule, resolved for sockets closed meanwhile. One watcher per file.
   */
  episodeFile?: string;
  /** Most episodes kept in episodeFile (default 10 000); beyond, the oldest are dropped and counted. */
  maxEpisodes?: number;
}

const QUEUE_WATCHER_OPTION_KEYS = [
  'recvThreshold',
  'sendThreshold',
  'acceptThreshold',
  'filter',
  'intervalMs',
  'repeatMs',
  'confirm',
  'notifyResolved',
  'maxRecords',
  'maxTracked',
  'maxAlertsPerTick',
  'maxRechecksPerTick',
  'owners',
  'ownerWaitMs',
  'hostname',
  'sampler',
  'netns',
  'maxBuffered',
  'episodeFile',
  'maxEpisodes',
] as const;

export const QUEUE_DEFAULTS = {
  recvThreshold: 1024 * 1024,
  sendThreshold: 1024 * 1024,
  acceptThreshold: 'limit' as const,
  intervalMs: 250,
  minIntervalMs: 10,
  repeatMs: 60_000,
  confirm: { n: 1, m: 1 },
  maxRecords: 10_000,
  maxAlertsPerTick: 1000,
  maxRechecksPerTick: 500,
  ownerWaitMs: 1000,
  maxBuffered: 10_000,
};

/**
 * The states a queue watch asks the kernel for when its filter names none: the full sockets'
 * (FULL_SOCKET_STATES: every state but TIME_WAIT and SYN_RECV). The kernel fills TIME_WAIT sockets
 * (tcp_twsk_diag_fill) and request sockets (tcp_req_diag_fill) with zero queues, so they can never
 * offend; a state left out of the mask is skipped before the kernel fills and copies a record for it
 * (it is still walked). On a host full of TIME_WAIT this is most of a dump's cost. What is absent:
 * tick stats' socketsSeen no longer counts these states. A filter that names its states is sent as
 * given.
 */
export const QUEUE_WATCH_STATES: readonly StateName[] = FULL_SOCKET_STATES;

/**
 * The watcher's change-tracking step, bytes: a followed offender's record is sent again when a queue
 * moved by more than this (the scan's default, 64 KiB).
 */
export const TRACK_STEP = 65536;

/** Least time between two saves of the episode file when only repeat numbers changed. */
const EPISODE_SAVE_MS = 5000;

interface Batch {
  events: QueueAlert[];
  deadline: number;
  /** The open episodes once these events are out, when they changed (saved after emitting). */
  episodes?: Episode[];
}

/** What the watcher found in its episode file when it was built. */
export interface QueueEpisodesRestored extends EpisodesLoad {
  file: string;
  /** Episodes continued (at most maxTracked). */
  restored: number;
}

export class QueueWatcher extends TypedEmitter<QueueWatcherEvents> {
  readonly intervalMs: number;
  readonly repeatMs: number;
  readonly thresholds: Readonly<Thresholds>;
  readonly confirm: Readonly<{ n: number; m: number }>;
  readonly notifyResolved: boolean;
  readonly maxRecords: number;
  readonly maxAlertsPerTick: number;
  readonly hostname: string;
  readonly sampler: Sampler;
  private readonly ownSampler: boolean;
  private readonly owners: SocketOwners | undefined;
  private readonly ownOwners: boolean;
  private readonly ownerWaitMs: number;
  private readonly maxBuffered: number;
  private readonly tracker: QueueTracker;
  /** Validated and compiled once: each tick scans with one of them as is (changes only, or the full set). */
  private readonly sampleOptions: CompiledSampleOptions;
  private readonly fullSampleOptions: CompiledSampleOptions;
  /** The offenders the sampler follows, as of the latest scan (undefined before the first). */
  private followed: Map<bigint, SocketRecord> | undefined;
  private readonly filter: QueueFilter;
  private readonly streams = new Set<AlertStream<QueueAlert>>();
  private readonly episodeStore: EpisodeStore | undefined;
  /** Episodes found in episodeFile when the watcher was built (undefined without one). */
  readonly episodesRestored: QueueEpisodesRestored | undefined;
  private previousBoot: Episode[] = [];
  private savedChanges = -1;
  private savedRepeats = 0;
  private savedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<void> = Promise.resolve();
  private emitting: Promise<void> = Promise.resolve();
  private started = false;
  private stopping: Promise<void> | undefined;
  private nextAt = 0;
  private ticks = 0;
  private missed = 0;
  private last: QueueTickStats | undefined;
  private totals = { alerts: 0, repeats: 0, resolved: 0, deferred: 0, untracked: 0, errors: 0 };

  constructor(options: QueueWatcherOptions = {}) {
    super();
    options = v.optionsObject<QueueWatcherOptions>(options, 'options', QUEUE_WATCHER_OPTION_KEYS);
    this.thresholds = Object.freeze({
      recv: v.byteThreshold(options.recvThreshold, 'options.recvThreshold', QUEUE_DEFAULTS.recvThreshold),
      send: v.byteThreshold(options.sendThreshold, 'options.sendThreshold', QUEUE_DEFAULTS.sendThreshold),
      accept: v.acceptThreshold(options.acceptThreshold, 'options.acceptThreshold', QUEUE_DEFAULTS.acceptThreshold),
    });
    if (this.thresholds.recv === 'off' && this.thresholds.send === 'off' && this.thresholds.accept === 'off') {
      throw new RangeError("options.recvThreshold, options.sendThreshold and options.acceptThreshold are all 'off': nothing to watch");
    }
    this.intervalMs = v.duration(options.intervalMs, 'options.intervalMs', QUEUE_DEFAULTS.intervalMs, QUEUE_DEFAULTS.minIntervalMs);
    this.repeatMs = v.duration(options.repeatMs, 'options.repeatMs', QUEUE_DEFAULTS.repeatMs);
    this.confirm = Object.freeze(confirmOption(options.confirm));
    this.notifyResolved = v.boolean(options.notifyResolved, 'options.notifyResolved');
    // Crosses to native code as a uint32.
    this.maxRecords = v.optInteger(options.maxRecords, 'options.maxRecords', QUEUE_DEFAULTS.maxRecords, { min: 1, max: v.UINT32_MAX });
    const maxTracked = v.optInteger(options.maxTracked, 'options.maxTracked', this.maxRecords, { min: 1 });
    this.maxAlertsPerTick = v.optInteger(options.maxAlertsPerTick, 'options.maxAlertsPerTick', QUEUE_DEFAULTS.maxAlertsPerTick, {
      min: 1,
    });
    const maxRechecks = v.optInteger(options.maxRechecksPerTick, 'options.maxRechecksPerTick', QUEUE_DEFAULTS.maxRechecksPerTick);
    this.ownerWaitMs = v.duration(options.ownerWaitMs, 'options.ownerWaitMs', QUEUE_DEFAULTS.ownerWaitMs);
    this.maxBuffered = v.optInteger(options.maxBuffered, 'options.maxBuffered', QUEUE_DEFAULTS.maxBuffered, { min: 1 });
    this.hostname = options.hostname === undefined ? os.hostname() : v.nonEmptyString(options.hostname, 'options.hostname');
    this.filter = checkFilter(options.filter);
    compileSampleOptions(this.filter, 'options.filter'); // the filter's values, named as options.filter.x
    const scan = {
      ...this.filter,
      states: this.filter.states ?? QUEUE_WATCH_STATES,
      recvThreshold: this.thresholds.recv,
      sendThreshold: this.thresholds.send,
      acceptThreshold: this.thresholds.accept,
      maxRecords: this.maxRecords,
    };
    this.sampleOptions = new CompiledSampleOptions({ ...scan, track: { step: TRACK_STEP } });
    this.fullSampleOptions = new CompiledSampleOptions({ ...scan, track: { step: TRACK_STEP, full: true } });
    if (options.owners instanceof SocketOwners) {
      this.owners = options.owners;
      this.ownOwners = false;
    } else {
      if (options.owners !== undefined && typeof options.owners !== 'boolean')
        throw new TypeError(`options.owners must be true, false or a SocketOwners (got ${v.describe(options.owners)})`);
      this.owners = options.owners === false ? undefined : new SocketOwners();
      this.ownOwners = true;
    }
    this.tracker = new QueueTracker({
      thresholds: this.thresholds,
      confirm: this.confirm,
      repeatMs: this.repeatMs,
      notifyResolved: this.notifyResolved,
      maxTracked,
      maxEventsPerTick: this.maxAlertsPerTick,
      maxRechecksPerTick: maxRechecks,
      host: this.hostname,
    });
    if (options.sampler !== undefined) v.instanceOf(options.sampler, 'options.sampler', Sampler);
    const maxEpisodes = v.optInteger(options.maxEpisodes, 'options.maxEpisodes', EPISODES_DEFAULT_MAX, { min: 1 });
    if (options.episodeFile !== undefined) {
      v.nonEmptyString(options.episodeFile, 'options.episodeFile');
      const nsFile = options.sampler?.netns ?? options.netns;
      this.episodeStore = new EpisodeStore(options.episodeFile, currentScope(this.hostname, nsFile), maxEpisodes);
      const load = this.episodeStore.load(); // a newer format throws here, before anything runs
      const restored = this.tracker.restore(load.continued);
      this.previousBoot = load.previousBoot;
      this.savedChanges = this.tracker.changes;
      this.episodesRestored = { ...load, file: this.episodeStore.file, restored };
    }
    this.ownSampler = options.sampler === undefined;
    this.sampler = options.sampler ?? new Sampler({ netns: options.netns });
  }

  get running(): boolean {
    return this.started && this.stopping === undefined;
  }

  /** Starts the loop; the first sample is taken at once. */
  start(): this {
    if (this.stopping) throw new Error('QueueWatcher was stopped; create a new one');
    if (this.started) return this;
    this.started = true;
    this.nextAt = performance.now();
    if (this.episodeStore && (this.previousBoot.length > 0 || this.episodesRestored!.discarded > 0 || this.episodesRestored!.unreadable)) {
      // An earlier boot's sockets are gone: resolved (when asked for), then the file holds this run's.
      const events = this.notifyResolved ? this.tracker.closedEvents(this.previousBoot, Date.now() / 1000) : [];
      this.totals.resolved += events.length;
      this.previousBoot = [];
      this.queueBatch({ events, deadline: performance.now(), episodes: this.tracker.episodes() });
    }
    this.timer = setTimeout(() => this.run(), 0);
    return this;
  }

  /**
   * Stops sampling, waits for the tick in progress, emits the events already produced (without
   * waiting further for owners), ends every iterator and closes its own sampler. Idempotent.
   */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.shutDown();
    return this.stopping;
  }

  /** The stats of the latest tick and totals since start. */
  stats(): QueueWatcherStats {
    return {
      last: this.last,
      ticks: this.ticks,
      missedTicks: this.missed,
      tracked: this.tracker.tracked,
      active: this.tracker.active,
      ...this.totals,
    };
  }

  /** An async iterator over alerts from now on; ends when the watcher stops. */
  alerts(): AsyncIterableIterator<QueueAlert> {
    const stream = new AlertStream<QueueAlert>(this.maxBuffered, (s) => this.streams.delete(s));
    if (this.stopping) stream.end();
    else this.streams.add(stream);
    return stream;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<QueueAlert> {
    return this.alerts();
  }

  // ---- the loop ----

  private run(): void {
    this.timer = undefined;
    if (this.stopping) return;
    this.current = this.tick().then(
      () => this.schedule(),
      (err: unknown) => {
        this.fail(err);
        this.schedule();
      },
    );
  }

  private schedule(): void {
    if (this.stopping) return;
    const now = performance.now();
    this.nextAt += this.intervalMs;
    if (this.nextAt <= now) {
      const skipped = Math.floor((now - this.nextAt) / this.intervalMs) + 1;
      this.missed += skipped;
      this.nextAt += skipped * this.intervalMs;
    }
    this.timer = setTimeout(() => this.run(), this.nextAt - now);
  }

  private async tick(): Promise<void> {
    const started = performance.now();
    const now = unixNow();
    const full = this.followed === undefined || this.tracker.wantsFullSample(now);
    const sample = await this.sampler.sample(full ? this.fullSampleOptions : this.sampleOptions);
    const { records, cleared } = this.follow(sample, full);
    if (this.stopping) return;
    const plan = this.tracker.plan({ timestamp: sample.timestamp, records, offendersTotal: sample.offendersTotal });
    if (!full) plan.repeatsUntil = now;
    const checks = await this.recheck(plan.recheck, cleared);
    if (this.stopping) return;
    const outcome = this.tracker.apply(plan, checks);
    this.ticks++;
    for (const e of outcome.events) {
      if (e.event === 'alert') this.totals.alerts++;
      else if (e.event === 'repeat') this.totals.repeats++;
      else this.totals.resolved++;
    }
    this.totals.deferred += outcome.deferred;
    this.totals.untracked += outcome.untracked;
    const stats: QueueTickStats = {
      tick: this.ticks,
      timestamp: sample.timestamp,
      socketsSeen: sample.socketsSeen,
      offendersTotal: sample.offendersTotal,
      records: sample.records.length,
      tracked: this.tracker.tracked,
      active: this.tracker.active,
      events: outcome.events.length,
      deferred: outcome.deferred,
      untracked: outcome.untracked,
      rechecks: plan.recheck.length,
      missedTicks: this.missed,
      scanMs: sample.elapsedNs / 1e6,
      tickMs: performance.now() - started,
    };
    this.last = stats;
    const episodes = this.episodeStore && this.episodesDue(started) ? this.tracker.episodes() : undefined;
    if (outcome.events.length > 0 || episodes) {
      this.queueBatch({ events: outcome.events, deadline: started + this.ownerWaitMs, episodes });
    }
    this.emit('tick', stats);
    if (outcome.deferred > 0 || outcome.untracked > 0) {
      this.emit('suppressed', {
        timestamp: sample.timestamp,
        offendersTotal: sample.offendersTotal,
        untracked: outcome.untracked,
        deferred: outcome.deferred,
      });
    }
  }

  /**
   * Updates the mirror of the followed offenders with a tracked scan's changes. Returns every
   * followed offender (what a plain scan's records would be) and the cleared ones by cookie (in the
   * dump, under every threshold: known without a lookup).
   */
  private follow(sample: SampleResult, full: boolean): { records: SocketRecord[]; cleared: Map<bigint, SocketRecord> } {
    const c = sample.changes!;
    if (full || c.reset || this.followed === undefined) {
      this.followed = new Map();
      for (const r of sample.records) this.followed.set(r.cookie, r);
    } else {
      for (const r of c.gone) this.followed.delete(r.cookie);
      for (const r of c.cleared) this.followed.delete(r.cookie);
      for (const r of sample.records) this.followed.set(r.cookie, r); // added and changed
    }
    const cleared = new Map<bigint, SocketRecord>();
    for (const r of c.cleared) cleared.set(r.cookie, r);
    return { records: [...this.followed.values()], cleared };
  }

  /** Exact re-checks of tracked sockets that were missing from the sample (no dump); `known`: found in it under every threshold. */
  private async recheck(entries: TrackedQueue[], known: Map<bigint, SocketRecord>): Promise<RecheckResults> {
    const results: RecheckResults = new Map();
    for (const e of entries) {
      if (results.has(e.cookie)) continue;
      const k = known.get(e.cookie);
      if (k) {
        results.set(e.cookie, k);
        continue;
      }
      const r = e.record;
      const { local, remote } = endpoints(r);
      try {
        results.set(e.cookie, await this.sampler.lookup({ protocol: r.protocol, local, remote, cookie: e.cookie }));
      } catch {
        // unknown this tick: neither found nor gone
      }
    }
    return results;
  }

  // ---- emitting ----

  private queueBatch(batch: Batch): void {
    this.emitting = this.emitting.then(() => this.emitBatch(batch)).catch((err: unknown) => this.fail(err));
  }

  private async emitBatch(batch: Batch): Promise<void> {
    if (this.owners) {
      const inodes = batch.events.filter((e) => e.inode > 0).map((e) => e.inode);
      if (inodes.length > 0) {
        const deadline = this.stopping ? performance.now() : batch.deadline;
        const owners = await this.owners.resolve(inodes, { deadline });
        for (const e of batch.events) {
          const o = owners.get(e.inode);
          if (o) {
            e.pid = o.pid;
            e.comm = o.comm;
          }
        }
      }
    }
    for (const e of batch.events) {
      this.emit('alert', e);
      for (const s of this.streams) s.push(e);
    }
    if (batch.episodes && this.episodeStore) this.saveEpisodes(batch.episodes);
  }

  /** Whether the open episodes should be saved now (and, if so, noted as saved). */
  private episodesDue(now: number): boolean {
    const opened = this.tracker.changes !== this.savedChanges;
    const repeated = this.tracker.repeatChanges !== this.savedRepeats;
    if (!opened && !(repeated && now - this.savedAt >= EPISODE_SAVE_MS)) return false;
    this.savedChanges = this.tracker.changes;
    this.savedRepeats = this.tracker.repeatChanges;
    this.savedAt = now;
    return true;
  }

  private saveEpisodes(episodes: Episode[]): void {
    const store = this.episodeStore!;
    let dropped: number;
    try {
      dropped = store.save(episodes);
    } catch (err) {
      throw new Error(`cannot save open alert episodes to ${store.file}: ${(err as Error).message}`, { cause: err });
    }
    if (dropped > 0)
      this.emit('episodesDropped', { dropped, droppedTotal: store.droppedTotal, maxEpisodes: store.maxEntries, file: store.file });
  }

  private fail(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    this.totals.errors++;
    if (this.listenerCount('error') > 0) {
      this.emit('error', e);
      return;
    }
    // No listener: like any EventEmitter, an error is never silent. Stop, end iterators with it, throw.
    for (const s of this.streams) s.end(e);
    this.streams.clear();
    void this.stop();
    throw e;
  }

  private async shutDown(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.current.catch(() => undefined);
    this.owners?.releaseWaiters();
    await this.emitting.catch(() => undefined);
    // Every event is out: the tracker's state now is safe to save (repeat numbers included).
    if (this.episodeStore && this.tracker.repeatChanges !== this.savedRepeats) {
      try {
        this.saveEpisodes(this.tracker.episodes());
      } catch (err) {
        if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
      }
    }
    if (this.ownOwners) this.owners?.close();
    for (const s of this.streams) s.end();
    this.streams.clear();
    if (this.ownSampler) await this.sampler.close();
  }
}

// ---- option checks ----

function confirmOption(value: unknown): { n: number; m: number } {
  if (value === undefined) return { ...QUEUE_DEFAULTS.confirm };
  const c = v.optionsObject<{ n: number; m: number }>(value, 'options.confirm', ['n', 'm']);
  const m = v.integer(c.m, 'options.confirm.m', { min: 1, max: 32 });
  const n = v.integer(c.n, 'options.confirm.n', { min: 1, max: m });
  return { n, m };
}

/** The filter's keys and types; its values are checked with the sample options (compileSampleOptions). */
function checkFilter(value: unknown): QueueFilter {
  return { ...v.optionsObject<QueueFilter>(value, 'options.filter', FILTER_OPTION_KEYS) };
}
