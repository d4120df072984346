/**
 * Who is on the other end of a discovery stream, once proven. Built by the
 * authenticator from a token or an mTLS certificate; nothing the sidecar
 * merely claims (its Node) ever becomes part of it.
 */

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
}
