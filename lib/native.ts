// The one place that loads the addon. Everything that crosses the boundary is a plain value:
// numbers, bitmasks, strings, Buffers and typed arrays. Validation happens in lib/sampler.ts.
// Native failures cross as an errno number and a syscall; they are named and shaped here, once,
// with Node's own errno names (lib/base/errors.ts systemError).
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { systemError } from './base/errors';
import { removeFilesOfDeadProcesses } from './base/proc';

/** Kernel constants that cross the boundary as numbers (linux/socket.h, netinet/in.h). */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

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
export const SCAN_TEST_ABORT_AFTER_FIRST = 32; // tests: the scan gives up (ECANCELED) mid-dump, after one socket
export const SCAN_TEST_NO_SEND = 64; // tests: the request is not sent, so its reply never comes (recv timeout)
export const SCAN_HISTOGRAM = 128; // queue histograms per protocol over histBounds (histCounts, histSums)
export const SCAN_AGG_MERGE_MAPPED = 256; // with SCAN_AGGREGATE: an IPv4-mapped IPv6 remote is aggregated as IPv4
export const SCAN_TRACK = 512; // change tracking: the sampler follows offenders between scans, returns what changed
export const SCAN_TRACK_FULL = 1024; // with SCAN_TRACK: return every followed offender too
/** Kinds of NativeScanResult.track.kinds (native TrackKind). */
export const TRACK_UNCHANGED = 0;
export const TRACK_ADDED = 1;
export const TRACK_CHANGED = 2;
export const TRACK_CLEARED = 3;
export const TRACK_GONE = 4;
/** At most this many histogram bounds. */
export const MAX_HIST_BOUNDS = 64;
/** Histogram series in histCounts / histSums, in this order. */
export const HIST_SERIES = ['tcp.recv', 'tcp.send', 'udp.recv', 'udp.send'] as const;
/** Bits of RecordField.Reasons. */
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
  /** [from, to] local port pairs: sockets on them are not aggregated (still counted). */
  aggExcludePorts?: Uint32Array;
  /** With SCAN_HISTOGRAM: bucket upper bounds (inclusive), strictly increasing whole numbers, at most 64. */
  histBounds?: Float64Array;
  /** Return the N LISTEN sockets fullest by accept queue / backlog (0 or undefined: none). */
  listenersTop?: number;
  /** With SCAN_TRACK: a followed offender whose queue moved by more than this many bytes is changed. */
  trackStep?: number;
}

/** Fields per record in NativeRecords.fields, in this order. */
export const RECORD_FIELDS = 16;
export const RecordField = {
  Family: 0,
  Protocol: 1,
  State: 2,
  LocalPort: 3,
  RemotePort: 4,
  RecvQ: 5,
  SendQ: 6,
  Uid: 7,
  Inode: 8,
  CookieLow: 9,
  CookieHigh: 10,
  Ifindex: 11,
  /** timer | retrans << 8 */
  TimerRetrans: 12,
  Expires: 13,
  Reasons: 14,
  SkmemCount: 15,
} as const;
/** SK_MEMINFO_* slots per record in NativeRecords.skmem. */
export const SKMEM_SLOTS = 16;

/** Socket records, packed: record i is fields[i*16 .. i*16+15] (see RecordField), its local and
 *  remote addresses are addresses.split(',')[2i] and [2i+1], its SKMEMINFO skmem[i*16 ..] (the
 *  kernel's count in RecordField.SkmemCount). */
export interface NativeRecords {
  count: number;
  fields: Uint32Array;
  addresses: string;
  skmem?: Uint32Array;
}

/** Counts per aggregate in NativeAggregates.counts: the total, then one per TCP state (16). */
export const AGG_COUNT_FIELDS = 17;

/** Aggregates, packed: aggregate i is families[i], addresses.split(',')[i], ports[i], and
 *  counts[i*17] (total) followed by counts[i*17+1+state] per TCP state (AGG_COUNT_FIELDS per
 *  aggregate). Sorted by total, descending. */
export interface NativeAggregates {
  count: number;
  /** Distinct remote endpoints before the aggTop / aggMinTotal cuts. */
  total: number;
  /** Sockets aggregated, before the cuts. */
  sockets: number;
  families: Uint8Array;
  ports: Uint16Array;
  counts: Uint32Array;
  addresses: string;
  /** With SCAN_AGG_COOKIES: cookie i belongs to aggregate cookieIndex[i]. */
  cookies?: BigUint64Array;
  cookieIndex?: Uint32Array;
}

export interface NativeListeners {
  count: number;
  families: Uint8Array;
  ports: Uint16Array;
  queues: Uint32Array;
  addresses: string;
}

