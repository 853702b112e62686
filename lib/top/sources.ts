// What `sockwatch top` shows, gathered at kernel cost. Rule: each view pays only while it is needed.
// - Destinations: one aggregate scan per tick (the snat counting rule: OUTBOUND_STATES, excluded local
//   ports in the kernel, v4-mapped folded into IPv4, distinct cookies over 240 s), always, so the
//   sparkline of the last minute has no gaps; with --pid the OutboundWatcher's attribution decides
//   what counts.
// - Queues: while shown, one scan returning only sockets with a non-empty queue (thresholds 0 in C++),
//   which also does the Destinations aggregation (its states and excluded ports applied in C++), so
//   the view costs one walk of the socket hash per tick, plus one of the listening hash; owners (pid, comm) only for the rows on screen, through SocketOwners'
//   rate-limited, cached /proc walk.
// - Processes: while shown, at its own slower pace (ProcessTable): a sliced walk of /proc/*/fd (socket
//   inode -> pid) and one full scan; sockets without an inode (TIME_WAIT, SYN_RECV) belong to no
//   process and are counted apart, per namespace.
// With --all-netns every scan runs in every network namespace (lib/netns NamespaceScanner).
import { performance } from 'node:perf_hooks';
import * as fs from 'node:fs';
import { endpoints, Sampler, type SampleOptions, type SampleResult, type PortSpec, type SocketRecord } from '../sampler';
import { NamespaceScanner, type NetnsEntry } from '../netns';
import { DistinctWindow } from '../outbound/window';
import {
  DEFAULT_WINDOW_MS,
  OUTBOUND_STATES,
  OutboundWatcher,
  sortDestinations,
  type DestinationCount,
} from '../outbound/watcher';
import { netnsIdOf } from '../outbound/attribution';
import { socketInodes } from '../outbound/process-sockets';
import { SocketOwners, type SocketOwner } from '../queues/owners';

export interface TopSourceOptions {
  intervalMs: number;
  /** Destinations over this many connections are highlighted (snat's -t). */
  threshold: number;
  recvThreshold: number | 'off';
  sendThreshold: number | 'off';
  excludeLocalPorts: readonly PortSpec[];
  pid?: number;
  allNetns: boolean;
}

/** A namespace as rows name it: '' for sockwatch's own (no --all-netns), else a short label. */
export interface Scanned {
  ns: string;
  result: SampleResult;
}

export interface DestinationRow extends DestinationCount {
  ns: string;
  /** Sockets now at each of the last ticks (one minute), oldest first. */
  history: number[];
  over: boolean;
}

export interface QueueRow {
  ns: string;
  protocol: 'tcp' | 'udp';
  state: string;
  local: string;
  remote: string;
  localPort: number;
  remotePort: number;
  recvQ: number;
  sendQ: number;
  inode: number;
  overRecv: boolean;
  overSend: boolean;
}

export interface ListenerRow {
  ns: string;
  local: string;
  localPort: number;
  acceptQueue: number;
  backlog: number;
  inode: number;
  over: boolean;
}

export interface ProcessRow {
  ns: string;
  /** undefined: sockets that belong to no process (TIME_WAIT, SYN_RECV) or whose owner is not visible. */
  pid?: number;
  comm: string;
  tcp: number;
  udp: number;
  /** TCP sockets per state. */
  states: Record<string, number>;
}

/** The label of a namespace in rows: 'host' for sockwatch's own, else its inode and the command of its oldest process. */
export function netnsLabel(e: NetnsEntry): string {
  return e.self ? 'host' : `${e.inode} ${e.comm}`;
}

/** Scans sockwatch's own namespace, or every namespace with --all-netns. */
export class ScanScope {
  private readonly sampler: Sampler | undefined;
  private readonly scanner: NamespaceScanner | undefined;
  /** Namespaces that could not be scanned at the last scan, with why. */
  errors: string[] = [];

  constructor(allNetns: boolean) {
    if (allNetns) this.scanner = new NamespaceScanner();
    else this.sampler = new Sampler();
  }

