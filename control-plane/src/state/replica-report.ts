/**
 * What each control-plane replica tells the others, so several replicas
 * serve one mesh instead of splitting it: the endpoints its connected
 * sidecars serve (a sidecar on replica A then reaches a service whose
 * sidecars are on replica B), and how many of its sidecars ACKed which
 * trust-bundle version (a root rotation switches only when every sidecar of
 * every replica holds the two-root bundle). One shared document holds every
 * replica's report, each replica writing its own entry with a heartbeat
 * (`replicas.json` in the CA dir; a ConfigMap key on Kubernetes, where the
 * API server's EndpointSlices are the registry and reports carry no
 * endpoints). Pure: the codec and the decisions over reports; the time is a
 * parameter.
 */
import type { Endpoint, EndpointsResource } from '@trellis/shared';
import type { ObservedProxy } from '../lifecycle/root-rotation';
import type { DocumentCodec } from './shared-document';

/** File name of the reports inside the CA dir. */
export const REPLICAS_FILE = 'replicas.json';

/** One replica's report. */
export interface ReplicaReport {
  /** Unique per process (host, pid, a random suffix). */
  readonly replica: string;
  readonly host: string;
  readonly pid: number;
  /** The last heartbeat (ISO time). */
  readonly at: string;
  /** The endpoints of its connected sidecars, by service. */
  readonly endpoints: readonly EndpointsResource[];
  /** Connected sidecars. */
  readonly sidecars: number;
  /** Trust-bundle version → how many of its sidecars ACKed it. */
  readonly bundleAcks: Readonly<Record<string, number>>;
}

/** Every replica's report, by replica. */
export type ReplicaSet = Readonly<Record<string, ReplicaReport>>;

const EMPTY: ReplicaSet = Object.freeze({});

function checkReport(r: unknown, where: string): ReplicaReport {
  const o = r as Record<string, unknown>;
  const bad = (field: string): never => {
    throw new Error(`${where}.${field} is missing or invalid`);
  };
  if (typeof o !== 'object' || o === null) bad('(report)');
  if (typeof o['replica'] !== 'string' || o['replica'] === '') bad('replica');
  if (typeof o['host'] !== 'string') bad('host');
  if (!Number.isInteger(o['pid'])) bad('pid');
  if (typeof o['at'] !== 'string' || Number.isNaN(Date.parse(o['at']))) bad('at');
  if (!Number.isInteger(o['sidecars'])) bad('sidecars');
  const acks = o['bundleAcks'] as Record<string, unknown>;
  if (typeof acks !== 'object' || acks === null || Object.values(acks).some((n) => !Number.isInteger(n))) bad('bundleAcks');
  const eps = o['endpoints'];
  if (!Array.isArray(eps)) bad('endpoints');
  for (const [i, e] of (eps as unknown[]).entries()) {
    const er = e as { service?: unknown; endpoints?: unknown };
    if (typeof er?.service !== 'string' || !Array.isArray(er.endpoints)) bad(`endpoints[${i}]`);
    for (const x of er.endpoints as Array<Record<string, unknown>>) if (typeof x?.['address'] !== 'string' || typeof x?.['spiffeId'] !== 'string') bad(`endpoints[${i}].endpoints`);
  }
  return o as unknown as ReplicaReport;
}

/** The reports as stored: `{version: 1, replicas: {id: report}}`. */
export const replicaSetCodec: DocumentCodec<ReplicaSet> = Object.freeze({
  empty: EMPTY,
  parse(text: string, source: string): ReplicaSet {
    const doc = JSON.parse(text) as { version?: unknown; replicas?: unknown };
    if (doc?.version !== 1 || typeof doc.replicas !== 'object' || doc.replicas === null) throw new Error(`${source}: expected {"version": 1, "replicas": {...}}`);
    const out: Record<string, ReplicaReport> = {};
    for (const [id, r] of Object.entries(doc.replicas as Record<string, unknown>)) out[id] = checkReport(r, `${source}: replicas.${id}`);
    return Object.freeze(out);
  },
  format: (set: ReplicaSet): string => JSON.stringify({ version: 1, replicas: set }) + '\n',
});

