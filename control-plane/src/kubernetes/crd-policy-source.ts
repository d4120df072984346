/**
 * Policies from the API server: informers on the PeerAuthentication and
 * AuthorizationPolicy collections discovery says are served
 * (policy-collections.ts), feeding a PolicyObjectStore, which judges each
 * object and keeps its last good version; this is the store's Kubernetes
 * edge, and a PolicySetProvider the discovery layer combines with the policy
 * dir (policy-set-source.ts).
 *
 * Readiness fails closed: the store is told it has seen everything
 * (`markSynced`) only after the first discovery succeeded and every
 * collection it found was listed once; until then, and while an object
 * present at that point is invalid, nothing is served (see the store). A
 * collection installed later (Istio's CRDs after Trellis started) is found by
 * asking discovery again every `rediscoverMs`; one removed has its objects
 * withdrawn.
 *
 * What each object's verdict is goes on the object: a condition in its status
 * (when its CRD serves the status subresource) and an Event when the verdict
 * turns (policy-status.ts). Only the replica that holds the control plane's
 * Lease writes (`isLeader`), so replicas never fight; every replica reads and
 * serves. Writes go through a ReconcileQueue keyed by object, read the latest
 * object from the informer's cache, compare with what it already says, and
 * are guarded by its resourceVersion.
 */
import { randomBytes } from 'node:crypto';
import {
  collectionPath,
  fetchServedResources,
  objectPath,
  ReconcileQueue,
  startInformer,
  type KubeClient,
  type ResourceInformer,
} from '@trellis/kubernetes';
import { backoffDelayMs, type Logger, type PolicySet } from '@trellis/shared';
import type { PolicySetProvider } from '../discovery/policy-set-source';
import { PolicyObjectStore, policyObjectKey, policyObjectSource, type PolicyObject, type PolicyObjectRef, type PolicyObjectStoreStatus } from '../policy/policy-object-store';
import { collectionKey, policyCollections, policyGroupVersions, type PolicyCollection } from './policy-collections';
import { policyCondition, policyEvent, policyEventKind, statusWithCondition, type PolicyCondition } from './policy-status';

/** Options of the source. */
export interface CrdPolicySourceOptions {
  /** The mesh's root namespace (mesh-wide policies); default trellis-system. */
  rootNamespace?: string;
  /** Serve the valid objects even when some fail validation at first load (default false). */
  allowInvalidAtStart?: boolean;
  /** How often discovery is asked again for policy CRDs installed or removed since (default 30 s; 0: never). */
  rediscoverMs?: number;
}

/** Collaborators. */
export interface CrdPolicySourceDeps {
  client: KubeClient;
  logger: Logger;
  /** True while this replica holds the Lease and so writes status and Events. */
  isLeader: () => boolean;
  now?: () => Date;
}

interface Watched {
  collection: PolicyCollection;
  informer: ResourceInformer<PolicyObject>;
}

/** What /debug/policies shows for the API server's policies. */
export interface CrdPolicySourceStatus extends PolicyObjectStoreStatus {
  /** The collections watched, as `apiVersion Kind` (with `+status` when Trellis writes their status). */
  readonly watching: readonly string[];
  /** Why discovery last failed, if it did. */
  readonly discoveryError: string | null;
}

/** The API server's policies; `start()`, then combine it with the policy dir. */
export class CrdPolicySource implements PolicySetProvider {
  /** The judged objects (read by tests and the bench for verdicts). */
  readonly store: PolicyObjectStore;
  private readonly watched = new Map<string, Watched>();
  private readonly queue: ReconcileQueue;
  /** Verdicts already announced by an Event, for collections without a status to compare with. */
  private readonly announced = new Map<string, Pick<PolicyCondition, 'status' | 'message'>>();
  private readonly now: () => Date;
  private rediscoverTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private discovering: Promise<void> | null = null;
  private discoveryError: string | null = null;
  private stopped = false;
  private resolveSynced!: () => void;
  private readonly syncedPromise = new Promise<void>((r) => (this.resolveSynced = r));

  constructor(
    private readonly opts: CrdPolicySourceOptions,
    private readonly deps: CrdPolicySourceDeps,
  ) {
    this.now = deps.now ?? (() => new Date());
    this.store = new PolicyObjectStore({ rootNamespace: opts.rootNamespace, allowInvalidAtStart: opts.allowInvalidAtStart }, { logger: deps.logger, now: this.now });
    this.queue = new ReconcileQueue((key) => this.report(key), { logger: deps.logger, name: 'policy-status' });
  }

