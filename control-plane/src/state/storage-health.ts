/**
 * Whether the control plane can write its state, per store (the audit log,
 * join-token uses, attestation records, revocations, the replica report):
 * the last write of each either worked or failed with a reason. While one
 * fails, the control plane is not ready and says why on /readyz and in
 * `trellis_state_writable{store}` / `trellis_state_write_failures_total`.
 * Nothing latches: the next successful write of a store clears it; a
 * probe (a small file written, fsynced and removed in the CA dir, once per
 * refresh while something fails) clears the stores kept in the CA dir as
 * soon as space is back; and a replica report written (every few seconds)
 * clears the stores kept where it is kept (the CA dir, or the API server),
 * so readiness returns by itself, even for a store written only on demand
 * (a revocation refused once). On the API server the attestation records
 * are the exception: their store retries in the background and reports
 * each outcome, so only a record written clears them.
 */
import { rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { TrellisError } from '@trellis/shared';
import { Counter as PromCounter, Gauge as PromGauge, type Counter, type Registry } from 'prom-client';
import type { IssuedSvid, SvidAuthority } from '../issuance/svid-authority';
import { writeFileAtomic } from './atomic-file';

/** The stores whose writes are tracked. */
export type StateStore = 'audit' | 'join-token-uses' | 'attestations' | 'revocations' | 'reissue-orders' | 'replica-report';

const STORES: readonly StateStore[] = ['audit', 'join-token-uses', 'attestations', 'revocations', 'reissue-orders', 'replica-report'];
/** Stores always kept in the CA dir. */
const CA_DIR_STORES: readonly StateStore[] = ['audit'];
/** Stores kept where the shared state is (the CA dir, or the API server). */
const SHARED_STORES: readonly StateStore[] = ['join-token-uses', 'attestations', 'revocations', 'reissue-orders', 'replica-report'];

/** Error codes that mean "this store could not be written" (not a refusal of the request). */
const WRITE_FAILURE_CODES = new Set(['TRELLIS_CA_AUDIT_WRITE_FAILED', 'TRELLIS_CP_JOIN_TOKEN_STORE', 'TRELLIS_CP_ATTESTATION_STORE', 'TRELLIS_CP_STATE_WRITE_FAILED']);

/** One failing store. */
export interface FailingStore {
  readonly store: StateStore;
  readonly since: string;
  /** The errno (ENOSPC, EROFS, ...) or error code. */
  readonly reason: string;
  readonly message: string;
}

/** True when `err` says a state write failed (as opposed to a refused request). */
export function isStateWriteFailure(err: unknown): boolean {
  return err instanceof TrellisError && WRITE_FAILURE_CODES.has(err.code);
}

function reasonOf(err: Error): string {
  const details = (err as Partial<TrellisError>).details as Record<string, unknown> | undefined;
  const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
  return (typeof details?.['reason'] === 'string' ? (details['reason'] as string) : undefined) ?? cause?.code ?? (err as NodeJS.ErrnoException).code ?? (err as Partial<TrellisError>).code ?? 'error';
}

/** The write health of every store. */
export class StorageHealth {
  private readonly failing = new Map<StateStore, FailingStore>();
  private readonly failures: Counter<'store' | 'reason'> | null;

  constructor(
    /** The CA dir: where the probe writes, and whose free space is reported. */
    private readonly dir: string,
    private readonly deps: { nowMs?: () => number; registry?: Registry; onChange?(failing: readonly FailingStore[]): void; sharedBackend?: 'ca-dir' | 'api-server' } = {},
  ) {
    const registers = deps.registry ? [deps.registry] : [];
    this.failures = deps.registry ? new PromCounter({ name: 'trellis_state_write_failures_total', help: 'State writes that failed (nothing of them kept), by store (audit, join-token-uses, attestations, revocations, reissue-orders, replica-report) and reason (ENOSPC, EROFS, ...).', labelNames: ['store', 'reason'], registers }) : null;
    const self = this;
    if (deps.registry) {
      new PromGauge({
          name: 'trellis_state_writable',
          help: '1 when the last write of the store succeeded (or none failed), 0 while its writes fail: the control plane is then not ready.',
          labelNames: ['store'],
          registers,
          collect() {
            for (const s of STORES) this.set({ store: s }, self.failing.has(s) ? 0 : 1);
          },
        });
    }
    if (deps.registry) {
      new PromGauge({
        name: 'trellis_ca_dir_free_bytes',
        help: 'Bytes free for the control plane on the file system of the CA dir (the audit log and state files).',
        registers,
        collect() {
          try {
            const st = statfsSync(dir);
            this.set(Number(st.bavail) * Number(st.bsize));
          } catch {
            // not reported where statfs is unavailable
          }
        },
      });
    }
  }

  /** Records the outcome of one write of `store`: null when it worked. */
  record(store: StateStore, err: Error | null): void {
    if (err === null) {
      // A replica report written proves its backend writable: the stores kept there are too. Not, on the API
      // server, the attestation records: objects of their own (other RBAC), whose store retries until a write lands and says so.
      const onFiles = (this.deps.sharedBackend ?? 'ca-dir') === 'ca-dir';
      const cleared = store === 'replica-report' ? [...SHARED_STORES.filter((s) => onFiles || s !== 'attestations'), ...(onFiles ? CA_DIR_STORES : [])] : [store];
      let changed = false;
      for (const s of cleared) changed = this.failing.delete(s) || changed;
      if (changed) this.deps.onChange?.(this.current());
      return;
    }
    const reason = reasonOf(err);
    this.failures?.inc({ store, reason });
    const prev = this.failing.get(store);
    this.failing.set(store, { store, since: prev?.since ?? new Date((this.deps.nowMs ?? Date.now)()).toISOString(), reason, message: err.message });
    if (!prev || prev.reason !== reason) this.deps.onChange?.(this.current());
  }

  /** The stores whose last write failed. */
  current(): FailingStore[] {
    return [...this.failing.values()];
  }

  /** Why the control plane is not ready, one line per failing store. */
  reasons(): string[] {
    return this.current().map((f) => `state store ${f.store} cannot be written since ${f.since} (${f.reason}): ${f.message}`);
  }

  /**
   * While a file-backed store fails, tries a 4 KiB write (fsynced) in the CA
   * dir; when it works, those stores are cleared (their next real write will
   * say otherwise if they still fail). Cheap and synchronous; call it from
   * the refresh loop.
   */
  probe(): void {
    if (this.failing.size === 0) return;
    const path = join(this.dir, `.storage-probe-${process.pid}`);
    try {
      writeFileAtomic(path, Buffer.alloc(4096), 0o600);
    } catch {
      return;
    } finally {
      rmSync(path, { force: true });
    }
    const cleared = (this.deps.sharedBackend ?? 'ca-dir') === 'ca-dir' ? STORES : CA_DIR_STORES;
    let changed = false;
    for (const s of cleared) changed = this.failing.delete(s) || changed;
    if (changed) this.deps.onChange?.(this.current());
  }
}

/**
 * The authority with its audit-log writes observed: an issuance that fails
 * because its record could not be written marks `audit` failing, the next
 * one that succeeds clears it.
 */
export function observedAuthority<A extends SvidAuthority>(authority: A, health: StorageHealth): SvidAuthority {
  return {
    get trustDomain() {
      return authority.trustDomain;
    },
    trustBundle: () => authority.trustBundle(),
    refresh: authority.refresh ? () => authority.refresh!() : undefined,
    async issue(req: Parameters<SvidAuthority['issue']>[0]): Promise<IssuedSvid> {
      try {
        const issued = await authority.issue(req);
        health.record('audit', null);
        return issued;
      } catch (err) {
        if ((err as Partial<TrellisError>).code === 'TRELLIS_CA_AUDIT_WRITE_FAILED') health.record('audit', err as Error);
        throw err;
      }
    },
  };
}
