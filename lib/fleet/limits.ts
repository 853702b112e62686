// Fleet-wide collection limits: their options, validated by the rule of lib/base/validate.ts, and the
// window arithmetic. Rule: a window is a fixed, epoch-aligned slice of the storage service's clock
// (1 h windows start on the hour, UTC; 1 d windows at 00:00 UTC), never of an instance's clock, so
// every instance that asks the same service at the same moment names the same window.
import * as v from '../base/validate';

/** Lease of a running-collection lock, in seconds (Azure allows 15 to 60). Why 30: see README "Fleet limits". */
export const DEFAULT_LEASE_SECONDS = 30;
export const DEFAULT_FLEET_WINDOW_MS = 3_600_000;
/** Blob names start with `<prefix>/fleet/`. */
export const DEFAULT_FLEET_PREFIX = 'sockwatch';
/** Slots and locks are addressed by number (no listing), so their count is bounded. */
export const MAX_FLEET_SLOTS = 1000;
export const MAX_FLEET_LOCKS = 100;
const MIN_WINDOW_MS = 1000;
const MAX_WINDOW_MS = 31 * 86_400_000;

export interface FleetLimits {
  /** At most this many collections start across the fleet per window (a rate limit). */
  max?: number;
  /** The window of `max`, in ms (default one hour); whole seconds, from 1 s to 31 days. */
  windowMs?: number;
  /** At most this many collections run at once across the fleet (leased lock blobs). */
  concurrent?: number;
  /** Blob name prefix (default 'sockwatch'): blobs go under `<prefix>/fleet/`. */
  prefix?: string;
  /** Lease of a running-collection lock, 15 to 60 s (default 30), renewed every third of it. */
  leaseSeconds?: number;
}

export interface NormalizedFleetLimits {
  max: number | undefined;
  windowMs: number;
  concurrent: number | undefined;
  prefix: string;
  leaseSeconds: number;
}

const KEYS = ['max', 'windowMs', 'concurrent', 'prefix', 'leaseSeconds'];

export function normalizeFleetLimits(value: unknown, path = 'options.fleet'): NormalizedFleetLimits {
  const o = v.optionsObject<FleetLimits>(value, path, KEYS);
  const max = o.max === undefined ? undefined : v.integer(o.max, `${path}.max`, { min: 1, max: MAX_FLEET_SLOTS });
  const concurrent =
    o.concurrent === undefined ? undefined : v.integer(o.concurrent, `${path}.concurrent`, { min: 1, max: MAX_FLEET_LOCKS });
  if (max === undefined && concurrent === undefined) throw new TypeError(`${path}: give max, concurrent or both`);
  const windowMs = v.duration(o.windowMs, `${path}.windowMs`, DEFAULT_FLEET_WINDOW_MS, MIN_WINDOW_MS, MAX_WINDOW_MS);
  if (windowMs % 1000 !== 0) throw new RangeError(`${path}.windowMs must be whole seconds (got ${windowMs})`);
  if (o.windowMs !== undefined && max === undefined) throw new TypeError(`${path}.windowMs needs ${path}.max (the window is max's)`);
  const prefix = o.prefix === undefined ? DEFAULT_FLEET_PREFIX : v.nonEmptyString(o.prefix, `${path}.prefix`);
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(prefix) || prefix.split('/').some((part) => /^\.+$/.test(part))) {
    throw new RangeError(`${path}.prefix must be letters, digits, '.', '_', '-' with '/' between parts (got ${JSON.stringify(prefix)})`);
  }
  const leaseSeconds = v.optInteger(o.leaseSeconds, `${path}.leaseSeconds`, DEFAULT_LEASE_SECONDS, { min: 15, max: 60 });
  return { max, windowMs, concurrent, prefix, leaseSeconds };
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A window as the CLI writes it: a whole number and a unit, `90s`, `30m`, `1h`, `1d`. Returns ms;
 * throws a RangeError naming `name` otherwise.
 */
export function parseWindow(text: string, name: string): number {
  const m = /^(\d+)([smhd])$/.exec(text.trim());
  const ms = m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
  if (!m || !(ms >= MIN_WINDOW_MS && ms <= MAX_WINDOW_MS)) {
    throw new RangeError(`${name}: "${text}" is not a window from 1s to 31d (a whole number and a unit s, m, h or d: 90s, 30m, 1h, 1d)`);
  }
  return ms;
}

/** "1 h", "30 min", "90 s", "2 d": a window for a log line. */
export function windowText(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['min', 60_000],
  ] as const) {
    if (ms % size === 0) return `${ms / size} ${unit}`;
  }
  return `${ms / 1000} s`;
}

export interface FleetWindow {
  start: Date;
  end: Date;
  /** `20261202T010000Z`: the window's start in ISO 8601 basic form, a blob-name segment. */
  key: string;
}

/** The epoch-aligned window holding `serviceTime`. */
export function windowAt(serviceTime: Date, windowMs: number): FleetWindow {
  const startMs = Math.floor(serviceTime.getTime() / windowMs) * windowMs;
  const start = new Date(startMs);
  return { start, end: new Date(startMs + windowMs), key: basicIso(start) };
}

/** 2026-12-02T01:00:00.000Z → 20261202T010000Z. */
export function basicIso(t: Date): string {
  return t
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
}

/** 2026-12-02T01:00:00.000Z → 2026-12-02T01:00:00Z (log lines). */
export function isoSeconds(t: Date): string {
  return t.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
