/**
 * A frozen, ordered collection of policies: the snapshot the control plane
 * swaps whole when a file changes, and the input of every decision.
 */
import type { AuthorizationPolicy, MatchLabels, PeerAuthentication, Policy, PolicyWorkload } from './policy-types';

/** Policies of both kinds, each list ordered oldest first (creationTimestamp, then namespace, then name). */
export interface PolicySet {
  readonly peerAuthentications: readonly PeerAuthentication[];
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
}

/** Identifies a policy in decisions and logs. */
export interface PolicyRef {
  readonly namespace: string;
  readonly name: string;
}

/** Builds a frozen PolicySet; the input is not modified. */
export function buildPolicySet(policies: readonly Policy[]): PolicySet {
  const pa = policies.filter((p): p is PeerAuthentication => p.kind === 'PeerAuthentication').sort(byAge);
  const ap = policies.filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy').sort(byAge);
  return Object.freeze({ peerAuthentications: Object.freeze(pa), authorizationPolicies: Object.freeze(ap) });
}

/** True for a PolicySet (as opposed to a list of policies). */
export function isPolicySet(value: unknown): value is PolicySet {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && Array.isArray((value as PolicySet).peerAuthentications) && Array.isArray((value as PolicySet).authorizationPolicies);
}

/**
 * Istio's conflict order: oldest creationTimestamp first, ties broken by
 * namespace then name so the order never depends on file-read order.
 */
export function byAge(a: Policy, b: Policy): number {
  return creationOrder(a.metadata, b.metadata);
}

/** The order of {@link byAge} on the three fields it reads; the compiled wire form is checked against it. */
export function creationOrder(a: { readonly creationTimestamp: string; readonly namespace: string; readonly name: string }, b: { readonly creationTimestamp: string; readonly namespace: string; readonly name: string }): number {
  const ta = Date.parse(a.creationTimestamp);
  const tb = Date.parse(b.creationTimestamp);
  if (ta !== tb) return ta - tb;
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The reference used in decisions. */
export function refOf(p: Policy): PolicyRef {
  return { namespace: p.metadata.namespace, name: p.metadata.name };
}

/** True when every label of `matchLabels` is on the workload with the same value. */
export function labelsMatch(matchLabels: MatchLabels, workload: PolicyWorkload): boolean {
  return Object.entries(matchLabels).every(([k, v]) => Object.prototype.hasOwnProperty.call(workload.labels, k) && workload.labels[k] === v);
}

/**
 * A stable string of what the set means (origins excluded), so a watcher can
 * tell an edit that changes nothing (a comment, a reordering) from a real change.
 */
export function policySetFingerprint(set: PolicySet): string {
  const strip = (p: Policy): unknown => ({ ...p, metadata: { ...p.metadata, source: undefined, creationTimestampSource: undefined } });
  return JSON.stringify({ pa: set.peerAuthentications.map(strip), ap: set.authorizationPolicies.map(strip) });
}