export interface NativeScanResult {
  records: NativeRecords;
  /** Offenders found, including any beyond maxRecords. */
  offendersTotal: number;
  /** Sockets the kernel returned (after its own filters). */
  socketsSeen: number;
  /** Sockets skipped because their state number is one the addon does not know (not in socketsSeen). */
  skippedUnknownState: number;
  /** Socket counts per state: TCP at [state], UDP at [16 + state]. */
  stateCounts: Uint32Array;
  /** Per protocol and family: [((TCP 0 / UDP 1) * 2 + (IPv4 0 / IPv6 1)) * 16 + state]. */
  familyStateCounts: Uint32Array;
  /** Sockets over recvThreshold / sendThreshold / acceptThreshold (not capped by maxRecords). */
  overRecv: number;
  overSend: number;
  overAccept: number;
  /** With SCAN_HISTOGRAM: HIST_SERIES.length series of histBounds.length + 1 buckets (not cumulative). */
  histCounts?: Uint32Array;
  /** With SCAN_HISTOGRAM: the sum of the values per series. */
  histSums?: Float64Array;
  /** With listenersTop: the fullest listeners, fullest first; listener i is families[i],
   *  addresses.split(',')[i], ports[i], queues[2i] (accept queue), queues[2i+1] (backlog). */
  listeners?: NativeListeners;
  /** With SCAN_AGGREGATE. */
  aggregates?: NativeAggregates;
  /** With SCAN_TRACK: record i is of kind kinds[i] (TRACK_*); tracked: offenders followed after the
   *  scan; reset: the followed set started over (first tracked scan, or other options). */
  track?: { kinds: Uint8Array; tracked: number; reset: boolean };
  /** True when UDP came from /proc/net/udp{,6} because the kernel has no udp_diag. */
  udpFromProc: boolean;
  bytesReceived: number;
  recvCalls: number;
  /** Wall time of the kernel pass in nanoseconds (measured in native code). */
  elapsedNs: number;
}

export interface NativeLookupRequest {
  family: number; // AF_INET or AF_INET6
  protocol: number; // IPPROTO_TCP or IPPROTO_UDP
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
  lookup(req: NativeLookupRequest): NativeRecords | null;
  close(): void;
}

export interface NativeBinding {
  /** recvTimeoutMs: a kernel reply not received within it fails with ETIMEDOUT (default 5000, 0: none). */
  Sampler: new (netnsPath?: string, recvTimeoutMs?: number) => NativeSampler;
  /** The addon's interface version ("1"), for tests and the bench. */
  version: string;
  /** Test hook: runs recorded reply datagrams through the live parser and scan logic. */
  parseRecorded(datagrams: Buffer[], seq: number, req: NativeScanRequest): NativeScanResult & { done: boolean };
  /** Tests: the bytes of native memory this isolate's V8 has been told about (every open sampler
   *  reports its socket and receive buffer); process.memoryUsage().external does not show it on Node 20. */
  externalMemory(): number;
}

export const packageRoot = path.join(__dirname, '..');

/** Error from native code, shaped like Node's SystemError by systemError (lib/base/errors.ts). */
export interface NativeError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
}

/** The addon's own failures carry a negative errno number, a syscall and strerror as message; no name. */
function fromNative(e: unknown, stack?: string): unknown {
  const raw = e as { errno?: unknown; syscall?: unknown; message?: unknown } | null;
  if (typeof raw?.errno !== 'number' || typeof raw.syscall !== 'string') return e; // argument TypeErrors
  const description = typeof raw.message === 'string' ? raw.message : undefined; // strerror
  const err = systemError(raw.errno, raw.syscall, undefined, { description });
  // Async rejections carry no JS stack: give them the one captured before the call.
  if (stack !== undefined) err.stack = `${err.name}: ${err.message}\n${stack.split('\n').slice(1).join('\n')}`;
  return err;
}

