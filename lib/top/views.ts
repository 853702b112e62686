// The three views of `sockwatch top` as tables: columns for a width, sort orders, the filter rule, and
// the frame (header, status, table, key line) for a screen size. Pure functions of the data and the
// state, so the live screen and the plain snapshot print the same rows.
import type { SocketOwner } from '../queues/owners';
import { bytes, cell, layout, row, shortState, sparkline, statesText, type Column, type Style } from './format';
import type { DestinationRow, ListenerRow, ProcessRow, QueueRow } from './sources';

export const VIEWS = ['destinations', 'queues', 'processes'] as const;
export type ViewName = (typeof VIEWS)[number];
export const VIEW_TITLES: Record<ViewName, string> = { destinations: 'Destinations', queues: 'Queues', processes: 'Processes' };

export interface TopData {
  destinations: DestinationRow[];
  destinationSockets: number;
  queues: QueueRow[];
  queuesNonEmpty: number;
  listeners: ListenerRow[];
  processes: ProcessRow[];
  processesUpdatedAt: number;
  scanMs: number;
  /** Owners of the queue and listener rows on screen (by inode). */
  owners: Map<number, SocketOwner>;
  /** One line about the data (attribution, namespaces that failed), or ''. */
  note: string;
}

export function emptyData(): TopData {
  return {
    destinations: [],
    destinationSockets: 0,
    queues: [],
    queuesNonEmpty: 0,
    listeners: [],
    processes: [],
    processesUpdatedAt: 0,
    scanMs: 0,
    owners: new Map(),
    note: '',
  };
}

export interface TopState {
  view: ViewName;
  sort: Record<ViewName, number>;
  filter: string;
  /** The filter being typed (after '/'), or undefined. */
  editing: string | undefined;
  paused: boolean;
  help: boolean;
  scroll: number;
  intervalMs: number;
  threshold: number;
  allNetns: boolean;
}

