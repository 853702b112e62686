// Socket inode → owning process (pid and comm), for a few flagged sockets at a time.
//
// The kernel does not say which process holds a socket: the only way is to walk /proc/*/fd and
// readlink every descriptor (what `ss -p` does: about 1 s for 76k descriptors, roughly 13 µs each).
// So this is never done per tick, only when an inode nobody has resolved yet is asked for:
//
// - a scan looks only for the inodes wanted at that moment and stops as soon as all are found;
// - it runs in slices of a few ms and yields to the event loop between them;
// - scans are rate-limited: the next one starts no earlier than max(minScanIntervalMs,
//   lastScanDuration × (1 / scanBudget − 1)) after the previous one ended, so scanning takes at
//   most about scanBudget (10%) of one core however many new offenders appear;
// - found owners are cached (bounded, oldest evicted) and re-validated with a single readlink of
//   /proc/PID/fd/FD once older than ttlMs; inodes a full scan did not find are remembered as
//   unknown for negativeTtlMs (sockets of orphans, of other pid namespaces, or of processes this
//   user may not inspect: without root only the user's own processes are visible).
//
// An inode is unique across network namespaces (sockfs), so this works with --netns too.
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as v from '../base/validate';

export interface SocketOwner {
  pid: number;
  /** /proc/PID/comm: the process name, at most 15 characters. */
  comm: string;
  /** The descriptor number in that process. */
  fd: number;
}

export interface SocketOwnersOptions {
  /** Where procfs is mounted (default /proc). */
  procRoot?: string;
  /** A cached owner is re-validated (one readlink) when older than this (default 10 s). */
  ttlMs?: number;
  /** An inode a full scan did not find is not looked for again before this (default 30 s). */
  negativeTtlMs?: number;
  /** Least time between the end of one scan and the start of the next (default 500 ms). */
  minScanIntervalMs?: number;
  /** Largest share of time spent scanning, in (0, 1] (default 0.1). */
  scanBudget?: number;
  /** Work done before yielding to the event loop, in ms (default 4). */
  sliceMs?: number;
  /** Most cached owners and unknown inodes, each (default 20,000). */
  maxEntries?: number;
}

export interface SocketOwnersStats {
  scans: number;
  /** Descriptors read by all scans. */
  fdsRead: number;
  /** Duration of the last scan, ms. */
  lastScanMs: number;
  cached: number;
  unknown: number;
  /** Inodes waiting for the next scan. */
  wanted: number;
}

export interface ResolveOptions {
  /** performance.now() value after which the promise settles with what is known. Default: wait for the scan. */
  deadline?: number;
}

interface CacheEntry extends SocketOwner {
  checkedAt: number;
}

interface Waiter {
  inodes: number[];
  found: Map<number, SocketOwner>;
  resolve: (owners: Map<number, SocketOwner>) => void;
  timer?: NodeJS.Timeout;
}

export const SOCKET_OWNERS_DEFAULTS = {
  ttlMs: 10_000,
  negativeTtlMs: 30_000,
  minScanIntervalMs: 500,
  scanBudget: 0.1,
  sliceMs: 4,
  maxEntries: 20_000,
};

const SOCKET_LINK = /^socket:\[(\d+)\]$/;

export class SocketOwners {
  readonly procRoot: string;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly minScanIntervalMs: number;
  private readonly scanBudget: number;
  private readonly sliceMs: number;
  private readonly maxEntries: number;
  private readonly cache = new Map<number, CacheEntry>();
  private readonly unknown = new Map<number, number>(); // inode → performance.now() when given up
  private readonly wanted = new Set<number>();
  private readonly waiters = new Set<Waiter>();
  private scanning = false;
  private scanTimer: NodeJS.Timeout | undefined;
  private nextScanAt = 0;
  private closed = false;
  private counters = { scans: 0, fdsRead: 0, lastScanMs: 0 };

