/**
 * Where the revocations pushed to sidecars come from: a watched file
 * (`--revocations-file`, the format `trellis revoke` writes), or the list
 * shared by the replicas (the CA dir's revocations.json or the API
 * server's), pushed on every change from any replica. A file is re-read
 * only when its stamp moved (state/file-stamp.ts); a file that is absent
 * revokes nothing. Fails closed on bad input: a list that cannot be read or
 * parsed keeps the last good one in force, so a half-written file never
 * un-revokes anything.
 */
import { readFileSync } from 'node:fs';
import type { Logger, RevocationsResource } from '@trellis/shared';
import type { SharedDocument } from '../state/shared-document';
import { fileStamp } from '../state/file-stamp';
import { revocationsResource, type RevocationList } from './revocation-list';
import { parseRevocations } from './revocations-file';

/** What the feed reads from and pushes to. */
export interface RevocationFeedDeps {
  /** The watched file; undefined: the shared list is the source. */
  readonly file?: string;
  readonly shared: SharedDocument<RevocationList>;
  /** The shared list's backend, for log lines. */
  readonly backend: string;
  /** Where the list goes (the discovery service). */
  readonly target: { current(): RevocationsResource; set(r: RevocationsResource): void };
  nowMs(): number;
  readonly logger: Logger;
}

/** A running feed. */
export interface RevocationFeed {
  /** Pushes the shared list as it is now (a no-op push when nothing changed). */
  apply(): void;
  /** Looks again: the file when its stamp moved, else re-reads the shared list. Never throws. */
  refresh(): void;
  close(): void;
}

/** Starts the feed and pushes the list in force now. */
export function startRevocationFeed(deps: RevocationFeedDeps): RevocationFeed {
  const log = deps.logger;
  const apply = (): void => {
    const before = deps.target.current();
    deps.target.set(revocationsResource(deps.shared.current(), new Date(deps.nowMs())));
    if (deps.target.current() !== before) log.info('revocations loaded', { backend: deps.backend, ...countOf(deps.target.current()) });
  };
  const unsubscribe = deps.file ? () => undefined : deps.shared.subscribe(() => apply());
  let stamp = '';
  const refresh = (): void => {
    const file = deps.file;
    if (!file) {
      void deps.shared.refresh().then(apply, (err: unknown) => log.error('revocations not reloaded; keeping the last good list', { error: err }));
      return;
    }
    try {
      const now = fileStamp(file);
      if (now.startsWith('error:')) throw new Error(`${file}: cannot be read (${now.slice(6)})`);
      if (now === stamp) return;
      stamp = now;
      deps.target.set(now === 'absent' ? { serials: [], spiffeIds: [] } : parseRevocations(readFileSync(file, 'utf8'), file, new Date(deps.nowMs())));
      log.info('revocations loaded', { file, ...countOf(deps.target.current()) });
    } catch (err) {
      // Keep the last good list: a half-written file must not un-revoke anything.
      log.error('revocations not reloaded; keeping the last good list', { file, error: err });
    }
  };
  if (deps.file) refresh();
  else apply();
  return { apply, refresh, close: unsubscribe };
}

function countOf(r: RevocationsResource): { serials: number; spiffeIds: number } {
  return { serials: r.serials.length, spiffeIds: r.spiffeIds.length };
}
