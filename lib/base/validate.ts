// The one set of option validators. Every public options object (Sampler, listSockets, QueueWatcher,
// OutboundWatcher, Outbox, HttpDelivery, uploads, SocketOwners) and the CLI's numbers go through here.
//
// The rule:
// - wrong type -> TypeError. A value that is none of an option's allowed literals ('off', 'limit',
//   'always'…) and not of its allowed primitive type is a type fault: `'5'` where a number is
//   expected, `'false'` where a boolean is, `'max'` for acceptThreshold, a string where an array is.
// - right type, value not allowed -> RangeError: a negative, fractional, non-finite or too large
//   number; an unknown state name in a list of strings; an empty range.
// - every message names the option's full path (`options.recvThreshold`, `options.filter.states[1]`)
//   and what is allowed, then what was given: `options.x must be … (got …)`.
// - an options object rejects keys it does not know (TypeError naming the key and the nearest valid
//   one): a typo must never silently mean "default".
// - numbers that cross to native code are bounded to the native type (UINT32_MAX for uint32 fields).
//
// Thresholds have ONE representation from the edge to the native boundary: a non-negative integer,
// or the word 'off' (accept thresholds also 'limit'). `undefined` only ever means "the caller's
// default", never "off"; the addon's -1/-2 encoding is produced by one function in lib/sampler.ts.
import type { PortRange } from '../bytecode';

export const UINT32_MAX = 0xffffffff;
export const UINT64_MAX = 0xffffffffffffffffn;
/** Longest delay setTimeout honours (longer ones fire at once). */
export const TIMER_MAX_MS = 2 ** 31 - 1;

/** Off switch of a threshold, as the public API and the CLI spell it. */
export const OFF = 'off';
/** Bytes (or UDP kernel memory); a queue offends when strictly greater. */
export type ByteThreshold = number | 'off';
/** Listener accept queue: connections (strictly greater), 'limit' (queue ≥ backlog), or 'off'. */
export type AcceptThreshold = number | 'limit' | 'off';

/** How a value is shown after "got" in a message (strings quoted, never more than 60 characters). */
export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

function typeError(path: string, what: string, v: unknown): TypeError {
  return new TypeError(`${path} must be ${what} (got ${describe(v)})`);
}

function rangeError(path: string, what: string, v: unknown): RangeError {
  return new RangeError(`${path} must be ${what} (got ${describe(v)})`);
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The valid name closest to `key` (case-insensitive edit distance). */
export function nearest(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const v of valid) {
    const d = distance(key.toLowerCase(), v.toLowerCase());
    if (d < bestD) {
      best = v;
      bestD = d;
    }
  }
  return best;
}

/**
 * An options object: undefined is `{}`; anything but a plain object is a TypeError; a key not in
 * `keys` is a TypeError naming it and the nearest valid key.
 */
export function optionsObject<T extends object>(v: unknown, path: string, keys: readonly string[]): Partial<T> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw typeError(path, 'an object', v);
  for (const k of Object.keys(v)) {
    if (!keys.includes(k)) {
      const near = nearest(k, keys);
      throw new TypeError(`${path}: unknown option "${k}"${near ? ` (did you mean "${near}"?)` : ''}; valid options: ${keys.join(', ')}`);
    }
  }
  return v as Partial<T>;
}

export interface IntegerBounds {
  /** Default 0. */
  min?: number;
  /** Default Number.MAX_SAFE_INTEGER; UINT32_MAX where the value crosses to a native uint32. */
  max?: number;
}

function boundsText(min: number, max: number): string {
  return max >= Number.MAX_SAFE_INTEGER
    ? min === 0
      ? 'a non-negative integer'
      : `an integer of at least ${min}`
    : `an integer from ${min} to ${max}`;
}

/** An integer in [min, max]. */
export function integer(v: unknown, path: string, bounds: IntegerBounds = {}): number {
  const min = bounds.min ?? 0;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof v !== 'number') throw typeError(path, boundsText(min, max), v);
  if (!Number.isInteger(v) || v < min || v > max) throw rangeError(path, boundsText(min, max), v);
  return v;
}

/** Like integer(), with a default for undefined. */
export function optInteger(v: unknown, path: string, fallback: number, bounds?: IntegerBounds): number {
  return v === undefined ? fallback : integer(v, path, bounds);
}

export interface NumberBounds {
  min?: number;
  max?: number;
  /** The minimum itself is not allowed (a positive number: min 0, minExclusive). */
  minExclusive?: boolean;
}

/** A finite number in its bounds (a fraction allowed). */
export function finiteNumber(v: unknown, path: string, bounds: NumberBounds = {}): number {
  const { min = -Infinity, max = Infinity, minExclusive = false } = bounds;
  const parts = [];
  if (min > -Infinity) parts.push(minExclusive ? `greater than ${min}` : `at least ${min}`);
  if (max < Infinity) parts.push(`at most ${max}`);
  const what = `a finite number${parts.length ? ` ${parts.join(' and ')}` : ''}`;
  if (typeof v !== 'number') throw typeError(path, what, v);
  if (!Number.isFinite(v) || v < min || (minExclusive && v === min) || v > max) throw rangeError(path, what, v);
  return v;
}

/** A duration in milliseconds: finite, at least `min` (default 0), fractions allowed. */
export function duration(v: unknown, path: string, fallback: number, min = 0, max = Infinity): number {
  if (v === undefined) return fallback;
  const what = `a number of ms${min > 0 ? ` of at least ${min}` : ', not negative'}${max < Infinity ? ` and at most ${max}` : ''}`;
  if (typeof v !== 'number') throw typeError(path, what, v);
  if (!Number.isFinite(v) || v < min || v > max) throw rangeError(path, what, v);
  return v;
}