interface Sort<R> {
  name: string;
  cmp(a: R, b: R): number;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The filter rule: a number matches a port (local or remote) or a pid exactly; anything else is a
 * case-insensitive part of an address, a process name or a namespace label.
 */
export function matches(filter: string, numbers: readonly (number | undefined)[], texts: readonly string[]): boolean {
  const f = filter.trim().toLowerCase();
  if (f === '') return true;
  if (/^\d+$/.test(f)) return numbers.includes(Number(f)) || texts.some((t) => t.toLowerCase().includes(f));
  return texts.some((t) => t.toLowerCase().includes(f));
}

export const DESTINATION_SORTS: Sort<DestinationRow>[] = [
  { name: 'total', cmp: (a, b) => b.total - a.total || b.distinctInWindow - a.distinctInWindow || byText(a.remote, b.remote) },
  { name: '240s', cmp: (a, b) => b.distinctInWindow - a.distinctInWindow || b.total - a.total || byText(a.remote, b.remote) },
  { name: 'destination', cmp: (a, b) => byText(a.remote, b.remote) || byText(a.ns, b.ns) },
];
export const QUEUE_SORTS: Sort<QueueRow>[] = [
  { name: 'recv-q', cmp: (a, b) => b.recvQ - a.recvQ || b.sendQ - a.sendQ || byText(a.local, b.local) },
  { name: 'send-q', cmp: (a, b) => b.sendQ - a.sendQ || b.recvQ - a.recvQ || byText(a.local, b.local) },
  { name: 'local', cmp: (a, b) => byText(a.local, b.local) || byText(a.remote, b.remote) },
];
export const PROCESS_SORTS: Sort<ProcessRow>[] = [
  { name: 'tcp', cmp: (a, b) => b.tcp - a.tcp || b.udp - a.udp || (a.pid ?? 0) - (b.pid ?? 0) },
  { name: 'established', cmp: (a, b) => (b.states.established ?? 0) - (a.states.established ?? 0) || b.tcp - a.tcp },
  { name: 'udp', cmp: (a, b) => b.udp - a.udp || b.tcp - a.tcp },
  { name: 'pid', cmp: (a, b) => (a.pid ?? Infinity) - (b.pid ?? Infinity) || byText(a.ns, b.ns) },
];
export const SORT_COUNT: Record<ViewName, number> = {
  destinations: DESTINATION_SORTS.length,
  queues: QUEUE_SORTS.length,
  processes: PROCESS_SORTS.length,
};

function nsColumn<R extends { ns: string }>(state: Pick<TopState, 'allNetns'>): Column<R>[] {
  return state.allNetns ? [{ title: 'NETNS', width: 18, text: (r) => r.ns }] : [];
}

const mark = <R>(over: (r: R) => boolean): Column<R> => ({ title: '!', width: 1, text: (r) => (over(r) ? '!' : ' ') });

/** PID and COMMAND of the socket's owner, when looked up. */
function ownerColumns<R extends { inode: number }>(width: number, owners: Map<number, SocketOwner>): Column<R>[] {
  return [
    { title: 'PID', width: 7, right: true, text: (r) => String(owners.get(r.inode)?.pid ?? '') },
    { title: 'COMMAND', width: width >= 100 ? 15 : 8, text: (r) => owners.get(r.inode)?.comm ?? '' },
  ];
}

function destinationColumns(state: TopState, width: number): Column<DestinationRow>[] {
  const spark = width >= 120 ? 30 : width >= 100 ? 20 : 12;
  return [
    mark((r) => r.over),
    ...nsColumn<DestinationRow>(state),
    { title: 'DESTINATION', width: 0, min: 21, text: (r) => r.remote },
    { title: 'TOTAL', width: 6, right: true, text: (r) => String(r.total) },
    { title: '240s', width: 6, right: true, text: (r) => String(r.distinctInWindow) },
    { title: 'LAST MINUTE', width: spark, text: (r) => sparkline(r.history, spark) },
    { title: 'STATES', width: 0, min: 10, text: (r) => statesText(r.states) },
  ];
}

function queueColumns(state: TopState, width: number, owners: Map<number, SocketOwner>): Column<QueueRow>[] {
  return [
    mark((r) => r.overRecv || r.overSend),
    ...nsColumn<QueueRow>(state),
    // UDP's states say little (unconn, or connected): the protocol stands in their place
    { title: 'STATE', width: 7, text: (r) => (r.protocol === 'udp' ? 'UDP' : shortState(r.state)) },
    { title: 'RECV-Q', width: 6, right: true, text: (r) => bytes(r.recvQ) },
    { title: 'SEND-Q', width: 6, right: true, text: (r) => bytes(r.sendQ) },
    { title: 'LOCAL', width: 0, min: 19, text: (r) => r.local },
    { title: 'REMOTE', width: 0, min: 19, text: (r) => r.remote },
    ...ownerColumns(width, owners),
  ];
}

function listenerColumns(state: TopState, width: number, owners: Map<number, SocketOwner>): Column<ListenerRow>[] {
  return [
    mark((r) => r.over),
    ...nsColumn<ListenerRow>(state),
    { title: 'LISTEN', width: 0, min: 15, text: (r) => r.local },
    { title: 'ACCEPT-Q', width: 8, right: true, text: (r) => String(r.acceptQueue) },
    { title: 'BACKLOG', width: 8, right: true, text: (r) => String(r.backlog) },
    { title: 'FILL', width: 5, right: true, text: (r) => `${r.backlog > 0 ? Math.round((100 * r.acceptQueue) / r.backlog) : 0}%` },
    ...ownerColumns(width, owners),
  ];
}

const OTHER_STATES = new Set(['established', 'listen', 'time-wait', 'close-wait']);

function processColumns(state: TopState): Column<ProcessRow>[] {
  const n = (name: string) => (r: ProcessRow) => String(r.states[name] ?? 0);
  return [
    ...nsColumn<ProcessRow>(state),
    { title: 'PID', width: 7, right: true, text: (r) => (r.pid === undefined ? '-' : String(r.pid)) },
    { title: 'COMMAND', width: 0, min: 12, text: (r) => r.comm },
    { title: 'TCP', width: 6, right: true, text: (r) => String(r.tcp) },
    { title: 'ESTAB', width: 6, right: true, text: n('established') },
    { title: 'LISTEN', width: 6, right: true, text: n('listen') },
    { title: 'TIME-W', width: 6, right: true, text: n('time-wait') },
    { title: 'CLOSE-W', width: 7, right: true, text: n('close-wait') },
    {
      title: 'OTHER',
      width: 6,
      right: true,
      text: (r) => String(Object.entries(r.states).reduce((s, [k, v]) => s + (OTHER_STATES.has(k) ? 0 : v), 0)),
    },
    { title: 'UDP', width: 6, right: true, text: (r) => String(r.udp) },
  ];
}

export const sortName = (state: TopState): string => {
  const list: Sort<never>[] = state.view === 'destinations' ? DESTINATION_SORTS : state.view === 'queues' ? QUEUE_SORTS : PROCESS_SORTS;
  return list[state.sort[state.view] % list.length]!.name;
};

/** The rows of the destinations view, filtered and sorted. */
export function destinationRows(state: TopState, data: TopData): DestinationRow[] {
  return data.destinations
    .filter((r) => matches(state.filter, [r.remotePort], [r.remote, r.ns]))
    .sort(DESTINATION_SORTS[state.sort.destinations % DESTINATION_SORTS.length]!.cmp);
}

export function queueRows(state: TopState, data: TopData): QueueRow[] {
  return data.queues
    .filter((r) =>
      matches(
        state.filter,
        [r.localPort, r.remotePort, data.owners.get(r.inode)?.pid],
        [r.local, r.remote, r.ns, data.owners.get(r.inode)?.comm ?? ''],
      ),
    )
    .sort(QUEUE_SORTS[state.sort.queues % QUEUE_SORTS.length]!.cmp);
}

export function listenerRows(state: TopState, data: TopData): ListenerRow[] {
  return data.listeners
    .filter((r) =>
      matches(state.filter, [r.localPort, data.owners.get(r.inode)?.pid], [r.local, r.ns, data.owners.get(r.inode)?.comm ?? '']),
    )
    .sort(
      (a, b) =>
        (b.backlog > 0 ? b.acceptQueue / b.backlog : 0) - (a.backlog > 0 ? a.acceptQueue / a.backlog : 0) ||
        b.acceptQueue - a.acceptQueue ||
        byText(a.local, b.local),
    );
}

export function processRows(state: TopState, data: TopData): ProcessRow[] {
  return data.processes
    .filter((r) => matches(state.filter, [r.pid], [r.comm, r.ns]))
    .sort(PROCESS_SORTS[state.sort.processes % PROCESS_SORTS.length]!.cmp);
}

export interface Table {
  header: string;
  lines: { text: string; over: boolean }[];
}

function table<R>(columns: Column<R>[], rows: readonly R[], width: number, over: (r: R) => boolean): Table {
  const widths = layout(columns, width);
  return { header: row(columns, widths, null, width), lines: rows.map((r) => ({ text: row(columns, widths, r, width), over: over(r) })) };
}

export function destinationTable(state: TopState, data: TopData, width: number, rows = destinationRows(state, data)): Table {
  return table(destinationColumns(state, width), rows, width, (r) => r.over);
}

export function queueTable(state: TopState, data: TopData, width: number, rows = queueRows(state, data)): Table {
  return table(queueColumns(state, width, data.owners), rows, width, (r) => r.overRecv || r.overSend);
}

export function listenerTable(state: TopState, data: TopData, width: number, rows = listenerRows(state, data)): Table {
  return table(listenerColumns(state, width, data.owners), rows, width, (r) => r.over);
}

export function processTable(state: TopState, data: TopData, width: number, rows = processRows(state, data)): Table {
  return table(processColumns(state), rows, width, () => false);
}

export const HELP_LINES = [
  'Keys',
  '  1 2 3, Tab    Destinations, Queues, Processes view',
  '  s             next sort column (the status line names it)',
  '  /             filter: a port or pid (exact), or part of an address, command or',
  '                namespace; Enter applies, Esc clears',
  '  p, space      pause / resume sampling',
  '  Up Down PgUp PgDn Home End   scroll',
  '  q, Ctrl-C     quit',
  '  ?             this help (any key closes it)',
  '',
  'Rows marked ! are over a threshold: destinations over -t connections,',
  'queues over --recv-threshold / --send-threshold, listeners whose accept queue',
  'reached the backlog. 240s: distinct connections in the last 240 s (SNAT ports',
  'Azure still holds). Processes: sockets per owning process from /proc/*/fd, every',
  'few seconds; TIME-W and SYN-R sockets belong to no process: "(no process)".',
];

function statusText(state: TopState, data: TopData): string {
  const parts: string[] = [];
  if (state.paused) parts.push('PAUSED');
  if (state.filter) parts.push(`filter: ${state.filter}`);
  parts.push(`sort: ${sortName(state)}`);
  if (state.view === 'destinations') {
    parts.push(`${data.destinations.length} destinations`, `${data.destinationSockets} connections`, `-t ${state.threshold}`);
  } else if (state.view === 'queues') {
    parts.push(`${data.queuesNonEmpty} sockets with a queue`, `${data.listeners.length} listeners`);
  } else {
    const age =
      data.processesUpdatedAt > 0 ? `${Math.max(0, Math.round((Date.now() - data.processesUpdatedAt) / 1000))}s ago` : 'walking /proc…';
    parts.push(`${data.processes.length} owners`, `updated ${age}`);
  }
  parts.push(`scan ${data.scanMs.toFixed(1)} ms`);
  return parts.join(' · ');
}

function tabs(state: TopState): string {
  return VIEWS.map((v, i) => (v === state.view ? `[${i + 1} ${VIEW_TITLES[v]}]` : ` ${i + 1} ${VIEW_TITLES[v]} `)).join(' ');
}

function clock(): string {
  const d = new Date();
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** The whole screen: exactly `rows` lines, each at most `columns` wide (plus SGR sequences). */
export function frame(state: TopState, data: TopData, size: { columns: number; rows: number }, style: Style): string[] {
  const w = size.columns;
  const lines: string[] = [];
  const head = `sockwatch top ${tabs(state)}`;
  const right = `every ${state.intervalMs / 1000}s ${clock()}`;
  lines.push(style.title(cell(head.length + right.length + 1 <= w ? head + ' '.repeat(w - head.length - right.length) + right : head, w)));
  lines.push(cell(statusText(state, data) + (data.note ? ` · ${data.note}` : ''), w));
  const body = size.rows - 3;
  if (state.help) {
    for (let i = 0; i < body; i++) lines.push(cell(HELP_LINES[i] ?? '', w));
  } else {
    const emit = (t: Table, room: number, scroll: number): void => {
      lines.push(style.header(cell(t.header, w)));
      const start = Math.max(0, Math.min(scroll, t.lines.length - (room - 1)));
      for (let i = 0; i < room - 1; i++) {
        const l = t.lines[start + i];
        lines.push(l === undefined ? '' : l.over ? style.alert(cell(l.text, w)) : cell(l.text, w));
      }
    };
    if (state.view === 'destinations') emit(destinationTable(state, data, w), body, state.scroll);
    else if (state.view === 'processes') emit(processTable(state, data, w), body, state.scroll);
    else {
      const listeners = listenerTable(state, data, w);
      const lroom = Math.min(listeners.lines.length + 1, Math.max(2, Math.floor(body / 3)));
      emit(queueTable(state, data, w), body - lroom, state.scroll);
      emit(listeners, lroom, 0);
    }
  }
  const keys =
    state.editing !== undefined
      ? `filter: ${state.editing}_  (Enter apply, Esc clear)`
      : 'q quit  ? help  1-3/Tab view  s sort  / filter  p pause';
  lines.push(style.dim(cell(keys, w)));
  return lines.slice(0, size.rows);
}

/** The plain snapshot (stdout not a terminal, or --once): each view's table, at most `limit` rows each. */
export function snapshot(state: TopState, data: TopData, views: readonly ViewName[], width: number, limit: number): string {
  const out: string[] = [];
  const section = (t: Table): void => {
    out.push(t.header.trimEnd());
    for (const l of t.lines.slice(0, limit)) out.push(l.text.trimEnd());
    if (t.lines.length > limit) out.push(`… ${t.lines.length - limit} more`);
    out.push('');
  };
  for (const v of views) {
    const s = { ...state, view: v };
    out.push(`== ${VIEW_TITLES[v]}: ${statusText(s, data)}`);
    if (v === 'destinations') section(destinationTable(s, data, width));
    else if (v === 'queues') {
      section(queueTable(s, data, width));
      section(listenerTable(s, data, width));
    } else section(processTable(s, data, width));
  }
  if (data.note) out.push(data.note);
  return out.join('\n') + '\n';
}
