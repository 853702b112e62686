// Typed, validated API over the addon. Options are checked and normalised here, compiled into a
// plain request (bitmasks, thresholds, bytecode) once per options object, and only offenders and
// aggregates come back from native code.
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { formatEndpoint, addressBytes, parseEndpoint } from './address';
import { compileFilter, portRulesFilter, type PortRange } from './bytecode';
import { SockwatchError, systemError } from './base/errors';
import {
  ACCEPT_AT_LIMIT,
  AF_INET,
  AF_INET6,
  AGG_COUNT_FIELDS,
  IPPROTO_TCP,
  IPPROTO_UDP,
  FAMILY_V4,
  FAMILY_V6,
  PROTO_TCP,
  PROTO_UDP,
  REASON_ACCEPT,
  REASON_RECV,
  REASON_SEND,
  SCAN_AGGREGATE,
  SCAN_AGG_COOKIES,
  SCAN_ALL,
  SCAN_FORCE_PROC_UDP,
  SCAN_SKMEMINFO,
  THRESHOLD_OFF,
  loadBinding,
  type NativeError,
  type NativeScanRequest,
  type NativeScanResult,
  type NativeSampler,
  type NativeRecords,
  type NativeAggregates,
  RECORD_FIELDS,
  RecordField,
  SKMEM_SLOTS,
} from './native';
import { ALL_STATES_MASK, TCP_STATES, UDP_STATES_MASK, stateMask, stateName } from './states';

export type PortSpec = number | string | PortRange;

export interface SamplerOptions {
  /** Sample inside another network namespace: /proc/PID/ns/net or /var/run/netns/NAME (needs CAP_SYS_ADMIN). */
  netns?: string;
}

export interface AggregateOptions {
  /** TCP states counted per remote endpoint (default: every state but LISTEN). */
  states?: readonly string[];
  /** Return the cookie of every aggregated socket (for windows of distinct connections). */
  cookies?: boolean;
  /** Only sockets whose inode or cookie is listed are aggregated (e.g. one process's sockets). */
  ownerInodes?: Iterable<number>;
  ownerCookies?: Iterable<bigint>;
  /** Return only the N destinations with the most sockets (the rest are only counted). */
  top?: number;
  /** Return only destinations with at least this many sockets. */
  minTotal?: number;
}

export interface SampleOptions {
  /** Protocols; when neither is set, both. */
  tcp?: boolean;
  udp?: boolean;
  /** Families; when neither is set, both. */
  ipv4?: boolean;
  ipv6?: boolean;
  /** ss-style state names (established, listen, time-wait, unconn, all, connected…). Default: all. */
  states?: readonly string[];
  /** Kernel-side port rules (bytecode). A spec is a port, "from-to", or {from, to}. */
  localPorts?: readonly PortSpec[];
  excludeLocalPorts?: readonly PortSpec[];
  remotePorts?: readonly PortSpec[];
  excludeRemotePorts?: readonly PortSpec[];
  /** Offender when the receive queue is strictly greater (bytes; UDP: kernel memory). */
  recvThreshold?: number;
  /** Offender when the send queue is strictly greater. */
  sendThreshold?: number;
  /** LISTEN sockets: accept queue strictly greater than this many connections, or 'limit' (queue ≥ backlog). */
  acceptThreshold?: number | 'limit';
  /** Return every socket, not only offenders (small listings). */
  all?: boolean;
  /** Ask the kernel for SKMEMINFO (rcvbuf, sndbuf, drops…). */
  skmem?: boolean;
  /** Cap on returned records (offendersTotal still counts all). Default 10,000. */
  maxRecords?: number;
  /** Per-remote-endpoint aggregation of TCP sockets (SNAT counting). */
  aggregate?: boolean | AggregateOptions;
  /** Read UDP from /proc/net/udp{,6} even where udp_diag exists (tests of the fallback). */
  forceProcUdp?: boolean;
}

export type QueueType = 'RECV' | 'SEND' | 'ACCEPT';

export interface SkMemInfo {
  rmemAlloc: number;
  rcvbuf: number;
  wmemAlloc: number;
  sndbuf: number;
  fwdAlloc: number;
  wmemQueued: number;
  optmem: number;
  backlog: number;
  drops: number;
}

export interface SocketRecord {
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  state: number;
  stateName: string;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** TCP: unread bytes; LISTEN: accept queue (connections); UDP: receive memory (truesize). */
  recvQ: number;
  /** TCP: unacknowledged bytes; LISTEN: backlog limit; UDP: transmit memory. */
  sendQ: number;
  uid: number;
  inode: number;
  cookie: bigint;
  ifindex: number;
  timer: number;
  retrans: number;
  expires: number;
  /** Which thresholds this socket exceeds. */
  exceeded: QueueType[];
  skmem?: SkMemInfo;
}

