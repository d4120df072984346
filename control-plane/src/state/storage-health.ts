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
 * clears the stores kept where it is kept, so readiness returns by itself,
 * even for a store written only on demand (a revocation refused once). On
 * the API server a replica report (an update of one ConfigMap) vouches only
 * for the other documents updated the same way (revocations, re-issue
 * orders): attestation records and join-token uses are objects created one
 * per record, which RBAC, a quota or an admission webhook can refuse while
 * updates pass. The attestation store retries in the background and reports
 * each outcome; join-token uses are cleared by a probe record created and
 * deleted the way a join would (`probes`), tried on each refresh while they
 * fail.
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
/** On the API server, the stores a written replica report vouches for: documents updated as it is. */
const API_SERVER_DOCUMENT_STORES: readonly StateStore[] = ['revocations', 'reissue-orders', 'replica-report'];

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
    private readonly deps: {
      nowMs?: () => number;
      registry?: Registry;
      onChange?(failing: readonly FailingStore[]): void;
      sharedBackend?: 'ca-dir' | 'api-server';
      /** Per store, a write that takes nothing (resolves when the store can be written again); tried by probe() while it fails. */
      probes?: Partial<Record<StateStore, () => Promise<void>>>;
    } = {},
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
      // A replica report written proves its backend writable: the stores kept there are too. On the API server only
      // the documents updated as it is: attestation records and token uses are objects created one each (see above).
      const onFiles = (this.deps.sharedBackend ?? 'ca-dir') === 'ca-dir';
      const cleared = store === 'replica-report' ? (onFiles ? [...SHARED_STORES, ...CA_DIR_STORES] : API_SERVER_DOCUMENT_STORES) : [store];
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
    this.probeStores();
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

  private readonly probing = new Set<StateStore>();

  /** Starts the probe of each failing store that has one (one at a time per store); a probe that works clears its store. */
  private probeStores(): void {
    for (const store of this.failing.keys()) {
      const probe = this.deps.probes?.[store];
      if (!probe || this.probing.has(store)) continue;
      this.probing.add(store);
      probe().then(
        () => {
          this.probing.delete(store);
          if (this.failing.delete(store)) this.deps.onChange?.(this.current());
        },
        () => this.probing.delete(store), // still failing: the store stays as its last real write left it
      );
    }
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
