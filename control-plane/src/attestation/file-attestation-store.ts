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
import { normaliseSerial, type Logger } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { writeFileAtomic } from '../state/atomic-file';
import type { AttestationStore } from './attestation-store';
import { isKubernetesNamespace } from '@trellis/shared';
import { attestsMetadata, fromJoinToken, fromKubernetesPod, type WorkloadAttestation } from './workload-attestation';
import { workloadMetadataProblems } from './workload-metadata';

const SWEEP_EVERY_MS = 3600_000;

interface Entry {
  attestation: WorkloadAttestation;
  notAfterMs: number;
}

/** Attestations of issued SVIDs, in the CA dir. */
export class FileAttestationStore implements AttestationStore {
  private readonly dir: string;
  private readonly cache = new Map<string, Entry>();
  private lastSweepMs = 0;

  constructor(caDir: string, private readonly logger?: Logger) {
    this.dir = join(caDir, 'attestations');
  }

  /** Writes the record (only when it attests more than the identity: recalling nothing means the same). */
  remember(serialHex: string, attestation: WorkloadAttestation, notAfterMs: number, nowMs: number): void {
    if (!attestsMetadata(attestation)) return;
    const serial = fileSerial(serialHex);
    if (serial === null) throw new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `serial "${serialHex.slice(0, 64)}" is not hex`);
    const file = join(this.dir, `${serial}.json`);
    const record = attestation.pod
      ? { spiffeId: attestation.spiffeId, source: attestation.source, pod: attestation.pod, notAfter: new Date(notAfterMs).toISOString() }
      : {
          spiffeId: attestation.spiffeId,
          source: attestation.source,
          service: attestation.workload.service,
          labels: attestation.workload.labels,
          inboundPorts: attestation.workload.inboundPorts,
          notAfter: new Date(notAfterMs).toISOString(),
        };
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
    const serial = fileSerial(serialHex);
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

  private read(serial: string): Entry | null {
    const file = join(this.dir, `${serial}.json`);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger?.error('attestation record unreadable; attesting the identity alone', { file, error: err });
      return null;
    }
    try {
      const r = JSON.parse(text) as { spiffeId?: unknown; source?: unknown; service?: unknown; labels?: unknown; inboundPorts?: unknown; pod?: unknown; notAfter?: unknown };
      const notAfterMs = Date.parse(String(r.notAfter));
      if (r.source === 'kubernetes-pod') {
        const pod = (r.pod ?? {}) as { namespace?: unknown; name?: unknown; uid?: unknown };
        if (typeof r.spiffeId !== 'string' || typeof pod.namespace !== 'string' || !isKubernetesNamespace(pod.namespace) || typeof pod.name !== 'string' || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(pod.name) || typeof pod.uid !== 'string' || pod.uid === '' || !Number.isFinite(notAfterMs)) {
          throw new Error('missing or mistyped fields');
        }
        return { attestation: fromKubernetesPod(r.spiffeId, { namespace: pod.namespace, name: pod.name, uid: pod.uid }), notAfterMs };
      }
      const workload = { service: r.service as string, labels: r.labels as Record<string, string>, inboundPorts: r.inboundPorts as number[] };
      if (typeof r.spiffeId !== 'string' || r.source !== 'join-token' || typeof workload.service !== 'string' || !Array.isArray(workload.inboundPorts) || !workload.labels || typeof workload.labels !== 'object' || !Number.isFinite(notAfterMs)) {
        throw new Error('missing or mistyped fields');
      }
      const problems = workloadMetadataProblems(workload);
      if (problems.length > 0) throw new Error(problems.join('; '));
      return { attestation: fromJoinToken(r.spiffeId, workload), notAfterMs };
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

/** The serial as a file name: normalised hex, or null (never a path). */
function fileSerial(serialHex: string): string | null {
  try {
    return normaliseSerial(serialHex);
  } catch {
    return null;
  }
}