  async scan(options: SampleOptions): Promise<Scanned[]> {
    if (this.sampler) return [{ ns: '', result: await this.sampler.sample(options) }];
    const out: Scanned[] = [];
    const errors: string[] = [];
    for (const s of await this.scanner!.scan(options)) {
      if (s.result) out.push({ ns: netnsLabel(s.netns), result: s.result });
      else errors.push(`${netnsLabel(s.netns)}: ${s.error?.message ?? 'not scanned'}`);
    }
    this.errors = errors;
    return out;
  }

  async close(): Promise<void> {
    await this.sampler?.close();
    await this.scanner?.close();
  }
}

const HISTORY_MS = 60_000;

/** Per-destination counts per tick, with the 240 s window and a minute of history per row. */
export class DestinationSource {
  private readonly windows = new Map<string, DistinctWindow>();
  private readonly history = new Map<string, { values: number[]; seenAt: number }>();
  private readonly watcher: OutboundWatcher | undefined;
  private readonly options: SampleOptions;

  constructor(
    private readonly scope: ScanScope,
    private readonly o: TopSourceOptions,
  ) {
    const states = [...OUTBOUND_STATES];
    this.options = {
      tcp: true,
      states,
      excludeLocalPorts: o.excludeLocalPorts,
      maxRecords: 0,
      aggregate: { states, cookies: true, mergeMapped: true },
    };
    // --pid: the watcher's attribution (the app's namespace, else its sockets and remembered cookies).
    if (o.pid !== undefined) {
      this.watcher = new OutboundWatcher({ pid: o.pid, threshold: o.threshold, excludeLocalPorts: o.excludeLocalPorts });
    }
  }

  /** How the --pid connections are counted, for the status line. */
  attribution = '';

  /** True when the destinations come from the OutboundWatcher (--pid), not from scans shared with other views. */
  get ownScan(): boolean {
    return this.watcher !== undefined;
  }

  /**
   * `other` (the Queues view's scan: every socket, thresholds) with this source's aggregation added,
   * so one kernel walk serves both: the states and excluded ports are applied in C++ to the
   * aggregation only, which counts what the kernel-filtered scan of poll() counts.
   */
  sharedOptions(other: SampleOptions): SampleOptions {
    const states = [...OUTBOUND_STATES];
    return { ...other, aggregate: { states, cookies: true, mergeMapped: true, excludeLocalPorts: this.o.excludeLocalPorts } };
  }

  /** One tick: a scan of its own (kernel-filtered), or the watcher's poll with --pid. */
  async poll(nowMs = Date.now()): Promise<{ rows: DestinationRow[]; scanMs: number; sockets: number }> {
    if (this.watcher) {
      const p = await this.watcher.poll();
      this.attribution = p.attribution ? `pid ${this.o.pid}: ${p.attribution.mode}${p.pidAlive === false ? ' (exited)' : ''}` : '';
      return { rows: this.withHistory([{ ns: '', list: p.destinations }], nowMs), scanMs: p.scanMs, sockets: p.socketsCounted };
    }
    return this.fromScans(await this.scope.scan(this.options), nowMs);
  }

  /** The rows of scans made with `options` or sharedOptions(). */
  fromScans(scans: readonly Scanned[], nowMs = Date.now()): { rows: DestinationRow[]; scanMs: number; sockets: number } {
    let scanMs = 0;
    let sockets = 0;
    const lists: { ns: string; list: DestinationCount[] }[] = [];
    for (const s of scans) {
      scanMs += s.result.elapsedNs / 1e6;
      sockets += s.result.aggregates.reduce((sum, a) => sum + a.total, 0);
      lists.push({ ns: s.ns, list: this.withWindow(s.ns, s.result, nowMs) });
    }
    return { rows: this.withHistory(lists, nowMs), scanMs, sockets };
  }

  private withHistory(lists: { ns: string; list: DestinationCount[] }[], nowMs: number): DestinationRow[] {
    const rows: DestinationRow[] = [];
    const keep = Math.max(2, Math.ceil(HISTORY_MS / this.o.intervalMs));
    for (const { ns, list } of lists) {
      for (const d of list) {
        const key = `${ns} ${d.remote}`;
        let h = this.history.get(key);
        if (!h) this.history.set(key, (h = { values: [], seenAt: nowMs }));
        h.values.push(d.total);
        if (h.values.length > keep) h.values.splice(0, h.values.length - keep);
        h.seenAt = nowMs;
        rows.push({ ...d, ns, history: h.values, over: d.total > this.o.threshold });
      }
    }
    for (const [key, h] of this.history) if (nowMs - h.seenAt > HISTORY_MS) this.history.delete(key);
    return rows;
  }

