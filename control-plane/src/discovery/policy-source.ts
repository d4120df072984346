/**
 * What the discovery layer needs from the policy engine
 * (control-plane/src/policy): for one workload, its effective
 * PeerAuthentication and the AuthorizationPolicies that select it, from an
 * immutable snapshot replaced whole on every change.
 */
import type { AuthorizationPoliciesResource, EffectiveMtlsMode, PeerAuthenticationResource } from '@trellis/shared';

/** The workload facts policies select on: namespace and labels only, as Istio's selectors. */
export interface WorkloadFacts {
  namespace: string;
  labels: Readonly<Record<string, string>>;
}

/** One immutable policy snapshot. */
export interface PolicyView {
  peerAuthentication(w: WorkloadFacts): PeerAuthenticationResource;
  authorizationPolicies(w: WorkloadFacts): AuthorizationPoliciesResource;
}

/** A stream of policy snapshots. */
export interface PolicySource {
  /**
   * The snapshot to serve, or null while no policy may be served at all (a
   * policy file failed validation at first load): sidecars then get no
   * PeerAuthentication or AuthorizationPolicies and refuse inbound traffic
   * (fail closed), and the control plane reports not ready.
   */
  current(): PolicyView | null;
  /** Calls `listener` after every change (and when `current()` stops being null); returns an unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** What /debug/policies shows (files, errors, last-good state). */
  status(): unknown;
  close(): void;
}

/** A policy source with no policies: every workload gets `defaultMode` and no authorization policies. */
export function staticPolicySource(defaultMode: EffectiveMtlsMode): PolicySource & { replace(view: PolicyView): void } {
  const empty: PolicyView = {
    peerAuthentication: () => ({ mode: defaultMode, portModes: {} }),
    authorizationPolicies: () => ({ policies: [] }),
  };
  let view = empty;
  const listeners = new Set<() => void>();
  return {
    current: () => view,
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    status: () => ({ source: 'static', defaultMode }),
    close: () => listeners.clear(),
    replace(v) {
      view = v;
      for (const l of listeners) l();
    },
  };
}
