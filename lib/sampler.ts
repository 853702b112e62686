// Typed, validated API over the addon. Options are checked with lib/base/validate.ts (its rule:
// wrong type TypeError, out of range RangeError, unknown keys rejected) and compiled into a plain
// request (bitmasks, thresholds, bytecode) on every call (no cache: a result never depends on what an
// options object held earlier), or once into an immutable CompiledSampleOptions for a scan loop; only
// offenders and aggregates come back from native code.
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { formatEndpoint, addressBytes, parseEndpoint } from './address';
import * as v from './base/validate';
import { type AcceptThreshold, type ByteThreshold, type PortSpec } from './base/validate';
import { compileFilter, portRulesFilter, prefixList, type PortRange } from './bytecode';
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
  MAX_HIST_BOUNDS,
  PROTO_TCP,
  PROTO_UDP,
  REASON_ACCEPT,
  REASON_RECV,
  REASON_SEND,
  SCAN_AGGREGATE,
  SCAN_AGG_COOKIES,
  SCAN_AGG_MERGE_MAPPED,
  SCAN_HISTOGRAM,
  SCAN_ALL,
  SCAN_FORCE_PROC_UDP,
  SCAN_SKMEMINFO,
  SCAN_TRACK,
  SCAN_TRACK_FULL,
  THRESHOLD_OFF,
  TRACK_ADDED,
  TRACK_CHANGED,
  TRACK_CLEARED,
  TRACK_GONE,
  loadBinding,
  type NativeError,
  type NativeLookupRequest,
  type NativeScanRequest,
  type NativeScanResult,
  type NativeSampler,
  type NativeRecords,
  type NativeAggregates,
  type NativeListeners,
  RECORD_FIELDS,
  RecordField,
  SKMEM_SLOTS,
} from './native';
import { ALL_STATES_MASK, TCP_STATES, UDP_STATES_MASK, stateMask, stateName, type SocketStateName, type StateListName } from './states';

export type { AcceptThreshold, ByteThreshold, PortSpec, SocketStateName, StateListName };

export interface SamplerOptions {
  /** Sample inside another network namespace: /proc/PID/ns/net or /var/run/netns/NAME (needs CAP_SYS_ADMIN). */
  netns?: string;
  /** A kernel reply not received within this many ms fails the call with ETIMEDOUT (default 5000; 0: wait forever). */
  recvTimeoutMs?: number;
}

export interface AggregateOptions {
  /** TCP states counted per remote endpoint (default: every state but LISTEN). */
  states?: readonly StateListName[];
  /**
   * Return the cookie of every aggregated socket (for windows of distinct connections): cookie i
   * belongs to aggregates[aggCookieIndex[i]], or, for a destination cut by `top` or `minTotal`,
   * has the index aggregates.length ("other").
   */
  cookies?: boolean;
  /** Only sockets whose inode or cookie is listed are aggregated (e.g. one process's sockets). */
  ownerInodes?: Iterable<number>;
  ownerCookies?: Iterable<bigint>;
  /** Return only the N destinations with the most sockets (the rest are only counted). */
  top?: number;
  /** Return only destinations with at least this many sockets. */
  minTotal?: number;
  /**
   * Sockets whose local port is in these are not aggregated (they are still counted, histogrammed
   * and subject to thresholds): e.g. the ports a server listens on, so inbound connections are
   * not counted as outbound. Applied in native code, unlike the top-level excludeLocalPorts
   * (a kernel filter that drops the sockets from the whole scan).
   */
  excludeLocalPorts?: readonly PortSpec[];
  /** Aggregate an IPv4-mapped IPv6 remote (::ffff:a.b.c.d, a dual-stack socket) as the IPv4 endpoint a.b.c.d. */
  mergeMapped?: boolean;
}

export interface QueueHistogramOptions {
  /**
   * Bucket upper bounds in bytes (inclusive, as Prometheus `le`): non-negative integers, strictly
   * increasing, at most 64. Default DEFAULT_QUEUE_HISTOGRAM_BOUNDS.
   */
  bounds?: readonly number[];
}

/** Change tracking (SampleOptions.track). */
export interface TrackOptions {
  /**
   * A followed offender whose receive or send queue moved by more than this many bytes since it was
   * last returned is `changed` (default DEFAULT_TRACK_STEP, 64 KiB; 0: every move). A change of
   * state or of the thresholds it exceeds is always `changed`.
   */
  step?: number;
  /** Return every followed offender in `records` (the full current set), not only the changed ones. */
  full?: boolean;
}