  /** Feeds the namespace's window (v4-mapped destinations come merged from the native pass), lists what is in it. */
  private withWindow(ns: string, r: SampleResult, nowMs: number): DestinationCount[] {
    let window = this.windows.get(ns);
    if (!window) this.windows.set(ns, (window = new DistinctWindow(DEFAULT_WINDOW_MS)));
    const merged = r.aggregates;
    window.observe(nowMs, r.aggCookies ?? new BigUint64Array(0), r.aggCookieIndex ?? new Uint32Array(0), merged);
    const distinct = window.counts(nowMs);
    const list: DestinationCount[] = merged.map((a) => ({ ...a, distinctInWindow: Math.max(distinct.get(a.remote) ?? 0, a.total) }));
    const now = new Set(merged.map((a) => a.remote));
    for (const [remote, n] of distinct) {
      const d = now.has(remote) ? undefined : window.destination(remote);
      if (d) list.push({ remote, ...d, total: 0, states: {}, distinctInWindow: n });
    }
    return sortDestinations(list, 'current');
  }

  async close(): Promise<void> {
    await this.watcher?.stop();
  }
}

const QUEUE_MAX_RECORDS = 5000;

/** Sockets with the largest queues and the listeners, while the Queues view is shown. */
export class QueueSource {
  readonly owners = new SocketOwners({ scanBudget: 0.1 });

  constructor(
    private readonly scope: ScanScope,
    private readonly o: TopSourceOptions,
  ) {}

  /** The scan of this view: every socket, and thresholds of 0 in C++, so only sockets with something queued cross into JavaScript. */
  readonly options: SampleOptions = { recvThreshold: 0, sendThreshold: 0, acceptThreshold: 'off', maxRecords: QUEUE_MAX_RECORDS };

  /** The rows of scans made with `options` (or options that include them), and a scan of the listeners (its time in scanMs). */
  async fromScans(scans: readonly Scanned[]): Promise<{ rows: QueueRow[]; listeners: ListenerRow[]; scanMs: number; nonEmpty: number }> {
    let scanMs = 0;
    let nonEmpty = 0;
    const rows: QueueRow[] = [];
    for (const s of scans) {
      nonEmpty += s.result.offendersTotal;
      for (const r of s.result.records) rows.push(this.queueRow(s.ns, r));
    }
    const listeners: ListenerRow[] = [];
    // LISTEN only: the kernel walks its listening hash and skips the established one.
    for (const s of await this.scope.scan({ tcp: true, states: ['listen'], all: true, maxRecords: QUEUE_MAX_RECORDS })) {
      scanMs += s.result.elapsedNs / 1e6;
      for (const r of s.result.records) {
        listeners.push({
          ns: s.ns,
          local: endpoints(r).local,
          localPort: r.localPort,
          acceptQueue: r.recvQ,
          backlog: r.sendQ,
          inode: r.inode,
          over: r.sendQ > 0 && r.recvQ >= r.sendQ,
        });
      }
    }
    return { rows, listeners, scanMs, nonEmpty };
  }

  private queueRow(ns: string, r: SocketRecord): QueueRow {
    const { local, remote } = endpoints(r);
    const over = (q: number, t: number | 'off') => t !== 'off' && q > t;
    return {
      ns,
      protocol: r.protocol,
      state: r.stateName,
      local,
      remote,
      localPort: r.localPort,
      remotePort: r.remotePort,
      recvQ: r.recvQ,
      sendQ: r.sendQ,
      inode: r.inode,
      overRecv: over(r.recvQ, this.o.recvThreshold),
      overSend: over(r.sendQ, this.o.sendThreshold),
    };
  }

  /** Owners known now of these inodes; the unknown ones are looked up, and `found` called when some are. */
  ownersOf(inodes: readonly number[], found: () => void): Map<number, SocketOwner> {
    const known = new Map<number, SocketOwner>();
    const missing: number[] = [];
    for (const i of inodes) {
      if (i === 0) continue;
      const o = this.owners.get(i);
      if (o) known.set(i, o);
      else missing.push(i);
    }
    if (missing.length > 0) {
      void this.owners.resolve(missing).then((m) => {
        if (m.size > 0) found();
      });
    }
    return known;
  }

