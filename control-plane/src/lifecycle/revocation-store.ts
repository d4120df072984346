/**
 * The revocation list on disk: `revocations.json` in the CA dir, written
 * atomically under a lock file (a shared document, state/file-document.ts,
 * as every replica and `trellis revoke` see it). Besides the entries it
 * carries the `serials` and `spiffeIds` the sidecars must refuse, so the
 * control plane's `--revocations FILE` watcher reads it as it is. On
 * Kubernetes the same document lives in a ConfigMap instead.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CA_FILES, writeCaFiles } from '../ca/ca-dir';
import { readAuditLog } from './audit-index';
import { auditLifecycle } from './lifecycle-audit';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { FileDocument } from '../state/file-document';
import type { DocumentCodec } from '../state/shared-document';
import { addRevocation, EMPTY_REVOCATIONS, liftRevocation, pruneRevocations, revocationsResource, type RevocationEntry, type RevocationList } from './revocation-list';

/** File name of the store inside the CA dir. */
export const REVOCATIONS_FILE = 'revocations.json';

const KINDS = new Set(['spiffeId', 'serial']);

/** Parses the store; BAD_STATE naming the file and the field of the first bad entry. */
export function parseRevocationStore(text: string, source: string): RevocationList {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `${source}: not valid JSON (${(err as Error).message})`, { file: source }, { cause: err });
  }
  const entries = (doc as { entries?: unknown })?.entries;
  if (typeof doc !== 'object' || doc === null || !Array.isArray(entries)) throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `${source}: entries must be a list`, { file: source, field: 'entries' });
  const out: RevocationEntry[] = entries.map((e: unknown, i: number) => {
    const r = e as Record<string, unknown>;
    const bad = (field: string): never => {
      throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `${source}: entries[${i}].${field} is missing or invalid`, { file: source, field: `entries[${i}].${field}` });
    };
    if (typeof r !== 'object' || r === null) bad('');
    if (!KINDS.has(r['kind'] as string)) bad('kind');
    if (typeof r['value'] !== 'string' || r['value'] === '') bad('value');
    if (typeof r['reason'] !== 'string') bad('reason');
    if (typeof r['revokedAt'] !== 'string' || Number.isNaN(Date.parse(r['revokedAt']))) bad('revokedAt');
    if (r['expiresAt'] !== null && (typeof r['expiresAt'] !== 'string' || Number.isNaN(Date.parse(r['expiresAt'])))) bad('expiresAt');
    return Object.freeze({ kind: r['kind'] as RevocationEntry['kind'], value: r['value'] as string, reason: r['reason'] as string, revokedAt: r['revokedAt'] as string, expiresAt: r['expiresAt'] as string | null });
  });
  return Object.freeze({ entries: Object.freeze(out) });
}

/** Loads the store at `path`; a missing file is the empty list. */
export function loadRevocationStore(path: string): RevocationList {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_REVOCATIONS;
    throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file: path }, { cause: err });
  }
  return parseRevocationStore(text, path);
}

/** The stored form: the entries, and the push view (`serials`, `spiffeIds`) computed at `now`. */
export function formatRevocationStore(list: RevocationList, now: Date): string {
  const view = revocationsResource(list, now);
  return JSON.stringify({ version: 1, updatedAt: now.toISOString(), serials: view.serials, spiffeIds: view.spiffeIds, entries: list.entries }, null, 2) + '\n';
}

/** Writes the store atomically (temp file, fsync, rename), with the push view computed at `now`. */
export function saveRevocationStore(path: string, list: RevocationList, now: Date): void {
  writeCaFiles(dirname(path), [{ name: basename(path), contents: formatRevocationStore(list, now), mode: 0o644 }]);
}

/** How the list is stored (the file, or a ConfigMap key): the push view is computed at `clock()` on every write. */
export function revocationCodec(clock: () => Date): DocumentCodec<RevocationList> {
  return {
    empty: EMPTY_REVOCATIONS,
    parse: parseRevocationStore,
    format: (list) => formatRevocationStore(list, clock()),
  };
}

/** The CA dir's list as a shared document (every process on the dir: the replicas, `trellis revoke`). */
export function revocationDocument(caDir: string, clock: () => Date, onError?: (err: Error) => void): FileDocument<RevocationList> {
  return new FileDocument(join(caDir, REVOCATIONS_FILE), revocationCodec(clock), { onError, lockWaitMs: 10_000 });
}

/** Adds a revocation to `list` (pruned first) as `revoke` does; the entry is the last of the result. */
export function withRevocation(list: RevocationList, target: { spiffeId?: string; serial?: string }, o: { now: Date; reason?: string; caDir: string }): RevocationList {
  return addRevocation(pruneRevocations(list, o.now), target, { now: o.now, reason: o.reason, audit: readAuditLog(join(o.caDir, CA_FILES.auditLog)) });
}

/** Revokes in the CA dir's store (pruned first), writes it and the audit line; returns the new list and its entry. */
export function revokeInCaDir(caDir: string, target: { spiffeId?: string; serial?: string }, o: { now: Date; reason?: string }): { list: RevocationList; entry: RevocationEntry } {
  const list = revocationDocument(caDir, () => o.now).updateSync((l) => withRevocation(l, target, { ...o, caDir }));
  const entry = list.entries[list.entries.length - 1]!;
  auditLifecycle(caDir, 'revocation.added', o.now, { kind: entry.kind, value: entry.value, reason: entry.reason, expiresAt: entry.expiresAt });
  return { list, entry };
}

/** Lifts an entry in the CA dir's store (NOT_REVOKED when absent), writes it and the audit line. */
export function liftInCaDir(caDir: string, target: { spiffeId?: string; serial?: string }, o: { now: Date }): RevocationList {
  const list = revocationDocument(caDir, () => o.now).updateSync((l) => liftRevocation(pruneRevocations(l, o.now), target));
  auditLifecycle(caDir, 'revocation.lifted', o.now, { value: target.spiffeId ?? target.serial ?? null });
  return list;
}
