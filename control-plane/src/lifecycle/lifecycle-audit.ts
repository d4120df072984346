/**
 * Lifecycle steps as JSON lines in the CA's `audit.log`, beside the
 * issuance lines and in the same hash chain (ca/audit-log.ts):
 * `{"time", "event": "intermediate.activated", ..., "prev", "hash"}`.
 * Lines hold subjects, serials, times and phases; never a key, a CSR or a
 * certificate.
 */
import { join } from 'node:path';
import { AuditLog } from '../ca/audit-log';
import { CA_FILES } from '../ca/ca-dir';

/** Every lifecycle event name. */
export type LifecycleEvent =
  | 'intermediate.prepared'
  | 'intermediate.signed'
  | 'intermediate.activated'
  | 'environment.created'
  | 'root-rotation.started'
  | 'root-rotation.authorized'
  | 'root-rotation.switched'
  | 'root-rotation.old-root-dropped'
  | 'revocation.added'
  | 'revocation.lifted'
  | 'reissue.ordered';

/** Appends one event line to `caDir/audit.log`. Best effort: an unwritable log never blocks a lifecycle step that already happened, but is reported to the caller. */
export function auditLifecycle(caDir: string, event: LifecycleEvent, now: Date, fields: Record<string, string | number | null> = {}): Error | null {
  try {
    new AuditLog(join(caDir, CA_FILES.auditLog)).appendSync({ time: now.toISOString(), event, ...fields });
    return null;
  } catch (err) {
    return err as Error;
  }
}
