// What one exporter scan measures, as metric families. One scan per namespace asks the kernel for
// everything at once (per-state counts per protocol and family, queue histograms, sockets over the
// thresholds, the fullest listeners, per-destination aggregation with the `sockwatch snat` rule), all
// computed in C++ in the same pass: a scan creates no JavaScript object per socket, only per
// destination kept (at most `top`) and per listener kept. Scans are coalesced (lib/metrics/coalesce.ts):
// concurrent callers share one, and a result younger than minIntervalMs is reused, so many scrapers
// cost what one does.
//
// Outbound connections follow `sockwatch snat`: OUTBOUND_STATES, sockets on excluded local ports not
// aggregated (but still counted and histogrammed), IPv4-mapped remotes merged into IPv4; the top N
// destinations and one destination="other" holding the rest (aggregatedSockets minus the top). The
// distinct-240s window (lib/outbound/window.ts) is kept per namespace and dropped with it.
import { formatEndpoint } from '../address';
import * as v from '../base/validate';
import { DEFAULT_EXCLUDED_PORTS, OUTBOUND_STATES } from '../outbound/watcher';
import { DistinctWindow } from '../outbound/window';
import {
  CompiledSampleOptions,
  DEFAULT_QUEUE_HISTOGRAM_BOUNDS,
  Sampler,
  type ByteThreshold,
  type PortSpec,
  type QueueHistogram,
  type SampleResult,
} from '../sampler';
import { Coalescer } from './coalesce';
import type { MetricSample, MetricType } from './exposition';

/** The distinct-connections window of sockwatch_outbound_connections_distinct_240s (Azure's SNAT port hold). */
const DISTINCT_WINDOW_MS = 240_000;

export interface SamplerMetricsOptions {
  /** A scan result younger than this is reused (ms, default 1000); concurrent scrapes always share one scan. */
  minIntervalMs?: number;
  /** Destinations with their own sockwatch_outbound_connections series (default 50); the rest are destination="other". */
  top?: number;
  /** Local ports (or "from-to" ranges) whose connections are not outbound (default 80, 443, 2222, as `sockwatch snat`). */
  excludeLocalPorts?: readonly PortSpec[];
  /** sockwatch_queue_over_threshold_sockets counts sockets whose receive (send) queue is strictly greater (bytes). */
  recvThreshold?: ByteThreshold;
  sendThreshold?: ByteThreshold;
  /** Scan only sockets from (to) these addresses or CIDR prefixes (as `--src` / `--dst`). */
  localAddresses?: readonly string[];
  remoteAddresses?: readonly string[];
  /** Listeners with their own sockwatch_listen_* series, the fullest by accept queue / backlog (default 10). */
  listeners?: number;
  /** Every network namespace of the host (lib/netns), each series labelled `netns` (needs root). */
  allNetns?: boolean;
  /** One other network namespace (/proc/PID/ns/net or /var/run/netns/NAME); not with allNetns. */
  netns?: string;
}

const OPTION_KEYS = [
  'minIntervalMs',
  'top',
  'excludeLocalPorts',
  'recvThreshold',
  'sendThreshold',
  'localAddresses',
  'remoteAddresses',
  'listeners',
  'allNetns',
  'netns',
] as const;

/** What lib/netns tells about a namespace (the fields used here). */
export interface NetnsInfo {
  inode: number;
  comm: string;
  podUid?: string;
  containerId?: string;
}

interface ScanOutcome {
  netns?: NetnsInfo;
  result?: SampleResult;
  error?: Error;
}

/** One sampler, or every namespace's (lib/netns NamespaceScanner): never throws for one namespace. */
interface ScanSource {
  scan(options: CompiledSampleOptions): Promise<ScanOutcome[]>;
  close(): Promise<void>;
}

interface Destination {
  destination: string;
  count: number;
  distinct: number;
}

/** One namespace's scan, reduced to what the families need. */
export interface NamespaceSnapshot {
  /** The netns label ('' without allNetns). */
  key: string;
  netns?: NetnsInfo;
  result?: SampleResult;
  error?: Error;
  destinations: Destination[];
  other: Destination;
}

export interface MetricsSnapshot {
  namespaces: NamespaceSnapshot[];
}

/** Called as scans happen (the prom-client metrics of lib/metrics/register.ts follow them). */
export interface ScanObserver {
  scanned(netns: string, seconds: number): void;
  failed(netns: string, code: string): void;
  vanished(netns: string): void;
}