export interface Aggregate {
  family: 4 | 6;
  remoteAddress: string;
  remotePort: number;
  /** `ip:port`, IPv6 in brackets. */
  remote: string;
  total: number;
  /** Count per TCP state name, only states present. */
  states: Record<string, number>;
}

export interface SampleResult {
  /** Unix time in seconds (microsecond fraction) when the kernel pass started. */
  timestamp: number;
  records: SocketRecord[];
  offendersTotal: number;
  socketsSeen: number;
  /** Count per state name, per protocol. */
  tcpStates: Record<string, number>;
  udpStates: Record<string, number>;
  /** Per remote endpoint, sorted by total (descending). */
  aggregates: Aggregate[];
  /** Distinct remote endpoints seen, including those cut by `top` / `minTotal`. */
  aggregatesTotal: number;
  aggCookies?: BigUint64Array;
  aggCookieIndex?: Uint32Array;
  /** True when UDP came from /proc because the kernel has no udp_diag. */
  udpFromProc: boolean;
  bytesReceived: number;
  recvCalls: number;
  elapsedNs: number;
}

const DEFAULT_MAX_RECORDS = 10_000;

function checkThreshold(name: string, v: unknown): number {
  if (v === undefined) return THRESHOLD_OFF;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${name} must be a finite number, got ${String(v)}`);
  if (v < 0 || !Number.isInteger(v)) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  return Math.min(v, 0xffffffff);
}

/** Parses a port spec (80, "80", "1024-2048", {from,to}). Throws naming `option`. */
export function parsePortSpec(spec: PortSpec, option: string): PortRange {
  let from: number;
  let to: number;
  if (typeof spec === 'number') {
    from = to = spec;
  } else if (typeof spec === 'string') {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(spec);
    if (!m) throw new TypeError(`${option}: "${spec}" is not a port or a port range (like 80 or 1024-2048)`);
    from = Number(m[1]);
    to = m[2] === undefined ? from : Number(m[2]);
  } else if (spec && typeof spec === 'object') {
    from = spec.from;
    to = spec.to;
  } else {
    throw new TypeError(`${option}: ${String(spec)} is not a port`);
  }
  for (const p of [from, to]) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new RangeError(`${option}: port ${p} is out of range 0-65535`);
  }
  if (from > to) throw new RangeError(`${option}: range ${from}-${to} is empty`);
  return { from, to };
}

function ports(list: readonly PortSpec[] | undefined, option: string): PortRange[] | undefined {
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) throw new TypeError(`${option} must be an array of ports`);
  return list.map((p) => parsePortSpec(p, option));
}

function sortedUint32(it: Iterable<number>, option: string): Uint32Array {
  const a = Uint32Array.from(it, (v) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${option}: ${v} is not an inode number`);
    return v;
  });
  return a.sort();
}

