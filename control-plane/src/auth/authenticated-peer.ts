/**
 * Who is on the other end of a discovery stream, once proven. Built by the
 * authenticator from a token or an mTLS certificate; nothing the sidecar
 * merely claims (its Node) ever becomes part of it.
 */

import type { WorkloadAttestation } from '../attestation/workload-attestation';

/** How the identity was proven. */
export type AuthMethod = 'kubernetes-token' | 'join-token' | 'svid';

/** A proven workload identity. */
export interface AuthenticatedPeer {
  readonly spiffeId: string;
  readonly method: AuthMethod;
  /** When the credential stops proving the identity (token exp or certificate notAfter), epoch ms. */
  readonly expiresAtMs: number;
  /** Fields for the audit log (pod name and uid, token id, certificate serial); never the token itself. */
  readonly audit: Readonly<Record<string, unknown>>;
  /**
   * What is attested about the workload beyond the identity (service,
   * labels, inbound ports): from a join token's claims, recalled for an SVID
   * issued under one, or the identity alone.
   */
  readonly attestation: WorkloadAttestation;
}