export interface ListenersOptions {
  /** How many LISTEN sockets to return, the fullest (accept queue / backlog) first. */
  top: number;
}

export interface SampleOptions {
  /** Protocols: those set true; when none is true, those not set false (both false: an error). */
  tcp?: boolean;
  udp?: boolean;
  /** Families, by the same rule as the protocols. */
  ipv4?: boolean;
  ipv6?: boolean;
  /** ss-style state names (established, listen, time-wait, unconn, all, connected…). Default: all. */
  states?: readonly StateListName[];
  /** Kernel-side port rules (bytecode). A spec is a port, "from-to", or {from, to}. */
  localPorts?: readonly PortSpec[];
  excludeLocalPorts?: readonly PortSpec[];
  remotePorts?: readonly PortSpec[];
  excludeRemotePorts?: readonly PortSpec[];
  /**
   * Kernel-side address rules (the same bytecode conditions as ss's `src`/`dst`): addresses or CIDR
   * prefixes ("10.0.0.0/8", "127.0.0.1", "fd00::/8"); a socket is kept when its local (remote)
   * address is in any of them. An IPv4 prefix also matches IPv4-mapped addresses (::ffff:a.b.c.d)
   * of dual-stack IPv6 sockets. Local and remote rules (and port rules) must all hold.
   */
  localAddresses?: readonly string[];
  remoteAddresses?: readonly string[];
  /** Offender when the receive queue is strictly greater (bytes; UDP: kernel memory). Default 'off'. */
  recvThreshold?: ByteThreshold;
  /** Offender when the send queue is strictly greater. Default 'off'. */
  sendThreshold?: ByteThreshold;
  /** LISTEN sockets: accept queue strictly greater than this many connections, 'limit' (queue ≥ backlog) or 'off' (default). */
  acceptThreshold?: AcceptThreshold;
  /** Return every socket, not only offenders (small listings). */
  all?: boolean;
  /** Ask the kernel for SKMEMINFO (rcvbuf, sndbuf, drops…). */
  skmem?: boolean;
  /** Cap on returned records (offendersTotal still counts all): 0 to 2**32-1. Default 10,000. */
  maxRecords?: number;
  /** Per-remote-endpoint aggregation of TCP sockets (SNAT counting). */
  aggregate?: boolean | AggregateOptions;
  /** Read UDP from /proc/net/udp{,6} even where udp_diag exists (tests of the fallback). */
  forceProcUdp?: boolean;
  /**
   * Histograms of receive and send queues per protocol (result.queueHistograms), computed in the
   * same native pass: every socket the scan counts except TCP LISTEN (whose queues are the accept
   * queue and its backlog).
   */
  queueHistogram?: boolean | QueueHistogramOptions;
  /** The top N LISTEN sockets by accept-queue fill (result.listeners). */
  listeners?: ListenersOptions;
  /**
   * Change tracking: the Sampler follows offenders between its tracked scans (in native code, by
   * socket cookie with the protocol and 4-tuple as a guard against reuse) and returns only what
   * changed since its previous tracked scan (result.changes); `records` then holds the added and
   * changed offenders (every followed one with `full`, on the first tracked scan, and after a
   * reset). At most maxRecords offenders are followed; the rest are only counted
   * (offendersTotal − tracked). A tracked scan whose socket selection, thresholds, maxRecords, skmem
   * or step differ from the previous tracked scan's starts over (changes.reset). Not with `all`.
   */
  track?: boolean | TrackOptions;
}

/** Default TrackOptions.step, bytes. */
export const DEFAULT_TRACK_STEP = 65536;

/** What changed since the Sampler's previous tracked scan. */
export interface SampleChanges {
  /** Offenders not followed before (new, crossed over a threshold, or first seen after a reset). */
  added: SocketRecord[];
  /** Followed offenders whose thresholds exceeded, state, or a queue (by more than `step`) changed. */
  changed: SocketRecord[];
  /** Followed offenders the dump showed under every threshold: no longer followed. */
  cleared: SocketRecord[];
  /** Followed offenders absent from the dump (closed, or missed by a dump that is not a snapshot): the last record returned for each, no longer followed. */
  gone: SocketRecord[];
  /** The followed set started over: the first tracked scan, or options differ from the previous tracked scan's (nothing is cleared or gone then). */
  reset: boolean;
}

/** Default queue histogram bounds, bytes. */
export const DEFAULT_QUEUE_HISTOGRAM_BOUNDS: readonly number[] = Object.freeze([
  0, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
]);