  /** Discovers the collections and starts watching them; retries discovery with backoff until it succeeds. */
  start(): void {
    void this.firstDiscovery(0);
    const every = this.opts.rediscoverMs ?? 30_000;
    if (every > 0) {
      this.rediscoverTimer = setInterval(() => {
        if (this.store.isSynced()) void this.discover().catch((err: unknown) => this.discoveryFailed(err));
      }, every);
      this.rediscoverTimer.unref();
    }
  }

  /** Resolves once every collection was listed once (the store knows every object's verdict). */
  synced(): Promise<void> {
    return this.syncedPromise;
  }

  /** Called by the Lease: a new leader reports on every object; one that lost the lease stops writing at once. */
  leadershipChanged(leading: boolean): void {
    if (leading) this.queue.addAll(this.store.refs().map(policyObjectKey));
    else {
      this.queue.clear();
      this.announced.clear();
    }
  }

  /** Resolves once no status or Event write waits (tests, bench). */
  reported(): Promise<void> {
    return this.queue.idle();
  }

  servable(): boolean {
    return this.store.servable();
  }

  current(): PolicySet {
    return this.store.current();
  }

  subscribe(listener: () => void): () => void {
    return this.store.subscribe(() => listener());
  }

  status(): CrdPolicySourceStatus {
    return {
      ...this.store.status(),
      watching: [...this.watched.values()].map((w) => `${w.collection.apiVersion} ${w.collection.kind}${w.collection.statusSubresource ? ' +status' : ''}`),
      discoveryError: this.discoveryError,
    };
  }

  /** Stops in the background (PolicySource.close is synchronous); `stop()` to wait. */
  close(): void {
    void this.stop();
  }

  /** Stops the informers, timers and writes. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.rediscoverTimer) clearInterval(this.rediscoverTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.queue.stop();
    await Promise.all([...this.watched.values()].map((w) => w.informer.stop()));
    this.watched.clear();
    this.store.close();
  }

  private async firstDiscovery(attempt: number): Promise<void> {
    if (this.stopped) return;
    try {
      await this.discover();
    } catch (err) {
      this.discoveryFailed(err);
      const delay = backoffDelayMs(attempt, { initialMs: 500, maxMs: 30_000 }, Math.random());
      this.retryTimer = setTimeout(() => void this.firstDiscovery(attempt + 1), delay);
      this.retryTimer.unref();
      return;
    }
    const watching = [...this.watched.values()];
    this.deps.logger.info('watching policies on the API server', { collections: watching.map((w) => `${w.collection.apiVersion} ${w.collection.kind}`) });
    if (!watching.some((w) => w.collection.group === 'security.trellis.dev')) {
      this.deps.logger.warn('the security.trellis.dev policy CRDs are not installed: no Trellis policy objects are read until they are (trellis install, or kubectl apply -f deploy/crds)', {});
    }
    await Promise.all(watching.map((w) => w.informer.synced()));
    if (this.stopped) return;
    this.store.markSynced();
    this.resolveSynced();
  }

  private discoveryFailed(err: unknown): void {
    const msg = (err as Error).message;
    if (msg !== this.discoveryError) this.deps.logger.error('cannot read which policy CRDs the API server serves; retrying', { error: err });
    this.discoveryError = msg;
  }

  /** Asks discovery which collections are served and starts/stops watches to match. Concurrent calls share one run. */
  private discover(): Promise<void> {
    this.discovering ??= this.discoverOnce().finally(() => (this.discovering = null));
    return this.discovering;
  }

  private async discoverOnce(): Promise<void> {
    const gvs = policyGroupVersions();
    const served = new Map(await Promise.all(gvs.map(async (gv) => [gv, await fetchServedResources(this.deps.client, gv)] as const)));
    this.discoveryError = null;
    if (this.stopped) return;
    const current = new Map([...this.watched].map(([k, w]) => [k, w.collection.apiVersion]));
    const wanted = new Map(policyCollections(served, current).map((c) => [collectionKey(c), c]));
    for (const [key, w] of [...this.watched]) {
      const next = wanted.get(key);
      if (next && next.apiVersion === w.collection.apiVersion) {
        w.collection = next; // the status subresource may have come or gone
        continue;
      }
      this.watched.delete(key);
      await w.informer.stop();
      if (!next) {
        const n = this.store.forgetCollection(w.collection.group, w.collection.kind);
        this.deps.logger.warn('a policy CRD is no longer served; its objects are withdrawn', { collection: `${w.collection.apiVersion} ${w.collection.kind}`, withdrawn: n });
      }
      // A version switch keeps the objects: the new watch lists the same ones and drops those gone meanwhile.
    }
    for (const [key, c] of wanted) {
      if (this.watched.has(key)) continue;
      if (this.store.isSynced()) this.deps.logger.info('a policy CRD is now served; watching it', { collection: `${c.apiVersion} ${c.kind}` });
      this.watch(c);
    }
  }

