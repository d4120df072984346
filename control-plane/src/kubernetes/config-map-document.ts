/**
 * A {@link SharedDocument} in one key of one ConfigMap on the API server:
 * the replicas' shared state on Kubernetes (the revocation list, re-issue
 * orders, replica reports). Read through a watch on that one object (by
 * `metadata.name`, which RBAC can grant by resourceName), so a change made
 * by any replica reaches every other within the watch's latency; written
 * with a create, or an update guarded by the resourceVersion it was read
 * at, retried on 409 with the change applied again to the newer document
 * (optimistic concurrency, as client-go's RetryOnConflict). The first try
 * starts from the object as last seen (the watch, or our own write), as a
 * controller updates from its informer's cache: a write is one request, and
 * a read only follows a conflict.
 */
import { collectionPath, KubernetesError, KubernetesErrorCode, startInformer, type KubeClient, type KubeObject, type ResourceInformer } from '@trellis/kubernetes';
import type { Logger } from '@trellis/shared';
import type { DocumentCodec, SharedDocument } from '../state/shared-document';

/** Where the document lives. */
export interface ConfigMapDocumentOptions {
  namespace: string;
  name: string;
  /** The data key holding the document. */
  key: string;
  /** Labels the ConfigMap is created with. */
  labels?: Record<string, string>;
  /** How many times an update is retried on a conflict (default 10). */
  maxConflicts?: number;
}

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

/** A shared document in a ConfigMap. */
export class ConfigMapDocument<T> implements SharedDocument<T> {
  private doc: T;
  private rv = '';
  /** The object as last seen (watch or our write), undefined until the watch listed: the first try of an update starts from it. */
  private seen: ConfigMap | null | undefined;
  private informer: ResourceInformer<ConfigMap> | null = null;
  private readonly listeners = new Set<(doc: T) => void>();

  constructor(
    private readonly opts: ConfigMapDocumentOptions,
    private readonly codec: DocumentCodec<T>,
    private readonly deps: { client: KubeClient; logger: Logger },
  ) {
    this.doc = codec.empty;
  }

  /** Starts the watch. */
  start(): void {
    this.informer = startInformer<ConfigMap>(this.deps.client, collectionPath('v1', 'ConfigMap', this.opts.namespace), { fieldSelector: `metadata.name=${this.opts.name}`, logger: this.deps.logger });
    this.informer.on('add', (o) => this.observe(o));
    this.informer.on('update', (o) => this.observe(o));
    this.informer.on('delete', () => this.observe(null));
  }

  /** Resolves once the object (or its absence) has been read. */
  async synced(): Promise<void> {
    await this.informer?.synced();
  }

  current(): T {
    return this.doc;
  }

  async refresh(): Promise<boolean> {
    return false; // the watch pushes every change
  }

  async update(change: (doc: T) => T): Promise<T> {
    const path = collectionPath('v1', 'ConfigMap', this.opts.namespace);
    const source = `ConfigMap ${this.opts.namespace}/${this.opts.name}`;
    for (let attempt = 0; ; attempt++) {
      const cm = attempt === 0 && this.seen !== undefined ? this.seen : await this.deps.client.getOrNull<ConfigMap>(`${path}/${encodeURIComponent(this.opts.name)}`);
      const text = cm?.data?.[this.opts.key];
      const next = change(text === undefined ? this.codec.empty : this.codec.parse(text, `${source} key ${this.opts.key}`));
      const data = { ...(cm?.data ?? {}), [this.opts.key]: this.codec.format(next) };
      try {
        const written = cm
          ? await this.deps.client.replace<ConfigMap>(`${path}/${encodeURIComponent(this.opts.name)}`, { ...cm, data })
          : await this.deps.client.create<ConfigMap>(path, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: this.opts.name, namespace: this.opts.namespace, labels: { 'app.kubernetes.io/part-of': 'trellis', ...(this.opts.labels ?? {}) } }, data });
        this.observe(written);
        return next;
      } catch (err) {
        // Someone else wrote (or created it) first: apply the change again to what they wrote.
        if (!(err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT) || attempt + 1 >= (this.opts.maxConflicts ?? 10)) throw err;
      }
    }
  }

  subscribe(listener: (doc: T) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.listeners.clear();
    void this.informer?.stop();
  }

  /** Takes a version of the object (from the watch, or our own write) when it is newer than the one held. */
  private observe(cm: ConfigMap | null): void {
    const rv = cm?.metadata?.resourceVersion ?? '';
    if (cm && rv === this.rv) return;
    if (cm && this.rv !== '' && olderVersion(rv, this.rv)) return;
    this.seen = cm;
    const text = cm?.data?.[this.opts.key];
    let doc: T;
    try {
      doc = text === undefined ? this.codec.empty : this.codec.parse(text, `ConfigMap ${this.opts.namespace}/${this.opts.name} key ${this.opts.key}`);
    } catch (err) {
      // Keep the last good document: a damaged object must not, say, un-revoke anything.
      this.deps.logger.error('shared state object does not parse; keeping the last good', { configMap: `${this.opts.namespace}/${this.opts.name}`, key: this.opts.key, error: err });
      this.rv = rv;
      return;
    }
    this.rv = rv;
    this.doc = doc;
    for (const l of this.listeners) l(doc);
  }
}

/**
 * True when resourceVersion `a` is older than `b`. Kubernetes calls them
 * opaque, but etcd's are increasing integers and our own write may race its
 * watch event; anything else compares as not older (taken).
 */
function olderVersion(a: string, b: string): boolean {
  return /^\d+$/.test(a) && /^\d+$/.test(b) && BigInt(a) < BigInt(b);
}
