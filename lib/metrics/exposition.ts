// The exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0.0, written from metric families
// in prom-client's own shape (what `Registry.getMetricsAsJSON()` and every metric's `get()` return),
// so prom-client's metrics and the series written here directly go through one writer.
//
// Why a writer of our own rather than prom-client's `registry.metrics()`: prom-client serves one
// format per registry, and switching a registry to OpenMetrics renames its counters in place (it
// strips `_total` from `metric.name` for good), so one registry cannot answer both kinds of scraper.
// Rules kept here: HELP and TYPE once per family, before its samples; label values escape `\`, `"`
// and newline; HELP escapes `\` and newline (OpenMetrics also `"`); in OpenMetrics a counter family
// is named without `_total` and its samples with it, and the exposition ends with `# EOF`.

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary';

export interface MetricSample {
  /** The sample's own name when it is not the family's (histograms: name_bucket, name_sum, name_count). */
  metricName?: string;
  labels?: Record<string, string | number | undefined>;
  value: number;
}

/** One family, as prom-client's `get()` returns it (only these fields are read). */
export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  values: readonly MetricSample[];
}

export type ExpositionFormat = 'prometheus' | 'openmetrics';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** A number as both formats write it (Go's strconv style for the specials). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string, format: ExpositionFormat): string {
  const s = v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  return format === 'openmetrics' ? s.replace(/"/g, '\\"') : s;
}

function labelText(labels: MetricSample['labels']): string {
  if (!labels) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (v === undefined) continue;
    parts.push(`${k}="${escapeLabelValue(typeof v === 'number' ? formatValue(v) : v)}"`);
  }
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** Writes the families in the format asked for; families with the same name must not repeat. */
export function renderExposition(families: readonly MetricFamily[], format: ExpositionFormat): string {
  const out: string[] = [];
  for (const f of families) {
    const om = format === 'openmetrics';
    const counter = f.type === 'counter';
    const familyName = om && counter ? f.name.replace(/_total$/, '') : f.name;
    out.push(`# HELP ${familyName} ${escapeHelp(f.help, format)}`);
    out.push(`# TYPE ${familyName} ${f.type}`);
    for (const s of f.values) {
      let name = s.metricName ?? f.name;
      if (om && counter && !name.endsWith('_total')) name = `${name}_total`;
      out.push(`${name}${labelText(s.labels)} ${formatValue(s.value)}`);
    }
  }
  if (format === 'openmetrics') out.push('# EOF');
  return out.join('\n') + '\n';
}

/**
 * Picks the format from an Accept header, as Prometheus' expfmt does in spirit: OpenMetrics when the
 * client accepts application/openmetrics-text (version 1.0.0 or 0.0.1, or none given) with a weight
 * at least that of text/plain; everything else gets the Prometheus text format.
 */
export function negotiateFormat(accept: string | undefined): { format: ExpositionFormat; contentType: string } {
  let om = -1;
  let text = -1;
  let omVersion = '1.0.0';
  for (const range of (accept ?? '').split(',')) {
    const [type = '', ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    let version: string | undefined;
    for (const p of params) {
      const [k, val] = p.split('=').map((s) => s.trim());
      if (k === 'q') q = Number(val);
      if (k === 'version') version = val;
    }
    if (!(q > 0)) continue;
    if (type === 'application/openmetrics-text' && (version === undefined || version === '1.0.0' || version === '0.0.1')) {
      if (q > om) {
        om = q;
        omVersion = version ?? '1.0.0';
      }
    } else if (type === 'text/plain' || type === 'text/*' || type === '*/*') text = Math.max(text, q);
  }
  if (om >= 0 && om >= text) {
    return { format: 'openmetrics', contentType: `application/openmetrics-text; version=${omVersion}; charset=utf-8` };
  }
  return { format: 'prometheus', contentType: PROMETHEUS_CONTENT_TYPE };
}