function singleSource(netns: string | undefined): ScanSource {
  const sampler = new Sampler({ netns });
  return {
    async scan(options) {
      try {
        return [{ result: await sampler.sample(options) }];
      } catch (e) {
        return [{ error: e as Error }];
      }
    },
    close: () => sampler.close(),
  };
}

interface NamespaceScannerLike {
  scan(options: CompiledSampleOptions): Promise<ScanOutcome[]>;
  close(): Promise<void> | void;
}

function allNetnsSource(): ScanSource {
  // lib/netns is loaded only for --all-netns.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { NamespaceScanner } = require('../netns') as { NamespaceScanner: new () => NamespaceScannerLike };
  const scanner = new NamespaceScanner();
  return { scan: (o) => scanner.scan(o), close: async () => void (await scanner.close()) };
}

export class SamplerMetrics {
  readonly allNetns: boolean;
  readonly top: number;
  readonly thresholds: { recv: boolean; send: boolean };
  /** Scans started (each is one kernel pass per namespace). */
  scans = 0;
  private readonly request: CompiledSampleOptions;
  private readonly source: ScanSource;
  private readonly coalescer: Coalescer<MetricsSnapshot>;
  private readonly windows = new Map<string, DistinctWindow>();
  private observer: ScanObserver | undefined;
  private closed = false;

  constructor(options: SamplerMetricsOptions = {}) {
    const o = v.optionsObject<SamplerMetricsOptions>(options, 'options', OPTION_KEYS);
    const minIntervalMs = v.duration(o.minIntervalMs, 'options.minIntervalMs', 1000, 0, v.TIMER_MAX_MS);
    this.top = v.optInteger(o.top, 'options.top', 50, { min: 1, max: 100_000 });
    const listeners = v.optInteger(o.listeners, 'options.listeners', 10, { min: 0, max: 100_000 });
    this.allNetns = v.boolean(o.allNetns, 'options.allNetns');
    if (this.allNetns && o.netns !== undefined) throw new TypeError('options.netns and options.allNetns exclude each other');
    const recvThreshold = v.byteThreshold(o.recvThreshold, 'options.recvThreshold', 'off');
    const sendThreshold = v.byteThreshold(o.sendThreshold, 'options.sendThreshold', 'off');
    this.thresholds = { recv: recvThreshold !== 'off', send: sendThreshold !== 'off' };
    this.request = new CompiledSampleOptions(
      {
        ...(o.localAddresses !== undefined ? { localAddresses: o.localAddresses } : {}),
        ...(o.remoteAddresses !== undefined ? { remoteAddresses: o.remoteAddresses } : {}),
        recvThreshold,
        sendThreshold,
        maxRecords: 0,
        queueHistogram: { bounds: DEFAULT_QUEUE_HISTOGRAM_BOUNDS },
        ...(listeners > 0 ? { listeners: { top: listeners } } : {}),
        aggregate: {
          states: OUTBOUND_STATES,
          cookies: true,
          top: this.top,
          excludeLocalPorts: o.excludeLocalPorts ?? DEFAULT_EXCLUDED_PORTS,
          mergeMapped: true,
        },
      },
      'options',
    );
    this.source = this.allNetns ? allNetnsSource() : singleSource(o.netns);
    this.coalescer = new Coalescer(() => this.scanNow(), minIntervalMs);
  }

  /** Follows scans: durations, failures, namespaces gone (one observer). */
  observe(observer: ScanObserver): void {
    this.observer = observer;
  }

  /** The current snapshot: a new scan, the one in flight, or one younger than minIntervalMs. */
  refresh(): Promise<MetricsSnapshot> {
    if (this.closed) return Promise.resolve({ namespaces: [] });
    return this.coalescer.get();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.source.close();
  }

  private async scanNow(): Promise<MetricsSnapshot> {
    this.scans++;
    const outcomes = await this.source.scan(this.request);
    const nowMs = Date.now();
    const seen = new Set<string>();
    const namespaces = outcomes.map((s) => {
      const key = this.allNetns && s.netns ? String(s.netns.inode) : '';
      seen.add(key);
      if (s.error || !s.result) {
        this.observer?.failed(key, (s.error as NodeJS.ErrnoException | undefined)?.code ?? 'unknown');
        return { key, netns: s.netns, error: s.error ?? new Error('no result'), destinations: [], other: otherOf(0, 0) };
      }
      this.observer?.scanned(key, s.result.elapsedNs / 1e9);
      return this.snapshotOf(key, s.netns, s.result as SampleResult, nowMs);
    });
    for (const key of [...this.windows.keys()]) {
      if (seen.has(key)) continue;
      this.windows.delete(key);
      this.observer?.vanished(key);
    }
    return { namespaces };
  }