export interface QueueHistogram {
  /** Bucket upper bounds (inclusive). */
  bounds: number[];
  /** Sockets per bucket, NOT cumulative: length bounds.length + 1, the last is +Inf. */
  counts: number[];
  /** Sum of the values (bytes). */
  sum: number;
  /** Sockets in the histogram (the sum of counts). */
  count: number;
}

export interface QueueHistograms {
  tcp: { recv: QueueHistogram; send: QueueHistogram };
  udp: { recv: QueueHistogram; send: QueueHistogram };
}

export interface ListenerInfo {
  family: 4 | 6;
  localAddress: string;
  localPort: number;
  /** Connections waiting to be accepted. */
  acceptQueue: number;
  /** The accept queue's limit. */
  backlog: number;
}

/** Counts per state name for each protocol and family. */
export interface StateCountsByFamily {
  tcp: { 4: Record<string, number>; 6: Record<string, number> };
  udp: { 4: Record<string, number>; 6: Record<string, number> };
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
  stateName: SocketStateName;
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
  /** Sockets skipped because the kernel gave a state number sockwatch does not know (not in socketsSeen). */
  skippedUnknownState: number;
  /** Count per state name, per protocol. */
  tcpStates: Record<string, number>;
  udpStates: Record<string, number>;
  /** Per remote endpoint, sorted by total (descending). */
  aggregates: Aggregate[];
  /** Distinct remote endpoints seen, including those cut by `top` / `minTotal`. */
  aggregatesTotal: number;
  /** Sockets aggregated, including those of endpoints cut by `top` / `minTotal` ("other" = this − the sum of totals). */
  aggregatedSockets: number;
  /** Count per state name, per protocol and family. */
  stateCountsByFamily: StateCountsByFamily;
  /** Sockets over each threshold (all of them: not capped by maxRecords); 0 for a threshold that is off. */
  overThreshold: { recv: number; send: number; accept: number };
  /** With the queueHistogram option. */
  queueHistograms?: QueueHistograms;
  /** With the listeners option: the top N LISTEN sockets by acceptQueue / backlog (ties: the longer queue first); else empty. */
  listeners: ListenerInfo[];
  aggCookies?: BigUint64Array;
  aggCookieIndex?: Uint32Array;
  /** With the track option: what changed since the previous tracked scan. */
  changes?: SampleChanges;
  /** With the track option: offenders the Sampler follows after this scan (at most maxRecords). */
  tracked?: number;
  /** True when UDP came from /proc because the kernel has no udp_diag. */
  udpFromProc: boolean;
  bytesReceived: number;
  recvCalls: number;
  elapsedNs: number;
}

const DEFAULT_MAX_RECORDS = 10_000;

/** The public options of each call, as validate.optionsObject checks them. */
export const SAMPLER_OPTION_KEYS = ['netns', 'recvTimeoutMs'] as const;
/** The socket-selection keys (what `sockwatch list` selects by; QueueWatcher's `filter`). */
export const FILTER_OPTION_KEYS = [
  'tcp',
  'udp',
  'ipv4',
  'ipv6',
  'states',
  'localPorts',
  'excludeLocalPorts',
  'remotePorts',
  'excludeRemotePorts',
  'localAddresses',
  'remoteAddresses',
] as const;
export const SAMPLE_OPTION_KEYS = [
  ...FILTER_OPTION_KEYS,
  'recvThreshold',
  'sendThreshold',
  'acceptThreshold',
  'all',
  'skmem',
  'maxRecords',
  'aggregate',
  'forceProcUdp',
  'queueHistogram',
  'listeners',
  'track',
] as const;
const AGGREGATE_OPTION_KEYS = [
  'states',
  'cookies',
  'ownerInodes',
  'ownerCookies',
  'top',
  'minTotal',
  'excludeLocalPorts',
  'mergeMapped',
] as const;
const HISTOGRAM_OPTION_KEYS = ['bounds'] as const;
const LISTENERS_OPTION_KEYS = ['top'] as const;
const TRACK_OPTION_KEYS = ['step', 'full'] as const;
const LOOKUP_OPTION_KEYS = ['protocol', 'local', 'remote', 'cookie', 'skmem'] as const;

/** The one place where a threshold becomes the addon's encoding (THRESHOLD_OFF, ACCEPT_AT_LIMIT). */
function nativeThreshold(t: AcceptThreshold): number {
  if (t === 'off') return THRESHOLD_OFF;
  if (t === 'limit') return ACCEPT_AT_LIMIT;
  return t;
}