  close(): void {
    this.owners.close();
  }
}

/** At least this long between two walks of the Processes view, and never more than 10% of the time. */
export const PROCESS_MIN_PACE_MS = 3000;
const PROCESS_BUDGET = 0.1;
const SLICE_MS = 4;

/**
 * The Processes view's table: socket inode -> pid from a sliced walk of /proc/*\/fd, then one full
 * scan counted per owner. refresh() does nothing before its pace allows (max(3 s, 3 intervals, 9×
 * the last walk)), so the walk never takes more than about 10% of one core.
 */
export class ProcessTable {
  private nextAt = 0;
  private running: Promise<void> | undefined;
  rows: ProcessRow[] = [];
  lastWalkMs = 0;
  updatedAt = 0;

  constructor(
    private readonly scope: ScanScope,
    private readonly intervalMs: number,
    /** Walk only the processes of sockwatch's own network namespace (the one scanned without --all-netns). */
    private readonly ownNetnsOnly: boolean,
  ) {}

  /** Starts a walk when due; resolves when it is done (or at once when not due). */
  refresh(): Promise<void> {
    if (this.running) return this.running;
    if (performance.now() < this.nextAt) return Promise.resolve();
    this.running = this.walkAndCount().finally(() => (this.running = undefined));
    return this.running;
  }

  private async walkAndCount(): Promise<void> {
    const started = performance.now();
    const owners = await this.walk();
    const byKey = new Map<string, ProcessRow>();
    for (const s of await this.scope.scan({ all: true, maxRecords: 0xffffffff })) {
      for (const r of s.result.records) {
        const pid = r.inode === 0 ? undefined : owners.get(r.inode);
        const key = `${s.ns} ${pid ?? (r.inode === 0 ? 'none' : 'unknown')}`;
        let row = byKey.get(key);
        if (!row) {
          const comm = pid !== undefined ? (this.comms.get(pid) ?? '?') : r.inode === 0 ? '(no process)' : '(owner not visible)';
          byKey.set(key, (row = { ns: s.ns, ...(pid !== undefined ? { pid } : {}), comm, tcp: 0, udp: 0, states: {} }));
        }
        if (r.protocol === 'udp') row.udp++;
        else {
          row.tcp++;
          row.states[r.stateName] = (row.states[r.stateName] ?? 0) + 1;
        }
      }
    }
    this.rows = [...byKey.values()];
    const ended = performance.now();
    this.lastWalkMs = ended - started;
    this.updatedAt = Date.now();
    this.nextAt = ended + Math.max(PROCESS_MIN_PACE_MS, 3 * this.intervalMs, (this.lastWalkMs * (1 - PROCESS_BUDGET)) / PROCESS_BUDGET);
  }

  private comms = new Map<number, string>();

  /** inode -> pid of every socket descriptor readable here, yielding to the event loop every few ms. */
  private async walk(): Promise<Map<number, number>> {
    const owners = new Map<number, number>();
    this.comms = new Map();
    let pids: number[];
    try {
      pids = fs
        .readdirSync('/proc')
        .filter((n) => /^\d+$/.test(n))
        .map(Number);
    } catch {
      return owners;
    }
    const own = this.ownNetnsOnly ? netnsIdOf('self') : undefined;
    let slice = performance.now();
    for (const pid of pids) {
      // a process of another namespace holds none of the sockets scanned: one stat instead of its fds
      if (own !== undefined && netnsIdOf(pid) !== own) continue;
      let inodes: number[] | undefined;
      try {
        inodes = socketInodes(pid);
      } catch {
        inodes = undefined; // not ours to read
      }
      if (inodes && inodes.length > 0) {
        for (const i of inodes) owners.set(i, pid);
        try {
          this.comms.set(pid, fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trimEnd());
        } catch {
          this.comms.set(pid, '?');
        }
      }
      if (performance.now() - slice >= SLICE_MS) {
        await new Promise((r) => setImmediate(r));
        slice = performance.now();
      }
    }
    return owners;
  }
}
