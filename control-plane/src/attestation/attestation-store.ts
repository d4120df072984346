/**
 * Carries an attestation forward from the credential that was attested to
 * the SVIDs issued under it. A join token is used once; the sidecar then
 * renews over mTLS with its SVID, and the renewal stream must be held to
 * what the token attested, no more. So every SVID issued under an
 * attestation is remembered by serial (the renewal's SVID too: the chain
 * carries forward), and a certificate-authenticated stream recalls it. A
 * certificate with no record attests its identity alone (fail closed).
 *
 * Keyed by serial rather than SPIFFE ID so two workloads sharing an identity
 * but attested differently (two tokens) each keep their own. The file store
 * (file-attestation-store.ts) shares records between replicas and restarts
 * through the CA dir, as join-token uses are; a Kubernetes API-server source
 * can implement the same interface.
 */
import type { WorkloadAttestation } from './workload-attestation';

/** Where attestations of issued SVIDs are remembered. */
export interface AttestationStore {
  /**
   * Remembers that SVID `serialHex`, valid until `notAfterMs`, was issued
   * under `attestation`. Throws (TRELLIS_CP_ATTESTATION_STORE) when it cannot:
   * the caller must then not hand out the SVID, whose renewals would lose it.
   */
  remember(serialHex: string, attestation: WorkloadAttestation, notAfterMs: number, nowMs: number): void;
  /**
   * What SVID `serialHex` of `spiffeId` was issued under, or null when
   * nothing is recorded, the record is for another identity, or it expired.
   */
  recall(serialHex: string, spiffeId: string, nowMs: number): WorkloadAttestation | null;
}

/** A store that remembers nothing: every certificate attests its identity alone. */
export const NO_ATTESTATIONS: AttestationStore = Object.freeze({
  remember: () => undefined,
  recall: () => null,
});
