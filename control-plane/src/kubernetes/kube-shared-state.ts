/**
 * The replicas' shared state on the Kubernetes API server, in the control
 * plane's namespace (docs/kubernetes.md says why each kind):
 *
 * - ConfigMap `trellis-revocations` (key `revocations.json`): the
 *   revocation list, the same document as the CA dir's file;
 * - ConfigMap `trellis-reissue-orders` (key `reissue-orders.json`);
 * - one create-only ConfigMap per live attested SVID, watched by label
 *   (kube-attestation-records.ts): what it was issued under; and ConfigMap
 *   `trellis-attestations` (key `attestations.json`), where the previous
 *   version kept them all, read (never written) until its records expire;
 * - ConfigMap `trellis-control-plane-replicas` (key `replicas.json`): each
 *   replica's report (its sidecars' bundle ACKs; no endpoints, the API
 *   server's EndpointSlices are the registry here);
 * - one create-only ConfigMap per join-token use (kube-token-uses.ts).
 *
 * Each is watched, so a change made through one replica (a
 * revocation) reaches every other within the watch's latency, and written
 * with resourceVersion preconditions, retried on conflict.
 */
import { collectionPath, type KubeClient } from '@trellis/kubernetes';
import type { Logger } from '@trellis/shared';
import { attestationSetCodec } from '../attestation/attestation-document';
import { FileAttestationStore } from '../attestation/file-attestation-store';
import { SharedAttestationStore } from '../attestation/shared-attestation-store';
import { reissueOrdersCodec } from '../discovery/reissue-orders';
import { revocationCodec } from '../lifecycle/revocation-store';
import { replicaSetCodec } from '../state/replica-report';
import type { SharedState } from '../state/shared-state';
import { ConfigMapDocument } from './config-map-document';
import { KubeAttestationRecords } from './kube-attestation-records';
import { KubeTokenUses } from './kube-token-uses';

/** The names of the shared state objects. */
export const SHARED_STATE_OBJECTS = Object.freeze({
  revocations: 'trellis-revocations',
  reissueOrders: 'trellis-reissue-orders',
  replicas: 'trellis-control-plane-replicas',
  /** The previous version's single document of attestation records: read, never written. */
  attestations: 'trellis-attestations',
});

/** The shared state on the API server, started and read once (up to `syncTimeoutMs`, default 10 s). */
export async function startKubeSharedState(
  opts: { namespace: string; syncTimeoutMs?: number; heartbeatMs?: number; /** This replica's CA dir: attestation records are written there first. */ caDir: string },
  deps: { client: KubeClient; logger: Logger; clock: () => Date; isLeader(): boolean },
): Promise<SharedState> {
  const doc = <T>(name: string, key: string, codec: ConstructorParameters<typeof ConfigMapDocument<T>>[1]): ConfigMapDocument<T> =>
    new ConfigMapDocument<T>({ namespace: opts.namespace, name, key }, codec, { client: deps.client, logger: deps.logger.child({ component: 'shared-state', object: name }) });
  const revocations = doc(SHARED_STATE_OBJECTS.revocations, 'revocations.json', revocationCodec(deps.clock));
  const reissueOrders = doc(SHARED_STATE_OBJECTS.reissueOrders, 'reissue-orders.json', reissueOrdersCodec);
  const replicas = doc(SHARED_STATE_OBJECTS.replicas, 'replicas.json', replicaSetCodec);
  // The previous version's single document of every record: read only, so its records are honoured until they expire.
  const legacyAttestations = doc(SHARED_STATE_OBJECTS.attestations, 'attestations.json', attestationSetCodec);
  const attestationLog = deps.logger.child({ component: 'attestations' });
  const attestationRecords = new KubeAttestationRecords({ namespace: opts.namespace }, { client: deps.client, logger: attestationLog, isLeader: deps.isLeader });
  const tokenUses = new KubeTokenUses({ namespace: opts.namespace }, { client: deps.client, logger: deps.logger.child({ component: 'join-token-uses' }), isLeader: deps.isLeader });
  const docs = [revocations, reissueOrders, replicas, legacyAttestations];
  for (const d of docs) d.start();
  attestationRecords.start();
  tokenUses.start();
  let timeout = opts.syncTimeoutMs ?? 10_000;
  // Refused outright (RBAC): say how to fix it, and do not wait for watches that cannot succeed.
  try {
    await deps.client.getOrNull(`${collectionPath('v1', 'ConfigMap', opts.namespace)}/${SHARED_STATE_OBJECTS.revocations}`);
  } catch (err) {
    deps.logger.error(`the shared state on the API server cannot be read (${(err as { code?: string }).code ?? 'error'}): grant the control plane's Role in ${opts.namespace} (deploy/rbac.yaml), or run with --no-shared-state; until then state writes fail and the control plane is not ready`, { error: err });
    timeout = 0;
  }
  // A timer that holds the process open: the watches' own retry timers do not (a refused list retries on an unref'd timer).
  let timer: NodeJS.Timeout | undefined;
  const synced = timeout === 0 || (await Promise.race([Promise.all([...docs.map((d) => d.synced()), attestationRecords.synced()]).then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeout)))]));
  clearTimeout(timer);
  // Not fatal: the watches keep trying, and a revocation list that could not be read yet is empty only until they do.
  if (!synced) deps.logger.error(`the shared state on the API server was not read within ${timeout} ms; serving what is known and retrying`, { namespace: opts.namespace });
  const heartbeatMs = opts.heartbeatMs ?? 5000;
  const attestations = new SharedAttestationStore(attestationRecords, { local: new FileAttestationStore(opts.caDir, attestationLog), legacy: legacyAttestations, logger: attestationLog });
  return {
    backend: 'api-server',
    revocations,
    reissueOrders,
    replicas,
    tokenUses,
    attestations,
    heartbeat: { heartbeatMs, staleMs: heartbeatMs * 3, checkMs: 500, poll: false, endpoints: false },
    close() {
      tokenUses.stop();
      attestations.close();
      attestationRecords.stop();
      for (const d of docs) d.close();
    },
  };
}
