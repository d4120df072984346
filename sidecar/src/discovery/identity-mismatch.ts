/**
 * Tells a failure that means our identity settings contradict the control
 * plane or our token from any other stream failure, and says how to fix it.
 * The control plane is expected by its SPIFFE ID, and issues only the
 * identity the token authenticates, so retrying cannot fix either: the
 * client reports it once, loudly, with the fix. Pure.
 */
import { isSpiffeId, parseSpiffeId } from '@trellis/shared';
import { DiscoveryErrorCode } from './discovery-error';

/** The diagnosis: a stable code, what is wrong, and the fix. */
export interface IdentityMismatch {
  readonly code: string;
  readonly message: string;
  readonly fix: string;
}

/**
 * The mismatch behind a failed stream, or null for any other failure.
 * `presented` is what the control plane presented when the TLS check refused
 * it (else null); `serverCode` and `details` are the control plane's refusal.
 */
export function identityMismatch(
  expectedControlPlane: string,
  node: { spiffeId: string; namespace: string },
  presented: string | null,
  serverCode: string | null,
  details: string,
): IdentityMismatch | null {
  const expected = expectedControlPlane;
  if (presented !== null) {
    const theirs = isSpiffeId(presented) ? parseSpiffeId(presented).trustDomain : null;
    const ours = isSpiffeId(expected) ? parseSpiffeId(expected).trustDomain : null;
    const fix = theirs !== null && theirs !== ours
      ? `the control plane serves trust domain ${theirs}: start the sidecar with --trust-domain ${theirs}, or without --trust-domain and --spiffe-id when its token is a join token (the token names the identity)`
      : `start the sidecar with --control-plane-id ${presented} if that is the control plane you mean to trust`;
    return { code: DiscoveryErrorCode.SERVER_IDENTITY, message: `the control plane presented ${presented}, but this sidecar expects ${expected} (from --trust-domain or --control-plane-id)`, fix };
  }
  if (serverCode === 'TRELLIS_CP_IDENTITY_MISMATCH') {
    return {
      code: serverCode,
      message: `the control plane refused our identity settings: ${details} (this sidecar announced ${node.spiffeId}, namespace ${node.namespace})`,
      fix: 'the token decides the identity: drop --spiffe-id, --trust-domain, --namespace and --service-account so the sidecar takes them from its join token, or give it a token for the identity you meant',
    };
  }
  return null;
}
