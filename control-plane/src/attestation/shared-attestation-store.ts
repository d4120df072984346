/**
 * The AttestationStore of replicas that do not share a CA dir (Kubernetes:
 * each pod has its own copy): every record is written to this replica's own
 * store first (its CA dir, durable; a failure there throws, and the SVID is
 * not handed out), then added to a collection every replica reads
 * (attestation-record-collection.ts; on the API server one ConfigMap per
 * record), so a sidecar attested on one replica renews on any other, also
 * after the first one died.
 *
 * `remember` waits for the shared write (up to `shareWaitMs`), so in the
 * normal case the record is on the API server before the SVID goes out.
 * When it cannot be written (an outage, RBAC), the SVID still goes out, and
 * that does not open anything: a replica without the record attests the
 * renewal's identity alone (authenticator.ts, fail closed), so the worst
 * case is a renewal there refused for claiming what only the record backs,
 * never one granted more. The local record serves renewals on this
 * replica, as in the CA-dir mode, and the shared write is retried with
 * backoff until it lands (a record that expires meanwhile is dropped).
 * Refusing the SVID instead would stop every renewal during an outage,
 * which sidecars must ride through. Each shared write's outcome goes to
 * {@link SharedAttestationStore.onWriteOutcome}: the control plane is not
 * ready while they fail (state/storage-health.ts).
 *
 * `recall` reads the watched collection, then the single document the
 * previous version wrote (ConfigMap `trellis-attestations`, read only
 * until its records expire), then the local store.
 */
import { backoffDelayMs, DEFAULT_BACKOFF, type BackoffOptions, type Logger } from '@trellis/shared';
import type { SharedDocument } from '../state/shared-document';
import { lookupAttestation, type AttestationSet } from './attestation-document';
import { attestationSerial, type AttestationEntry } from './attestation-record';
import type { AttestationRecordCollection } from './attestation-record-collection';
import type { AttestationRecords } from './attestation-store';
import { attestsMetadata, type WorkloadAttestation } from './workload-attestation';

/** Collaborators and settings of a {@link SharedAttestationStore}. */
export interface SharedAttestationStoreDeps {
  /** This replica's own store (its CA dir): written first, read when the shared copy has no record. */
  local: AttestationRecords;
  /** The one document of the previous version's records: read (never written) until they expire. */
  legacy?: SharedDocument<AttestationSet>;
  logger?: Logger;
  nowMs?: () => number;
  /** How long `remember` waits for the shared write before the SVID goes out anyway (default 5 s). */
  shareWaitMs?: number;
  /** Retries of a failed shared write (default 250 ms doubling to 30 s). */
  retry?: BackoffOptions;
  /** Shared writes in flight at once (default 16): a burst of issuances is written in parallel, bounded. */
  concurrency?: number;
}

/** Attestation records in this replica's store and in a collection every replica reads and adds to. */
export class SharedAttestationStore implements AttestationRecords {
  /** Records not yet in the shared collection, by serial. */
  private readonly pending = new Map<string, AttestationEntry>();
  /** Told when the write round in flight (or the next) settles. */
  private waiters: Array<() => void> = [];
  private readonly outcomeListeners = new Set<(err: Error | null) => void>();
  private writing = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private reported: readonly string[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    private readonly records: AttestationRecordCollection,
    private readonly deps: SharedAttestationStoreDeps,
  ) {
    const legacy = deps.legacy;
    this.unsubscribe = legacy ? legacy.subscribe((d) => this.reportRejected(d)) : () => undefined;
    if (legacy) this.reportRejected(legacy.current());
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

  /** The record from the watched collection, the previous version's document, else this replica's store; one for another identity is logged and treated as absent (fail closed). */
  recall(serialHex: string, spiffeId: string, nowMs: number): WorkloadAttestation | null {
    const serial = attestationSerial(serialHex);
    if (serial === null) return null;
    const shared = this.records.get(serial);
    const entry = shared && shared.notAfterMs > nowMs ? shared : this.deps.legacy ? lookupAttestation(this.deps.legacy.current(), serial, nowMs) : null;
    if (!entry) return this.deps.local.recall(serialHex, spiffeId, nowMs);
    if (entry.attestation.spiffeId !== spiffeId) {
      this.deps.logger?.warn('attestation record is for another identity; attesting the identity alone', { event: 'audit', serial, spiffeId, recorded: entry.attestation.spiffeId });
      return null;
    }
    return entry.attestation;
  }

  liveIdentities(nowMs: number): Set<string> {
    const ids = this.deps.local.liveIdentities(nowMs);
    for (const e of this.records.entries()) if (e.notAfterMs > nowMs) ids.add(e.attestation.spiffeId);
    for (const e of this.deps.legacy?.current().records.values() ?? []) if (e.notAfterMs > nowMs) ids.add(e.attestation.spiffeId);
    return ids;
  }

  onWriteOutcome(listener: (err: Error | null) => void): () => void {
    this.outcomeListeners.add(listener);
    return () => this.outcomeListeners.delete(listener);
  }

  /** How many records wait to be shared (for tests and diagnostics). */
  get unshared(): number {
    return this.pending.size;
  }

  /** Stops retrying and listening (the collection and the document are closed by their owner). */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.unsubscribe();
    this.outcomeListeners.clear();
    this.release();
  }

  /** Writes everything pending (each record its own write, `concurrency` at a time), then whatever was remembered meanwhile; on a failure retries later. */
  private async write(): Promise<void> {
    this.writing = true;
    while (this.pending.size > 0 && !this.closed) {
      const nowMs = (this.deps.nowMs ?? Date.now)();
      for (const [serial, e] of this.pending) if (e.notAfterMs <= nowMs) this.pending.delete(serial);
      const batch = [...this.pending];
      const waiters = this.waiters;
      this.waiters = [];
      let failed: Error | null = null;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < batch.length && failed === null) {
          const [serial, entry] = batch[next++]!;
          try {
            await this.records.add(serial, entry);
            if (this.pending.get(serial) === entry) this.pending.delete(serial);
          } catch (err) {
            failed ??= err as Error;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.deps.concurrency ?? 16, batch.length) }, worker));
      for (const l of this.outcomeListeners) l(failed);
      if (failed === null) {
        if (this.failures > 0) this.deps.logger?.info('attestation records shared again', { failures: this.failures });
        this.failures = 0;
        for (const w of waiters) w();
        continue;
      }
      this.failures++;
      const delayMs = backoffDelayMs(this.failures - 1, this.deps.retry ?? DEFAULT_BACKOFF, Math.random());
      // The SVIDs go out: renewals here have the local record; other replicas get it when a retry lands.
      this.deps.logger?.[this.failures === 1 ? 'error' : 'warn']('attestation records not shared yet; renewals on other replicas attest the identity alone until they are. Retrying', { records: this.pending.size, retryInMs: delayMs, error: failed });
      for (const w of waiters) w();
      if (!this.closed) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          void this.write();
        }, delayMs);
        this.retryTimer.unref();
      }
      this.writing = false;
      return;
    }
    this.writing = false;
    this.release();
  }

  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Logs the previous version's records that did not parse, once per distinct set. */
  private reportRejected(d: AttestationSet): void {
    if (d.rejected.length === 0 || d.rejected.join('\n') === this.reported.join('\n')) return;
    this.reported = d.rejected;
    this.deps.logger?.error('attestation records do not parse; they attest the identity alone', { rejected: d.rejected.slice(0, 20), count: d.rejected.length });
  }
}
