/**
 * The registry from the Kubernetes API server: Pods, Services and
 * EndpointSlices, kept current by three watches (informers, given by the
 * caller: this file imports no Kubernetes client), read into records
 * (cluster-objects.ts) and mapped to endpoints by pure functions
 * (cluster-endpoints.ts, pod-facts.ts). Every replica watching the same API
 * server computes the same view; nothing a sidecar announces enters it.
 *
 * It is also the pod directory the discovery layer attests Kubernetes
 * workloads with (a projected token's bound pod: its labels, IPs, Services),
 * and the PodLiveness the token verifier asks, so a token or an SVID bound
 * to a deleted pod is refused.
 *
 * Until all three collections have been listed it serves no endpoints and
 * answers `unknown` for every pod (the discovery layer then tells Kubernetes
 * sidecars to retry); after that it answers from its cache, also while the
 * API server is unreachable (the informers retry with backoff and relist).
 */
import type { EndpointsResource, Logger } from '@trellis/shared';
import type { BoundPod, PodLiveness } from '../auth/token-keys';
import { objectKey, readEndpointSlice, readPod, readService, type ClusterPod, type ClusterService, type ClusterSlice } from './cluster-objects';
import { clusterEndpoints, namespaceView } from './cluster-endpoints';
import { boundPodKey, boundPodStatus, podFacts, type PodDirectory, type PodFacts } from './pod-facts';
import type { EndpointsView, RegistrySource } from './registry-source';

/** A watched collection, as an informer (e.g. @trellis/kubernetes startInformer) provides it. */
export interface ObjectFeed {
  /** Objects arrive as the API server sent them. */
  on(event: 'add' | 'update' | 'delete', handler: (obj: unknown) => void): void;
  /** Resolves once the first list is in. */
  synced(): Promise<void>;
  hasSynced(): boolean;
}

/** Collaborators of the registry. */
export interface KubernetesRegistryDeps {
  pods: ObjectFeed;
  services: ObjectFeed;
  endpointSlices: ObjectFeed;
  trustDomain: string;
  logger: Logger;
  nowMs?: () => number;
}

/** Counts for /metrics and logs. */
export interface KubernetesRegistryStats {
  readonly synced: boolean;
  readonly pods: number;
  readonly services: number;
  readonly endpointSlices: number;
  /** Resource names published (qualified names only). */
  readonly published: number;
}

const EMPTY: ReadonlyMap<string, EndpointsResource> = new Map();
const EMPTY_VIEW: EndpointsView = Object.freeze({ forNamespace: () => EMPTY });

/** Records indexed by `namespace/name`, with the keys of each namespace. */
class Index<T extends { namespace: string; name: string }> {
  readonly all = new Map<string, T>();
  private readonly byNamespace = new Map<string, Map<string, T>>();

  set(v: T): void {
    const key = objectKey(v.namespace, v.name);
    this.all.set(key, v);
    let ns = this.byNamespace.get(v.namespace);
    if (!ns) this.byNamespace.set(v.namespace, (ns = new Map()));
    ns.set(key, v);
  }

  delete(namespace: string, name: string): void {
    const key = objectKey(namespace, name);
    this.all.delete(key);
    const ns = this.byNamespace.get(namespace);
    ns?.delete(key);
    if (ns && ns.size === 0) this.byNamespace.delete(namespace);
  }

  inNamespace(namespace: string): Iterable<T> {
    return this.byNamespace.get(namespace)?.values() ?? [];
  }
}

/** Pods, Services and EndpointSlices from the API server, as a registry source and pod directory. */
export class KubernetesRegistry implements RegistrySource, PodDirectory, PodLiveness {
  private readonly pods = new Index<ClusterPod>();
  private readonly services = new Index<ClusterService>();
  private readonly slices = new Index<ClusterSlice>();
  private readonly listeners = new Set<() => void>();
  private readonly podListeners = new Set<(key: string) => void>();
  private readonly nowMs: () => number;
  private synced = false;
  private current: { qualified: ReadonlyMap<string, EndpointsResource>; view: EndpointsView } | null = null;

  constructor(private readonly deps: KubernetesRegistryDeps) {
    this.nowMs = deps.nowMs ?? Date.now;
    const feed = <T extends { namespace: string; name: string }>(f: ObjectFeed, read: (o: unknown) => T | null, index: Index<T>, onChange: (key: string) => void): void => {
      const upsert = (o: unknown): void => {
        const r = read(o);
        if (!r) return;
        index.set(r);
        onChange(objectKey(r.namespace, r.name));
      };
      f.on('add', upsert);
      f.on('update', upsert);
      f.on('delete', (o: unknown) => {
        const r = read(o);
        if (!r) return;
        index.delete(r.namespace, r.name);
        onChange(objectKey(r.namespace, r.name));
      });
    };
    feed(deps.pods, readPod, this.pods, (key) => {
      this.changed();
      for (const l of this.podListeners) l(key);
    });
    feed(deps.services, readService, this.services, () => this.changed());
    feed(deps.endpointSlices, readEndpointSlice, this.slices, () => this.changed());
    void Promise.all([deps.pods.synced(), deps.services.synced(), deps.endpointSlices.synced()]).then(() => {
      this.synced = true;
      const s = this.stats();
      deps.logger.info('kubernetes registry synced', { pods: s.pods, services: s.services, endpointSlices: s.endpointSlices, published: s.published });
      this.changed();
      // Pods looked up before the sync were 'unknown': let their sessions look again.
      for (const key of this.pods.all.keys()) for (const l of this.podListeners) l(key);
    });
  }

  /** True once Pods, Services and EndpointSlices have all been listed. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** The endpoints of every Service, per namespace; empty until synced. */
  view(): EndpointsView {
    if (!this.synced) return EMPTY_VIEW;
    if (!this.current) {
      const qualified = clusterEndpoints({ pods: this.pods.all, services: this.services.all, slices: this.slices.all.values() }, this.deps.trustDomain);
      const perNamespace = new Map<string, ReadonlyMap<string, EndpointsResource>>();
      const view: EndpointsView = Object.freeze({
        forNamespace(ns: string): ReadonlyMap<string, EndpointsResource> {
          let m = perNamespace.get(ns);
          if (!m) perNamespace.set(ns, (m = namespaceView(qualified, ns)));
          return m;
        },
      });
      this.current = { qualified, view };
    }
    return this.current.view;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  subscribePods(listener: (podKey: string) => void): () => void {
    this.podListeners.add(listener);
    return () => this.podListeners.delete(listener);
  }

  lookup(bound: BoundPod, nowMs: number): PodFacts | 'gone' | 'unknown' {
    const pod = this.pods.all.get(boundPodKey(bound));
    const status = boundPodStatus(pod, bound, this.synced, nowMs);
    if (status !== 'alive') return status;
    return podFacts(pod!, this.services.inNamespace(bound.namespace), this.slices.inNamespace(bound.namespace));
  }

  podStatus(bound: BoundPod): 'alive' | 'gone' | 'unknown' {
    return boundPodStatus(this.pods.all.get(boundPodKey(bound)), bound, this.synced, this.nowMs());
  }

  stats(): KubernetesRegistryStats {
    return {
      synced: this.synced,
      pods: this.pods.all.size,
      services: this.services.all.size,
      endpointSlices: this.slices.all.size,
      published: this.synced ? (this.view(), this.current!.qualified.size) : 0,
    };
  }

  private changed(): void {
    this.current = null;
    if (!this.synced) return;
    for (const l of this.listeners) l();
  }
}