  constructor(options: SocketOwnersOptions = {}) {
    options = v.optionsObject<SocketOwnersOptions>(options, 'options', SOCKET_OWNERS_OPTION_KEYS);
    this.procRoot = options.procRoot === undefined ? '/proc' : v.nonEmptyString(options.procRoot, 'options.procRoot');
    this.ttlMs = nonNegative('ttlMs', options.ttlMs, SOCKET_OWNERS_DEFAULTS.ttlMs);
    this.negativeTtlMs = nonNegative('negativeTtlMs', options.negativeTtlMs, SOCKET_OWNERS_DEFAULTS.negativeTtlMs);
    this.minScanIntervalMs = nonNegative('minScanIntervalMs', options.minScanIntervalMs, SOCKET_OWNERS_DEFAULTS.minScanIntervalMs);
    this.sliceMs = nonNegative('sliceMs', options.sliceMs, SOCKET_OWNERS_DEFAULTS.sliceMs);
    this.scanBudget =
      options.scanBudget === undefined
        ? SOCKET_OWNERS_DEFAULTS.scanBudget
        : v.finiteNumber(options.scanBudget, 'options.scanBudget', { min: 0, minExclusive: true, max: 1 });
    this.maxEntries = v.optInteger(options.maxEntries, 'options.maxEntries', SOCKET_OWNERS_DEFAULTS.maxEntries, { min: 1 });
  }

  /** The cached owner of an inode, re-validated if old; never scans. */
  get(inode: number): SocketOwner | undefined {
    const e = this.cache.get(inode);
    if (!e) return undefined;
    const now = performance.now();
    if (now - e.checkedAt <= this.ttlMs) return publicOwner(e);
    if (readLink(`${this.procRoot}/${e.pid}/fd/${e.fd}`) !== `socket:[${inode}]`) {
      this.cache.delete(inode);
      return undefined;
    }
    e.comm = readComm(this.procRoot, e.pid) ?? e.comm;
    e.checkedAt = now;
    return publicOwner(e);
  }

  /**
   * Owners of the given inodes: cached ones at once, the others after the next scan (or by the
   * deadline, with whatever is known then). Inodes never found are absent from the map.
   */
  resolve(inodes: Iterable<number>, options: ResolveOptions = {}): Promise<Map<number, SocketOwner>> {
    const found = new Map<number, SocketOwner>();
    const missing: number[] = [];
    const now = performance.now();
    for (const inode of inodes) {
      if (!Number.isSafeInteger(inode) || inode <= 0 || found.has(inode)) continue;
      const owner = this.get(inode);
      if (owner) {
        found.set(inode, owner);
        continue;
      }
      const givenUp = this.unknown.get(inode);
      if (givenUp !== undefined && now - givenUp < this.negativeTtlMs) continue;
      if (givenUp !== undefined) this.unknown.delete(inode);
      missing.push(inode);
    }
    if (missing.length === 0 || this.closed) return Promise.resolve(found);
    for (const inode of missing) this.wanted.add(inode);
    return new Promise((resolve) => {
      const waiter: Waiter = { inodes: missing, found, resolve };
      this.waiters.add(waiter);
      if (options.deadline !== undefined) {
        waiter.timer = setTimeout(() => this.settle(waiter), Math.max(0, options.deadline - performance.now()));
      }
      this.scheduleScan();
    });
  }

  /** Settles every pending resolve() with what is known now (scans continue in the background). */
  releaseWaiters(): void {
    for (const w of [...this.waiters]) this.settle(w);
  }

