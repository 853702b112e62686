// `sockwatch exporter`: a Prometheus exporter. Wiring only: the metrics are lib/metrics/register.ts's
// (on a prom-client registry of our own), the HTTP side lib/metrics/server.ts, the web config
// lib/metrics/web-config.ts. Bad input (the address, a taken port, the web config, numbers) exits 2
// with one line naming it; SIGTERM / SIGINT stop cleanly (exit 0).
import * as fs from 'node:fs';
import { UINT32_MAX } from '../base/validate';
import { renderExposition, type MetricFamily } from '../metrics/exposition';
import { loadPromClient, registerMetrics } from '../metrics/register';
import { parseListenAddress, startMetricsServer, type ListenAddress, type MetricsServer } from '../metrics/server';
import { loadWebConfig, WebConfigError, type WebConfig } from '../metrics/web-config';
import { parsePortSpec, type ByteThreshold } from '../sampler';
import { intFlag, listFlag, parse, sizeFlag, usage } from './args';
import { UsageError } from './errors';
import { prefixFlag, resolveNetns } from './filters';

export const EXPORTER_HELP = `Usage: sockwatch exporter [options]

Serve Prometheus metrics of every TCP and UDP socket: GET /metrics (Prometheus text format, or
OpenMetrics when the scraper asks for it), GET /healthz. A scrape scans the kernel, at most once
per --min-interval however many scrapers there are (concurrent scrapes share one scan).

  --listen HOST:PORT       where to listen (default 127.0.0.1:9630; [::1]:PORT, 0.0.0.0:PORT;
                           port 0 picks a free one, printed at start)
  --min-interval DURATION  reuse a scan younger than this (default 1s; 500ms, 2s, 0 = every scrape)
  --top N                  destinations with their own sockwatch_outbound_connections series
                           (default 50); the rest add up in destination="other"
  --exclude-ports LIST     local ports or ranges whose connections are not outbound (default
                           80,443,2222, as sockwatch snat)
  --recv-threshold BYTES   count sockets whose receive queue is above (k/m/g units) in
  --send-threshold BYTES   sockwatch_queue_over_threshold_sockets (default: not counted)
  --src PREFIX             scan only sockets from these local addresses or CIDR prefixes
  --dst PREFIX             scan only sockets to these remote addresses or prefixes (repeat or
                           comma-separate; filtered in the kernel, like ss src/dst)
  --all-netns              every network namespace of the host, each series labelled netns,
                           plus sockwatch_netns_info and sockwatch_netns_up (needs
                           CAP_SYS_ADMIN and CAP_SYS_PTRACE, e.g. root)
  --netns PATH|NAME        one other network namespace instead (/proc/PID/ns/net, a name)
  --web.config.file PATH   TLS and basic auth, in the Prometheus exporters' web config format
  -h, --help               this help`;

/** The flags --metrics-listen shares with queues and snat. */
export const METRICS_LISTEN_OPTIONS = {
  'metrics-listen': { type: 'string' },
  'web.config.file': { type: 'string' },
} as const;

export const METRICS_LISTEN_HELP = `Metrics:
  --metrics-listen HOST:PORT  serve this command's own Prometheus metrics at /metrics
                            (127.0.0.1:PORT, [::1]:PORT, 0.0.0.0:PORT)
  --web.config.file PATH    TLS and basic auth for it (the Prometheus exporters' web config)`;

/** A duration flag: a number of seconds, or with a unit ms, s, m or h ("500ms", "1s", "1.5s", "2m", "1h"). */
export function durationFlag(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/.exec(String(value).trim());
  if (!m) throw new UsageError(`${name}: "${String(value)}" is not a duration (like 500ms, 1s, 2m, 1h; a bare number is seconds)`);
  const ms = Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const)[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  if (ms > 2 ** 31 - 1) throw new UsageError(`${name}: "${String(value)}" is too long`);
  return Math.round(ms);
}

