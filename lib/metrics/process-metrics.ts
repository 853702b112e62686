// The own state of `sockwatch queues` and `sockwatch snat` as Prometheus metrics (--metrics-listen):
// prom-client counters and gauges fed by the events the commands already emit. Counting only: no
// scan, no file read at scrape time beyond the outbox's in-memory index.
import type { Registry } from 'prom-client';
import type { HttpDelivery } from '../alerts/delivery';
import type { Outbox } from '../alerts/outbox';
import type { CollectionStep } from '../outbound/collector';
import type { OutboundPoll } from '../outbound/watcher';
import type { QueueWatcher } from '../queues';
import { loadPromClient } from './register';
import { OUTBOUND_HELP, outboundSamples } from './sampler-metrics';

/** `sockwatch queues`: alerts raised (per event), delivered, retried, dead-lettered, dropped; the outbox. */
export function queuesMetrics(
  registry: Registry,
  watcher: QueueWatcher,
  sink: { outbox: Outbox; delivery: HttpDelivery } | undefined,
): void {
  const prom = loadPromClient();
  const registers = [registry];
  const raised = new prom.Counter({
    name: 'sockwatch_alerts_raised_total',
    help: 'Queue alerts raised, by event (alert, repeat, resolved) and queue type (RECV, SEND, ACCEPT).',
    labelNames: ['event', 'type'],
    registers,
  });
  watcher.on('alert', (a) => raised.inc({ event: a.event, type: a.type }));
  if (!sink) return;
  const { outbox, delivery } = sink;
  const counter = (name: string, help: string): import('prom-client').Counter => new prom.Counter({ name, help, registers });
  const delivered = counter('sockwatch_alerts_delivered_total', 'Alerts the receiver accepted (HTTP 2xx).');
  const retried = counter(
    'sockwatch_alert_retries_total',
    'Delivery attempts that failed and were scheduled again (network error, timeout, 408, 429, 5xx).',
  );
  const dead = counter(
    'sockwatch_alerts_dead_lettered_total',
    'Alerts the receiver refused for good (another status), written to dead-letter.jsonl.',
  );
  const dropped = counter('sockwatch_alerts_dropped_total', 'Undelivered alerts dropped because the outbox was full (oldest first).');
  delivery.on('delivered', () => delivered.inc());
  delivery.on('retry', () => retried.inc());
  delivery.on('dead-letter', () => dead.inc());
  delivery.on('dropped', () => dropped.inc());
  new prom.Gauge({
    name: 'sockwatch_outbox_alerts',
    help: 'Alerts in the outbox not delivered yet.',
    registers,
    collect() {
      this.set(outbox.isClosed ? 0 : outbox.size);
    },
  });
  new prom.Gauge({
    name: 'sockwatch_outbox_oldest_alert_age_seconds',
    help: 'Age of the oldest undelivered alert (0 when the outbox is empty).',
    registers,
    collect() {
      const oldest = outbox.isClosed ? undefined : outbox.pending()[0];
      this.set(oldest ? Math.max(0, (Date.now() - oldest.createdAt) / 1000) : 0);
    },
  });
}

/** The hooks `sockwatch snat` calls (SnatSession's onPoll / onStep). */
export interface SnatMetricsHooks {
  poll(poll: OutboundPoll): void;
  step(step: CollectionStep): void;
}

/** `sockwatch snat`: collections started / uploaded / failed, bytes uploaded, per-destination counts of the last poll. */
export function snatMetrics(registry: Registry, top = 50): SnatMetricsHooks {
  const prom = loadPromClient();
  const registers = [registry];
  const byKind = (name: string, help: string): import('prom-client').Counter<'kind'> =>
    new prom.Counter({ name, help, labelNames: ['kind'] as const, registers });
  const started = byKind('sockwatch_collections_started_total', 'Collections (kind: dump, trace) started over the threshold.');
  const uploaded = byKind('sockwatch_collections_uploaded_total', 'Collections uploaded to the blob container and confirmed.');
  const failed = byKind('sockwatch_collections_failed_total', 'Collections that failed: the dump or trace itself, or its upload for good.');
  const bytes = byKind('sockwatch_upload_bytes_total', 'Bytes of collections uploaded and confirmed.');
  let last: OutboundPoll | undefined;
  const gauge = (name: string, help: string, pick: 'count' | 'distinct', when: (p: OutboundPoll) => boolean): void => {
    new prom.Gauge({
      name,
      help,
      labelNames: ['destination'],
      registers,
      collect() {
        this.reset();
        if (!last || !when(last)) return;
        const sorted = [...last.destinations].sort((a, b) => b.total - a.total);
        const kept = sorted.slice(0, top);
        const rest = sorted.slice(top);
        const destinations = kept.map((d) => ({ destination: d.remote, count: d.total, distinct: d.distinctInWindow }));
        const other = {
          destination: 'other',
          count: rest.reduce((n, d) => n + d.total, 0),
          distinct: rest.reduce((n, d) => n + d.distinctInWindow, 0),
        };
        for (const s of outboundSamples(destinations, other, pick)) this.set(s.labels as { destination: string }, s.value);
      },
    });
  };
  gauge('sockwatch_outbound_connections', OUTBOUND_HELP.now, 'count', () => true);
  // Only with the 240 s window (the default): the name says 240 s.
  gauge('sockwatch_outbound_connections_distinct_240s', OUTBOUND_HELP.distinct, 'distinct', (p) => p.windowMs === 240_000);
  new prom.Gauge({
    name: 'sockwatch_snat_threshold',
    help: 'The connection threshold per destination (-t) that triggers collection.',
    registers,
    collect() {
      if (last) this.set(last.threshold);
    },
  });
  return {
    poll: (p) => {
      last = p;
    },
    step: (s) => {
      if (s.step === 'collecting') started.inc({ kind: s.kind });
      else if (s.step === 'uploaded') {
        uploaded.inc({ kind: s.kind });
        bytes.inc({ kind: s.kind }, s.bytes);
      } else if (s.step === 'collect-failed' || s.step === 'upload-failed') failed.inc({ kind: s.kind });
    },
  };
}
