/**
 * Decides who opened a discovery stream. An mTLS client certificate that
 * chained to the trust bundle (checked by TLS) wins: that is how renewals
 * authenticate. Otherwise the bearer token in `authorization` metadata: a join
 * token (`tj1.` prefix) or a Kubernetes ServiceAccount token. Fails closed:
 * no credential, a certificate without exactly one SPIFFE ID in our trust
 * domain, a revoked or expired credential, all throw UNAUTHENTICATED errors.
 *
 * The peer also carries what is attested about the workload: a join token's
 * claims, or a Kubernetes token's bound pod; for a certificate, the
 * attestation its SVID was issued under (recalled from `deps.attestations`),
 * else the identity alone. A certificate issued under a pod's token is
 * refused once that pod is gone (TOKEN_POD_GONE), as the token would be; it
 * attests its identity alone when this control plane does not read pods.
 */
import { normaliseSerial, spiffeIdOfUriSans, uriSansOfPeerCertificate } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { AttestationStore } from '../attestation/attestation-store';
import { fromJoinToken, identityOnly } from '../attestation/workload-attestation';
import type { AuthenticatedPeer } from './authenticated-peer';
import { isJoinToken, verifyJoinToken } from './join-token';
import type { JoinTokenStore } from './join-token-store';
import type { KubernetesTokenVerifier } from './kubernetes-token';
import type { PodLiveness } from './token-keys';
import type { TokenUses } from './token-uses';

/** The parts of a TLS peer certificate the authenticator reads (node:tls PeerCertificate). */
export interface PeerCertificateView {
  subjectaltname?: string;
  valid_from: string;
  valid_to: string;
  serialNumber: string;
}

/** Collaborators of the authenticator. */
export interface AuthenticatorDeps {
  trustDomain: string;
  /** Absent when Kubernetes tokens are not configured. */
  kubernetes?: KubernetesTokenVerifier;
  joinTokens: JoinTokenStore;
  /** Where token uses are recorded (the API server with replicas); default `joinTokens` (the CA dir). */
  tokenUses?: TokenUses;
  /** True when a serial (lower-case hex) or SPIFFE ID has been revoked. */
  isRevoked(serialHex: string, spiffeId: string): boolean;
  /** Attestations of issued SVIDs; absent: a certificate attests its identity alone. */
  attestations?: AttestationStore;
  /** The API server's pods (the Kubernetes registry), when this control plane reads them. */
  pods?: PodLiveness;
}

/** What arrived with the stream. */
export interface StreamCredentials {
  bearerToken?: string;
  peerCertificate?: PeerCertificateView;
}

/** Authenticates one stream at `nowMs`. Consumes a join-token use on success. */
export async function authenticate(deps: AuthenticatorDeps, creds: StreamCredentials, nowMs: number): Promise<AuthenticatedPeer> {
  const C = ControlPlaneErrorCode;
  if (creds.peerCertificate) return fromCertificate(deps, creds.peerCertificate, nowMs);
  const token = creds.bearerToken;
  if (!token) throw new ControlPlaneError(C.TOKEN_MISSING, 'no client certificate and no bearer token in "authorization" metadata');
  if (isJoinToken(token)) {
    if (!deps.joinTokens.hasKey()) throw new ControlPlaneError(C.TOKEN_BAD_SIGNATURE, 'join tokens are not enabled on this control plane (no key)');
    const claims = await verifyJoinToken(deps.joinTokens.key(false), token, nowMs, deps.trustDomain);
    if (deps.isRevoked('', claims.spiffeId)) throw new ControlPlaneError(C.CERT_REJECTED, `${claims.spiffeId} is revoked`);
    const use = await (deps.tokenUses ?? deps.joinTokens).consume(claims.tokenId, claims.uses, claims.expiresAtMs);
    return {
      spiffeId: claims.spiffeId,
      method: 'join-token',
      expiresAtMs: claims.expiresAtMs,
      audit: { tokenId: claims.tokenId, use, uses: claims.uses },
      attestation: fromJoinToken(claims.spiffeId, claims.workload),
    };
  }
  if (!deps.kubernetes) throw new ControlPlaneError(C.KUBERNETES_AUTH_DISABLED, 'kubernetes token presented but no issuer/JWKS is configured');
  const peer = await deps.kubernetes(token, nowMs);
  if (deps.isRevoked('', peer.spiffeId)) throw new ControlPlaneError(C.CERT_REJECTED, `${peer.spiffeId} is revoked`);
  return peer;
}

/** The SPIFFE ID of a chain-verified client certificate, with checks of its own. */
function fromCertificate(deps: AuthenticatorDeps, cert: PeerCertificateView, nowMs: number): AuthenticatedPeer {
  const C = ControlPlaneErrorCode;
  const id = spiffeIdOfUriSans(uriSansOfPeerCertificate(cert), 'client');
  if (!id.ok) throw new ControlPlaneError(C.CERT_REJECTED, id.reason);
  const spiffeId = id.spiffeId.toString();
  const td = id.spiffeId.trustDomain;
  if (td !== deps.trustDomain) throw new ControlPlaneError(C.CERT_REJECTED, `client certificate is for trust domain ${td}, not ${deps.trustDomain}`);
  const notAfter = Date.parse(cert.valid_to);
  if (!(notAfter > nowMs)) throw new ControlPlaneError(C.CREDENTIAL_EXPIRED, `client certificate expired at ${cert.valid_to}`);
  let serialHex: string;
  try {
    serialHex = normaliseSerial(cert.serialNumber);
  } catch {
    throw new ControlPlaneError(C.CERT_REJECTED, 'client certificate has an unreadable serial');
  }
  if (deps.isRevoked(serialHex, spiffeId)) throw new ControlPlaneError(C.CERT_REJECTED, `client certificate ${serialHex} for ${spiffeId} is revoked`);
  let attestation = deps.attestations?.recall(serialHex, spiffeId, nowMs) ?? identityOnly(spiffeId);
  const pod = attestation.pod;
  if (pod) {
    if (!deps.pods) attestation = identityOnly(spiffeId);
    else if (deps.pods.podStatus(pod) === 'gone') {
      throw new ControlPlaneError(C.TOKEN_POD_GONE, `client certificate ${serialHex} was issued to pod ${pod.namespace}/${pod.name}, which no longer exists`);
    }
  }
  return { spiffeId, method: 'svid', expiresAtMs: notAfter, audit: { serialHex, ...(pod ? { podName: pod.name, podUid: pod.uid } : {}) }, attestation };
}