function wrapBinding(raw: NativeBinding): NativeBinding {
  const RawSampler = raw.Sampler;
  class Sampler implements NativeSampler {
    private readonly raw: NativeSampler;
    constructor(netnsPath?: string, recvTimeoutMs?: number) {
      try {
        this.raw = new RawSampler(netnsPath, recvTimeoutMs);
      } catch (e) {
        throw fromNative(e);
      }
    }
    scanSync(req: NativeScanRequest): NativeScanResult {
      try {
        return this.raw.scanSync(req);
      } catch (e) {
        throw fromNative(e);
      }
    }
    scan(req: NativeScanRequest): Promise<NativeScanResult> {
      const caller: { stack?: string } = {};
      Error.captureStackTrace(caller, Sampler.prototype.scan);
      try {
        return this.raw.scan(req).catch((e: unknown) => {
          throw fromNative(e, caller.stack ?? '');
        });
      } catch (e) {
        return Promise.reject(fromNative(e));
      }
    }
    lookup(req: NativeLookupRequest): NativeRecords | null {
      try {
        return this.raw.lookup(req);
      } catch (e) {
        throw fromNative(e);
      }
    }
    close(): void {
      this.raw.close();
    }
  }
  return {
    Sampler,
    version: raw.version,
    externalMemory: () => raw.externalMemory(),
    parseRecorded(datagrams, seq, req) {
      try {
        return raw.parseRecorded(datagrams, seq, req);
      } catch (e) {
        throw fromNative(e);
      }
    },
  };
}

let cached: NativeBinding | undefined;

/**
 * The committed prebuilds' file name (scripts/stamp.mjs ADDON_NAME): linked against glibc, and tagged so
 * that node-gyp-build, at `npm install` on musl, finds no prebuild and compiles the addon instead.
 */
export const PREBUILD_NAME = 'sockwatch.glibc.node';

/** The addon compiled from source (npm install's node-gyp-build, or `npm run build:native`). */
const RELEASE_ADDON = path.join(packageRoot, 'build', 'Release', 'sockwatch.node');

/**
 * The C library node-gyp-build decided for at install time, by its own rule (LIBC, else musl where
 * /etc/alpine-release exists): a musl install compiled build/Release and has no prebuild that loads.
 */
export function installLibc(): 'glibc' | 'musl' | string {
  return process.env.LIBC || (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
}

/**
 * The addon file loadBinding() loads. By default the committed prebuild for this platform, so a stale
 * local build/ never shadows it; build/Release only when no prebuild fits: none for this platform, or
 * a C library other than glibc (npm install's node-gyp-build then compiled one). SOCKWATCH_NATIVE=build
 * loads build/Release alone (CI runs the native tests against the addon compiled from source this
 * way); SOCKWATCH_NATIVE=prebuild, the prebuild alone.
 */
export function addonPath(): string {
  const mode = process.env.SOCKWATCH_NATIVE ?? '';
  const release = RELEASE_ADDON;
  const prebuild = path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, PREBUILD_NAME);
  if (mode === 'build') return release;
  if (mode === 'prebuild') return prebuild;
  if (mode !== '') throw new RangeError(`SOCKWATCH_NATIVE must be "build" or "prebuild", not ${JSON.stringify(mode)}`);
  return installLibc() === 'glibc' && fs.existsSync(prebuild) ? prebuild : release;
}

/** What a single executable (scripts/build-standalone.mjs) says about itself (its asset sockwatch.json). */
export interface StandaloneInfo {
  /** The sockwatch version it was built from. */
  version: string;
  /** The Node.js version inside. */
  node: string;
  /** The embedded addon: the prebuild it was taken from, its sha256 and its source stamp. */
  addon: { file: string; sha256: string; sources?: string };
}

interface SeaModule {
  isSea(): boolean;
  getRawAsset(key: string): string | ArrayBuffer;
  getAsset(key: string, encoding: string): string;
}

let seaModule: SeaModule | null | undefined;

/** node:sea when running as a single executable, null otherwise (and on Node lines without node:sea). */
function sea(): SeaModule | null {
  if (seaModule === undefined) {
    try {
      const m = require('node:sea') as SeaModule;
      seaModule = m.isSea() ? m : null;
    } catch {
      seaModule = null;
    }
  }
  return seaModule;
}

/** The single executable's own description, or undefined in the npm package. */
export function standaloneInfo(): StandaloneInfo | undefined {
  const s = sea();
  return s ? (JSON.parse(s.getAsset('sockwatch.json', 'utf8')) as StandaloneInfo) : undefined;
}

