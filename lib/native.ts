// The one place that loads the addon. Everything that crosses the boundary is a plain value:
// numbers, bitmasks, strings, Buffers and typed arrays. Validation happens in lib/sampler.ts.
import * as path from 'node:path';
import nodeGypBuild from 'node-gyp-build';

/** Bits of NativeScanRequest.protocols. */
export const PROTO_TCP = 1;
export const PROTO_UDP = 2;
/** Bits of NativeScanRequest.families. */
export const FAMILY_V4 = 1;
export const FAMILY_V6 = 2;
/** Bits of NativeScanRequest.flags. */
export const SCAN_ALL = 1; // every socket is returned as a record (small listings only)
export const SCAN_SKMEMINFO = 2; // ask the kernel for INET_DIAG_SKMEMINFO
export const SCAN_AGGREGATE = 4; // per-remote-endpoint aggregation of TCP sockets in aggStates
export const SCAN_AGG_COOKIES = 8; // with SCAN_AGGREGATE: return the cookie of every aggregated socket
export const SCAN_FORCE_PROC_UDP = 16; // read UDP from /proc/net/udp{,6} even when udp_diag exists (tests)
/** Bits of NativeSocketRecord.reasons. */
export const REASON_RECV = 1;
export const REASON_SEND = 2;
export const REASON_ACCEPT = 4;

/** acceptThreshold value meaning: offender when the accept queue has reached the backlog limit. */
export const ACCEPT_AT_LIMIT = -2;
/** Any threshold set to this is disabled. */
export const THRESHOLD_OFF = -1;

export interface NativeScanRequest {
  protocols: number; // PROTO_* bits
  families: number; // FAMILY_* bits
  tcpStates: number; // kernel state mask, bit (1 << state)
  udpStates: number;
  /** inet_diag bytecode (INET_DIAG_REQ_BYTECODE payload), or undefined for none. */
  bytecode?: Buffer;
  /** Offender when recv queue > recvThreshold (not LISTEN). THRESHOLD_OFF to disable. */
  recvThreshold: number;
  sendThreshold: number;
  /** LISTEN sockets: accept queue > acceptThreshold, ACCEPT_AT_LIMIT or THRESHOLD_OFF. */
  acceptThreshold: number;
  /** At most this many records are returned; the rest are only counted (offendersTotal). */
  maxRecords: number;
  flags: number; // SCAN_* bits
  /** TCP states counted in the per-remote aggregation (bit per state). */
  aggStates: number;
  /** Keep only the N largest aggregates (0: all). */
  aggTop: number;
  /** Keep only aggregates with at least this many sockets. */
  aggMinTotal: number;
  /** Sorted ascending. When given, only sockets whose inode or cookie is listed are aggregated. */
  ownerInodes?: Uint32Array;
  ownerCookies?: BigUint64Array;
}

export interface NativeSocketRecord {
  family: number; // 2 or 10
  protocol: number; // 6 or 17
  state: number;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  recvQ: number;
  sendQ: number;
  uid: number;
  inode: number;
  cookie: bigint;
  ifindex: number;
  timer: number;
  retrans: number;
  expires: number;
  reasons: number; // REASON_* bits
  /** SK_MEMINFO_* values (as many as the kernel sent), when SCAN_SKMEMINFO was asked. */
  skmem?: number[];
}

/** Aggregates, packed: aggregate i is families[i], addresses.split(',')[i], ports[i], and
 *  counts[i*17] (total) followed by counts[i*17+1+state] per TCP state. Sorted by total, descending. */
export interface NativeAggregates {
  count: number;
  /** Distinct remote endpoints before the aggTop / aggMinTotal cuts. */
  total: number;
  families: Uint8Array;
  ports: Uint16Array;
  counts: Uint32Array;
  addresses: string;
}

export interface NativeScanResult {
  records: NativeSocketRecord[];
  /** Offenders found, including any beyond maxRecords. */
  offendersTotal: number;
  /** Sockets the kernel returned (after its own filters). */
  socketsSeen: number;
  /** Per-state socket counts, index = state number. */
  tcpStates: number[];
  udpStates: number[];
  aggregates: NativeAggregates;
  /** With SCAN_AGG_COOKIES: cookie i belongs to aggregates[aggCookieIndex[i]]. */
  aggCookies?: BigUint64Array;
  aggCookieIndex?: Uint32Array;
  /** True when UDP came from /proc/net/udp{,6} because the kernel has no udp_diag. */
  udpFromProc: boolean;
  bytesReceived: number;
  recvCalls: number;
  /** Wall time of the kernel pass in nanoseconds (measured in native code). */
  elapsedNs: number;
}

export interface NativeLookupRequest {
  family: number; // 2 or 10
  protocol: number; // 6 or 17
  localAddress: Buffer; // 4 or 16 bytes, network order
  localPort: number;
  remoteAddress: Buffer;
  remotePort: number;
  /** 64-bit cookie, or undefined to skip the cookie check. */
  cookie?: bigint;
  flags: number; // SCAN_SKMEMINFO honoured
}

export interface NativeSampler {
  scanSync(req: NativeScanRequest): NativeScanResult;
  scan(req: NativeScanRequest): Promise<NativeScanResult>;
  lookup(req: NativeLookupRequest): NativeSocketRecord | null;
  close(): void;
}

export interface NativeBinding {
  Sampler: new (netnsPath?: string) => NativeSampler;
  /** Compile-time facts, for tests and the bench. */
  version: string;
}

export const packageRoot = path.join(__dirname, '..');

let cached: NativeBinding | undefined;

/** Loads the addon (prebuild first, then build/Release). Throws with the loader's reason. */
export function loadBinding(): NativeBinding {
  if (!cached) cached = nodeGypBuild(packageRoot) as NativeBinding;
  return cached;
}

/** Error from native code: carries errno name, number and syscall like Node's SystemError. */
export interface NativeError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
}