  /** Stops scanning and settles every pending resolve() with what is known. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.scanTimer) clearTimeout(this.scanTimer);
    this.scanTimer = undefined;
    this.wanted.clear();
    this.releaseWaiters();
  }

  stats(): SocketOwnersStats {
    return { ...this.counters, cached: this.cache.size, unknown: this.unknown.size, wanted: this.wanted.size };
  }

  // ---- scanning ----

  private scheduleScan(): void {
    if (this.scanning || this.scanTimer || this.closed || this.wanted.size === 0) return;
    const delay = Math.max(0, this.nextScanAt - performance.now());
    this.scanTimer = setTimeout(() => {
      this.scanTimer = undefined;
      void this.scan();
    }, delay);
  }

  private async scan(): Promise<void> {
    if (this.closed || this.wanted.size === 0) return;
    this.scanning = true;
    const started = performance.now();
    const target = new Set(this.wanted);
    let complete = true;
    try {
      complete = await this.walk(target);
    } finally {
      const ended = performance.now();
      const took = ended - started;
      this.counters.scans++;
      this.counters.lastScanMs = took;
      this.nextScanAt = ended + Math.max(this.minScanIntervalMs, (took * (1 - this.scanBudget)) / this.scanBudget);
      this.scanning = false;
    }
    if (complete) {
      for (const inode of target) {
        if (this.wanted.delete(inode)) this.remember(this.unknown, inode, performance.now());
      }
    }
    for (const w of [...this.waiters]) {
      if (w.inodes.every((i) => w.found.has(i) || !this.wanted.has(i))) this.settle(w);
    }
    this.scheduleScan();
  }

  /** Walks /proc/*\/fd until every wanted inode is found. True if the walk covered every process. */
  private async walk(target: Set<number>): Promise<boolean> {
    let pids: string[];
    try {
      pids = fs.readdirSync(this.procRoot).filter((n) => /^\d+$/.test(n));
    } catch {
      return true;
    }
    let sliceStart = performance.now();
    for (const pid of pids) {
      if (this.closed) return false;
      if (this.wanted.size === 0) return true; // all found: stop early
      let fds: string[];
      try {
        fds = fs.readdirSync(`${this.procRoot}/${pid}/fd`);
      } catch {
        continue; // gone, or not ours to read
      }
      let comm: string | undefined;
      for (const fd of fds) {
        const link = readLink(`${this.procRoot}/${pid}/fd/${fd}`);
        this.counters.fdsRead++;
        if (!link) continue;
        const m = SOCKET_LINK.exec(link);
        if (!m) continue;
        const inode = Number(m[1]);
        if (!this.wanted.has(inode)) continue;
        comm ??= readComm(this.procRoot, Number(pid)) ?? '';
        this.wanted.delete(inode);
        this.cache.delete(inode);
        this.remember(this.cache, inode, { pid: Number(pid), fd: Number(fd), comm, checkedAt: performance.now() });
        for (const w of this.waiters) if (w.inodes.includes(inode)) w.found.set(inode, { pid: Number(pid), comm, fd: Number(fd) });
      }
      if (performance.now() - sliceStart >= this.sliceMs) {
        await new Promise((r) => setImmediate(r));
        sliceStart = performance.now();
      }
    }
    return true;
  }

  private remember<V>(map: Map<number, V>, inode: number, value: V): void {
    map.set(inode, value);
    while (map.size > this.maxEntries) map.delete(map.keys().next().value as number);
  }

  private settle(w: Waiter): void {
    if (!this.waiters.delete(w)) return;
    if (w.timer) clearTimeout(w.timer);
    w.resolve(w.found);
  }
}

function publicOwner(e: CacheEntry): SocketOwner {
  return { pid: e.pid, comm: e.comm, fd: e.fd };
}

function readLink(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

function readComm(procRoot: string, pid: number): string | undefined {
  try {
    return fs.readFileSync(`${procRoot}/${pid}/comm`, 'utf8').replace(/\n$/, '');
  } catch {
    return undefined;
  }
}

const SOCKET_OWNERS_OPTION_KEYS = ['procRoot', 'ttlMs', 'negativeTtlMs', 'minScanIntervalMs', 'scanBudget', 'sliceMs', 'maxEntries'];

function nonNegative(name: string, value: unknown, fallback: number): number {
  return v.duration(value, `options.${name}`, fallback);
}
