/**
 * The whole inbound decision for one request, as a sidecar makes it: first the
 * port's mTLS mode (STRICT refuses plaintext before any AuthorizationPolicy
 * runs; DISABLE never sees a peer identity), then authorization. Used by
 * `trellis policy explain` so operators see exactly what the mesh would do.
 * Fails closed like its parts.
 */
import { authorize, type AuthorizeOptions, type AuthzDecision, type AuthzRequest } from './authorize';
import { effectivePeerAuthentication, type EffectivePeerAuthentication, type PeerAuthenticationOptions } from './peer-authentication';
import type { PolicySet } from './policy-set';
import type { EffectiveMtlsMode, PolicyWorkload } from './policy-types';

/** An explained inbound decision. */
export interface InboundExplanation {
  readonly mtlsMode: EffectiveMtlsMode;
  readonly mtlsDecidedBy: EffectivePeerAuthentication['decidedBy'];
  readonly decision: 'ALLOW' | 'DENY';
  /** An authorization reason code, or PLAINTEXT_REJECTED when STRICT refused the connection. */
  readonly code: AuthzDecision['code'] | 'PLAINTEXT_REJECTED';
  readonly reason: string;
  readonly policy?: AuthzDecision['policy'];
  readonly ruleIndex?: number;
  readonly audit?: AuthzDecision['audit'];
  readonly dryRun?: AuthzDecision['dryRun'];
  /** The request as authorization saw it (no principal under DISABLE). */
  readonly request: AuthzRequest;
}

/** Combines the port's mTLS mode and authorization for one request. */
export function explainInbound(set: PolicySet, workload: PolicyWorkload, request: AuthzRequest, opts: PeerAuthenticationOptions & AuthorizeOptions): InboundExplanation {
  const pa = effectivePeerAuthentication(set, workload, request.port, opts);
  const base = { mtlsMode: pa.mode, mtlsDecidedBy: pa.decidedBy };
  if (pa.mode === 'STRICT' && request.principal === undefined) {
    return { ...base, decision: 'DENY', code: 'PLAINTEXT_REJECTED', reason: `plaintext connection refused: mTLS mode is STRICT on port ${request.port}`, request };
  }
  const seen: AuthzRequest = pa.mode === 'DISABLE' ? withoutPrincipal(request) : request;
  const d = authorize(set, workload, seen, opts);
  const note = pa.mode === 'DISABLE' && request.principal !== undefined ? ' (mTLS is DISABLED on this port, so the peer identity is not known)' : '';
  return { ...base, ...d, reason: d.reason + note, request: seen };
}

function withoutPrincipal(r: AuthzRequest): AuthzRequest {
  const copy = { ...r };
  delete copy.principal;
  return copy;
}