/** A duration in milliseconds greater than 0 (an interval, a window). */
export function positiveDuration(v: unknown, path: string, fallback: number): number {
  if (v === undefined) return fallback;
  const what = 'a number of ms greater than 0';
  if (typeof v !== 'number') throw typeError(path, what, v);
  if (!Number.isFinite(v) || v <= 0) throw rangeError(path, what, v);
  return v;
}

/** A real boolean: 'false', 0 or 'yes' are TypeErrors. */
export function boolean(v: unknown, path: string, fallback = false): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw typeError(path, 'true or false', v);
  return v;
}

/** One of a list of words. */
export function oneOf<T extends string>(v: unknown, path: string, values: readonly T[], fallback?: T): T {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || !values.includes(v as T)) throw typeError(path, `one of ${values.map((s) => `'${s}'`).join(', ')}`, v);
  return v as T;
}

/** A non-empty string. */
export function nonEmptyString(v: unknown, path: string): string {
  if (typeof v !== 'string') throw typeError(path, 'a non-empty string', v);
  if (v === '') throw rangeError(path, 'a non-empty string', v);
  return v;
}

/** A function. */
export function func<F extends (...args: never[]) => unknown>(v: unknown, path: string): F {
  if (typeof v !== 'function') throw typeError(path, 'a function', v);
  return v as F;
}

/** An instance of a class. */
export function instanceOf<T>(v: unknown, path: string, ctor: abstract new (...args: never[]) => T, what = `a ${ctor.name}`): T {
  if (!(v instanceof ctor)) throw typeError(path, what, v);
  return v;
}

/** A receive or send threshold: undefined is `fallback`; else a non-negative integer or 'off'. */
export function byteThreshold(v: unknown, path: string, fallback: ByteThreshold): ByteThreshold {
  if (v === undefined) return fallback;
  if (v === OFF) return OFF;
  const what = "a non-negative integer number of bytes or 'off'";
  if (typeof v !== 'number') throw typeError(path, what, v);
  if (!Number.isSafeInteger(v) || v < 0) throw rangeError(path, what, v);
  return v;
}

/** An accept threshold: undefined is `fallback`; else a non-negative integer, 'limit' or 'off'. */
export function acceptThreshold(v: unknown, path: string, fallback: AcceptThreshold): AcceptThreshold {
  if (v === undefined) return fallback;
  if (v === OFF || v === 'limit') return v;
  const what = "a non-negative integer number of connections, 'limit' or 'off'";
  if (typeof v !== 'number') throw typeError(path, what, v);
  if (!Number.isSafeInteger(v) || v < 0) throw rangeError(path, what, v);
  return v;
}

/** An array of strings (a single string is a TypeError, not a list of characters). */
export function stringList(v: unknown, path: string): string[] {
  if (!Array.isArray(v)) throw typeError(path, 'an array of strings', v);
  v.forEach((s, i) => {
    if (typeof s !== 'string') throw typeError(`${path}[${i}]`, 'a string', s);
  });
  return v as string[];
}

function iterableItems(v: unknown, path: string, what: string): unknown[] {
  if (v === null || typeof v !== 'object' || typeof (v as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    throw typeError(path, what, v);
  }
  return Array.from(v as Iterable<unknown>);
}

/** An iterable of 64-bit unsigned bigints (socket cookies). */
export function bigintList(v: unknown, path: string): bigint[] {
  const items = iterableItems(v, path, 'an iterable of bigints');
  items.forEach((c, i) => bigint64(c, `${path}[${i}]`));
  return items as bigint[];
}

/** One unsigned 64-bit bigint. */
export function bigint64(v: unknown, path: string): bigint {
  if (typeof v !== 'bigint') throw typeError(path, 'a bigint from 0n to 2n**64n-1n', v);
  if (v < 0n || v > UINT64_MAX) throw rangeError(path, 'a bigint from 0n to 2n**64n-1n', v);
  return v;
}

/** An iterable of integers in [min, max] (inode numbers: uint32). */
export function integerList(v: unknown, path: string, bounds: IntegerBounds = {}): number[] {
  const items = iterableItems(v, path, 'an iterable of integers');
  items.forEach((n, i) => integer(n, `${path}[${i}]`, bounds));
  return items as number[];
}

/** A port (80), a port range ("1024-2048", "80") or {from, to}. */
export type PortSpec = number | string | PortRange;

const PORT_WHAT = 'a port from 0 to 65535, a range like "1024-2048", or {from, to}';

/** Parses a port spec; throws naming `path`. */
export function portSpec(v: unknown, path: string): PortRange {
  let from: unknown;
  let to: unknown;
  if (typeof v === 'number') {
    from = to = v;
  } else if (typeof v === 'string') {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(v);
    if (!m) throw typeError(path, PORT_WHAT, v);
    from = Number(m[1]);
    to = m[2] === undefined ? from : Number(m[2]);
  } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    optionsObject(v, path, ['from', 'to']);
    ({ from, to } = v as { from: unknown; to: unknown });
  } else {
    throw typeError(path, PORT_WHAT, v);
  }
  for (const p of [from, to]) {
    if (typeof p !== 'number') throw typeError(path, PORT_WHAT, p);
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new RangeError(`${path}: port ${p} is out of range 0-65535`);
  }
  if ((from as number) > (to as number)) throw new RangeError(`${path}: range ${String(from)}-${String(to)} is empty`);
  return { from: from as number, to: to as number };
}

/** An array of port specs; undefined stays undefined. */
export function portList(v: unknown, path: string): PortRange[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw typeError(path, 'an array of ports or port ranges', v);
  return v.map((p, i) => portSpec(p, `${path}[${i}]`));
}
