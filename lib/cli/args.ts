// Thin layer over util.parseArgs, and the CLI's one parser for numbers. Rule: a flag's text becomes a
// number here (sizes may carry a k/m/g unit, powers of 1024; seconds may carry a fraction), then the
// bounds are checked by the same validators as the library's options (lib/base/validate.ts). Every
// fault is a UsageError (one line naming the flag, exit 2); a negative value says the flag must not
// be negative instead of Node's "argument is ambiguous".
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as v from '../base/validate';
import { UsageError } from './errors';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/**
 * `--flag -5` and `-d -1`: parseArgs refuses a value that starts with a dash ("ambiguous"). A value
 * that reads as a negative number is joined to its flag (`--flag=-5`) so that the flag's own parser
 * can say it must not be negative.
 */
function joinNegativeValues(argv: string[], options: OptionSpec): string[] {
  const longOf = new Map<string, string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== 'string') continue;
    longOf.set(`--${name}`, name);
    if (o.short) longOf.set(`-${o.short}`, name);
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const name = longOf.get(a);
    const next = argv[i + 1];
    if (name !== undefined && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

export function parse(argv: string[], options: OptionSpec, allowPositionals = false): Parsed {
  try {
    const r = parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0]!;
    // Node's messages: "Unknown option '--x'. ...", "Option '--x <value>' argument missing".
    throw new UsageError(msg.replace(/\. To specify a positional argument.*$/, '').replace(/\.$/, ''));
  }
}

/** Runs a validator; its TypeError or RangeError becomes a UsageError with the same message. */
export function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

const UNITS = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as const;

/** The text of a flag: a string, trimmed; a negative number is refused naming the flag. */
function flagText(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new UsageError(`${name}: expected a value`);
  const s = value.trim();
  if (NEGATIVE_NUMBER.test(s)) throw new UsageError(`${name}: "${value}" must not be negative`);
  return s;
}

export interface IntFlagOptions extends v.IntegerBounds {
  /** Accept a k, m or g suffix (powers of 1024): a size in bytes. */
  units?: boolean;
}

/** A non-negative integer flag value (with units: a size such as 64k or 1m), checked against bounds. */
export function intFlag(name: string, value: unknown, opts: IntFlagOptions = {}): number | undefined {
  if (value === undefined) return undefined;
  const s = flagText(name, value);
  const m = /^(\d+)([kKmMgG]?)$/.exec(s);
  if (!m || (m[2] && !opts.units)) {
    throw new UsageError(
      opts.units
        ? `${name}: "${value}" is not a non-negative integer with an optional unit k, m or g (like 512, 64k, 1m, 2g)`
        : `${name}: "${value}" is not a non-negative integer`,
    );
  }
  const n = Number(m[1]) * UNITS[m[2]!.toLowerCase() as keyof typeof UNITS];
  if (!Number.isSafeInteger(n)) throw new UsageError(`${name}: "${value}" is too large`);
  return usage(() => v.integer(n, name, opts));
}

/** A size flag in bytes: an integer with an optional k/m/g unit. */
export function sizeFlag(name: string, value: unknown, bounds: v.IntegerBounds = {}): number | undefined {
  return intFlag(name, value, { ...bounds, units: true });
}

/**
 * A non-negative decimal number flag ("10", "0.5", ".5") scaled by `scale` (seconds to ms: 1000),
 * checked against bounds (in the scaled unit) by the duration validator.
 */
export function decimalFlag(
  name: string,
  value: unknown,
  opts: { scale?: number; what?: string; positive?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const s = flagText(name, value);
  const what = opts.what ?? 'number';
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(s))
    throw new UsageError(`${name}: "${value}" is not a ${opts.positive ? 'positive' : 'non-negative'} ${what}`);
  const n = Number(s);
  if (opts.positive && !(n > 0)) throw new UsageError(`${name}: "${value}" must be greater than 0`);
  return usage(() => v.duration(n * (opts.scale ?? 1), name, 0));
}

/** Comma-separated list flag (may be repeated). */
export function listFlag(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const parts = (Array.isArray(value) ? value : [value]).flatMap((s) => String(s).split(','));
  return parts.map((s) => s.trim()).filter((s) => s.length > 0);
}
