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
 * but attested differently (two tokens) each keep their own. Records are
 * part of the state replicas share (state/shared-state.ts): files of the CA
 * dir (file-attestation-store.ts) where replicas share the dir, a watched
 * collection of one object per record on the Kubernetes API server
 * (shared-attestation-store.ts) where each replica has its own CA dir;
 * otherwise a sidecar attested on one replica could not renew on another.
 */
import type { WorkloadAttestation } from './workload-attestation';

/** Where attestations of issued SVIDs are remembered. */
export interface AttestationStore {
  /**
   * Remembers that SVID `serialHex`, valid until `notAfterMs`, was issued
   * under `attestation`. Throws (TRELLIS_CP_ATTESTATION_STORE) when it cannot:
   * the caller must then not hand out the SVID, whose renewals would lose it.
   * A store that writes remotely resolves once the record is written: await
   * it before handing the SVID out.
   */
  remember(serialHex: string, attestation: WorkloadAttestation, notAfterMs: number, nowMs: number): void | Promise<void>;
  /**
   * What SVID `serialHex` of `spiffeId` was issued under, or null when
   * nothing is recorded, the record is for another identity, or it expired.
   */
  recall(serialHex: string, spiffeId: string, nowMs: number): WorkloadAttestation | null;
}

/** The records replicas share: a store that can also list who holds a live attested SVID. */
export interface AttestationRecords extends AttestationStore {
  /**
   * The SPIFFE IDs of every record whose SVID has not expired at `nowMs`:
   * the sidecars that may still be running with such an SVID (a restarted
   * control plane expects them back). Unreadable records are left out.
   */
  liveIdentities(nowMs: number): Set<string>;
  /**
   * For a store that also writes outside `remember` (a shared copy retried in
   * the background): tells `listener` the outcome of each such write (null:
   * written), so the control plane is not ready while they fail. Returns the
   * unsubscribe. A store without it reports through `remember` alone.
   */
  onWriteOutcome?(listener: (err: Error | null) => void): () => void;
}

/** A store that remembers nothing: every certificate attests its identity alone. */
export const NO_ATTESTATIONS: AttestationStore = Object.freeze({
  remember: () => undefined,
  recall: () => null,
});
