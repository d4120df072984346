/**
 * Publishes the mesh's roots as ConfigMap `trellis-ca-root-cert` in every
 * namespace that gets one (root-cert-configmap.ts) and keeps it so, as
 * istiod's namespace controller does for `istio-ca-root-cert`: a new
 * namespace gets it when it appears, a deleted copy is created again, an
 * edited one is put back, and a change of the control plane's trust bundle
 * (a root rotation adds the new root, later drops the old one) is written to
 * every namespace. This replaces the manual per-namespace step.
 *
 * Two informers (namespaces; ConfigMaps by that one name, which RBAC can
 * grant by resourceName) tell what is there; a ReconcileQueue keyed by
 * namespace writes the difference, guarded by resourceVersion. Only the
 * replica that holds the control plane's Lease writes (`isLeader`); on
 * becoming leader it checks every namespace once.
 */
import { collectionPath, KubernetesError, KubernetesErrorCode, objectPath, ReconcileQueue, startInformer, type KubeClient, type KubeObject, type ResourceInformer } from '@trellis/kubernetes';
import { ROOT_CERT_CONFIGMAP, type Logger } from '@trellis/shared';
import { publishesRootCert, rootCertChange, rootCertPem } from './root-cert-configmap';

/** Collaborators. */
export interface RootCertPublisherDeps {
  client: KubeClient;
  logger: Logger;
  /** True while this replica holds the Lease and so writes. */
  isLeader: () => boolean;
  /** The mesh's roots now (PEM each); read on every write. */
  roots: () => readonly string[];
}

/** The trust-bundle ConfigMaps, kept current; `start()`, then tell it about leadership and bundle changes. */
export class RootCertPublisher {
  private namespaces: ResourceInformer<KubeObject> | null = null;
  private configMaps: ResourceInformer<KubeObject> | null = null;
  private readonly queue: ReconcileQueue;
  private stopped = false;

  constructor(private readonly deps: RootCertPublisherDeps) {
    this.queue = new ReconcileQueue((ns) => this.reconcile(ns), { logger: deps.logger, name: 'root-cert-configmaps' });
  }

  /** Starts both informers. */
  start(): void {
    const log = this.deps.logger.child({ component: 'root-cert-informer' });
    this.namespaces = startInformer<KubeObject>(this.deps.client, '/api/v1/namespaces', { logger: log });
    this.configMaps = startInformer<KubeObject>(this.deps.client, '/api/v1/configmaps', { fieldSelector: `metadata.name=${ROOT_CERT_CONFIGMAP.name}`, logger: log });
    const byName = (o: KubeObject): void => this.enqueue(o.metadata?.name);
    const byNamespace = (o: KubeObject): void => this.enqueue(o.metadata?.namespace);
    this.namespaces.on('add', byName);
    this.namespaces.on('update', byName);
    for (const e of ['add', 'update', 'delete'] as const) this.configMaps.on(e, byNamespace);
  }

  /** Resolves once both informers hold their first list. */
  async synced(): Promise<void> {
    await Promise.all([this.namespaces?.synced(), this.configMaps?.synced()]);
  }

  /** The trust bundle changed (a root rotation step): rewrite every namespace's copy. */
  rootsChanged(): void {
    this.enqueueAll();
  }

  /** Called by the Lease: a new leader checks every namespace; one that lost it stops writing. */
  leadershipChanged(leading: boolean): void {
    if (!leading) {
      this.queue.clear();
      return;
    }
    void this.synced().then(() => this.enqueueAll());
  }

  /** Resolves once no write waits (tests, bench). */
  published(): Promise<void> {
    return this.queue.idle();
  }

  /** Stops the informers and writes. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.queue.stop();
    await Promise.all([this.namespaces?.stop(), this.configMaps?.stop()]);
  }

  private enqueue(ns: string | undefined): void {
    if (ns && this.deps.isLeader() && !this.stopped) this.queue.add(ns);
  }

  private enqueueAll(): void {
    for (const ns of this.namespaces?.list() ?? []) this.enqueue(ns.metadata?.name);
  }

  private async reconcile(namespace: string): Promise<void> {
    if (!this.deps.isLeader() || this.stopped || !this.namespaces?.hasSynced() || !this.configMaps?.hasSynced()) return;
    const ns = this.namespaces.get(namespace);
    if (!ns || !publishesRootCert(ns)) return;
    const roots = this.deps.roots();
    if (roots.length === 0) return; // never publish an empty bundle: it would make new sidecars trust nothing
    const change = rootCertChange(namespace, this.configMaps.get(ROOT_CERT_CONFIGMAP.name, namespace), rootCertPem(roots));
    if (change.action === 'none') return;
    try {
      if (change.action === 'create') await this.deps.client.create(collectionPath('v1', 'ConfigMap', namespace), change.object);
      else await this.deps.client.replace(objectPath(change.object), change.object);
    } catch (err) {
      // A namespace being deleted refuses new objects; its deletion event ends the matter.
      if (err instanceof KubernetesError && err.code === KubernetesErrorCode.FORBIDDEN && /being terminated/.test(err.message)) return;
      throw err; // 409 (created or changed meanwhile) and the rest: retried with the newer state the watch brings
    }
    this.deps.logger.info(change.action === 'create' ? 'trust bundle ConfigMap created' : 'trust bundle ConfigMap updated', { namespace, configMap: ROOT_CERT_CONFIGMAP.name, roots: roots.length });
  }
}