  private watch(c: PolicyCollection): void {
    const informer = startInformer<PolicyObject>(this.deps.client, `/apis/${c.apiVersion}/${c.plural}`, { logger: this.deps.logger.child({ component: 'policy-informer' }) });
    const w: Watched = { collection: c, informer };
    this.watched.set(collectionKey(c), w);
    const typed = (o: PolicyObject): PolicyObject => ({ ...o, apiVersion: w.collection.apiVersion, kind: w.collection.kind });
    const onObject = (o: PolicyObject): void => {
      const r = this.store.apply(typed(o));
      if (r && this.deps.isLeader()) this.queue.add(policyObjectKey(r.ref));
    };
    informer.on('add', onObject);
    informer.on('update', onObject);
    informer.on('delete', (o) => {
      const ref = refOf(w.collection, o);
      if (!ref) return;
      this.store.remove(ref);
      this.announced.delete(policyObjectKey(ref));
    });
    void informer.synced().then(() => {
      // Objects the store still holds for this kind but the list did not return went away unseen (a version switch).
      for (const ref of this.store.refs()) {
        if (ref.group === c.group && ref.kind === c.kind && informer.get(ref.name, ref.namespace) === undefined) this.store.remove(ref);
      }
    });
  }

  /** Writes the verdict on one object (leader only): its status condition, and an Event when the verdict turned. */
  private async report(key: string): Promise<void> {
    if (!this.deps.isLeader() || this.stopped) return;
    const [group, kind, namespace, name] = key.split('/') as [string, string, string, string];
    const w = this.watched.get(`${group}/${kind}`);
    const raw = w?.informer.get(name, namespace);
    if (!w || !raw) return;
    const obj: PolicyObject = { ...raw, apiVersion: w.collection.apiVersion, kind: w.collection.kind };
    const ref: PolicyObjectRef = { group, kind, namespace, name };
    const verdict = this.store.verdict(ref);
    const generation = typeof obj.metadata?.generation === 'number' ? obj.metadata.generation : null;
    // A newer version is on its way from the watch: report on that one.
    if (!verdict || verdict.generation !== generation) return;
    const cond = policyCondition(group, verdict);
    let previous: Pick<PolicyCondition, 'status' | 'message'> | undefined;
    if (w.collection.statusSubresource) {
      const next = statusWithCondition(obj['status'], cond, this.now());
      if (!next.changed) return;
      // Guarded by the resourceVersion read: a 409 retries with the newer object the watch delivers.
      await this.deps.client.replace(`${objectPath(obj)}/status`, { ...obj, status: next.status });
      previous = next.previous;
    } else {
      previous = this.announced.get(key);
      if (previous && previous.status === cond.status && previous.message === cond.message) return;
      this.announced.set(key, { status: cond.status, message: cond.message });
    }
    const ev = policyEventKind(previous, cond);
    if (!ev) return;
    const about = { apiVersion: obj.apiVersion!, kind, name, namespace, uid: obj.metadata?.['uid'] as string | undefined, resourceVersion: obj.metadata?.['resourceVersion'] as string | undefined };
    const suffix = `${Date.now().toString(16)}${randomBytes(2).toString('hex')}`;
    try {
      await this.deps.client.create(collectionPath('v1', 'Event', namespace), policyEvent(about, ev, cond.message, this.now(), suffix));
    } catch (err) {
      // Events are best effort (as client-go's recorder): the condition already says it.
      this.deps.logger.warn('policy Event not written', { object: policyObjectSource(ref), reason: ev.reason, error: err });
    }
  }
}

function refOf(c: PolicyCollection, o: PolicyObject): PolicyObjectRef | null {
  const name = o.metadata?.name;
  const namespace = o.metadata?.namespace;
  return typeof name === 'string' && typeof namespace === 'string' ? { group: c.group, kind: c.kind, namespace, name } : null;
}
