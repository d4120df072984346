/**
 * `GET /debug/mesh`: the whole mesh as the control plane knows it, in one
 * answer, for the dashboard (one request a poll instead of five). A view of
 * the control plane's own state, assembled at request time and kept
 * nowhere: the connected sidecars and their per-type sync state, each
 * sidecar's last report (attributed to its stream's identity), the service
 * graph merged from those reports, the policy source's problems as
 * `trellis validate` prints them, the CA's status and the revocations in
 * force, and the newest audit event's sequence number. Pure.
 */
import { normaliseSerial, type ReportedCertificate, type RevocationsResource, type TypeSyncSnapshot } from '@trellis/shared';
import type { CaStatusView } from '../lifecycle/ca-status';
import type { ReceivedReport } from '../discovery/received-report';
import type { ProxyStatus } from '../discovery/stream-session';
import { serviceGraph, type ServiceGraph } from '../observability/service-graph';

/** One connected sidecar. */
export interface WorkloadView {
  /** The stream's id on this control plane. */
  readonly id: number;
  readonly spiffeId: string | null;
  readonly authMethod: string | null;
  readonly namespace: string | null;
  readonly service: string | null;
  readonly labels: Readonly<Record<string, string>>;
  readonly address: string | null;
  readonly pod: string | null;
  readonly connectedAt: string;
  /** The certificate it serves with: serial and expiry as the control plane issued (or was shown) it; lifetime and renewal as the sidecar reports. */
  readonly certificate: { readonly serial: string | null; readonly notBefore: string | null; readonly notAfter: string | null; readonly renewAt: string | null } | null;
  /** Its last certificates, newest first, as it reports them. */
  readonly rotations: readonly ReportedCertificate[];
  /** Null until it reports. */
  readonly ready: boolean | null;
  readonly readyReason: string | null;
  readonly dataPath: string | null;
  /** Per resource type: ACKed version, or NACKed with the error. */
  readonly sync: Readonly<Record<string, { readonly state: string; readonly ackedVersion: string | null; readonly sentVersion: string | null; readonly rejectedVersion: string | null; readonly error: string | null }>>;
  /** When its last report arrived. */
  readonly reportedAt: string | null;
}

/** A policy problem, as `trellis validate` prints it. */
export interface PolicyProblem {
  /** The file (or object) it is in. */
  readonly source: string;
  /** `file:line:col: path: message [CODE]`. */
  readonly message: string;
  /** True when the last good content of that source stays in force. */
  readonly lastGoodKept: boolean;
}

/** What `/debug/mesh` answers. */
export interface MeshView {
  readonly generatedAt: string;
  readonly trustDomain: string;
  readonly workloads: readonly WorkloadView[];
  readonly graph: ServiceGraph;
  readonly policies: { readonly servable: boolean | null; readonly version: string | null; readonly problems: readonly PolicyProblem[] };
  readonly ca: CaStatusView | { readonly error: string };
  readonly revocations: RevocationsResource;
  /** The newest audit event's sequence number: `GET /debug/events?since=` continues from it. */
  readonly latestEvent: number;
}

/** What the view is built from. */
export interface MeshViewInputs {
  readonly now: Date;
  readonly trustDomain: string;
  readonly proxies: ReadonlyArray<{ readonly status: ProxyStatus; readonly report: ReceivedReport | null }>;
  /** The policy source's status (/debug/policies). */
  readonly policies: unknown;
  readonly ca: CaStatusView | { readonly error: string };
  readonly revocations: RevocationsResource;
  readonly latestEvent: number;
}

/** Builds the view. */
export function meshView(i: MeshViewInputs): MeshView {
  const workloads = i.proxies.map(({ status: s, report }) => workloadView(s, report));
  const reports = i.proxies.flatMap(({ status, report }) => (status.spiffeId && report ? [{ reporter: status.spiffeId, report: report.report }] : []));
  const identities = i.proxies.flatMap(({ status }) => (status.spiffeId ? [status.spiffeId] : []));
  return {
    generatedAt: i.now.toISOString(),
    trustDomain: i.trustDomain,
    workloads,
    graph: serviceGraph(reports, identities),
    policies: policyProblems(i.policies),
    ca: i.ca,
    revocations: i.revocations,
    latestEvent: i.latestEvent,
  };
}