/** Parses a port spec (80, "80", "1024-2048", {from,to}). Throws naming `option`. */
export function parsePortSpec(spec: PortSpec, option: string): PortRange {
  return v.portSpec(spec, option);
}

/**
 * Bits of the members set true; when none is true, of those not set false; all set false is an
 * error ("neither protocol").
 */
function pickBits(o: Record<string, unknown>, path: string, members: Record<string, number>, what: string): number {
  let on = 0;
  let notOff = 0;
  for (const [key, bit] of Object.entries(members)) {
    const b = o[key] === undefined ? undefined : v.boolean(o[key], `${path}.${key}`);
    if (b === true) on |= bit;
    if (b !== false) notOff |= bit;
  }
  if (on !== 0) return on;
  if (notOff === 0) {
    const names = Object.keys(members).map((k) => `${path}.${k}`);
    throw new RangeError(`${names.join(' and ')} are both false: neither ${what} would be scanned`);
  }
  return notOff;
}

function stateList(list: unknown, path: string): number {
  const mask = stateMask(v.stringList(list, path), path);
  if (mask === 0) throw new RangeError(`${path} must name at least one state (got an empty list)`);
  return mask;
}

/** Histogram bounds: finite non-negative integers, strictly increasing, 1 to MAX_HIST_BOUNDS of them. */
function histogramBounds(list: unknown, path: string): Float64Array {
  if (list === undefined) return Float64Array.from(DEFAULT_QUEUE_HISTOGRAM_BOUNDS);
  if (!Array.isArray(list)) throw new TypeError(`${path} must be an array of byte counts (got ${v.describe(list)})`);
  if (list.length === 0 || list.length > MAX_HIST_BOUNDS)
    throw new RangeError(`${path} must have 1 to ${MAX_HIST_BOUNDS} bounds (got ${list.length})`);
  const out = new Float64Array(list.length);
  list.forEach((b: unknown, i) => {
    out[i] = v.integer(b, `${path}[${i}]`);
    if (i > 0 && out[i] <= out[i - 1]) throw new RangeError(`${path} must be strictly increasing (${out[i - 1]} then ${out[i]} at [${i}])`);
  });
  return out;
}

/** An option that is true, false or an options object (false and undefined: undefined). */
function flagOrObject<T extends object>(x: unknown, path: string, keys: readonly string[]): Partial<T> | undefined {
  if (x === undefined || x === false) return undefined;
  if (x !== true && (x === null || typeof x !== 'object'))
    throw new TypeError(`${path} must be true, false or an object (got ${v.describe(x)})`);
  return v.optionsObject<T>(x === true ? {} : x, path, keys);
}

