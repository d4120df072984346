/**
 * Adapts a shared PolicySet to the discovery layer's PolicyView: the
 * effective PeerAuthentication and the selecting AuthorizationPolicies (in
 * the compiled wire form the sidecar decodes without a schema engine), with the
 * mesh-wide path normalization the sidecar applies before them and the
 * mesh-wide key-exchange policy its mTLS uses.
 */
import {
  AUTHZ_WIRE_VERSION,
  DEFAULT_KEY_EXCHANGE,
  DEFAULT_PATH_NORMALIZATION,
  encodeAuthorizationPolicies,
  resolvePeerAuthentication,
  selectAuthorizationPolicies,
  type EffectiveMtlsMode,
  type KeyExchangePolicy,
  type PathNormalization,
  type PolicySet,
} from '@trellis/shared';
import type { PolicyView } from './policy-source';

/** The mesh-wide settings a policy view applies (from the control plane's config). */
export interface MeshPolicyOptions {
  readonly rootNamespace: string;
  readonly defaultMode: EffectiveMtlsMode;
  /** Default BASE. */
  readonly pathNormalization?: PathNormalization;
  /** Default prefer. */
  readonly keyExchange?: KeyExchangePolicy;
}

/** The view of one immutable PolicySet. */
export function policyViewFromSet(set: PolicySet, opts: MeshPolicyOptions): PolicyView {
  return {
    peerAuthentication(w) {
      const r = resolvePeerAuthentication(set, { namespace: w.namespace, labels: w.labels }, opts);
      const portModes: Record<string, EffectiveMtlsMode> = {};
      for (const [p, m] of Object.entries(r.portModes)) portModes[String(p)] = m;
      return { mode: r.mode, portModes, keyExchange: opts.keyExchange ?? DEFAULT_KEY_EXCHANGE };
    },
    authorizationPolicies(w) {
      const policies = encodeAuthorizationPolicies(selectAuthorizationPolicies(set, { namespace: w.namespace, labels: w.labels }, { rootNamespace: opts.rootNamespace }));
      return { wireVersion: AUTHZ_WIRE_VERSION, policies, pathNormalization: opts.pathNormalization ?? DEFAULT_PATH_NORMALIZATION };
    },
  };
}
