/**
 * Adapts a shared PolicySet to the discovery layer's PolicyView: the
 * effective PeerAuthentication and the selecting AuthorizationPolicies (as
 * wire JSON the sidecar re-validates with `policiesFromJSON`).
 */
import {
  policiesToJSON,
  resolvePeerAuthentication,
  selectAuthorizationPolicies,
  type EffectiveMtlsMode,
  type PolicySet,
} from '@trellis/shared';
import type { PolicyView } from './policy-source';

/** The view of one immutable PolicySet. */
export function policyViewFromSet(set: PolicySet, opts: { rootNamespace: string; defaultMode: EffectiveMtlsMode }): PolicyView {
  return {
    peerAuthentication(w) {
      const r = resolvePeerAuthentication(set, { namespace: w.namespace, labels: w.labels }, opts);
      const portModes: Record<string, EffectiveMtlsMode> = {};
      for (const [p, m] of Object.entries(r.portModes)) portModes[String(p)] = m;
      return { mode: r.mode, portModes };
    },
    authorizationPolicies(w) {
      return { policies: policiesToJSON(selectAuthorizationPolicies(set, { namespace: w.namespace, labels: w.labels }, { rootNamespace: opts.rootNamespace })) };
    },
  };
}