  private snapshotOf(key: string, netns: NetnsInfo | undefined, result: SampleResult, nowMs: number): NamespaceSnapshot {
    let window = this.windows.get(key);
    if (!window) this.windows.set(key, (window = new DistinctWindow(DISTINCT_WINDOW_MS)));
    const aggs = result.aggregates;
    // The native pass returns the cookie of every aggregated socket; those of destinations cut by
    // `top` have the index aggregates.length, which is "other" here (it stands last in `remotes`).
    // So "other" in the window is every connection seen outside the top (plus those remembered for
    // destinations that left it), and never less than the sockets in "other" now.
    const remotes = [...aggs, { remote: 'other', family: 4 as const, remoteAddress: '', remotePort: 0 }];
    window.observe(nowMs, result.aggCookies ?? [], result.aggCookieIndex ?? [], remotes);
    const distinct = window.counts(nowMs);
    let topSum = 0;
    let topDistinct = 0;
    const destinations = aggs.map((a) => {
      const d = Math.max(distinct.get(a.remote) ?? 0, a.total);
      topSum += a.total;
      topDistinct += d;
      return { destination: a.remote, count: a.total, distinct: d };
    });
    let distinctTotal = 0;
    for (const n of distinct.values()) distinctTotal += n;
    const other = (result.aggregatedSockets ?? topSum) - topSum;
    return { key, netns, result, destinations, other: otherOf(other, Math.max(distinctTotal - topDistinct, other)) };
  }
}

function otherOf(count: number, distinct: number): Destination {
  return { destination: 'other', count, distinct };
}

// ---- families ----

export interface FamilyDescriptor {
  name: string;
  help: string;
  type: MetricType;
  values(snapshot: MetricsSnapshot): MetricSample[];
}

type Labels = Record<string, string | number>;

function nsLabels(m: SamplerMetrics, ns: NamespaceSnapshot): Labels {
  return m.allNetns ? { netns: ns.key } : {};
}

/** Samples of every scanned namespace (failed ones have none). */
function perNamespace(
  m: SamplerMetrics,
  each: (ns: NamespaceSnapshot & { result: SampleResult }, labels: Labels, out: MetricSample[]) => void,
): (s: MetricsSnapshot) => MetricSample[] {
  return (s) => {
    const out: MetricSample[] = [];
    for (const ns of s.namespaces) if (ns.result) each(ns as NamespaceSnapshot & { result: SampleResult }, nsLabels(m, ns), out);
    return out;
  };
}

const PROTOCOLS = ['tcp', 'udp'] as const;
const QUEUES = ['recv', 'send'] as const;

/** Samples of one outbound series (connections now or distinct in the window): the top destinations and "other". */
export function outboundSamples(
  destinations: readonly Destination[],
  other: Destination,
  pick: 'count' | 'distinct',
  labels: Labels = {},
): MetricSample[] {
  const out = destinations.map((d) => ({ labels: { ...labels, destination: d.destination }, value: d[pick] }));
  out.push({ labels: { ...labels, destination: 'other' }, value: other[pick] });
  return out;
}

export const OUTBOUND_HELP = {
  now: 'Outbound TCP connections per remote endpoint (sockwatch snat rule: established, time-wait, close-wait, fin-wait-1/2; excluded local ports left out; IPv4-mapped merged); the top destinations and destination="other" for the rest.',
  distinct:
    'Distinct outbound TCP connections per remote endpoint seen in the last 240 s (Azure holds a SNAT port 4 minutes after close); the top destinations and destination="other".',
};

