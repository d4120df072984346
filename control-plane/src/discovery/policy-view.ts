/**
 * Adapts a shared PolicySet to the discovery layer's PolicyView: the
 * effective PeerAuthentication and the selecting AuthorizationPolicies (as
 * wire JSON the sidecar re-validates with `policiesFromJSON`), with the
 * mesh-wide path normalization the sidecar applies before them.
 */
import {
  DEFAULT_PATH_NORMALIZATION,
  policiesToJSON,
  resolvePeerAuthentication,
  selectAuthorizationPolicies,
  type EffectiveMtlsMode,
  type PathNormalization,
  type PolicySet,
} from '@trellis/shared';
import type { PolicyView } from './policy-source';

/** The view of one immutable PolicySet. */
export function policyViewFromSet(set: PolicySet, opts: { rootNamespace: string; defaultMode: EffectiveMtlsMode; pathNormalization?: PathNormalization }): PolicyView {
  return {
    peerAuthentication(w) {
      const r = resolvePeerAuthentication(set, { namespace: w.namespace, labels: w.labels }, opts);
      const portModes: Record<string, EffectiveMtlsMode> = {};
      for (const [p, m] of Object.entries(r.portModes)) portModes[String(p)] = m;
      return { mode: r.mode, portModes };
    },
    authorizationPolicies(w) {
      const policies = policiesToJSON(selectAuthorizationPolicies(set, { namespace: w.namespace, labels: w.labels }, { rootNamespace: opts.rootNamespace }));
      return { policies, pathNormalization: opts.pathNormalization ?? DEFAULT_PATH_NORMALIZATION };
    },
  };
}