/** Validates and compiles sample options into the request the addon takes. */
export function compileSampleOptions(options: SampleOptions = {}, path = 'options'): NativeScanRequest {
  const o = v.optionsObject<SampleOptions>(options, path, SAMPLE_OPTION_KEYS);
  const protocols = pickBits(o, path, { tcp: PROTO_TCP, udp: PROTO_UDP }, 'protocol');
  const families = pickBits(o, path, { ipv4: FAMILY_V4, ipv6: FAMILY_V6 }, 'family');
  const mask = o.states === undefined ? ALL_STATES_MASK : stateList(o.states, `${path}.states`);
  let flags = 0;
  if (v.boolean(o.all, `${path}.all`)) flags |= SCAN_ALL;
  if (v.boolean(o.skmem, `${path}.skmem`)) flags |= SCAN_SKMEMINFO;
  if (v.boolean(o.forceProcUdp, `${path}.forceProcUdp`)) flags |= SCAN_FORCE_PROC_UDP;

  const req: NativeScanRequest = {
    protocols,
    families,
    tcpStates: mask,
    udpStates: mask & UDP_STATES_MASK,
    bytecode: compileFilter(
      portRulesFilter({
        localPorts: v.portList(o.localPorts, `${path}.localPorts`),
        excludeLocalPorts: v.portList(o.excludeLocalPorts, `${path}.excludeLocalPorts`),
        remotePorts: v.portList(o.remotePorts, `${path}.remotePorts`),
        excludeRemotePorts: v.portList(o.excludeRemotePorts, `${path}.excludeRemotePorts`),
        localAddresses: prefixList(o.localAddresses, `${path}.localAddresses`),
        remoteAddresses: prefixList(o.remoteAddresses, `${path}.remoteAddresses`),
      }),
    ),
    recvThreshold: nativeThreshold(v.byteThreshold(o.recvThreshold, `${path}.recvThreshold`, 'off')),
    sendThreshold: nativeThreshold(v.byteThreshold(o.sendThreshold, `${path}.sendThreshold`, 'off')),
    acceptThreshold: nativeThreshold(v.acceptThreshold(o.acceptThreshold, `${path}.acceptThreshold`, 'off')),
    maxRecords: v.optInteger(o.maxRecords, `${path}.maxRecords`, DEFAULT_MAX_RECORDS, { max: v.UINT32_MAX }),
    flags,
    aggStates: 0,
    aggTop: 0,
    aggMinTotal: 0,
  };
  const h = flagOrObject<QueueHistogramOptions>(o.queueHistogram, `${path}.queueHistogram`, HISTOGRAM_OPTION_KEYS);
  if (h) {
    req.flags |= SCAN_HISTOGRAM;
    req.histBounds = histogramBounds(h.bounds, `${path}.queueHistogram.bounds`);
  }
  if (o.listeners !== undefined) {
    const lp = `${path}.listeners`;
    if (o.listeners === null || typeof o.listeners !== 'object')
      throw new TypeError(`${lp} must be an object like {top: 10} (got ${v.describe(o.listeners)})`);
    const l = v.optionsObject<ListenersOptions>(o.listeners, lp, LISTENERS_OPTION_KEYS);
    req.listenersTop = v.integer(l.top, `${lp}.top`, { min: 1, max: v.UINT32_MAX });
  }
  const t = flagOrObject<TrackOptions>(o.track, `${path}.track`, TRACK_OPTION_KEYS);
  if (t) {
    if (req.flags & SCAN_ALL) throw new RangeError(`${path}.track follows offenders: it cannot be combined with ${path}.all`);
    req.flags |= SCAN_TRACK | (v.boolean(t.full, `${path}.track.full`) ? SCAN_TRACK_FULL : 0);
    req.trackStep = v.optInteger(t.step, `${path}.track.step`, DEFAULT_TRACK_STEP);
  }
  const ap = `${path}.aggregate`;
  const a = flagOrObject<AggregateOptions>(o.aggregate, ap, AGGREGATE_OPTION_KEYS);
  if (a) {
    req.flags |= SCAN_AGGREGATE | (v.boolean(a.cookies, `${ap}.cookies`) ? SCAN_AGG_COOKIES : 0);
    if (v.boolean(a.mergeMapped, `${ap}.mergeMapped`)) req.flags |= SCAN_AGG_MERGE_MAPPED;
    const excluded = v.portList(a.excludeLocalPorts, `${ap}.excludeLocalPorts`);
    if (excluded && excluded.length > 0) req.aggExcludePorts = Uint32Array.from(excluded.flatMap((r) => [r.from, r.to]));
    req.aggStates = a.states !== undefined ? stateList(a.states, `${ap}.states`) : ALL_STATES_MASK & ~(1 << TCP_STATES.listen);
    if (a.ownerInodes !== undefined)
      req.ownerInodes = Uint32Array.from(v.integerList(a.ownerInodes, `${ap}.ownerInodes`, { max: v.UINT32_MAX })).sort();
    if (a.ownerCookies !== undefined) req.ownerCookies = BigUint64Array.from(v.bigintList(a.ownerCookies, `${ap}.ownerCookies`)).sort();
    if (a.top !== undefined) req.aggTop = v.integer(a.top, `${ap}.top`, { min: 1, max: v.UINT32_MAX });
    if (a.minTotal !== undefined) req.aggMinTotal = v.integer(a.minTotal, `${ap}.minTotal`, { max: v.UINT32_MAX });
    if (req.ownerInodes && !req.ownerCookies) req.ownerCookies = new BigUint64Array(0);
    if (req.ownerCookies && !req.ownerInodes) req.ownerInodes = new Uint32Array(0);
  }
  return req;
}

const compiledRequests = new WeakMap<CompiledSampleOptions, Readonly<NativeScanRequest>>();

/**
 * Sample options validated and compiled once, for a caller that scans with the same options in a
 * loop (the queue watcher): immutable, so reusing it can never change a result. Plain options
 * objects are validated and compiled on every call instead.
 */
