/**
 * The Prometheus text exposition format (version 0.0.4), rendered exactly as
 * prom-client renders it, so `/stats` reads the same as before the sidecar
 * dropped prom-client: `# HELP` and `# TYPE` lines, one line per sample,
 * families separated by a blank line. Pure.
 */

/** The Content-Type of the text format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A metric type in the text format. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/** One sample line: name suffix (e.g. `_bucket`), labels in output order, value. */
export interface Sample {
  suffix?: string;
  labels: ReadonlyArray<readonly [string, string]>;
  value: number;
}

/** One metric family to render. */
export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: readonly Sample[];
}

/** Renders families in order; the result ends with a newline. */
export function renderExposition(families: readonly MetricFamily[]): string {
  return families.map(renderFamily).join('\n');
}

function renderFamily(f: MetricFamily): string {
  let out = `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
  for (const s of f.samples) {
    out += f.name + (s.suffix ?? '');
    if (s.labels.length > 0) out += `{${s.labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
    out += ` ${formatValue(s.value)}\n`;
  }
  return out;
}

/** HELP text escapes backslash and newline. */
export function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Label values escape backslash, double quote and newline. */
export function escapeLabelValue(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Numbers as prom-client prints them (`Nan`, `+Inf`, `-Inf`, else JavaScript's shortest form). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