/** `set` with `report` as its replica's entry, and without entries stale for longer than `dropAfterMs` at `nowMs`. */
export function withReport(set: ReplicaSet, report: ReplicaReport, nowMs: number, dropAfterMs: number): ReplicaSet {
  const out: Record<string, ReplicaReport> = {};
  for (const [id, r] of Object.entries(set)) if (id !== report.replica && nowMs - Date.parse(r.at) < dropAfterMs) out[id] = r;
  out[report.replica] = report;
  return Object.freeze(out);
}

/** `set` without `replica` (a replica stopping cleanly). */
export function withoutReport(set: ReplicaSet, replica: string): ReplicaSet {
  if (!(replica in set)) return set;
  const { [replica]: _gone, ...rest } = set;
  return Object.freeze(rest);
}

/** How liveness is judged. */
export interface LivenessRule {
  /** A report older than this is from a replica that is gone. */
  readonly staleMs: number;
  /** This machine's name: a report from it is judged by its pid as well. */
  readonly host?: string;
  /** Whether a pid on this machine is running (a replica killed on this host is gone at once). */
  pidAlive?(pid: number): boolean;
}

/** The reports of the other replicas that are alive at `nowMs`. */
export function liveReplicas(set: ReplicaSet, self: string, nowMs: number, rule: LivenessRule): ReplicaReport[] {
  return Object.values(set)
    .filter((r) => r.replica !== self)
    .filter((r) => nowMs - Date.parse(r.at) < rule.staleMs)
    .filter((r) => rule.host === undefined || r.host !== rule.host || !rule.pidAlive || rule.pidAlive(r.pid))
    .sort((a, b) => a.replica.localeCompare(b.replica));
}

/**
 * The endpoints every replica's sidecars serve, by service: `local` (this
 * replica's) merged with the other replicas', each service's endpoints
 * sorted and without duplicates. Returns `local` itself when the others add
 * nothing, so what is built from it stays memoised.
 */
export function mergedEndpoints(local: ReadonlyMap<string, EndpointsResource>, others: readonly ReplicaReport[]): ReadonlyMap<string, EndpointsResource> {
  if (others.every((r) => r.endpoints.length === 0)) return local;
  const by = new Map<string, Map<string, Endpoint>>();
  const add = (service: string, eps: readonly Endpoint[]): void => {
    let m = by.get(service);
    if (!m) by.set(service, (m = new Map()));
    for (const e of eps) m.set(`${e.address}|${e.spiffeId}`, { address: e.address, spiffeId: e.spiffeId });
  };
  for (const [service, r] of local) add(service, r.endpoints);
  for (const r of others) for (const e of r.endpoints) add(e.service, e.endpoints);
  const out = new Map<string, EndpointsResource>();
  for (const [service, m] of [...by.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    out.set(service, Object.freeze({ service, endpoints: [...m.values()].sort((a, b) => a.address.localeCompare(b.address) || a.spiffeId.localeCompare(b.spiffeId)) }));
  }
  return out;
}

/**
 * The other replicas' sidecars as the root rotation observes them: one
 * entry per sidecar, carrying the bundle version it ACKed (null: none).
 */
export function remoteProxies(others: readonly ReplicaReport[]): ObservedProxy[] {
  const out: ObservedProxy[] = [];
  for (const r of others) {
    let n = 0;
    for (const [version, count] of Object.entries(r.bundleAcks).sort()) {
      for (let i = 0; i < count && n < r.sidecars; i++, n++) out.push({ id: `${r.replica}#${n + 1}`, spiffeId: null, bundleAckedVersion: version });
    }
    for (; n < r.sidecars; n++) out.push({ id: `${r.replica}#${n + 1}`, spiffeId: null, bundleAckedVersion: null });
  }
  return out;
}

/** How many of `proxies` ACKed each bundle version (for this replica's report). */
export function bundleAckCounts(proxies: readonly ObservedProxy[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of proxies) if (p.bundleAckedVersion !== null) out[p.bundleAckedVersion] = (out[p.bundleAckedVersion] ?? 0) + 1;
  return out;
}