export class CompiledSampleOptions {
  /** Type-only brand: without a member this class would be `{}`, and any object (a misspelled key too) would pass for it. */
  declare private readonly compiledBrand: never;
  constructor(options: SampleOptions, path = 'options') {
    const req = compileSampleOptions(options, path);
    compiledRequests.set(this, req);
    Object.freeze(this);
  }
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
    const name = stateName(state, protocol);
    if (n > 0) out[name] = (out[name] ?? 0) + n; // request sockets (12) add to syn-recv (3)
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
      const name = stateName(st);
      if (c > 0) states[name] = (states[name] ?? 0) + c;
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

function unpackHistograms(n: NativeScanResult, bounds: Float64Array): QueueHistograms | undefined {
  if (!n.histCounts || !n.histSums) return undefined;
  const width = bounds.length + 1;
  const one = (series: number): QueueHistogram => {
    const counts = Array.from(n.histCounts!.subarray(series * width, (series + 1) * width));
    return { bounds: Array.from(bounds), counts, sum: n.histSums![series], count: counts.reduce((x, y) => x + y, 0) };
  };
  // The native order (HIST_SERIES): tcp.recv, tcp.send, udp.recv, udp.send.
  return { tcp: { recv: one(0), send: one(1) }, udp: { recv: one(2), send: one(3) } };
}

function unpackListeners(l: NativeListeners | undefined): ListenerInfo[] {
  if (!l || l.count === 0) return [];
  const addresses = l.addresses.split(',');
  const out: ListenerInfo[] = new Array(l.count);
  for (let i = 0; i < l.count; i++) {
    out[i] = {
      family: l.families[i] === AF_INET6 ? 6 : 4,
      localAddress: addresses[i],
      localPort: l.ports[i],
      acceptQueue: l.queues[2 * i],
      backlog: l.queues[2 * i + 1],
    };
  }
  return out;
}

/** Splits a tracked scan's records by kind: result.records keeps the current offenders. */
function splitTracked(all: SocketRecord[], t: NonNullable<NativeScanResult['track']>, r: SampleResult): void {
  const changes: SampleChanges = { added: [], changed: [], cleared: [], gone: [], reset: t.reset };
  const records: SocketRecord[] = [];
  for (let i = 0; i < all.length; i++) {
    const kind = t.kinds[i];
    if (kind === TRACK_CLEARED) changes.cleared.push(all[i]);
    else if (kind === TRACK_GONE) changes.gone.push(all[i]);
    else {
      records.push(all[i]);
      if (kind === TRACK_ADDED) changes.added.push(all[i]);
      else if (kind === TRACK_CHANGED) changes.changed.push(all[i]);
    }
  }
  r.records = records;
  r.changes = changes;
  r.tracked = t.tracked;
}

function toResult(n: NativeScanResult, timestamp: number, req: NativeScanRequest): SampleResult {
  const f = n.familyStateCounts;
  const r: SampleResult = {
    timestamp,
    records: unpackRecords(n.records),
    offendersTotal: n.offendersTotal,
    socketsSeen: n.socketsSeen,
    skippedUnknownState: n.skippedUnknownState,
    tcpStates: stateCounts(n.stateCounts, 0, 'tcp'),
    udpStates: stateCounts(n.stateCounts, 16, 'udp'),
    aggregates: n.aggregates ? unpackAggregates(n.aggregates) : [],
    aggregatesTotal: n.aggregates?.total ?? 0,
    aggregatedSockets: n.aggregates?.sockets ?? 0,
    stateCountsByFamily: {
      tcp: { 4: stateCounts(f, 0, 'tcp'), 6: stateCounts(f, 16, 'tcp') },
      udp: { 4: stateCounts(f, 32, 'udp'), 6: stateCounts(f, 48, 'udp') },
    },
    overThreshold: { recv: n.overRecv, send: n.overSend, accept: n.overAccept },
    queueHistograms: req.histBounds ? unpackHistograms(n, req.histBounds) : undefined,
    listeners: unpackListeners(n.listeners),
    aggCookies: n.aggregates?.cookies,
    aggCookieIndex: n.aggregates?.cookieIndex,
    udpFromProc: n.udpFromProc,
    bytesReceived: n.bytesReceived,
    recvCalls: n.recvCalls,
    elapsedNs: n.elapsedNs,
  };
  if (n.track) splitTracked(r.records, n.track, r);
  return r;
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
  if (err.errno === undefined || err.syscall === undefined) return err; // not a system error
  return systemError(err.errno, err.syscall, `netns ${netns}: ${why}`, { cause: err });
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

/** A lookup request compiled from LookupOptions, with what the exact-match check needs. */
interface CompiledLookup {
  req: NativeLookupRequest;
  localPort: number;
  remotePort: number;
}

function compileLookup(options: LookupOptions): CompiledLookup {
  if (options === undefined) throw new TypeError('options must be an object (got undefined)');
  v.optionsObject<LookupOptions>(options, 'options', LOOKUP_OPTION_KEYS);
  v.oneOf(options.protocol, 'options.protocol', ['tcp', 'udp']);
  const local = parseEndpoint(options.local, 'options.local');
  const remote = parseEndpoint(options.remote, 'options.remote');
  const lb = addressBytes(local.address);
  const rb = addressBytes(remote.address);
  if (lb.length !== rb.length) throw new RangeError('options.local and options.remote must be of the same address family');
  if (options.cookie !== undefined) v.bigint64(options.cookie, 'options.cookie');
  const skmem = v.boolean(options.skmem, 'options.skmem');
  const req: NativeLookupRequest = {
    family: lb.length === 16 ? AF_INET6 : AF_INET,
    protocol: options.protocol === 'udp' ? IPPROTO_UDP : IPPROTO_TCP,
    localAddress: lb,
    localPort: local.port,
    remoteAddress: rb,
    remotePort: remote.port,
    cookie: options.cookie,
    flags: skmem ? SCAN_SKMEMINFO : 0,
  };
  return { req, localPort: local.port, remotePort: remote.port };
}

function lookupResult(r: NativeRecords | null, c: CompiledLookup): SocketRecord | null {
  if (!r) return null;
  // Without a cookie the kernel's lookup falls back to a listener on the local port: keep only
  // an exact match of the 4-tuple.
  const rec = unpackRecords(r)[0];
  const exact =
    rec.localPort === c.localPort &&
    rec.remotePort === c.remotePort &&
    addressBytes(rec.localAddress).equals(c.req.localAddress) &&
    addressBytes(rec.remoteAddress).equals(c.req.remoteAddress);
  return exact ? rec : null;
}

function closedError(): SockwatchError {
  return new SockwatchError('ERR_SOCKWATCH_SAMPLER_CLOSED', 'Sampler is closed');
}

function busyError(call: string): SockwatchError {
  return new SockwatchError(
    'ERR_SOCKWATCH_SAMPLER_BUSY',
    `${call}: an asynchronous call of this Sampler is queued or running (await it, or use the async form, which queues)`,
  );
}

/** Gives an error raised in a queued call the stack of the code that made the call. */
function withCallerStack(e: unknown, callerStack: string): unknown {
  if (e instanceof Error) e.stack = `${e.name}: ${e.message}\n${callerStack.split('\n').slice(1).join('\n')}`;
  return e;
}

/**
 * One long-lived NETLINK_SOCK_DIAG socket. Lifecycle rule: sample() and lookup() queue one behind
 * another in call order (one native call at a time per sampler); sampleSync() and lookupSync() run
 * at once and throw ERR_SOCKWATCH_SAMPLER_BUSY while an async call is queued or running. close()
 * lets the calls made before it finish, then frees the socket and its receive buffer; every call
 * made after close() started fails with ERR_SOCKWATCH_SAMPLER_CLOSED (the caller's stack). A sampler
 * never closed is freed when it is garbage collected (its native memory is reported to V8).
 */
export class Sampler {
  readonly netns: string | undefined;
  private native: NativeSampler | undefined;
  private inFlight: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private closing: Promise<void> | undefined;

  constructor(options: SamplerOptions = {}) {
    options = v.optionsObject<SamplerOptions>(options, 'options', SAMPLER_OPTION_KEYS);
    if (options.netns !== undefined) {
      v.nonEmptyString(options.netns, 'options.netns');
      // open(), not access(): access() checks with the real uid and no capabilities, so a
      // non-root process holding CAP_SYS_PTRACE (the systemd unit's exporter) was refused a
      // /proc/PID/ns/net the kernel would let it open.
      try {
        fs.closeSync(fs.openSync(options.netns, fs.constants.O_RDONLY));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why = e.code === 'ENOENT' ? 'no such namespace file (expected /proc/PID/ns/net or /var/run/netns/NAME)' : 'not readable';
        throw systemError(e.errno ?? osConstants.errno.ENOENT, 'open', `netns ${options.netns}: ${why}`, { cause: err });
      }
    }
    this.netns = options.netns;
    const recvTimeoutMs = v.optInteger(options.recvTimeoutMs, 'options.recvTimeoutMs', 5000, { min: 0, max: 2 ** 32 - 1 });
    const binding = loadBinding();
    try {
      this.native = new binding.Sampler(options.netns, recvTimeoutMs);
    } catch (e) {
      throw options.netns ? explainNetnsError(e as NativeError, options.netns) : e;
    }
  }

  /** True from the moment close() is called. */
  get closed(): boolean {
    return this.closing !== undefined || this.native === undefined;
  }

  private request(options: SampleOptions | CompiledSampleOptions): NativeScanRequest {
    return compiledRequests.get(options as CompiledSampleOptions) ?? compileSampleOptions(options as SampleOptions);
  }

  /** The native sampler for a call made now; after close() started, the closed error. */
  private handle(): NativeSampler {
    if (this.closing !== undefined || !this.native) throw closedError();
    return this.native;
  }

  /** Runs `call` after every async call made before it (close() waits for the queue). */
  private enqueue<T>(call: (native: NativeSampler) => T | Promise<T>): Promise<T> {
    const callerStack = new Error().stack ?? '';
    this.pending++;
    const run = this.inFlight.then(async () => {
      try {
        if (!this.native) throw closedError();
        return await call(this.native);
      } catch (e) {
        throw withCallerStack(e, callerStack);
      } finally {
        this.pending--;
      }
    });
    this.inFlight = run.catch(() => undefined);
    return run;
  }

  /** One scan on the calling thread. Throws ERR_SOCKWATCH_SAMPLER_BUSY while an async call is queued or running. */
  sampleSync(options: SampleOptions | CompiledSampleOptions = {}): SampleResult {
    const req = this.request(options);
    const native = this.handle();
    if (this.pending > 0) throw busyError('sampleSync');
    const ts = unixNow();
    return toResult(native.scanSync(req), ts, req);
  }

  /** One scan on the libuv pool; the event loop stays free. Calls queue one behind another. */
  sample(options: SampleOptions | CompiledSampleOptions = {}): Promise<SampleResult> {
    let req: NativeScanRequest;
    try {
      req = this.request(options);
      this.handle();
    } catch (e) {
      return Promise.reject(e);
    }
    // Native rejections carry no JS stack: enqueue gives them the caller's.
    return this.enqueue(async (native) => {
      const ts = unixNow();
      return toResult(await native.scan(req), ts, req);
    });
  }

  /**
   * Exact lookup of one socket by 4-tuple (and cookie): no dump. null when it does not exist.
   * Queued behind the async calls made before it, like sample().
   */
  lookup(options: LookupOptions): Promise<SocketRecord | null> {
    let c: CompiledLookup;
    try {
      c = compileLookup(options);
      this.handle();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.enqueue((native) => lookupResult(native.lookup(c.req), c));
  }

  /** lookup() on the calling thread; throws ERR_SOCKWATCH_SAMPLER_BUSY while an async call is queued or running. */
  lookupSync(options: LookupOptions): SocketRecord | null {
    const c = compileLookup(options);
    const native = this.handle();
    if (this.pending > 0) throw busyError('lookupSync');
    return lookupResult(native.lookup(c.req), c);
  }

  /**
   * Lets the async calls made before it finish, then closes the netlink socket and frees its
   * receive buffer and the offenders followed by change tracking (SampleOptions.track). Calls made after it fail with ERR_SOCKWATCH_SAMPLER_CLOSED. Idempotent: every
   * call returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.inFlight.then(() => {
      this.native?.close();
      this.native = undefined;
    });
    return this.closing;
  }

  /** Async calls (scans, lookups) queued or running. */
  get busy(): boolean {
    return this.pending > 0;
  }
}

/** listSockets' sampler for the caller's namespace, opened on first use and kept (one fd, 64 KiB). */
let sharedSampler: Sampler | undefined;

/**
 * Convenience for small listings: every matching socket as a plain record. Without sampler options
 * every call uses one shared Sampler (calls queue on it); with options (netns, …) a Sampler is
 * opened for the call and closed after it, so no namespace is held open.
 */
export async function listSockets(filter: Omit<SampleOptions, 'all'> = {}, options: SamplerOptions = {}): Promise<SocketRecord[]> {
  const f = v.optionsObject<SampleOptions>(
    filter,
    'filter',
    SAMPLE_OPTION_KEYS.filter((k) => k !== 'all'),
  );
  const request: SampleOptions = { maxRecords: v.UINT32_MAX, ...f, all: true };
  compileSampleOptions(request, 'filter'); // bad input fails before a sampler is opened
  const own = Object.values(v.optionsObject<SamplerOptions>(options, 'options', SAMPLER_OPTION_KEYS)).some((x) => x !== undefined);
  if (!own) {
    sharedSampler ??= new Sampler();
    return (await sharedSampler.sample(request)).records;
  }
  const s = new Sampler(options);
  try {
    const r = await s.sample(request);
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
