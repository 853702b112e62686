// Thin layer over util.parseArgs: unknown flags and bad values become UsageError (exit 2) with a
// message that names the flag.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './errors';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

export function parse(argv: string[], options: OptionSpec, allowPositionals = false): Parsed {
  try {
    const r = parseArgs({ args: argv, options, allowPositionals, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    // Node's messages: "Unknown option '--x'. ...", "Option '--x <value>' argument missing".
    throw new UsageError(msg.replace(/\. To specify a positional argument.*$/, '').replace(/\.$/, ''));
  }
}

/** A non-negative integer flag value, with an optional unit suffix (k, m, g: powers of 1024). */
export function intFlag(name: string, v: unknown, opts: { min?: number; max?: number; units?: boolean } = {}): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new UsageError(`${name}: expected a number`);
  const m = /^(\d+)([kKmMgG]?)$/.exec(v.trim());
  if (!m || (m[2] && !opts.units)) throw new UsageError(`${name}: "${v}" is not a non-negative integer`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Number(m[1]) * mult;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${name}: "${v}" is too large`);
  if (opts.min !== undefined && n < opts.min) throw new UsageError(`${name}: ${n} is below the minimum ${opts.min}`);
  if (opts.max !== undefined && n > opts.max) throw new UsageError(`${name}: ${n} is above the maximum ${opts.max}`);
  return n;
}

/** Comma-separated list flag (may be repeated). */
export function listFlag(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const parts = (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(','));
  return parts.map((s) => s.trim()).filter((s) => s.length > 0);
}
