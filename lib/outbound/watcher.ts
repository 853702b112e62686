// OutboundWatcher: per-destination counts of outbound TCP connections, polled on an interval.
//
// One poll is one sock_diag pass: the kernel filters states and excluded local ports (state mask and
// bytecode), native code aggregates per remote ip:port with per-state counts and returns the cookie
// of every counted socket; here the cookies feed the sliding window of distinct connections. The
// threshold is exceeded when a destination's count (current sockets, or distinct connections in the
// window) is strictly greater than it. Options follow lib/base/validate.ts.
// With a pid, what counts as its connections follows lib/outbound/attribution.ts: its whole network
// namespace where it has one of its own (entered when it is not ours), else its live sockets and the
// cookies remembered from earlier polls; the mode is re-checked at most once a minute.
import * as fs from 'node:fs';
import { TypedEmitter } from '../base/emitter';
import * as v from '../base/validate';
import { compileSampleOptions, Sampler, type Aggregate, type PortSpec, type SampleOptions, type StateListName } from '../sampler';
import { decideAttribution, netnsPath, type Attribution, type AttributionMode } from './attribution';
import { ProcessSockets } from './process-sockets';
import { DistinctWindow } from './window';

/** The states that hold a SNAT port, as the original script counted them (netstat's ESTABLISHED, TIME_WAIT, CLOSE_WAIT, FIN_WAIT1/2). */
export const OUTBOUND_STATES: readonly StateListName[] = Object.freeze([
  'established',
  'time-wait',
  'close-wait',
  'fin-wait-1',
  'fin-wait-2',
]);
/** Local ports of inbound traffic on App Service (HTTP, HTTPS, SSH): connections on them are not outbound. */
export const DEFAULT_EXCLUDED_PORTS: readonly number[] = Object.freeze([80, 443, 2222]);
export const DEFAULT_THRESHOLD = 100;
export const DEFAULT_INTERVAL_MS = 10_000;
/** Azure keeps a SNAT port 4 minutes after its connection closed. */
export const DEFAULT_WINDOW_MS = 240_000;
/** How often the attribution mode of a pid is re-checked (other processes come and go). */
const ATTRIBUTION_CHECK_MS = 60_000;

export type ThresholdBasis = 'current' | 'window';

export interface OutboundWatcherOptions {
  /** Exceeded when a destination's count is strictly greater (default 100). */
  threshold?: number;
  /** Time between polls in ms (default 10 000). */
  intervalMs?: number;
  /** Local ports (or "from-to" ranges) whose connections are not counted (default 80, 443, 2222). */
  excludeLocalPorts?: readonly PortSpec[];
  /**
   * Count only connections whose local (remote) address is in one of these addresses or CIDR prefixes
   * ("10.0.0.0/8", "fd00::/8"), filtered in the kernel; an IPv4 prefix also matches the IPv4-mapped
   * addresses of dual-stack sockets. Default: every address.
   */
  localAddresses?: readonly string[];
  remoteAddresses?: readonly string[];
  /** TCP states counted (default OUTBOUND_STATES). */
  states?: readonly StateListName[];
  /** Count only the connections of this process (how: `attribution`). */
  pid?: number;
  /**
   * With a pid: 'auto' (default) counts its network namespace where it has one of its own, else its
   * sockets; 'namespace' always counts its whole namespace; 'process' only its live sockets and the
   * cookies seen at earlier polls (misses connections opened and closed between two polls).
   */
  attribution?: 'auto' | AttributionMode;
  /** Length of the distinct-connections window in ms (default 240 000). */
  windowMs?: number;
  /** What the threshold applies to: sockets now ('current', default) or distinct connections in the window. */
  thresholdOn?: ThresholdBasis;
  /** Sample another network namespace (/proc/PID/ns/net); ignored when `sampler` is given. */
  netns?: string;
  /** A sampler to use (not closed by stop()); default: one of its own. */
  sampler?: Sampler;
  /** Clock in ms since the epoch (tests). */
  now?: () => number;
}

export interface DestinationCount {
  /** `ip:port`, IPv6 in brackets; IPv4-mapped IPv6 addresses are shown (and counted) as IPv4. */
  remote: string;
  family: 4 | 6;
  remoteAddress: string;
  remotePort: number;
  /** Sockets now. */
  total: number;
  /** Sockets now per state (ss names: established, time-wait…), only states present. */
  states: Record<string, number>;
  /** Distinct connections seen in the window (sockets now included). */
  distinctInWindow: number;
}

export interface OutboundPoll {
  time: Date;
  threshold: number;
  thresholdOn: ThresholdBasis;
  windowMs: number;
  /** Sorted by the counted value (total, or distinctInWindow), highest first. */
  destinations: DestinationCount[];
  /** The destination with the highest counted value, if any. */
  busiest?: DestinationCount;
  /** Its counted value (0 when there is none). */
  busiestCount: number;
  exceeded: boolean;
  /** Sockets counted in this poll over all destinations. */
  socketsCounted: number;
  /** With a pid: that process, and whether it was still running. */
  pid?: number;
  pidAlive?: boolean;
  /** With a pid: how its connections were counted this poll. */
  attribution?: Attribution;
  /** Time the kernel pass took, in ms. */
  scanMs: number;
}