/** Validates and compiles sample options into the request the addon takes. */
export function compileSampleOptions(o: SampleOptions = {}): NativeScanRequest {
  if (o === null || typeof o !== 'object') throw new TypeError('sample options must be an object');
  const tcp = o.tcp ?? false;
  const udp = o.udp ?? false;
  const v4 = o.ipv4 ?? false;
  const v6 = o.ipv6 ?? false;
  const protocols = tcp || udp ? (tcp ? PROTO_TCP : 0) | (udp ? PROTO_UDP : 0) : PROTO_TCP | PROTO_UDP;
  const families = v4 || v6 ? (v4 ? FAMILY_V4 : 0) | (v6 ? FAMILY_V6 : 0) : FAMILY_V4 | FAMILY_V6;
  const mask = o.states === undefined ? ALL_STATES_MASK : stateMask(o.states, 'states');
  if (o.states !== undefined && mask === 0) throw new RangeError('states must name at least one state');

  let acceptThreshold = THRESHOLD_OFF;
  if (o.acceptThreshold === 'limit') acceptThreshold = ACCEPT_AT_LIMIT;
  else acceptThreshold = checkThreshold('acceptThreshold', o.acceptThreshold);

  const maxRecords = o.maxRecords ?? DEFAULT_MAX_RECORDS;
  if (!Number.isInteger(maxRecords) || maxRecords < 0) throw new RangeError(`maxRecords must be a non-negative integer, got ${maxRecords}`);

  let flags = 0;
  if (o.all) flags |= SCAN_ALL;
  if (o.skmem) flags |= SCAN_SKMEMINFO;
  if (o.forceProcUdp) flags |= SCAN_FORCE_PROC_UDP;

  const req: NativeScanRequest = {
    protocols,
    families,
    tcpStates: mask,
    udpStates: mask & UDP_STATES_MASK,
    bytecode: compileFilter(
      portRulesFilter({
        localPorts: ports(o.localPorts, 'localPorts'),
        excludeLocalPorts: ports(o.excludeLocalPorts, 'excludeLocalPorts'),
        remotePorts: ports(o.remotePorts, 'remotePorts'),
        excludeRemotePorts: ports(o.excludeRemotePorts, 'excludeRemotePorts'),
      }),
    ),
    recvThreshold: checkThreshold('recvThreshold', o.recvThreshold),
    sendThreshold: checkThreshold('sendThreshold', o.sendThreshold),
    acceptThreshold,
    maxRecords,
    flags,
    aggStates: 0,
    aggTop: 0,
    aggMinTotal: 0,
  };
  if (o.aggregate) {
    const a: AggregateOptions = o.aggregate === true ? {} : o.aggregate;
    req.flags |= SCAN_AGGREGATE | (a.cookies ? SCAN_AGG_COOKIES : 0);
    req.aggStates = a.states ? stateMask(a.states, 'aggregate.states') : ALL_STATES_MASK & ~(1 << TCP_STATES.listen);
    if (a.ownerInodes !== undefined) req.ownerInodes = sortedUint32(a.ownerInodes, 'aggregate.ownerInodes');
    if (a.ownerCookies !== undefined) req.ownerCookies = BigUint64Array.from(a.ownerCookies).sort();
    if (a.top !== undefined) {
      if (!Number.isInteger(a.top) || a.top < 1 || a.top > 0xffffffff)
        throw new RangeError(`aggregate.top must be a positive integer, got ${a.top}`);
      req.aggTop = a.top;
    }
    if (a.minTotal !== undefined) {
      if (!Number.isInteger(a.minTotal) || a.minTotal < 0 || a.minTotal > 0xffffffff)
        throw new RangeError(`aggregate.minTotal must be a non-negative integer, got ${a.minTotal}`);
      req.aggMinTotal = a.minTotal;
    }
    if (req.ownerInodes && !req.ownerCookies) req.ownerCookies = new BigUint64Array(0);
    if (req.ownerCookies && !req.ownerInodes) req.ownerInodes = new Uint32Array(0);
  }
  return req;
}

const SKMEM_KEYS: (keyof SkMemInfo)[] = [
  'rmemAlloc',
  'rcvbuf',
  'wmemAlloc',
  'sndbuf',
  'fwdAlloc',
  'wmemQueued',
  'optmem',
  'backlog',
  'drops',
];

/** Unpacks the addon's records into SocketRecord objects (cheaper in JS than through N-API). */
export function unpackRecords(p: NativeRecords): SocketRecord[] {
  const out: SocketRecord[] = new Array(p.count);
  if (p.count === 0) return out;
  const addresses = p.addresses.split(',');
  const f = p.fields;
  for (let i = 0; i < p.count; i++) {
    const b = i * RECORD_FIELDS;
    const protocol = f[b + RecordField.Protocol] === IPPROTO_UDP ? 'udp' : 'tcp';
    const reasons = f[b + RecordField.Reasons];
    const exceeded: QueueType[] = [];
    if (reasons & REASON_RECV) exceeded.push('RECV');
    if (reasons & REASON_SEND) exceeded.push('SEND');
    if (reasons & REASON_ACCEPT) exceeded.push('ACCEPT');
    const state = f[b + RecordField.State];
    const rec: SocketRecord = {
      protocol,
      family: f[b + RecordField.Family] === AF_INET6 ? 6 : 4,
      state,
      stateName: stateName(state, protocol),
      localAddress: addresses[2 * i],
      localPort: f[b + RecordField.LocalPort],
      remoteAddress: addresses[2 * i + 1],
      remotePort: f[b + RecordField.RemotePort],
      recvQ: f[b + RecordField.RecvQ],
      sendQ: f[b + RecordField.SendQ],
      uid: f[b + RecordField.Uid],
      inode: f[b + RecordField.Inode],
      cookie: (BigInt(f[b + RecordField.CookieHigh]) << 32n) | BigInt(f[b + RecordField.CookieLow]),
      ifindex: f[b + RecordField.Ifindex],
      timer: f[b + RecordField.TimerRetrans] & 0xff,
      retrans: f[b + RecordField.TimerRetrans] >>> 8,
      expires: f[b + RecordField.Expires],
      exceeded,
    };
    const n = f[b + RecordField.SkmemCount];
    if (p.skmem && n > 0) {
      const m = {} as SkMemInfo;
      SKMEM_KEYS.forEach((k, j) => (m[k] = j < n ? p.skmem![i * SKMEM_SLOTS + j] : 0));
      rec.skmem = m;
    }
    out[i] = rec;
  }
  return out;
}

