/**
 * The AttestationStore of one CA dir: `<ca-dir>/attestations/<serial>.json`
 * (0600, in a 0700 dir), one file per SVID issued under an attestation that
 * vouches for more than the identity (a join token's metadata, or the pod a
 * Kubernetes token was bound to), written whole (temp file, fsync, rename) so
 * a reader never sees half a record. Replicas sharing the CA dir, and a
 * restarted control plane, read each other's records. Records are immutable,
 * so they are cached once read; expired ones are swept (files and cache) at
 * most once an hour.
 */
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { writeFileAtomic } from '../state/atomic-file';
import { attestationRecordJson, attestationSerial, parseAttestationRecord, type AttestationEntry } from './attestation-record';
import type { AttestationRecords } from './attestation-store';
import { attestsMetadata, type WorkloadAttestation } from './workload-attestation';

const SWEEP_EVERY_MS = 3600_000;

/** Attestations of issued SVIDs, in the CA dir. */
export class FileAttestationStore implements AttestationRecords {
  private readonly dir: string;
  private readonly cache = new Map<string, AttestationEntry>();
  private lastSweepMs = 0;

  constructor(caDir: string, private readonly logger?: Logger) {
    this.dir = join(caDir, 'attestations');
  }

  /** Writes the record (only when it attests more than the identity: recalling nothing means the same). */
  remember(serialHex: string, attestation: WorkloadAttestation, notAfterMs: number, nowMs: number): void {
    if (!attestsMetadata(attestation)) return;
    const serial = attestationSerial(serialHex);
    if (serial === null) throw new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `serial "${serialHex.slice(0, 64)}" is not hex`);
    const file = join(this.dir, `${serial}.json`);
    const record = attestationRecordJson({ attestation, notAfterMs });
    try {
      writeFileAtomic(file, JSON.stringify(record) + '\n', 0o600);
    } catch (err) {
      throw new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `${file}: ${(err as Error).message}`, { file }, { cause: err });
    }
    this.cache.set(serial, { attestation, notAfterMs });
    this.sweep(nowMs);
  }

  /** Reads the record (cache, then disk); a record that does not parse is logged and treated as absent (fail closed). */
  recall(serialHex: string, spiffeId: string, nowMs: number): WorkloadAttestation | null {
    const serial = attestationSerial(serialHex);
    if (serial === null) return null;
    let entry = this.cache.get(serial) ?? null;
    if (!entry) {
      entry = this.read(serial);
      if (entry) this.cache.set(serial, entry);
    }
    if (!entry || entry.notAfterMs <= nowMs) return null;
    if (entry.attestation.spiffeId !== spiffeId) {
      this.logger?.warn('attestation record is for another identity; attesting the identity alone', { event: 'audit', serial, spiffeId, recorded: entry.attestation.spiffeId });
      return null;
    }
    return entry.attestation;
  }

  /**
   * The SPIFFE IDs of every record whose SVID has not expired at `nowMs`:
   * the sidecars that may still be running with such an SVID (a restarted
   * control plane expects them back). Unreadable records are left out.
   */
  liveIdentities(nowMs: number): Set<string> {
    const ids = new Set<string>();
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.json'));
    } catch {
      return ids;
    }
    for (const name of names) {
      const e = this.read(name.slice(0, -'.json'.length));
      if (e && e.notAfterMs > nowMs) ids.add(e.attestation.spiffeId);
    }
    return ids;
  }

  private read(serial: string): AttestationEntry | null {
    const file = join(this.dir, `${serial}.json`);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger?.error('attestation record unreadable; attesting the identity alone', { file, error: err });
      return null;
    }
    try {
      return parseAttestationRecord(JSON.parse(text));
    } catch (err) {
      this.logger?.error('attestation record does not parse; attesting the identity alone', { file, error: err });
      return null;
    }
  }

  /** Drops expired records, at most once per SWEEP_EVERY_MS. A failure only delays the sweep. */
  private sweep(nowMs: number): void {
    if (nowMs - this.lastSweepMs < SWEEP_EVERY_MS) return;
    this.lastSweepMs = nowMs;
    for (const [serial, e] of this.cache) if (e.notAfterMs <= nowMs) this.cache.delete(serial);
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.json'));
    } catch {
      return;
    }
    for (const name of names) {
      const e = this.read(name.slice(0, -'.json'.length));
      if (e && e.notAfterMs > nowMs) continue;
      try {
        if (e) unlinkSync(join(this.dir, name));
      } catch {
        // Another replica swept it first.
      }
    }
  }
}
