/**
 * The AttestationStore of replicas that do not share a CA dir (Kubernetes:
 * each pod has its own copy): every record is written to this replica's own
 * store first (its CA dir, durable; a failure there throws, and the SVID is
 * not handed out, as before), then to one SharedDocument
 * (attestation-document.ts), on the API server a watched ConfigMap, so a
 * sidecar attested on one replica renews on any other, also after the first
 * one died.
 *
 * `remember` waits for the shared write (up to `shareWaitMs`), so in the
 * normal case the record is on the API server before the SVID goes out.
 * When the API server cannot be written (an outage), the SVID still goes
 * out: the local record serves renewals on this replica, as in the CA-dir
 * mode, and the shared write is retried with backoff until it lands (a
 * record that expires meanwhile is dropped). Refusing instead would stop
 * every renewal during an outage, which sidecars must ride through. Records
 * remembered while a write is in flight are written together in the next
 * one, so a burst of issuances is a few writes, not a conflict storm.
 *
 * `recall` reads the watched copy, then the local store: a record written
 * by another replica is there within the watch's latency, long before its
 * SVID is renewed.
 */
import { backoffDelayMs, DEFAULT_BACKOFF, type BackoffOptions, type Logger } from '@trellis/shared';
import type { SharedDocument } from '../state/shared-document';
import { lookupAttestation, withAttestations, type AttestationSet } from './attestation-document';
import { attestationSerial, type AttestationEntry } from './attestation-record';
import type { AttestationRecords } from './attestation-store';
import { attestsMetadata, type WorkloadAttestation } from './workload-attestation';

/** Collaborators and settings of a {@link SharedAttestationStore}. */
export interface SharedAttestationStoreDeps {
  /** This replica's own store (its CA dir): written first, read when the shared copy has no record. */
  local: AttestationRecords;
  logger?: Logger;
  nowMs?: () => number;
  /** The largest shared document written (default MAX_ATTESTATION_DOCUMENT_BYTES). */
  maxBytes?: number;
  /** How long `remember` waits for the shared write before the SVID goes out anyway (default 5 s). */
  shareWaitMs?: number;
  /** Retries of a failed shared write (default 250 ms doubling to 30 s). */
  retry?: BackoffOptions;
}

/** Attestation records in this replica's store and in a document every replica reads and writes. */
export class SharedAttestationStore implements AttestationRecords {
  /** Records not yet in the shared document, by serial. */
  private readonly pending = new Map<string, AttestationEntry>();
  /** Told when the write in flight (or the next) settles. */
  private waiters: Array<() => void> = [];
  private writing = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private reported: readonly string[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    private readonly doc: SharedDocument<AttestationSet>,
    private readonly deps: SharedAttestationStoreDeps,
  ) {
    this.unsubscribe = doc.subscribe((d) => this.reportRejected(d));
    this.reportRejected(doc.current());
  }

  /**
   * Writes the record (only when it attests more than the identity) here,
   * then shares it. Rejects with TRELLIS_CP_ATTESTATION_STORE only when the
   * local write fails; a shared write that fails is retried in the background.
   */
  async remember(serialHex: string, attestation: WorkloadAttestation, notAfterMs: number, nowMs: number): Promise<void> {
    if (!attestsMetadata(attestation)) return;
    await this.deps.local.remember(serialHex, attestation, notAfterMs, nowMs);
    const serial = attestationSerial(serialHex);
    if (serial === null || this.closed) return; // the local store refused a bad serial already
    this.pending.set(serial, { attestation, notAfterMs });
    // Shared writes are failing (an outage): do not hold the SVID for a retry; it is shared when one lands.
    if (this.failures > 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        if (!this.writing && this.retryTimer === null) void this.write();
      }),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, this.deps.shareWaitMs ?? 5000))),
    ]);
    clearTimeout(timer);
  }

  /** The record from the watched document, else from this replica's store; one for another identity is logged and treated as absent (fail closed). */
  recall(serialHex: string, spiffeId: string, nowMs: number): WorkloadAttestation | null {
    const serial = attestationSerial(serialHex);
    if (serial === null) return null;
    const entry = lookupAttestation(this.doc.current(), serial, nowMs);
    if (!entry) return this.deps.local.recall(serialHex, spiffeId, nowMs);
    if (entry.attestation.spiffeId !== spiffeId) {
      this.deps.logger?.warn('attestation record is for another identity; attesting the identity alone', { event: 'audit', serial, spiffeId, recorded: entry.attestation.spiffeId });
      return null;
    }
    return entry.attestation;
  }

  liveIdentities(nowMs: number): Set<string> {
    const ids = this.deps.local.liveIdentities(nowMs);
    for (const e of this.doc.current().records.values()) if (e.notAfterMs > nowMs) ids.add(e.attestation.spiffeId);
    return ids;
  }

  /** How many records wait to be shared (for tests and diagnostics). */
  get unshared(): number {
    return this.pending.size;
  }

  /** Stops retrying and listening to the document (which its owner closes). */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.unsubscribe();
    this.release();
  }

  /** Writes everything pending in one update, then whatever was remembered meanwhile; on failure retries later. */
  private async write(): Promise<void> {
    this.writing = true;
    while (this.pending.size > 0 && !this.closed) {
      const nowMs = (this.deps.nowMs ?? Date.now)();
      for (const [serial, e] of this.pending) if (e.notAfterMs <= nowMs) this.pending.delete(serial);
      const batch = [...this.pending].map(([serial, entry]) => ({ serial, entry }));
      const waiters = this.waiters;
      this.waiters = [];
      try {
        await this.doc.update((d) => withAttestations(d, batch, nowMs, this.deps.maxBytes));
        for (const b of batch) if (this.pending.get(b.serial) === b.entry) this.pending.delete(b.serial);
        if (this.failures > 0) this.deps.logger?.info('attestation records shared again', { failures: this.failures });
        this.failures = 0;
        for (const w of waiters) w();
      } catch (err) {
        this.failures++;
        const delayMs = backoffDelayMs(this.failures - 1, this.deps.retry ?? DEFAULT_BACKOFF, Math.random());
        // The SVIDs go out: renewals here have the local record; other replicas get it when a retry lands.
        this.deps.logger?.[this.failures === 1 ? 'error' : 'warn']('attestation records not shared yet; renewals on other replicas fail until they are. Retrying', { records: batch.length, retryInMs: delayMs, error: err });
        for (const w of waiters) w();
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          void this.write();
        }, delayMs);
        this.retryTimer.unref();
        this.writing = false;
        return;
      }
    }
    this.writing = false;
    this.release();
  }

  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Logs the records that did not parse, once per distinct set. */
  private reportRejected(d: AttestationSet): void {
    if (d.rejected.length === 0 || d.rejected.join('\n') === this.reported.join('\n')) return;
    this.reported = d.rejected;
    this.deps.logger?.error('attestation records do not parse; they attest the identity alone', { rejected: d.rejected.slice(0, 20), count: d.rejected.length });
  }
}
