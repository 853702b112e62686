// registerMetrics(): the sampler's metrics on a caller's prom-client registry. prom-client is required
// here, on the first call, never at import: a library user who does not call this never loads it.
// prom-client's own classes hold what they fit (the scan-duration histogram, observed once per scan;
// the error counter; build info); the per-scan series are metric objects of our own that answer the
// registry's get() from the coalesced scan (lib/metrics/sampler-metrics.ts), since their values are
// replaced whole at every scan and the queue histogram comes counted from C++.
import type * as PromClient from 'prom-client';
import * as path from 'node:path';
import { addonPath, packageRoot, releaseVersion, standaloneInfo } from '../native';
import { SamplerMetrics, snapshotFamilies, type SamplerMetricsOptions } from './sampler-metrics';
import type { MetricFamily } from './exposition';

/** The part of a prom-client Registry used here (any prom-client 13 to 15 has it). */
export interface MetricsRegistry {
  registerMetric(metric: never): void;
  removeSingleMetric(name: string): void;
}

export interface MetricsHandle {
  /** Names of the metric families registered. */
  readonly names: readonly string[];
  /** Kernel scans started so far (one per namespace per scan); scrapes within minIntervalMs share one. */
  readonly scans: number;
  /** Removes the metrics from the registry and closes the sampler(s). Idempotent. */
  close(): Promise<void>;
}

export type RegisterMetricsOptions = SamplerMetricsOptions;

let promClient: typeof PromClient | undefined;
/** prom-client, loaded on first use. */
export function loadPromClient(): typeof PromClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  promClient ??= require('prom-client') as typeof PromClient;
  return promClient;
}

/** sockwatch_build_info labels: the release, the addon file loaded, Node.js. */
export function buildInfo(): { version: string; addon: string; node: string } {
  const standalone = standaloneInfo();
  if (standalone) return { version: standalone.version, addon: `embedded ${standalone.addon.file}`, node: process.version };
  const version = releaseVersion();
  let addon = 'not found';
  try {
    addon = path.relative(packageRoot, addonPath());
  } catch {
    /* not found */
  }
  return { version, addon, node: process.version };
}

/** Scan-duration buckets (seconds): a scan takes ~1 ms per 1k sockets on a quiet host. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Registers the sampler's metrics (README "Exporter" lists them) on `registry`. Every scrape of the
 * registry scans the kernel once (shared by concurrent scrapes, reused for options.minIntervalMs).
 * Throws when a metric of the same name is already registered there.
 */
export function registerMetrics(registry: MetricsRegistry, options: RegisterMetricsOptions = {}): MetricsHandle {
  if (typeof registry !== 'object' || registry === null || typeof registry.registerMetric !== 'function')
    throw new TypeError('registry must be a prom-client Registry');
  const prom = loadPromClient();
  const core = new SamplerMetrics(options);
  const nsLabel = core.allNetns ? (['netns'] as const) : ([] as const);
  const collect = async (): Promise<void> => void (await core.refresh());
  const duration = new prom.Histogram<string>({
    name: 'sockwatch_scan_duration_seconds',
    help: 'Time one kernel scan took (per network namespace with --all-netns).',
    labelNames: [...nsLabel],
    buckets: DURATION_BUCKETS,
    registers: [],
    collect,
  });
  const errors = new prom.Counter<string>({
    name: 'sockwatch_scan_errors_total',
    help: 'Kernel scans that failed, by error code (errno name; per network namespace with --all-netns).',
    labelNames: ['code', ...nsLabel],
    registers: [],
    collect,
  });
  const build = new prom.Gauge<string>({
    name: 'sockwatch_build_info',
    help: 'Always 1: the sockwatch version, the addon file it loaded and the Node.js version.',
    labelNames: ['version', 'addon', 'node'],
    registers: [],
  });
  build.set(buildInfo(), 1);
  const codesSeen = new Map<string, Set<string>>();
  const ns = (key: string): Record<string, string> => (core.allNetns ? { netns: key } : {});
  core.observe({
    scanned: (key, seconds) => duration.observe(ns(key), seconds),
    failed: (key, code) => {
      errors.inc({ code, ...ns(key) });
      if (!codesSeen.has(key)) codesSeen.set(key, new Set());
      codesSeen.get(key)!.add(code);
    },
    vanished: (key) => {
      // A namespace gone drops its series (scan durations and errors too).
      if (!core.allNetns) return;
      duration.remove(ns(key));
      for (const code of codesSeen.get(key) ?? []) errors.remove({ code, ...ns(key) });
      codesSeen.delete(key);
    },
  });
  const own = snapshotFamilies(core).map((f) => ({
    name: f.name,
    help: f.help,
    type: f.type,
    aggregator: 'sum' as const,
    collect: undefined,
    reset: (): void => undefined,
    get: async (): Promise<MetricFamily> => ({ name: f.name, help: f.help, type: f.type, values: f.values(await core.refresh()) }),
  }));
  const metrics: Array<[string, unknown]> = [
    ['sockwatch_build_info', build],
    ['sockwatch_scan_duration_seconds', duration],
    ['sockwatch_scan_errors_total', errors],
    ...own.map((m): [string, unknown] => [m.name, m]),
  ];
  const registered: string[] = [];
  try {
    for (const [name, m] of metrics) {
      registry.registerMetric(m as never);
      registered.push(name);
    }
  } catch (e) {
    for (const name of registered) registry.removeSingleMetric(name);
    void core.close();
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    names: registered,
    get scans() {
      return core.scans;
    },
    close() {
      closing ??= (async () => {
        for (const name of registered) registry.removeSingleMetric(name);
        await core.close();
      })();
      return closing;
    },
  };
}
