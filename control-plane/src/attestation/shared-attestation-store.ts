/**
 * The AttestationStore of replicas that do not share a CA dir (Kubernetes:
 * each pod has its own copy): the records are one SharedDocument
 * (attestation-document.ts), on the API server a watched ConfigMap, so a
 * sidecar attested on one replica renews on any other, also after the
 * first one died. `remember` resolves once the record is written there
 * (the SVID must not go out before: its renewals would lose it); records
 * remembered while a write is in flight are written together in the next
 * one, so a burst of issuances is a few writes, not a conflict storm.
 * `recall` reads the watched copy: a record written by another replica is
 * there within the watch's latency, long before its SVID is renewed.
 */
import type { Logger } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { SharedDocument } from '../state/shared-document';
import { lookupAttestation, withAttestations, type AttestationSet } from './attestation-document';
import { attestationSerial, type AttestationEntry } from './attestation-record';
import type { AttestationRecords } from './attestation-store';
import { attestsMetadata, type WorkloadAttestation } from './workload-attestation';

interface Pending {
  serial: string;
  entry: AttestationEntry;
  nowMs: number;
  resolve(): void;
  reject(err: Error): void;
}

/** Attestation records in a document every replica reads and writes. */
export class SharedAttestationStore implements AttestationRecords {
  private pending: Pending[] = [];
  private writing = false;
  private reported: readonly string[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    private readonly doc: SharedDocument<AttestationSet>,
    private readonly deps: { logger?: Logger; maxBytes?: number } = {},
  ) {
    this.unsubscribe = doc.subscribe((d) => this.reportRejected(d));
    this.reportRejected(doc.current());
  }

  /** Writes the record (only when it attests more than the identity); rejects with TRELLIS_CP_ATTESTATION_STORE when it cannot. */
  remember(serialHex: string, attestation: WorkloadAttestation, notAfterMs: number, nowMs: number): Promise<void> {
    if (!attestsMetadata(attestation)) return Promise.resolve();
    const serial = attestationSerial(serialHex);
    if (serial === null) return Promise.reject(new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `serial "${serialHex.slice(0, 64)}" is not hex`));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ serial, entry: { attestation, notAfterMs }, nowMs, resolve, reject });
      if (!this.writing) void this.write();
    });
  }

  /** The record from the watched document; one for another identity is logged and treated as absent (fail closed). */
  recall(serialHex: string, spiffeId: string, nowMs: number): WorkloadAttestation | null {
    const serial = attestationSerial(serialHex);
    if (serial === null) return null;
    const entry = lookupAttestation(this.doc.current(), serial, nowMs);
    if (!entry) return null;
    if (entry.attestation.spiffeId !== spiffeId) {
      this.deps.logger?.warn('attestation record is for another identity; attesting the identity alone', { event: 'audit', serial, spiffeId, recorded: entry.attestation.spiffeId });
      return null;
    }
    return entry.attestation;
  }

  liveIdentities(nowMs: number): Set<string> {
    const ids = new Set<string>();
    for (const e of this.doc.current().records.values()) if (e.notAfterMs > nowMs) ids.add(e.attestation.spiffeId);
    return ids;
  }

  /** Stops listening to the document (which its owner closes). */
  close(): void {
    this.unsubscribe();
  }

  /** Writes everything pending in one update, then whatever was remembered meanwhile. */
  private async write(): Promise<void> {
    this.writing = true;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      const nowMs = Math.max(...batch.map((p) => p.nowMs));
      try {
        await this.doc.update((d) => withAttestations(d, batch, nowMs, this.deps.maxBytes));
        for (const p of batch) p.resolve();
      } catch (err) {
        const e =
          err instanceof ControlPlaneError && err.code === ControlPlaneErrorCode.ATTESTATION_STORE
            ? err
            : new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `attestation records not written: ${(err as Error).message}`, { reason: (err as { code?: string }).code ?? 'error' }, { cause: err });
        for (const p of batch) p.reject(e);
      }
    }
    this.writing = false;
  }

  /** Logs the records that did not parse, once per distinct set. */
  private reportRejected(d: AttestationSet): void {
    if (d.rejected.length === 0 || d.rejected.join('\n') === this.reported.join('\n')) return;
    this.reported = d.rejected;
    this.deps.logger?.error('attestation records do not parse; they attest the identity alone', { rejected: d.rejected.slice(0, 20), count: d.rejected.length });
  }
}