export interface OutboundWatcherEvents {
  poll: OutboundPoll;
  /** A poll failed; polling goes on. */
  error: Error;
}

const OUTBOUND_WATCHER_OPTION_KEYS = [
  'threshold',
  'intervalMs',
  'excludeLocalPorts',
  'localAddresses',
  'remoteAddresses',
  'states',
  'pid',
  'attribution',
  'windowMs',
  'thresholdOn',
  'netns',
  'sampler',
  'now',
] as const;

/** The counted value of a destination under a basis. */
export function countedValue(d: DestinationCount, basis: ThresholdBasis): number {
  return basis === 'window' ? d.distinctInWindow : d.total;
}

/** Sorts by counted value, then total, then remote. */
export function sortDestinations(list: DestinationCount[], basis: ThresholdBasis): DestinationCount[] {
  return list.sort(
    (a, b) =>
      countedValue(b, basis) - countedValue(a, basis) || b.total - a.total || (a.remote < b.remote ? -1 : a.remote > b.remote ? 1 : 0),
  );
}

export class OutboundWatcher extends TypedEmitter<OutboundWatcherEvents> {
  readonly threshold: number;
  readonly intervalMs: number;
  readonly windowMs: number;
  readonly thresholdOn: ThresholdBasis;
  readonly pid: number | undefined;
  private readonly excludeLocalPorts: PortSpec[];
  private readonly states: StateListName[];
  private readonly sampler: Sampler;
  private readonly ownSampler: boolean;
  private readonly window: DistinctWindow;
  private readonly owner: ProcessSockets | undefined;
  private readonly attributionChoice: 'auto' | AttributionMode;
  private attribution: Attribution | undefined;
  private attributionCheckedAt = -Infinity;
  /** A sampler inside the target's namespace when it is not the one `sampler` sees. */
  private targetSampler: Sampler | undefined;
  private readonly now: () => number;
  private readonly baseOptions: SampleOptions;
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<unknown> = Promise.resolve();
  private started = false;
  private stopped = false;

  constructor(options: OutboundWatcherOptions = {}) {
    super();
    options = v.optionsObject<OutboundWatcherOptions>(options, 'options', OUTBOUND_WATCHER_OPTION_KEYS);
    this.threshold = v.optInteger(options.threshold, 'options.threshold', DEFAULT_THRESHOLD);
    this.intervalMs = v.positiveDuration(options.intervalMs, 'options.intervalMs', DEFAULT_INTERVAL_MS);
    this.windowMs = v.positiveDuration(options.windowMs, 'options.windowMs', DEFAULT_WINDOW_MS);
    this.thresholdOn = v.oneOf(options.thresholdOn, 'options.thresholdOn', ['current', 'window'], 'current');
    this.excludeLocalPorts = [...(options.excludeLocalPorts ?? DEFAULT_EXCLUDED_PORTS)];
    this.states = [
      ...(options.states === undefined ? OUTBOUND_STATES : (v.stringList(options.states, 'options.states') as StateListName[])),
    ]; // names checked just below
    // The sample options built from them are checked as the sampler checks them (ports, states).
    const addresses: Pick<SampleOptions, 'localAddresses' | 'remoteAddresses'> = {};
    if (options.localAddresses !== undefined)
      addresses.localAddresses = [...v.stringList(options.localAddresses, 'options.localAddresses')];
    if (options.remoteAddresses !== undefined)
      addresses.remoteAddresses = [...v.stringList(options.remoteAddresses, 'options.remoteAddresses')];
    compileSampleOptions({ excludeLocalPorts: this.excludeLocalPorts, states: this.states, ...addresses }, 'options');
    if (options.pid !== undefined) v.integer(options.pid, 'options.pid', { min: 1 });
    this.pid = options.pid;
    this.owner = options.pid === undefined ? undefined : new ProcessSockets(options.pid);
    this.attributionChoice = v.oneOf(options.attribution, 'options.attribution', ['auto', 'namespace', 'process'], 'auto');
    this.now = options.now === undefined ? Date.now : v.func<() => number>(options.now, 'options.now');
    if (options.sampler !== undefined) v.instanceOf(options.sampler, 'options.sampler', Sampler);
    this.ownSampler = options.sampler === undefined;
    this.sampler = options.sampler ?? new Sampler({ netns: options.netns });
    this.window = new DistinctWindow(this.windowMs);
    this.baseOptions = {
      tcp: true,
      states: this.states,
      excludeLocalPorts: this.excludeLocalPorts,
      ...addresses,
      maxRecords: 0,
      // IPv4-mapped IPv6 destinations ([::ffff:10.0.0.1]:443, from dual-stack sockets such as .NET's
      // default TcpClient) are their IPv4 form to the network and to SNAT: merged in the native pass.
      aggregate: { states: this.states, cookies: true, mergeMapped: true },
    };
  }

  get running(): boolean {
    return this.started && !this.stopped;
  }

