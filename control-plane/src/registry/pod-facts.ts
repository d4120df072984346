/**
 * What the API server says about the pod a credential is bound to, and the
 * decisions made on it (pure; the current time is a parameter):
 *
 * - whether that pod still exists (`boundPodStatus`): gone when it is not in
 *   the synced pod cache, has another uid (a new pod with the same name is
 *   not the bound one), or was deleted more than 60 s ago (the API server's
 *   own TokenReview grace for a pod's deletionTimestamp);
 * - the pod's facts a stream is served by (`podFacts`): identity, IPs,
 *   labels (what policies select on), the sidecar listener ports, and the
 *   Services it is behind (a Service in its namespace whose selector selects
 *   it, or whose EndpointSlices name it).
 */
import type { BoundPod } from '../auth/token-keys';
import { objectKey, type ClusterPod, type ClusterService, type ClusterSlice } from './cluster-objects';

/** How long a deleted pod's tokens stay valid after its deletionTimestamp (kube-apiserver's grace). */
export const DELETED_POD_GRACE_MS = 60_000;

/** A pod's facts as the control plane serves its sidecar, frozen. */
export interface PodFacts {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly serviceAccount: string;
  readonly ips: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** The sidecar listener ports (from the injection status annotation), sorted; empty when not injected. */
  readonly inboundPorts: readonly number[];
  /** Names of the Services (in the pod's namespace) the pod is behind, sorted. */
  readonly services: readonly string[];
}

/** The API server's pods, as the discovery layer asks about them. */
export interface PodDirectory {
  /** 'unknown' until the pods have been listed; then the bound pod's facts, or 'gone'. */
  lookup(pod: BoundPod, nowMs: number): PodFacts | 'gone' | 'unknown';
  /** Calls `listener` with the `namespace/name` of every pod added, changed or deleted; returns an unsubscribe function. */
  subscribePods(listener: (podKey: string) => void): () => void;
}

/** Whether the pod a credential is bound to exists, from the pod cache. Pure; fails closed once synced. */
export function boundPodStatus(pod: ClusterPod | undefined, bound: BoundPod, synced: boolean, nowMs: number): 'alive' | 'gone' | 'unknown' {
  if (!synced) return 'unknown';
  if (!pod) return 'gone';
  if (bound.uid !== undefined && bound.uid !== '' && pod.uid !== bound.uid) return 'gone';
  if (pod.deletingAtMs !== null && pod.deletingAtMs + DELETED_POD_GRACE_MS < nowMs) return 'gone';
  return 'alive';
}

/** True when every key of `selector` is a label of `labels` with the same value. */
export function selects(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  return Object.entries(selector).every(([k, v]) => Object.prototype.hasOwnProperty.call(labels, k) && labels[k] === v);
}

/** The facts of `pod`, given the Services and EndpointSlices of its namespace. Pure. */
export function podFacts(pod: ClusterPod, services: Iterable<ClusterService>, slices: Iterable<ClusterSlice>): PodFacts {
  const behind = new Set<string>();
  for (const s of services) if (s.namespace === pod.namespace && s.selector !== null && selects(s.selector, pod.labels)) behind.add(s.name);
  for (const sl of slices) {
    if (sl.namespace !== pod.namespace || sl.service === '') continue;
    if (sl.endpoints.some((e) => e.pod !== null && e.pod.name === pod.name && (e.pod.uid === null || e.pod.uid === pod.uid))) behind.add(sl.service);
  }
  return Object.freeze({
    namespace: pod.namespace,
    name: pod.name,
    uid: pod.uid,
    serviceAccount: pod.serviceAccount,
    ips: pod.ips,
    labels: pod.labels,
    inboundPorts: Object.freeze([...(pod.inbound?.values() ?? [])].sort((a, b) => a - b)),
    services: Object.freeze([...behind].sort()),
  });
}

/** The cache key of a bound pod. */
export function boundPodKey(pod: BoundPod): string {
  return objectKey(pod.namespace, pod.name);
}
