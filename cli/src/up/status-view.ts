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
  controlPlane?: {
    connection?: { connected?: boolean };
    sync?: Record<string, { state?: string } | undefined>;
  };
}

/**
 * One word for a sidecar's sync with the control plane, from its /config_dump:
 * OFFLINE when disconnected, NACKED when it rejected a pushed resource, SYNCED when
 * every type is acknowledged, SYNCING otherwise.
 */
export function syncWord(dump: Dump | undefined): string {
  const cp = dump?.controlPlane;
  if (!cp) return 'UNKNOWN';
  if (cp.connection?.connected !== true) return 'OFFLINE';
  const states = Object.values(cp.sync ?? {}).map((t) => t?.state);
  if (states.some((st) => st === 'NACKED')) return 'NACKED';
  if (states.length > 0 && states.every((st) => st === 'ACKED')) return 'SYNCED';
  return 'SYNCING';
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
      // Inbound connections the sidecar let through vs refused (mTLS, revocation or policy).
      const refused = sumMetric(stats, /^trellis_refusals_total$/, /direction="inbound"/);
      const inbound = sumMetric(stats, /^trellis_connections_total$/, /direction="inbound"/);
      return {
        name: w.name,
        identity: dump?.identity?.spiffeId ?? '-',
        expiresInS: Number.isFinite(notAfter) ? Math.round((notAfter - now.getTime()) / 1000) : undefined,
        sync: dump ? syncWord(dump) : 'DOWN',
        allowed: Math.max(0, inbound - refused),
        refused,
        ready,
      };
    }),
  );
}

/** Formats rows as a fixed-width table. */
export function renderStatus(rows: WorkloadStatus[], now: Date): string {
  const head = ['WORKLOAD', 'READY', 'IDENTITY', 'CERT EXPIRES', 'SYNC', 'INBOUND ALLOWED', 'REFUSED'];
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