function stateCounts(counts: Uint32Array, offset: number, protocol: 'tcp' | 'udp'): Record<string, number> {
  const out: Record<string, number> = {};
  for (let state = 0; state < 16; state++) {
    const n = counts[offset + state];
    if (n > 0) out[stateName(state, protocol)] = n;
  }
  return out;
}

function unpackAggregates(a: NativeAggregates): Aggregate[] {
  if (a.count === 0) return [];
  const addresses = a.addresses.split(',');
  const out: Aggregate[] = new Array(a.count);
  for (let i = 0; i < a.count; i++) {
    const base = i * AGG_COUNT_FIELDS;
    const states: Record<string, number> = {};
    for (let st = 0; st < 16; st++) {
      const c = a.counts[base + 1 + st];
      if (c > 0) states[stateName(st)] = c;
    }
    out[i] = {
      family: a.families[i] === AF_INET6 ? 6 : 4,
      remoteAddress: addresses[i],
      remotePort: a.ports[i],
      remote: formatEndpoint(addresses[i], a.ports[i]),
      total: a.counts[base],
      states,
    };
  }
  return out;
}

function toResult(n: NativeScanResult, timestamp: number): SampleResult {
  return {
    timestamp,
    records: unpackRecords(n.records),
    offendersTotal: n.offendersTotal,
    socketsSeen: n.socketsSeen,
    tcpStates: stateCounts(n.stateCounts, 0, 'tcp'),
    udpStates: stateCounts(n.stateCounts, 16, 'udp'),
    aggregates: n.aggregates ? unpackAggregates(n.aggregates) : [],
    aggregatesTotal: n.aggregates?.total ?? 0,
    aggCookies: n.aggregates?.cookies,
    aggCookieIndex: n.aggregates?.cookieIndex,
    udpFromProc: n.udpFromProc,
    bytesReceived: n.bytesReceived,
    recvCalls: n.recvCalls,
    elapsedNs: n.elapsedNs,
  };
}

/** Unix time in seconds with a microsecond fraction. */
export function unixNow(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000) / 1e6;
}

function explainNetnsError(err: NativeError, netns: string): Error {
  const why =
    err.code === 'EPERM'
      ? 'permission denied: entering a network namespace needs CAP_SYS_ADMIN (run as root)'
      : err.code === 'ENOENT'
        ? 'no such namespace file'
        : err.code === 'EINVAL'
          ? 'not a network namespace file'
          : err.message;
  const e = new Error(`netns ${netns}: ${why}`) as NativeError;
  e.code = err.code;
  e.errno = err.errno;
  e.syscall = err.syscall;
  return e;
}

export interface LookupOptions {
  protocol: 'tcp' | 'udp';
  /** `ip:port` or `[ipv6]:port`, as a record reports them. */
  local: string;
  remote: string;
  /** The socket's cookie; without it any socket with this 4-tuple matches. */
  cookie?: bigint;
  skmem?: boolean;
}

/**
 * One long-lived NETLINK_SOCK_DIAG socket. sampleSync and sample run one pass over the kernel's
 * dumps; at most one scan is in flight (later calls queue behind it); close() waits for it.
 */
export class Sampler {
  readonly netns: string | undefined;
  private native: NativeSampler | undefined;
  private inFlight: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private readonly compiled = new WeakMap<SampleOptions, NativeScanRequest>();

  constructor(options: SamplerOptions = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('Sampler options must be an object');
    if (options.netns !== undefined) {
      if (typeof options.netns !== 'string' || options.netns === '') throw new TypeError('netns must be a non-empty path');
      try {
        fs.accessSync(options.netns, fs.constants.R_OK);
      } catch {
        throw Object.assign(
          new Error(`netns ${options.netns}: no such namespace file (expected /proc/PID/ns/net or /var/run/netns/NAME)`),
          {
            code: 'ENOENT',
          },
        );
      }
    }
    this.netns = options.netns;
    const binding = loadBinding();
    try {
      this.native = new binding.Sampler(options.netns);
    } catch (e) {
      throw options.netns ? explainNetnsError(e as NativeError, options.netns) : e;
    }
  }

  get closed(): boolean {
    return this.native === undefined;
  }

