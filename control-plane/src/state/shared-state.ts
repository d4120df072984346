/**
 * Everything replicas of one control plane share, in one place: the
 * revocation list, join-token uses, what each attested SVID was issued
 * under (so a sidecar attested on one replica renews on any other),
 * re-issue orders and the replicas' reports (endpoints and bundle ACKs). Local mode keeps them in the CA dir
 * (this file's {@link fileSharedState}), where replicas sharing the dir see
 * each other's; with a Kubernetes API server they live there instead
 * (kubernetes/kube-shared-state.ts). `trellis control-plane` picks one: the
 * API server when there is one, as for the policy CRDs.
 */
import { join } from 'node:path';
import type { Logger, TrellisError } from '@trellis/shared';
import type { AttestationRecords } from '../attestation/attestation-store';
import { FileAttestationStore } from '../attestation/file-attestation-store';
import { attestsMetadata } from '../attestation/workload-attestation';
import { JoinTokenStore } from '../auth/join-token-store';
import type { TokenUses } from '../auth/token-uses';
import { REISSUE_ORDERS_FILE, reissueOrdersCodec, type ReissueOrder } from '../discovery/reissue-orders';
import type { RevocationList } from '../lifecycle/revocation-list';
import { revocationDocument } from '../lifecycle/revocation-store';
import { FileDocument } from './file-document';
import type { ReplicaHeartbeatOptions } from './replica-heartbeat';
import { REPLICAS_FILE, replicaSetCodec, type ReplicaSet } from './replica-report';
import type { SharedDocument } from './shared-document';
import type { StateStore, StorageHealth } from './storage-health';

/** The state every replica shares. */
export interface SharedState {
  /** Where it lives, for logs: `ca-dir` or `api-server`. */
  readonly backend: 'ca-dir' | 'api-server';
  readonly revocations: SharedDocument<RevocationList>;
  readonly reissueOrders: SharedDocument<readonly ReissueOrder[]>;
  readonly replicas: SharedDocument<ReplicaSet>;
  readonly tokenUses: TokenUses;
  /** What each SVID issued under an attestation was issued under (renewals recall it). */
  readonly attestations: AttestationRecords;
  /** How the replica reports are kept (files: endpoints and a fast poll; the API server: watched, no endpoints). */
  readonly heartbeat: ReplicaHeartbeatOptions;
  close(): void;
}

/** The CA dir as the shared state: every process on the dir reads and writes the same files. */
export function fileSharedState(caDir: string, o: { clock: () => Date; onError?(what: string, err: Error): void; logger?: Logger }): SharedState {
  const revocations = revocationDocument(caDir, o.clock, (err) => o.onError?.('revocations', err));
  const reissueOrders = new FileDocument(join(caDir, REISSUE_ORDERS_FILE), reissueOrdersCodec, { onError: (err) => o.onError?.('re-issue orders', err) });
  const replicas = new FileDocument(join(caDir, REPLICAS_FILE), replicaSetCodec, { onError: (err) => o.onError?.('replica reports', err) });
  return {
    backend: 'ca-dir',
    revocations,
    reissueOrders,
    replicas,
    tokenUses: new JoinTokenStore(caDir),
    attestations: new FileAttestationStore(caDir, o.logger),
    heartbeat: { heartbeatMs: 2000, checkMs: 500, poll: true, endpoints: true },
    close() {
      revocations.close();
      reissueOrders.close();
      replicas.close();
    },
  };
}

/** `doc` with the outcome of each update recorded as `store`'s write health. */
export function observedDocument<T>(doc: SharedDocument<T>, store: StateStore, health: StorageHealth): SharedDocument<T> {
  return {
    current: () => doc.current(),
    refresh: () => doc.refresh(),
    subscribe: (l) => doc.subscribe(l),
    close: () => doc.close(),
    async update(change) {
      try {
        const r = await doc.update(change);
        health.record(store, null);
        return r;
      } catch (err) {
        // A change the list refuses (NOT_REVOKED, BAD_REVOCATION) is not a write failure.
        if (!((err as Partial<TrellisError>).code ?? '').startsWith('TRELLIS_LIFECYCLE_')) health.record(store, err as Error);
        throw err;
      }
    },
  };
}

/**
 * The attestation records with the outcome of each write observed as store
 * `attestations`: a record `remember` could not write (TRELLIS_CP_ATTESTATION_STORE)
 * marks it failing. A store that also writes in the background (the shared
 * copy on the API server) reports those outcomes itself, and only they clear
 * it: a record kept locally while the shared write fails is not "written".
 */
export function observedAttestations(records: AttestationRecords, health: StorageHealth): AttestationRecords {
  records.onWriteOutcome?.((err) => health.record('attestations', err));
  return {
    async remember(serialHex, attestation, notAfterMs, nowMs) {
      try {
        await records.remember(serialHex, attestation, notAfterMs, nowMs);
        if (!records.onWriteOutcome && attestsMetadata(attestation)) health.record('attestations', null); // identity-only: nothing was written
      } catch (err) {
        if ((err as Partial<TrellisError>).code === 'TRELLIS_CP_ATTESTATION_STORE') health.record('attestations', err as Error);
        throw err;
      }
    },
    recall: (serialHex, spiffeId, nowMs) => records.recall(serialHex, spiffeId, nowMs),
    liveIdentities: (nowMs) => records.liveIdentities(nowMs),
  };
}

/** Token uses with the outcome of each record write observed (TRELLIS_CP_JOIN_TOKEN_STORE marks the store failing). */
export function observedTokenUses(ledger: TokenUses, health: StorageHealth): TokenUses {
  const watch = async <R>(p: Promise<R>): Promise<R> => {
    try {
      const r = await p;
      health.record('join-token-uses', null);
      return r;
    } catch (err) {
      const code = (err as Partial<TrellisError>).code;
      if (code === 'TRELLIS_CP_JOIN_TOKEN_STORE') health.record('join-token-uses', err as Error);
      else if (code === 'TRELLIS_CP_TOKEN_SPENT') health.record('join-token-uses', null);
      throw err;
    }
  };
  return {
    consume: (id, uses, expiresAtMs) => watch(ledger.consume(id, uses, expiresAtMs)),
    release: (id, use) => watch(ledger.release(id, use)),
  };
}