/** The families computed from each scan snapshot (gauges and the queue histogram). */
export function snapshotFamilies(m: SamplerMetrics): FamilyDescriptor[] {
  const families: FamilyDescriptor[] = [
    {
      name: 'sockwatch_sockets',
      help: 'Sockets per protocol, address family and state (ss state names), counted in the kernel pass.',
      type: 'gauge',
      values: perNamespace(m, (ns, labels, out) => {
        const by = ns.result.stateCountsByFamily;
        if (!by) return;
        for (const protocol of PROTOCOLS)
          for (const fam of [4, 6] as const)
            for (const [state, n] of Object.entries(by[protocol]?.[fam] ?? {}))
              if (n > 0) out.push({ labels: { ...labels, protocol, family: fam === 4 ? 'ipv4' : 'ipv6', state }, value: n });
      }),
    },
    {
      name: 'sockwatch_outbound_connections',
      help: OUTBOUND_HELP.now,
      type: 'gauge',
      values: perNamespace(m, (ns, labels, out) => out.push(...outboundSamples(ns.destinations, ns.other, 'count', labels))),
    },
    {
      name: 'sockwatch_outbound_connections_distinct_240s',
      help: OUTBOUND_HELP.distinct,
      type: 'gauge',
      values: perNamespace(m, (ns, labels, out) => out.push(...outboundSamples(ns.destinations, ns.other, 'distinct', labels))),
    },
    {
      // Written directly, not with prom-client's Histogram: its only way in is observe(), one value
      // at a time, which would mean one call per socket per scrape. The buckets come counted from C++.
      name: 'sockwatch_queue_bytes',
      help: 'Receive and send queue sizes of sockets (bytes; UDP: kernel memory), TCP listeners left out; buckets counted in the kernel pass.',
      type: 'histogram',
      values: perNamespace(m, (ns, labels, out) => {
        const h = ns.result.queueHistograms;
        if (!h) return;
        for (const protocol of PROTOCOLS)
          for (const queue of QUEUES) {
            const one = h[protocol]?.[queue];
            if (one) out.push(...histogramSamples('sockwatch_queue_bytes', one, { ...labels, protocol, queue }));
          }
      }),
    },
  ];
  if (m.thresholds.recv || m.thresholds.send) {
    families.push({
      name: 'sockwatch_queue_over_threshold_sockets',
      help: 'Sockets (TCP and UDP together) whose queue is strictly greater than --recv-threshold / --send-threshold (bytes).',
      type: 'gauge',
      values: perNamespace(m, (ns, labels, out) => {
        for (const queue of QUEUES)
          if (m.thresholds[queue]) out.push({ labels: { ...labels, queue }, value: ns.result.overThreshold[queue] });
      }),
    });
  }
  const listenerFamily = (name: string, help: string, field: 'acceptQueue' | 'backlog'): FamilyDescriptor => ({
    name,
    help,
    type: 'gauge',
    values: perNamespace(m, (ns, labels, out) => {
      // Sockets sharing one address (SO_REUSEPORT) are summed: one series per local endpoint.
      const byLocal = new Map<string, number>();
      for (const l of ns.result.listeners ?? []) {
        const local = formatEndpoint(l.localAddress, l.localPort);
        byLocal.set(local, (byLocal.get(local) ?? 0) + l[field]);
      }
      for (const [local, n] of byLocal) out.push({ labels: { ...labels, local }, value: n });
    }),
  });
  families.push(
    listenerFamily(
      'sockwatch_listen_accept_queue',
      'Connections waiting for accept() on the fullest TCP listeners (by accept queue / backlog).',
      'acceptQueue',
    ),
    listenerFamily('sockwatch_listen_backlog', 'The listen() backlog limit of the same listeners.', 'backlog'),
  );
  if (m.allNetns) {
    families.push(
      {
        name: 'sockwatch_netns_info',
        help: 'One series per network namespace scanned: who owns it (pod UID and container id from /proc/PID/cgroup, a process name); join on pod_uid with kube_pod_info{uid}.',
        type: 'gauge',
        values: (s) =>
          s.namespaces.map((ns) => ({
            labels: {
              netns: ns.key,
              pod_uid: ns.netns?.podUid ?? '',
              container_id: ns.netns?.containerId ?? '',
              comm: ns.netns?.comm ?? '',
            },
            value: 1,
          })),
      },
      {
        name: 'sockwatch_netns_up',
        help: '1 when the network namespace was scanned, 0 when it could not be entered or scanned (sockwatch_scan_errors_total says why).',
        type: 'gauge',
        values: (s) => s.namespaces.map((ns) => ({ labels: { netns: ns.key }, value: ns.result ? 1 : 0 })),
      },
    );
  }
  return families;
}

/** Cumulative _bucket samples, _sum and _count of a histogram whose per-bucket counts are given. */
export function histogramSamples(name: string, h: QueueHistogram, labels: Labels): MetricSample[] {
  const out: MetricSample[] = [];
  let cumulative = 0;
  for (let i = 0; i <= h.bounds.length; i++) {
    cumulative += h.counts[i] ?? 0;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: i < h.bounds.length ? h.bounds[i]! : '+Inf' }, value: cumulative });
  }
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}