/** The listen address of `flag`, checked. */
export function listenFlag(flag: string, value: unknown): ListenAddress {
  return usage(() => parseListenAddress(String(value), flag));
}

/** The web config of --web.config.file, checked now (a bad one exits 2 naming the file). */
export function webConfigFlag(value: unknown): WebConfig | undefined {
  if (value === undefined) return undefined;
  if (value === '') throw new UsageError('--web.config.file: expected a file');
  try {
    return loadWebConfig(String(value));
  } catch (e) {
    if (e instanceof WebConfigError) throw new UsageError(`--web.config.file ${e.message}`);
    throw e;
  }
}

/** Listens; a taken port or an address that cannot be bound is bad input (exit 2) naming the flag. */
export async function listenOrExplain(
  flag: string,
  listen: ListenAddress,
  webConfig: WebConfig | undefined,
  render: (format: 'prometheus' | 'openmetrics') => Promise<string>,
): Promise<MetricsServer> {
  try {
    return await startMetricsServer({ listen, webConfig, render });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'EADDRINUSE'
        ? 'the address is already in use'
        : err.code === 'EADDRNOTAVAIL'
          ? 'no interface has this address'
          : err.code === 'EACCES'
            ? 'permission denied (ports below 1024 need root)'
            : err.message;
    const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    throw new UsageError(`${flag} ${host}:${listen.port}: cannot listen: ${why}${err.code ? ` (${err.code})` : ''}`);
  }
}

/**
 * A prom-client registry of our own, rendered by lib/metrics/exposition.ts in the negotiated format. It
 * carries prom-client's default metrics too (process_* and nodejs_*: RSS, CPU, open fds, heap, GC,
 * event-loop lag), which operators expect of every exporter (memory against the pod's limit, restarts by
 * process_start_time_seconds). The event-loop lag is sampled every 100 ms, not prom-client's 10 ms: an
 * agent on every node should not wake a hundred times a second for it.
 */
export function newRegistry(): {
  registry: import('prom-client').Registry;
  render: (format: 'prometheus' | 'openmetrics') => Promise<string>;
} {
  const prom = loadPromClient();
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  return {
    registry,
    render: async (format) => renderExposition(lintable((await registry.getMetricsAsJSON()) as unknown as MetricFamily[]), format),
  };
}

/**
 * The families without prom-client's gauges named `…_total` (nodejs_active_handles_total and its kin):
 * `promtool check metrics` refuses a non-counter with that suffix, and each is the sum of a gauge kept.
 */
function lintable(families: MetricFamily[]): MetricFamily[] {
  return families.filter((f) => !(f.type === 'gauge' && f.name.endsWith('_total')));
}

export interface MetricsListen {
  listen: ListenAddress;
  webConfig: WebConfig | undefined;
}

/** --metrics-listen and --web.config.file of queues / snat, checked; undefined without --metrics-listen. */
export function metricsListenFlags(values: Record<string, unknown>): MetricsListen | undefined {
  if (values['metrics-listen'] === undefined) {
    if (values['web.config.file'] !== undefined) throw new UsageError('--web.config.file needs --metrics-listen');
    return undefined;
  }
  return { listen: listenFlag('--metrics-listen', values['metrics-listen']), webConfig: webConfigFlag(values['web.config.file']) };
}

/**
 * Serves a command's own metrics: `register` puts them on a fresh registry; the address goes to
 * stderr. The command closes the server when it stops.
 */
export async function serveCommandMetrics(
  command: string,
  m: MetricsListen,
  register: (registry: import('prom-client').Registry) => void,
): Promise<MetricsServer> {
  const { registry, render } = newRegistry();
  register(registry);
  const server = await listenOrExplain('--metrics-listen', m.listen, m.webConfig, render);
  process.stderr.write(`sockwatch ${command}: metrics at ${server.url}\n`);
  return server;
}

const CAP_SYS_ADMIN = 21;