/** The sockwatch release running: the single executable's own, else package.json's ('unknown' if unreadable). */
export function releaseVersion(): string {
  const standalone = standaloneInfo();
  if (standalone) return standalone.version;
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * `<base>/<name>`, created 0700 if missing, and accepted only when it is a real directory (not a
 * link) owned by this user and closed to everyone else: nobody else can swap the addon file in it
 * between its writing and its loading.
 */
function privateDir(base: string, name: string, createBase: boolean): string {
  const dir = path.join(base, name);
  if (createBase) fs.mkdirSync(base, { recursive: true, mode: 0o700 });
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? -1;
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not ${uid}`);
  if ((st.mode & 0o077) !== 0) throw new Error(`${dir} is open to others (mode ${(st.mode & 0o777).toString(8)})`);
  return dir;
}

/** Where the embedded addon may be written to be loaded, in order: [base, directory name, create base]. */
function embeddedCandidates(): Array<[string, string, boolean]> {
  const uid = process.getuid?.() ?? 0;
  const explicit = process.env.SOCKWATCH_TMPDIR;
  if (explicit) return [[explicit, `sockwatch-${uid}`, false]];
  const out: Array<[string, string, boolean]> = [[os.tmpdir(), `sockwatch-${uid}`, false]];
  if (process.env.XDG_RUNTIME_DIR) out.push([process.env.XDG_RUNTIME_DIR, 'sockwatch', false]);
  const cache = process.env.XDG_CACHE_HOME || (process.env.HOME ? path.join(process.env.HOME, '.cache') : '');
  if (cache) out.push([cache, 'sockwatch', true]);
  out.push([path.dirname(process.execPath), `.sockwatch-${uid}`, false]);
  return out;
}

/** An addon file written by loadEmbedded: `<sha256 prefix>-<pid>-<random>.node`. */
const EMBEDDED_FILE_RE = /^[0-9a-f]{16}-(\d+)-[0-9a-f]{8}\.node$/;

/** Removes addon files a killed run left between writing and unlinking them (their pid is gone). */
function removeLeftovers(dir: string): void {
  removeFilesOfDeadProcesses(dir, (name) => {
    const m = EMBEDDED_FILE_RE.exec(name);
    return m ? Number(m[1]) : undefined;
  });
}

/** dlopen refused the file because its file system is mounted noexec ("failed to map segment", EPERM). */
const NOEXEC_RE = /failed to map segment|operation not permitted/i;

/**
 * The addon inside a single executable: written to a private directory (privateDir) under the first
 * candidate where dlopen accepts it, loaded, and unlinked right away (the mapping stays). A temporary
 * directory mounted noexec is passed over for the next candidate; SOCKWATCH_TMPDIR names the one
 * directory to use. Fails with one line naming every place tried.
 */
function loadEmbedded(s: SeaModule): NativeBinding {
  const bytes = new Uint8Array(s.getRawAsset('sockwatch.node') as ArrayBuffer);
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const passed: string[] = [];
  for (const [base, name, createBase] of embeddedCandidates()) {
    let file = '';
    try {
      const dir = privateDir(base, name, createBase);
      removeLeftovers(dir);
      file = path.join(dir, `${hash}-${process.pid}-${randomBytes(4).toString('hex')}.node`);
      fs.writeFileSync(file, bytes, { mode: 0o700, flag: 'wx' });
    } catch (e) {
      if (file) fs.rmSync(file, { force: true }); // a partial write (ENOSPC)
      passed.push(`${base}: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    try {
      const m = { exports: {} as NativeBinding };
      process.dlopen(m, file);
      return m.exports;
    } catch (e) {
      const message = (e as Error).message.split('\n')[0]!;
      if (!NOEXEC_RE.test(message)) throw new Error(`cannot load the sockwatch addon embedded in ${process.execPath}: ${message}`);
      passed.push(`${base}: mounted noexec`);
    } finally {
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(
    `cannot write the embedded sockwatch addon anywhere it can be loaded (${passed.join('; ')}): ` +
      'set SOCKWATCH_TMPDIR to a directory of yours on a file system mounted without noexec',
  );
}

/** Loads the addon from addonPath() (a prebuild that does not load falls back to build/Release); in a
 *  single executable, the embedded one (loadEmbedded). */
export function loadBinding(): NativeBinding {
  if (cached) return cached;
  const s = sea();
  if (s) {
    cached = wrapBinding(loadEmbedded(s));
    return cached;
  }
  const file = addonPath();
  const release = RELEASE_ADDON;
  let raw: NativeBinding;
  try {
    raw = require(file) as NativeBinding;
  } catch (e) {
    let reason = `cannot load the sockwatch addon ${file}: ${(e as Error).message.split('\n')[0]}`;
    if (file === release && installLibc() !== 'glibc' && !process.env.SOCKWATCH_NATIVE) {
      reason += ` (the prebuilds need glibc and this is ${installLibc()}: reinstall sockwatch with python3, make and a C++ compiler present, so npm compiles the addon)`;
    }
    if (file === release || process.env.SOCKWATCH_NATIVE) throw new Error(reason);
    try {
      raw = require(release) as NativeBinding;
    } catch (e2) {
      throw new Error(`${reason}; nor ${release}: ${(e2 as Error).message.split('\n')[0]}`);
    }
  }
  cached = wrapBinding(raw);
  return cached;
}
