// QueueWatcher: samples every watched socket's queues on a fixed-rate loop and turns threshold
// crossings into alert events. It knows nothing of HTTP: the CLI (or any caller) decides where
// alerts go.
//
// One tick: one async sock_diag pass (offenders only, thresholds applied in native code, at most
// maxRecords returned) → exact re-checks of tracked sockets missing from it (sampler.lookup, no
// dump) → the tracker's events → owner lookup (pid, comm)
// for the events' inodes → 'alert' events, in order. Owner lookup never holds up sampling: events
// wait for it in a queue, each tick's batch at most ownerWaitMs after its sample.
//
// Scheduling is fixed-rate: tick k starts at start + k × interval; when a tick runs past the next
// start, the ticks missed are skipped and counted (missedTicks), never run in a burst.
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { TypedEmitter } from '../base/emitter';
import { SocketOwners } from './owners';
import { endpoints, parsePortSpec, Sampler, type SampleOptions } from '../sampler';
import { stateMask } from '../states';
import { AlertStream } from './alert-stream';
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
}

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

interface Batch {
  events: QueueAlert[];
  deadline: number;
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
  private readonly sampleOptions: SampleOptions;
  private readonly filter: QueueFilter;
  private readonly streams = new Set<AlertStream<QueueAlert>>();
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
    if (options === null || typeof options !== 'object') throw new TypeError('QueueWatcher options must be an object');
    this.thresholds = Object.freeze({
      recv: byteThreshold('recvThreshold', options.recvThreshold, QUEUE_DEFAULTS.recvThreshold),
      send: byteThreshold('sendThreshold', options.sendThreshold, QUEUE_DEFAULTS.sendThreshold),
      accept: acceptThreshold(options.acceptThreshold),
    });
    if (this.thresholds.recv === undefined && this.thresholds.send === undefined && this.thresholds.accept === undefined) {
      throw new RangeError('recvThreshold, sendThreshold and acceptThreshold are all "off": nothing to watch');
    }
    this.intervalMs = number('intervalMs', options.intervalMs, QUEUE_DEFAULTS.intervalMs, QUEUE_DEFAULTS.minIntervalMs);
    this.repeatMs = number('repeatMs', options.repeatMs, QUEUE_DEFAULTS.repeatMs, 0);
    this.confirm = Object.freeze(confirmOption(options.confirm));
    if (options.notifyResolved !== undefined && typeof options.notifyResolved !== 'boolean')
      throw new TypeError('notifyResolved must be a boolean');
    this.notifyResolved = options.notifyResolved ?? false;
    this.maxRecords = integer('maxRecords', options.maxRecords, QUEUE_DEFAULTS.maxRecords, 1);
    const maxTracked = integer('maxTracked', options.maxTracked, this.maxRecords, 1);
    this.maxAlertsPerTick = integer('maxAlertsPerTick', options.maxAlertsPerTick, QUEUE_DEFAULTS.maxAlertsPerTick, 1);
    const maxRechecks = integer('maxRechecksPerTick', options.maxRechecksPerTick, QUEUE_DEFAULTS.maxRechecksPerTick, 0);
    this.ownerWaitMs = number('ownerWaitMs', options.ownerWaitMs, QUEUE_DEFAULTS.ownerWaitMs, 0);
    this.maxBuffered = integer('maxBuffered', options.maxBuffered, QUEUE_DEFAULTS.maxBuffered, 1);
    if (options.hostname !== undefined && (typeof options.hostname !== 'string' || options.hostname === '')) {
      throw new TypeError('hostname must be a non-empty string');
    }
    this.hostname = options.hostname ?? os.hostname();
    this.filter = checkFilter(options.filter);
    this.sampleOptions = {
      ...this.filter,
      recvThreshold: this.thresholds.recv,
      sendThreshold: this.thresholds.send,
      acceptThreshold: this.thresholds.accept,
      maxRecords: this.maxRecords,
    };
    if (options.owners instanceof SocketOwners) {
      this.owners = options.owners;
      this.ownOwners = false;
    } else {
      if (options.owners !== undefined && typeof options.owners !== 'boolean')
        throw new TypeError('owners must be a boolean or a SocketOwners');
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
    if (options.sampler !== undefined && !(options.sampler instanceof Sampler)) throw new TypeError('sampler must be a Sampler');
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
    const sample = await this.sampler.sample(this.sampleOptions);
    if (this.stopping) return;
    const plan = this.tracker.plan(sample);
    const checks = await this.recheck(plan.recheck);
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
    if (outcome.events.length > 0) this.queueBatch({ events: outcome.events, deadline: started + this.ownerWaitMs });
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

  /** Exact re-checks of tracked sockets that were missing from the sample (no dump). */
  private async recheck(entries: TrackedQueue[]): Promise<RecheckResults> {
    const results: RecheckResults = new Map();
    for (const e of entries) {
      if (results.has(e.cookie)) continue;
      const r = e.record;
      const { local, remote } = endpoints(r);
      try {
        results.set(e.cookie, this.sampler.lookup({ protocol: r.protocol, local, remote, cookie: e.cookie }));
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
    if (this.ownOwners) this.owners?.close();
    for (const s of this.streams) s.end();
    this.streams.clear();
    if (this.ownSampler) await this.sampler.close();
  }
}

// ---- option checks ----

function byteThreshold(name: string, v: unknown, fallback: number): number | undefined {
  if (v === undefined) return fallback;
  if (v === 'off') return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${name} must be a number of bytes or "off", got ${String(v)}`);
  if (v < 0 || !Number.isSafeInteger(v)) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  return v;
}

function acceptThreshold(v: unknown): number | 'limit' | undefined {
  if (v === undefined || v === 'limit') return 'limit';
  if (v === 'off') return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new TypeError(`acceptThreshold must be a number of connections, "limit" or "off", got ${String(v)}`);
  if (v < 0 || !Number.isSafeInteger(v)) throw new RangeError(`acceptThreshold must be a non-negative integer, got ${v}`);
  return v;
}

function number(name: string, v: unknown, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${name} must be a finite number, got ${String(v)}`);
  if (v < min) throw new RangeError(`${name} must be at least ${min}, got ${v}`);
  return v;
}

function integer(name: string, v: unknown, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new TypeError(`${name} must be an integer, got ${String(v)}`);
  if (v < min) throw new RangeError(`${name} must be at least ${min}, got ${v}`);
  return v;
}

function confirmOption(v: unknown): { n: number; m: number } {
  if (v === undefined) return { ...QUEUE_DEFAULTS.confirm };
  if (v === null || typeof v !== 'object') throw new TypeError('confirm must be an object { n, m }');
  const { n, m } = v as { n: unknown; m: unknown };
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(m))
    throw new TypeError(`confirm.n and confirm.m must be integers, got ${String(n)} and ${String(m)}`);
  if ((m as number) < 1 || (m as number) > 32) throw new RangeError(`confirm.m must be from 1 to 32, got ${String(m)}`);
  if ((n as number) < 1 || (n as number) > (m as number))
    throw new RangeError(`confirm.n must be from 1 to confirm.m (${String(m)}), got ${String(n)}`);
  return { n: n as number, m: m as number };
}

function checkFilter(v: unknown): QueueFilter {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object') throw new TypeError('filter must be an object');
  const f = v as QueueFilter;
  const allowed = new Set(['tcp', 'udp', 'ipv4', 'ipv6', 'states', 'localPorts', 'excludeLocalPorts', 'remotePorts', 'excludeRemotePorts']);
  for (const k of Object.keys(f)) if (!allowed.has(k)) throw new TypeError(`filter: unknown option "${k}"`);
  if (f.states !== undefined && stateMask(f.states, 'filter.states') === 0)
    throw new RangeError('filter.states must name at least one state');
  for (const k of ['localPorts', 'excludeLocalPorts', 'remotePorts', 'excludeRemotePorts'] as const) {
    const list = f[k];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new TypeError(`filter.${k} must be an array of ports`);
    list.forEach((p) => parsePortSpec(p, `filter.${k}`));
  }
  return { ...f };
}
