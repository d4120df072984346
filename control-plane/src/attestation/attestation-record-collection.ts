/**
 * The attestation records replicas share, one record per issued SVID: a
 * collection every replica reads (kept current by a watch) and adds to.
 * Records are immutable (an SVID's attestation never changes), so adding
 * one is a create that touches no other record: no write rewrites the
 * others, and two replicas never conflict, whatever the number of records.
 * On Kubernetes one small ConfigMap per record (kubernetes/kube-attestation-records.ts).
 */
import type { AttestationEntry } from './attestation-record';

/** One record per SVID serial, readable from a local copy and added to remotely. */
export interface AttestationRecordCollection {
  /**
   * Adds the record of SVID `serial` (normalised, attestation-record.ts);
   * resolves once it is stored. A record already stored with the same
   * content counts as stored (a retried write); one with other content is
   * refused. Rejects with TRELLIS_CP_ATTESTATION_STORE (`details.reason`:
   * the cause's code, such as FORBIDDEN or UNREACHABLE) when it cannot be stored.
   */
  add(serial: string, entry: AttestationEntry): Promise<void>;
  /** The record of `serial` as last seen, or null (expiry is the caller's check). */
  get(serial: string): AttestationEntry | null;
  /** Every record as last seen. */
  entries(): Iterable<AttestationEntry>;
}