  /** One poll now (also usable without start()). */
  poll(): Promise<OutboundPoll> {
    const run = this.current.then(() => this.pollOnce());
    this.current = run.catch(() => undefined);
    return run;
  }

  /** How the pid's connections are counted now: decided at the first poll, re-checked once a minute. */
  private async currentAttribution(): Promise<Attribution> {
    const pid = this.pid!;
    const at = Date.now();
    if (this.attribution && at - this.attributionCheckedAt < ATTRIBUTION_CHECK_MS) return this.attribution;
    this.attributionCheckedAt = at;
    let decided = await decideAttribution({ pid, sampler: this.sampler, excludeLocalPorts: this.excludeLocalPorts });
    if (this.attributionChoice !== 'auto' && decided.mode !== this.attributionChoice) {
      decided = { ...decided, mode: this.attributionChoice, reason: `options.attribution is '${this.attributionChoice}'` };
    }
    // Once inside the target's namespace, stay there: the sampler's socket keeps the namespace alive
    // after the process exits, and its remaining TIME_WAIT sockets are still counted.
    if (decided.foreign && !this.targetSampler) this.targetSampler = new Sampler({ netns: netnsPath(pid) });
    if (!decided.foreign && this.attribution?.foreign && this.targetSampler) decided = this.attribution;
    this.attribution = decided;
    return decided;
  }

  private async pollOnce(): Promise<OutboundPoll> {
    let options = this.baseOptions;
    let pidAlive: boolean | undefined;
    let sampler = this.sampler;
    let attribution: Attribution | undefined;
    if (this.owner) {
      attribution = await this.currentAttribution();
      if (attribution.foreign && this.targetSampler) sampler = this.targetSampler;
      pidAlive = fs.existsSync(`/proc/${this.pid}`);
      if (attribution.mode === 'process') {
        const f = this.owner.filter();
        pidAlive = f.alive;
        options = {
          ...this.baseOptions,
          aggregate: { states: this.states, cookies: true, mergeMapped: true, ownerInodes: f.ownerInodes, ownerCookies: f.ownerCookies },
        };
      }
    }
    const result = await sampler.sample(options);
    const nowMs = this.now();
    if (attribution?.mode === 'process') this.owner?.remember(result.aggCookies);
    const cookies = result.aggCookies ?? new BigUint64Array(0);
    this.window.observe(nowMs, cookies, result.aggCookieIndex ?? new Uint32Array(0), result.aggregates);
    const distinct = this.window.counts(nowMs);
    return this.buildPoll(new Date(nowMs), result.aggregates, distinct, result.elapsedNs / 1e6, pidAlive, attribution);
  }

  private buildPoll(
    time: Date,
    aggregates: Aggregate[],
    distinct: Map<string, number>,
    scanMs: number,
    pidAlive: boolean | undefined,
    attribution: Attribution | undefined,
  ): OutboundPoll {
    const list: DestinationCount[] = [];
    const seen = new Set<string>();
    let socketsCounted = 0;
    for (const a of aggregates) {
      seen.add(a.remote);
      socketsCounted += a.total;
      list.push({
        remote: a.remote,
        family: a.family,
        remoteAddress: a.remoteAddress,
        remotePort: a.remotePort,
        total: a.total,
        states: a.states,
        distinctInWindow: Math.max(distinct.get(a.remote) ?? 0, a.total),
      });
    }
    // Destinations with no socket now but connections within the window.
    for (const [remote, n] of distinct) {
      if (seen.has(remote)) continue;
      const d = this.window.destination(remote);
      if (!d) continue;
      list.push({ remote, ...d, total: 0, states: {}, distinctInWindow: n });
    }
    sortDestinations(list, this.thresholdOn);
    const busiest = list[0];
    const busiestCount = busiest ? countedValue(busiest, this.thresholdOn) : 0;
    return {
      time,
      threshold: this.threshold,
      thresholdOn: this.thresholdOn,
      windowMs: this.windowMs,
      destinations: list,
      ...(busiest ? { busiest } : {}),
      busiestCount,
      exceeded: busiestCount > this.threshold,
      socketsCounted,
      ...(this.pid !== undefined ? { pid: this.pid, pidAlive } : {}),
      ...(attribution !== undefined ? { attribution } : {}),
      scanMs,
    };
  }

  /** Polls now and then every intervalMs (measured from the start of each poll). */
  start(): this {
    if (this.stopped) throw new Error('OutboundWatcher was stopped; create a new one');
    if (this.started) return this;
    this.started = true;
    const tick = async (): Promise<void> => {
      const began = Date.now();
      try {
        const p = await this.poll();
        if (!this.stopped) this.emit('poll', p);
      } catch (err) {
        if (!this.stopped) this.emit('error', err instanceof Error ? err : new Error(String(err)));
      }
      if (this.stopped) return;
      this.timer = setTimeout(() => void tick(), Math.max(0, this.intervalMs - (Date.now() - began)));
    };
    void tick();
    return this;
  }

  /** Stops polling, waits for a poll in flight, closes its own sampler. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.current;
    if (this.ownSampler) await this.sampler.close();
    await this.targetSampler?.close();
    this.targetSampler = undefined;
  }
}
