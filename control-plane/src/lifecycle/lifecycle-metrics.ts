/**
 * The lifecycle's facts as Prometheus gauges, computed from the CA dir at
 * scrape time (the same facts `trellis check` prints):
 *
 * - `trellis_lifecycle_certificate_remaining_seconds{kind,name}`
 * - `trellis_lifecycle_certificate_status{kind,name}` 0 ok, 1 warn, 2 critical, 3 expired
 * - `trellis_lifecycle_next_intermediate_state` 0 none, 1 prepared (waiting for the root), 2 signed
 * - `trellis_lifecycle_root_rotation_phase` 0 none, 1 bundle, 2 renew, 3 done
 * - `trellis_lifecycle_revocations{kind}` entries on the list
 */
import { join } from 'node:path';
import { Gauge, type Registry } from 'prom-client';
import { buildCheckReport, caDirCheckItems } from './check-report';
import { readIntermediateSlots } from './intermediate-slots';
import type { RevocationList } from './revocation-list';
import { loadRevocationStore, REVOCATIONS_FILE } from './revocation-store';
import { loadRootRotationState } from './root-rotation-store';

const STATUS = { ok: 0, warn: 1, critical: 2, expired: 3 } as const;
const NEXT = { empty: 0, prepared: 1, signed: 2 } as const;
const PHASE = { bundle: 1, renew: 2, done: 3 } as const;

/** Registers the lifecycle gauges on `registry`; a CA dir that cannot be read leaves them unset rather than failing the scrape. */
export function registerLifecycleGauges(registry: Registry, caDir: string, clock: () => Date = () => new Date(), revocationList?: () => RevocationList): void {
  const remaining = new Gauge({ name: 'trellis_lifecycle_certificate_remaining_seconds', help: 'Seconds until each CA certificate expires', labelNames: ['kind', 'name'], registers: [registry], collect: () => collect() });
  const status = new Gauge({ name: 'trellis_lifecycle_certificate_status', help: 'Expiry status per CA certificate: 0 ok, 1 warn, 2 critical, 3 expired', labelNames: ['kind', 'name'], registers: [registry], collect: () => collect() });
  const next = new Gauge({ name: 'trellis_lifecycle_next_intermediate_state', help: 'Next intermediate: 0 none, 1 prepared (waiting to be signed), 2 signed', registers: [registry], collect: () => collect() });
  const phase = new Gauge({ name: 'trellis_lifecycle_root_rotation_phase', help: 'Root rotation phase: 0 none, 1 bundle, 2 renew, 3 done', registers: [registry], collect: () => collect() });
  const revocations = new Gauge({ name: 'trellis_lifecycle_revocations', help: 'Entries on the revocation list', labelNames: ['kind'], registers: [registry], collect: () => collect() });
  let last = 0;
  function collect(): void {
    const nowMs = clock().getTime();
    // prom-client calls collect() on each gauge; one refresh per scrape serves them all.
    if (nowMs - last < 1000) return;
    last = nowMs;
    try {
      const now = new Date(nowMs);
      const { subjects, notes } = caDirCheckItems(caDir, now);
      const report = buildCheckReport(now, subjects, notes);
      remaining.reset();
      status.reset();
      for (const i of report.items) {
        remaining.set({ kind: i.kind, name: i.subject }, i.remainingSeconds);
        status.set({ kind: i.kind, name: i.subject }, STATUS[i.status]);
      }
      next.set(NEXT[readIntermediateSlots(caDir).nextState]);
      const rot = loadRootRotationState(caDir);
      phase.set(rot ? PHASE[rot.phase] : 0);
      // The list the replicas share (the API server's), or the CA dir's file.
      const list = revocationList ? revocationList() : loadRevocationStore(join(caDir, REVOCATIONS_FILE));
      revocations.set({ kind: 'spiffeId' }, list.entries.filter((e) => e.kind === 'spiffeId').length);
      revocations.set({ kind: 'serial' }, list.entries.filter((e) => e.kind === 'serial').length);
    } catch {
      // Keep the last values; the control plane logs CA dir problems on its own refresh.
    }
  }
}