  private request(options: SampleOptions): NativeScanRequest {
    let req = this.compiled.get(options);
    if (!req) {
      req = compileSampleOptions(options);
      this.compiled.set(options, req);
    }
    return req;
  }

  private handle(): NativeSampler {
    if (!this.native) throw new SockwatchError('ERR_SOCKWATCH_SAMPLER_CLOSED', 'Sampler is closed');
    return this.native;
  }

  /** One scan on the calling thread. Throws EBUSY while an async scan is in flight. */
  sampleSync(options: SampleOptions = {}): SampleResult {
    const req = this.request(options);
    const native = this.handle();
    if (this.pending > 0) {
      throw systemError(osConstants.errno.EBUSY, 'scan', 'an asynchronous scan of this sampler is queued or running');
    }
    const ts = unixNow();
    return toResult(native.scanSync(req), ts);
  }

  /** One scan on the libuv pool; the event loop stays free. Calls queue one behind another. */
  sample(options: SampleOptions = {}): Promise<SampleResult> {
    let req: NativeScanRequest;
    try {
      req = this.request(options);
      this.handle();
    } catch (e) {
      return Promise.reject(e);
    }
    const callerStack = new Error().stack ?? '';
    this.pending++;
    const run = this.inFlight.then(async () => {
      const native = this.handle();
      const ts = unixNow();
      try {
        return toResult(await native.scan(req), ts);
      } catch (e) {
        const err = e as Error;
        // Native rejections carry no JS stack: give them the caller's.
        err.stack = `${err.name}: ${err.message}\n${callerStack.split('\n').slice(1).join('\n')}`;
        throw err;
      } finally {
        this.pending--;
      }
    });
    this.inFlight = run.catch(() => undefined);
    return run;
  }

  /** Exact lookup of one socket by 4-tuple (and cookie): no dump. null when it does not exist. */
  lookup(options: LookupOptions): SocketRecord | null {
    if (!options || typeof options !== 'object') throw new TypeError('lookup options must be an object');
    if (options.protocol !== 'tcp' && options.protocol !== 'udp')
      throw new TypeError(`protocol must be "tcp" or "udp", got ${String(options.protocol)}`);
    const local = parseEndpoint(options.local, 'local');
    const remote = parseEndpoint(options.remote, 'remote');
    const lb = addressBytes(local.address);
    const rb = addressBytes(remote.address);
    if (lb.length !== rb.length) throw new TypeError('local and remote must be of the same address family');
    if (options.cookie !== undefined && typeof options.cookie !== 'bigint') throw new TypeError('cookie must be a bigint');
    const r = this.handle().lookup({
      family: lb.length === 16 ? AF_INET6 : AF_INET,
      protocol: options.protocol === 'udp' ? IPPROTO_UDP : IPPROTO_TCP,
      localAddress: lb,
      localPort: local.port,
      remoteAddress: rb,
      remotePort: remote.port,
      cookie: options.cookie,
      flags: options.skmem ? SCAN_SKMEMINFO : 0,
    });
    if (!r) return null;
    // Without a cookie the kernel's lookup falls back to a listener on the local port: keep only
    // an exact match of the 4-tuple.
    const rec = unpackRecords(r)[0];
    const exact =
      rec.localPort === local.port &&
      rec.remotePort === remote.port &&
      addressBytes(rec.localAddress).equals(lb) &&
      addressBytes(rec.remoteAddress).equals(rb);
    return exact ? rec : null;
  }

  /** Waits for a scan in flight, then closes the netlink socket. Idempotent. */
  async close(): Promise<void> {
    if (!this.native) return;
    await this.inFlight;
    this.native?.close();
    this.native = undefined;
  }

  /** Scans queued or running. */
  get busy(): boolean {
    return this.pending > 0;
  }
}

/** Convenience for small listings: every matching socket as a plain record. */
export async function listSockets(filter: Omit<SampleOptions, 'all'> = {}, options: SamplerOptions = {}): Promise<SocketRecord[]> {
  const s = new Sampler(options);
  try {
    const r = await s.sample({ maxRecords: 0xffffffff, ...filter, all: true });
    return r.records;
  } finally {
    await s.close();
  }
}

/** `ip:port` strings of a record (IPv6 in brackets). */
export function endpoints(r: Pick<SocketRecord, 'localAddress' | 'localPort' | 'remoteAddress' | 'remotePort'>): {
  local: string;
  remote: string;
} {
  return { local: formatEndpoint(r.localAddress, r.localPort), remote: formatEndpoint(r.remoteAddress, r.remotePort) };
}