function serial(s: string | null | undefined): string | null {
  if (!s) return null;
  try {
    return normaliseSerial(s);
  } catch {
    return null;
  }
}

function workloadView(s: ProxyStatus, received: ReceivedReport | null): WorkloadView {
  const r = received?.report;
  const ours = serial(s.certificateSerial);
  const rotations = (r?.workload.rotations ?? []).map((c) => ({ ...c, serial: serial(c.serial) ?? c.serial }));
  // The sidecar's lifetime for the certificate we know it holds; a report about another one says nothing of ours.
  const reported = rotations.find((c) => c.serial === ours);
  const sync: Record<string, WorkloadView['sync'][string]> = {};
  for (const [t, v] of Object.entries(s.types)) sync[t] = syncOf(v);
  return {
    id: s.id,
    spiffeId: s.spiffeId,
    authMethod: s.authMethod,
    namespace: s.namespace,
    service: s.service,
    labels: s.labels ?? {},
    address: s.address,
    pod: s.pod,
    connectedAt: s.connectedAt,
    certificate: ours === null && s.certificateExpiry === null ? null : { serial: ours, notBefore: reported?.notBefore ?? null, notAfter: s.certificateExpiry, renewAt: reported ? (r?.workload.renewAt ?? null) : null },
    rotations,
    ready: r ? r.workload.ready : null,
    readyReason: r ? r.workload.readyReason : null,
    dataPath: r ? r.workload.dataPath : null,
    sync,
    reportedAt: received ? received.receivedAt.toISOString() : null,
  };
}

function syncOf(v: TypeSyncSnapshot): WorkloadView['sync'][string] {
  return { state: v.state, ackedVersion: v.ackedVersion, sentVersion: v.sentVersion, rejectedVersion: v.rejectedVersion, error: v.lastError };
}

/**
 * The problems in a policy source's status: each rejected file's errors
 * (policy-store.ts) or rejected object's (policy-object-store.ts, the API
 * server's policies), the directory's own error, policies defined twice,
 * and the same for each source of a merged status (`sources`). Reads
 * defensively: a status of another shape has no problems to show.
 */
export function policyProblems(status: unknown): MeshView['policies'] {
  const st = (status ?? {}) as { servable?: unknown; version?: unknown };
  const problems: PolicyProblem[] = [];
  collectProblems(status, problems, 0);
  return { servable: typeof st.servable === 'boolean' ? st.servable : null, version: typeof st.version === 'string' ? st.version : null, problems };
}

function collectProblems(status: unknown, out: PolicyProblem[], depth: number): void {
  if (status === null || typeof status !== 'object' || depth > 2) return;
  const st = status as { dirError?: unknown; duplicates?: unknown; files?: unknown; objects?: unknown; sources?: unknown };
  const messages = (v: unknown): string[] => (Array.isArray(v) ? v.filter((m): m is string => typeof m === 'string') : []);
  if (typeof st.dirError === 'string' && st.dirError !== '') out.push({ source: '(policy directory)', message: st.dirError, lastGoodKept: true });
  for (const f of Array.isArray(st.files) ? (st.files as Array<Record<string, unknown>>) : []) {
    if (f?.['state'] !== 'rejected' || typeof f['file'] !== 'string') continue;
    for (const m of messages(f['errors'])) out.push({ source: f['file'], message: m, lastGoodKept: typeof f['lastGoodAt'] === 'string' });
  }
  for (const o of Array.isArray(st.objects) ? (st.objects as Array<Record<string, unknown>>) : []) {
    if (o?.['state'] !== 'rejected' || typeof o['object'] !== 'string') continue;
    for (const m of messages(o['errors'])) out.push({ source: o['object'], message: m, lastGoodKept: typeof o['inForceGeneration'] === 'number' });
  }
  for (const d of messages(st.duplicates)) out.push({ source: '(duplicates)', message: d, lastGoodKept: true });
  if (st.sources && typeof st.sources === 'object') for (const sub of Object.values(st.sources as Record<string, unknown>)) collectProblems(sub, out, depth + 1);
}
