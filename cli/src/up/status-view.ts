/**
 * The live status `trellis up` prints while the mesh runs: per workload its
 * identity, certificate expiry countdown, sync state with the control plane,
 * and requests allowed/refused, read from the sidecars' admin endpoints.
 */
import type { MeshConfig } from './mesh-config';
import { getJson, httpGet } from './admin-client';

export interface WorkloadStatus {
  name: string;
  identity: string;
  expiresInS: number | undefined;
  sync: string;
  allowed: number;
  refused: number;
  ready: boolean;
}

interface Dump {
  identity?: { spiffeId?: string; notAfter?: string };
  controlPlane?: { state?: string; connected?: boolean };
  sync?: Record<string, unknown> | string;
}

/** Sums the samples of Prometheus text lines whose name and labels match. */
export function sumMetric(text: string, name: RegExp, labelFilter?: RegExp): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const sp = line.lastIndexOf(' ');
    const series = line.slice(0, sp);
    const brace = series.indexOf('{');
    const metric = brace >= 0 ? series.slice(0, brace) : series;
    if (!name.test(metric)) continue;
    if (labelFilter && !labelFilter.test(series.slice(brace >= 0 ? brace : series.length))) continue;
    const v = Number(line.slice(sp + 1));
    if (Number.isFinite(v)) total += v;
  }
  return total;
}

/** Reads one status row per workload; unreachable sidecars show as not ready. */
export async function collectStatus(config: MeshConfig, now: Date): Promise<WorkloadStatus[]> {
  return Promise.all(
    config.workloads.map(async (w) => {
      const [dump, stats, ready] = await Promise.all([
        getJson<Dump>(w.admin, '/config_dump'),
        httpGet(w.admin, '/stats').then((r) => r.body, () => ''),
        httpGet(w.admin, '/ready').then((r) => r.status === 200, () => false),
      ]);
      const notAfter = dump?.identity?.notAfter ? Date.parse(dump.identity.notAfter) : NaN;
      const sync = typeof dump?.sync === 'string' ? dump.sync : dump?.controlPlane?.state ?? (dump?.controlPlane?.connected ? 'CONNECTED' : ready ? 'READY' : 'DOWN');
      return {
        name: w.name,
        identity: dump?.identity?.spiffeId ?? '-',
        expiresInS: Number.isFinite(notAfter) ? Math.round((notAfter - now.getTime()) / 1000) : undefined,
        sync,
        allowed: sumMetric(stats, /^trellis_.*(request|connection|decision)s?_total$/, /(decision|result|outcome)="(allow|allowed|ALLOW)"/),
        refused: sumMetric(stats, /^trellis_.*refus.*_total$/),
        ready,
      };
    }),
  );
}

/** Formats rows as a fixed-width table. */
export function renderStatus(rows: WorkloadStatus[], now: Date): string {
  const head = ['WORKLOAD', 'READY', 'IDENTITY', 'CERT EXPIRES', 'SYNC', 'ALLOWED', 'REFUSED'];
  const body = rows.map((r) => [
    r.name,
    r.ready ? 'yes' : 'NO',
    r.identity,
    r.expiresInS === undefined ? '-' : r.expiresInS <= 0 ? 'EXPIRED' : `${Math.floor(r.expiresInS / 60)}m${String(r.expiresInS % 60).padStart(2, '0')}s`,
    r.sync,
    String(r.allowed),
    String(r.refused),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cols: string[]): string => cols.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return `── trellis mesh status at ${now.toISOString().slice(11, 19)} ──\n${fmt(head)}\n${body.map(fmt).join('\n')}\n`;
}