/** Whether this process has a capability in its effective set (CapEff of /proc/self/status). */
function hasCapability(bit: number): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m !== null && ((BigInt(`0x${m[1]}`) >> BigInt(bit)) & 1n) === 1n;
  } catch {
    return process.getuid?.() === 0;
  }
}

/** Resolves on the first SIGTERM or SIGINT. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

export async function runExporter(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parse(argv, {
    listen: { type: 'string' },
    'min-interval': { type: 'string' },
    top: { type: 'string' },
    'exclude-ports': { type: 'string', multiple: true },
    'recv-threshold': { type: 'string' },
    'send-threshold': { type: 'string' },
    src: { type: 'string', multiple: true },
    dst: { type: 'string', multiple: true },
    'all-netns': { type: 'boolean' },
    netns: { type: 'string' },
    'web.config.file': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out.write(EXPORTER_HELP + '\n');
    return 0;
  }
  const listen = listenFlag('--listen', values.listen ?? '127.0.0.1:9630');
  const minIntervalMs = durationFlag('--min-interval', values['min-interval']);
  const top = intFlag('--top', values.top, { min: 1, max: 100_000 });
  const threshold = (flag: string, v: unknown): ByteThreshold | undefined => (v === 'off' ? 'off' : sizeFlag(flag, v, { max: UINT32_MAX }));
  const recvThreshold = threshold('--recv-threshold', values['recv-threshold']);
  const sendThreshold = threshold('--send-threshold', values['send-threshold']);
  let excludeLocalPorts: string[] | undefined;
  if (values['exclude-ports'] !== undefined) {
    excludeLocalPorts = listFlag(values['exclude-ports']) ?? [];
    for (const p of excludeLocalPorts) usage(() => parsePortSpec(p, '--exclude-ports'));
  }
  const allNetns = values['all-netns'] === true;
  if (allNetns && values.netns !== undefined) throw new UsageError('--all-netns and --netns exclude each other: give one');
  const netns = resolveNetns(values.netns);
  const webConfig = webConfigFlag(values['web.config.file']);
  const localAddresses = prefixFlag('src', values.src);
  const remoteAddresses = prefixFlag('dst', values.dst);

  const { registry, render } = newRegistry();
  const handle = usage(() =>
    registerMetrics(registry, {
      ...(minIntervalMs !== undefined ? { minIntervalMs } : {}),
      ...(top !== undefined ? { top } : {}),
      ...(excludeLocalPorts !== undefined ? { excludeLocalPorts } : {}),
      ...(recvThreshold !== undefined ? { recvThreshold } : {}),
      ...(sendThreshold !== undefined ? { sendThreshold } : {}),
      ...(localAddresses !== undefined ? { localAddresses } : {}),
      ...(remoteAddresses !== undefined ? { remoteAddresses } : {}),
      ...(allNetns ? { allNetns } : {}),
      ...(netns !== undefined ? { netns } : {}),
    }),
  );
  let server: MetricsServer;
  try {
    server = await listenOrExplain('--listen', listen, webConfig, render);
  } catch (e) {
    await handle.close();
    throw e;
  }
  const stopped = untilSignal();
  // Not refused: a namespace that cannot be entered is sockwatch_netns_up 0, never a failed scrape.
  if (allNetns && !hasCapability(CAP_SYS_ADMIN))
    process.stderr.write(
      'sockwatch exporter: without CAP_SYS_ADMIN (root, or the capability) no other network namespace can be entered: they show as sockwatch_netns_up 0\n',
    );
  process.stderr.write(
    `sockwatch exporter: serving ${server.url}${allNetns ? ' (every network namespace)' : ''}` +
      `${webConfig?.users ? ' with basic auth' : ''}\n`,
  );
  const sig = await stopped;
  await server.close();
  await handle.close();
  process.stderr.write(`sockwatch exporter: stopped (${sig})\n`);
  return 0;
}
