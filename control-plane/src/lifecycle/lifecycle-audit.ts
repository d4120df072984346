/**
 * Lifecycle steps as JSON lines in the CA's `audit.log`, beside the
 * issuance lines: `{"time", "event": "intermediate.activated", ...}`. Each
 * line is one write(2) on an O_APPEND descriptor so concurrent writers never
 * interleave. Lines hold subjects, serials, times and phases; never a key,
 * a CSR or a certificate.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
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
    const fd = openSync(join(caDir, CA_FILES.auditLog), 'a', 0o640);
    try {
      writeSync(fd, JSON.stringify({ time: now.toISOString(), event, ...fields }) + '\n');
    } finally {
      closeSync(fd);
    }
    return null;
  } catch (err) {
    return err as Error;
  }
}
