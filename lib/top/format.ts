// Text pieces of `sockwatch top`: columns cut and padded to a width, numbers, sparklines, and the
// styles (SGR), which NO_COLOR (https://no-color.org) turns into plain text. Every string shown comes
// through cell(), which replaces control characters: a process may name itself with an escape sequence.

export interface Style {
  header(s: string): string;
  title(s: string): string;
  alert(s: string): string;
  dim(s: string): string;
}

const sgr =
  (code: string) =>
  (s: string): string =>
    `\x1b[${code}m${s}\x1b[0m`;

export const COLOR: Style = { header: sgr('7'), title: sgr('1'), alert: sgr('1;31'), dim: sgr('2') };
/** NO_COLOR: no SGR at all; rows over a threshold keep their "!" mark. */
export const PLAIN: Style = { header: (s) => s, title: (s) => s, alert: (s) => s, dim: (s) => s };

/** NO_COLOR set to anything but the empty string disables color, as no-color.org says. */
export function styleFor(env: NodeJS.ProcessEnv): Style {
  return env.NO_COLOR !== undefined && env.NO_COLOR !== '' ? PLAIN : COLOR;
}

/** Printable text only: control characters (C0, DEL, C1) become '?'. */
export function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

/** `s` made printable, cut to `width` (with "…" when cut) and padded; right-aligned when asked. */
export function cell(s: string, width: number, right = false): string {
  if (width <= 0) return '';
  let t = printable(s);
  if (t.length > width) t = width === 1 ? '…' : `${t.slice(0, width - 1)}…`;
  return right ? t.padStart(width) : t.padEnd(width);
}

export interface Column<Row> {
  title: string;
  /** Fixed width, or 0 for a column that takes what is left (at least `min`). */
  width: number;
  min?: number;
  right?: boolean;
  text(row: Row): string;
}

/** Widths of the columns for a total width: flexible ones share what the fixed ones leave. */
export function layout<Row>(columns: readonly Column<Row>[], total: number): number[] {
  const fixed = columns.reduce((sum, c) => sum + c.width, 0) + columns.length - 1;
  const flex = columns.flatMap((c, i) => (c.width === 0 ? [i] : []));
  const left = Math.max(0, total - fixed);
  const share = flex.length > 0 ? Math.floor(left / flex.length) : 0;
  const lastFlex = flex[flex.length - 1];
  return columns.map((c, i) => (c.width > 0 ? c.width : Math.max(c.min ?? 1, share + (i === lastFlex ? left - share * flex.length : 0))));
}

/** One row (or the titles, for null), cut to `total` columns. */
export function row<Row>(columns: readonly Column<Row>[], widths: readonly number[], r: Row | null, total: number): string {
  return columns
    .map((c, i) => cell(r === null ? c.title : c.text(r), widths[i]!, c.right))
    .join(' ')
    .slice(0, total);
}

const BARS = '▁▂▃▄▅▆▇█';

/** The last `width` values as bars scaled to their own maximum (a flat zero line stays low). */
export function sparkline(values: readonly number[], width: number): string {
  const tail = values.slice(-width);
  const max = Math.max(1, ...tail);
  return tail
    .map((v) => BARS[Math.min(BARS.length - 1, Math.round((v / max) * (BARS.length - 1)))])
    .join('')
    .padStart(width);
}

/** Bytes as ss-like short text: 999, 12.3k, 4.0M (powers of 1024). */
export function bytes(n: number): string {
  if (n < 1024) return String(n);
  const units = ['k', 'M', 'G', 'T'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)}${units[u]}`;
}

const STATE_SHORT: Record<string, string> = {
  established: 'ESTAB',
  'syn-sent': 'SYN-S',
  'syn-recv': 'SYN-R',
  'fin-wait-1': 'FIN-W1',
  'fin-wait-2': 'FIN-W2',
  'time-wait': 'TIME-W',
  close: 'CLOSE',
  'close-wait': 'CLOSE-W',
  'last-ack': 'LAST-A',
  listen: 'LISTEN',
  closing: 'CLOSING',
  unconn: 'UNCONN',
};

/** Short state name, as ss abbreviates them. */
export function shortState(name: string): string {
  return STATE_SHORT[name] ?? name.toUpperCase();
}

/** "ESTAB 120 TIME-W 10", largest first. */
export function statesText(states: Record<string, number>): string {
  return Object.entries(states)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([s, n]) => `${shortState(s)} ${n}`)
    .join(' ');
}
