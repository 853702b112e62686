// The text log users of the original script know, and its JSON-lines twin.
//
//   --------------------------------------------------------------------------------
//   Remote Address:Port                           Total    States (Count)
//   --------------------------------------------------------------------------------
//   10.1.2.3:1433                                 130       ESTABLISHED(120) TIME_WAIT(10)  | 240s: 181 distinct
//   2025-02-12 10:00:00: Connection threshold exceeded
//   --------------------------------------------------------------------------------
//   Current timestamp: 2025-02-12 10:00:00
//
// State names are netstat's (the script parsed `netstat -natp`), counts in parentheses, the largest
// first. After the states, "| 240s: N distinct" gives the connections seen in the window. Times are
// local, as `date` prints them; the file name carries the local hour.
import { safeInstanceName } from '../base/instance-name';
import type { DestinationCount, OutboundPoll } from './watcher';

export const RULE = '-'.repeat(80);

const NETSTAT_NAMES: Record<string, string> = {
  established: 'ESTABLISHED',
  'syn-sent': 'SYN_SENT',
  'syn-recv': 'SYN_RECV',
  'fin-wait-1': 'FIN_WAIT1',
  'fin-wait-2': 'FIN_WAIT2',
  'time-wait': 'TIME_WAIT',
  close: 'CLOSE',
  'close-wait': 'CLOSE_WAIT',
  'last-ack': 'LAST_ACK',
  listen: 'LISTEN',
  closing: 'CLOSING',
};

/** netstat's spelling of an ss state name (time-wait → TIME_WAIT). */
export function netstatStateName(state: string): string {
  return NETSTAT_NAMES[state] ?? state.toUpperCase().replace(/-/g, '_');
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** `YYYY-MM-DD HH:MM:SS` in local time, as `date '+%Y-%m-%d %H:%M:%S'`. */
export function logTimestamp(date: Date): string {
  return `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())} ${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
}

/** `YYYY-MM-DD_HH` in local time, as `date +"%Y-%m-%d_%H"`: the hour part of the log file name. */
export function hourKey(date: Date): string {
  return `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}_${pad2(date.getHours())}`;
}

/** `outbound_conns_stats_{YYYY-MM-DD_HH}.log` (or `.jsonl`). */
export function statsFileName(date: Date, extension: 'log' | 'jsonl' = 'log'): string {
  return `outbound_conns_stats_${hourKey(date)}.${extension}`;
}

/** `outconn-logs-{instance}` with the instance made safe for a directory name. */
export function logDirName(instance: string): string {
  return `outconn-logs-${safeInstanceName(instance)}`;
}

/** " ESTABLISHED(120) TIME_WAIT(10)": largest count first, then by name. */
export function formatStates(states: Record<string, number>): string {
  return Object.entries(states)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([name, n]) => `${netstatStateName(name)}(${n})`)
    .join(' ');
}

function seconds(ms: number): string {
  const s = ms / 1000;
  return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
}

export function formatDestinationRow(d: DestinationCount, windowMs: number): string {
  const states = formatStates(d.states);
  // The script printed "%-45s %-8d %s" with a states string that began with a space.
  const row = `${d.remote.padEnd(45)} ${String(d.total).padEnd(8)}  ${states}`;
  return `${row}  | ${seconds(windowMs)}: ${d.distinctInWindow} distinct`;
}

/** The table of one poll: rule, header, rule, one row per destination. */
export function formatPollTable(poll: OutboundPoll): string[] {
  return [
    RULE,
    `${'Remote Address:Port'.padEnd(45)} ${'Total'.padEnd(8)} States (Count)`,
    RULE,
    ...poll.destinations.map((d) => formatDestinationRow(d, poll.windowMs)),
  ];
}

/** "2025-02-12 10:00:00: Connection threshold exceeded" (or "within threshold"). */
export function formatVerdict(poll: OutboundPoll): string {
  return `${logTimestamp(poll.time)}: ${poll.exceeded ? 'Connection threshold exceeded' : 'Connection count within threshold'}`;
}

/** Everything a poll appends to the text log. */
export function formatPollBlock(poll: OutboundPoll): string[] {
  const lines = formatPollTable(poll);
  lines.push(formatVerdict(poll));
  if (poll.exceeded && poll.busiest) {
    const what = poll.thresholdOn === 'window' ? `distinct connections in the last ${seconds(poll.windowMs)}` : 'connections';
    lines.push(`${logTimestamp(poll.time)}: ${poll.busiest.remote} has ${poll.busiestCount} ${what} (threshold ${poll.threshold})`);
  }
  if (poll.pid !== undefined && poll.pidAlive === false) {
    lines.push(`${logTimestamp(poll.time)}: process ${poll.pid} has exited; counting only its remaining TIME_WAIT connections`);
  }
  lines.push(RULE, `Current timestamp: ${logTimestamp(poll.time)}`);
  return lines;
}

/** The JSON-lines record of a poll. */
export function pollRecord(poll: OutboundPoll): Record<string, unknown> {
  return {
    time: poll.time.toISOString(),
    type: 'poll',
    exceeded: poll.exceeded,
    threshold: poll.threshold,
    thresholdOn: poll.thresholdOn,
    windowSeconds: poll.windowMs / 1000,
    busiest: poll.busiest ? { remote: poll.busiest.remote, count: poll.busiestCount } : null,
    socketsCounted: poll.socketsCounted,
    ...(poll.pid !== undefined ? { pid: poll.pid, pidAlive: poll.pidAlive } : {}),
    scanMs: Math.round(poll.scanMs * 1000) / 1000,
    destinations: poll.destinations.map((d) => ({
      remote: d.remote,
      total: d.total,
      states: d.states,
      distinctInWindow: d.distinctInWindow,
    })),
  };
}
