/**
 * The stored form of one attestation record: what SVID `<serial>` was
 * issued under, until when. One format for every store: a file of the CA
 * dir (file-attestation-store.ts) and an entry of the replicas' shared
 * document on the API server (attestation-document.ts). Parsing is strict
 * and names the bad field; a record that does not parse attests nothing
 * (the caller treats it as absent: fail closed).
 */
import { isKubernetesNamespace } from '@trellis/shared';
import { fromJoinToken, fromKubernetesPod, type WorkloadAttestation } from './workload-attestation';
import { workloadMetadataProblems } from './workload-metadata';
import { normaliseSerial } from '@trellis/shared';

/** One remembered attestation: what it vouches for and when its SVID expires. */
export interface AttestationEntry {
  readonly attestation: WorkloadAttestation;
  readonly notAfterMs: number;
}

/** The JSON of one record (`notAfter` as ISO 8601). */
export type AttestationRecordJson =
  | { spiffeId: string; source: 'kubernetes-pod'; pod: { namespace: string; name: string; uid: string }; notAfter: string }
  | { spiffeId: string; source: 'join-token'; service: string; labels: Record<string, string>; inboundPorts: number[]; notAfter: string };

/** The serial as a record key (and file name): normalised lower-case hex of at most 20 bytes, or null (never a path). */
export function attestationSerial(serialHex: string): string | null {
  try {
    return normaliseSerial(serialHex);
  } catch {
    return null; // not a serial: never a key, never a path
  }
}

/** The stored form of `entry`. */
export function attestationRecordJson(entry: AttestationEntry): AttestationRecordJson {
  const a = entry.attestation;
  const notAfter = new Date(entry.notAfterMs).toISOString();
  return a.pod
    ? { spiffeId: a.spiffeId, source: 'kubernetes-pod', pod: { namespace: a.pod.namespace, name: a.pod.name, uid: a.pod.uid }, notAfter }
    : { spiffeId: a.spiffeId, source: 'join-token', service: a.workload.service, labels: { ...a.workload.labels }, inboundPorts: [...a.workload.inboundPorts], notAfter };
}

/** Parses one stored record; throws an Error naming the bad field. */
export function parseAttestationRecord(value: unknown): AttestationEntry {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
  const r = value as { spiffeId?: unknown; source?: unknown; service?: unknown; labels?: unknown; inboundPorts?: unknown; pod?: unknown; notAfter?: unknown };
  if (typeof r.spiffeId !== 'string' || r.spiffeId === '') throw new Error('spiffeId: missing or not a string');
  const notAfterMs = Date.parse(String(r.notAfter));
  if (!Number.isFinite(notAfterMs)) throw new Error('notAfter: not a date');
  if (r.source === 'kubernetes-pod') {
    const pod = (r.pod ?? {}) as { namespace?: unknown; name?: unknown; uid?: unknown };
    if (typeof pod.namespace !== 'string' || !isKubernetesNamespace(pod.namespace)) throw new Error('pod.namespace: not a namespace');
    if (typeof pod.name !== 'string' || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(pod.name)) throw new Error('pod.name: not a pod name');
    if (typeof pod.uid !== 'string' || pod.uid === '') throw new Error('pod.uid: missing');
    return { attestation: fromKubernetesPod(r.spiffeId, { namespace: pod.namespace, name: pod.name, uid: pod.uid }), notAfterMs };
  }
  if (r.source !== 'join-token') throw new Error(`source: "${String(r.source).slice(0, 40)}" is not join-token or kubernetes-pod`);
  if (typeof r.service !== 'string') throw new Error('service: not a string');
  if (!Array.isArray(r.inboundPorts)) throw new Error('inboundPorts: not a list');
  if (!r.labels || typeof r.labels !== 'object' || Array.isArray(r.labels)) throw new Error('labels: not an object');
  const workload = { service: r.service, labels: r.labels as Record<string, string>, inboundPorts: r.inboundPorts as number[] };
  const problems = workloadMetadataProblems(workload);
  if (problems.length > 0) throw new Error(problems.join('; '));
  return { attestation: fromJoinToken(r.spiffeId, workload), notAfterMs };
}
