// `sockwatch top`: a full-screen live view of destinations, queues and processes (lib/top/). When
// stdout is not a terminal, or with --once, one plain snapshot instead. Wiring only.
import { DEFAULT_EXCLUDED_PORTS, DEFAULT_THRESHOLD } from '../outbound/watcher';
import { QUEUE_DEFAULTS } from '../queues/watcher';
import { parsePortSpec } from '../sampler';
import { Top } from '../top/app';
import { styleFor } from '../top/format';
import { VIEWS, type ViewName } from '../top/views';
import { decimalFlag, intFlag, listFlag, parse, sizeFlag, usage } from './args';
import { UsageError } from './errors';

export const TOP_HELP = `Usage: sockwatch top [options]

A live, full-screen view of the host's connections and queues, refreshed every --interval:
  Destinations  outbound TCP connections per remote address:port, counted as snat counts them
                (ESTABLISHED, TIME_WAIT, CLOSE_WAIT, FIN_WAIT1/2; local ports of --exclude-ports
                left out; ::ffff:a.b.c.d counted as IPv4), states, distinct connections in the
                last 240 s, and a sparkline of the last minute
  Queues        sockets with the largest receive / send queues and their owner (pid, command,
                looked up only for the rows shown), and listeners: accept queue against backlog
  Processes     TCP and UDP sockets per owning process and state, from a walk of /proc/*/fd done
                only while this view is shown, every few seconds; TIME_WAIT and SYN_RECV sockets
                belong to no process and are counted apart (per namespace with --all-netns)
Keys: 1 2 3 or Tab switch view, s sort column, / filter (port, pid, address, command), p pause,
q quit, ? help. When stdout is not a terminal it prints one plain snapshot and exits.

Options:
  --interval SECONDS       time between samples (default 1; fractions allowed, at least 0.1)
  -t THRESHOLD             destinations with more connections are marked (default 100, as snat)
  --recv-threshold BYTES   queues above are marked (default 1m; k/m/g units; off)
  --send-threshold BYTES   (default 1m)
  --exclude-ports LIST     local ports or ranges not counted as outbound (default 80,443,2222)
  --pid PID                count only that process's connections in Destinations, as snat --pid
                           does (its network namespace where it has one of its own)
  --all-netns              every network namespace of the host (needs root); rows name theirs
  --view NAME              the view to start with: destinations, queues or processes; with the
                           snapshot, only that view (default: all three)
  --filter TEXT            start with this filter (as the / key: a port or pid, or part of an
                           address, command or namespace)
  --once                   print one plain snapshot even on a terminal
  --limit N                rows per table in the snapshot (default 25)
  -h, --help               this help

Environment: NO_COLOR (not empty) draws without colors; rows over a threshold keep their "!" mark.`;

const MIN_INTERVAL_MS = 100;

export async function runTop(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parse(argv, {
    interval: { type: 'string' },
    threshold: { type: 'string', short: 't' },
    'recv-threshold': { type: 'string' },
    'send-threshold': { type: 'string' },
    'exclude-ports': { type: 'string', multiple: true },
    pid: { type: 'string' },
    'all-netns': { type: 'boolean' },
    view: { type: 'string' },
    filter: { type: 'string' },
    once: { type: 'boolean' },
    limit: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out.write(TOP_HELP + '\n');
    return 0;
  }
  const intervalMs = decimalFlag('--interval', values.interval, { scale: 1000, what: 'number of seconds', positive: true }) ?? 1000;
  if (intervalMs < MIN_INTERVAL_MS) throw new UsageError(`--interval: "${String(values.interval)}" is below the least interval, 0.1 s`);
  const threshold = intFlag('-t', values.threshold) ?? DEFAULT_THRESHOLD;
  const bytesFlag = (name: string, v: unknown, fallback: number): number | 'off' => (v === 'off' ? 'off' : (sizeFlag(name, v) ?? fallback));
  const recvThreshold = bytesFlag('--recv-threshold', values['recv-threshold'], QUEUE_DEFAULTS.recvThreshold);
  const sendThreshold = bytesFlag('--send-threshold', values['send-threshold'], QUEUE_DEFAULTS.sendThreshold);
  const excludeLocalPorts = listFlag(values['exclude-ports']) ?? DEFAULT_EXCLUDED_PORTS.map(String);
  for (const p of excludeLocalPorts) usage(() => parsePortSpec(p, '--exclude-ports'));
  const pid = intFlag('--pid', values.pid, { min: 1 });
  const allNetns = values['all-netns'] === true;
  if (pid !== undefined && allNetns)
    throw new UsageError('--pid and --all-netns: give one of them (--pid already counts the namespace of the process)');
  const view = values.view as string | undefined;
  if (view !== undefined && !(VIEWS as readonly string[]).includes(view)) {
    throw new UsageError(`--view: expected ${VIEWS.join(', ')}, got "${view}"`);
  }
  const limit = intFlag('--limit', values.limit, { min: 1 }) ?? 25;

  const top = new Top({
    intervalMs,
    threshold,
    recvThreshold,
    sendThreshold,
    excludeLocalPorts,
    ...(pid !== undefined ? { pid } : {}),
    allNetns,
    view: (view as ViewName | undefined) ?? 'destinations',
    style: styleFor(process.env),
    filter: typeof values.filter === 'string' ? values.filter.trim() : '',
  });
  const stdout = process.stdout;
  if (values.once === true || out !== stdout || !stdout.isTTY) {
    try {
      const width = stdout.isTTY && out === stdout ? stdout.columns : 120;
      out.write(await top.snapshot(view ? [view as ViewName] : VIEWS, width, limit));
      return 0;
    } finally {
      await top.close();
    }
  }
  return top.run(process.stdin, stdout);
}
