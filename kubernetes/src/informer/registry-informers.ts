/**
 * The three watches the control plane's Kubernetes registry reads: Pods,
 * Services (core v1, every version) and EndpointSlices, at the version the
 * API server serves (`discovery.k8s.io/v1` from 1.21, `v1beta1` on 1.17 to
 * 1.24), chosen from its discovery document by detectApiFeatures, never
 * assumed.
 *
 * The API server may be down when this starts: the Pod and Service informers
 * retry on their own, and the EndpointSlice one first retries discovery with
 * the same jittered backoff, then starts. Until then it reports nothing and
 * is not synced, so the registry stays unsynced (and the control plane not
 * ready) instead of failing to start.
 */
import { backoffDelayMs, type BackoffOptions, type Logger } from '@trellis/shared';
import type { KubeClient } from '../client/kube-client';
import type { KubeObject } from '../client/kube-object';
import { detectApiFeatures } from '../discovery/api-features';
import { fetchDiscoveryFacts } from '../discovery/fetch-discovery';
import { startInformer, type InformerEvent, type InformerOptions, type ResourceInformer } from './resource-informer';

/** Where each collection is watched. */
export const REGISTRY_PATHS = Object.freeze({
  pods: '/api/v1/pods',
  services: '/api/v1/services',
  endpointSlices: (version: 'discovery.k8s.io/v1' | 'discovery.k8s.io/v1beta1'): string => `/apis/${version}/endpointslices`,
});

/** The registry's watches. */
export interface RegistryInformers {
  readonly pods: ResourceInformer<KubeObject>;
  readonly services: ResourceInformer<KubeObject>;
  readonly endpointSlices: ResourceInformer<KubeObject>;
  /** The EndpointSlice group version watched, once discovery has answered; else null. */
  endpointSliceVersion(): string | null;
  /** How many times each collection was listed (the first list, then one per relist). */
  listCounts(): Record<string, number>;
  stop(): Promise<void>;
}

const DEFAULT_DISCOVERY_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 500, maxMs: 30_000 });

/** Starts the three watches on `client`. */
export function startRegistryInformers(client: KubeClient, opts: Omit<InformerOptions, 'labelSelector' | 'fieldSelector'> & { logger: Logger }): RegistryInformers {
  const pods = startInformer<KubeObject>(client, REGISTRY_PATHS.pods, opts);
  const services = startInformer<KubeObject>(client, REGISTRY_PATHS.services, opts);
  let version: 'discovery.k8s.io/v1' | 'discovery.k8s.io/v1beta1' | null = null;
  const slices = deferredInformer(async () => {
    const features = detectApiFeatures(await fetchDiscoveryFacts(client));
    if (features.endpointSlice === null) {
      throw new Error(`the API server (${features.serverVersion.gitVersion}) serves neither discovery.k8s.io/v1 nor v1beta1 EndpointSlices; the Kubernetes registry needs one (1.17+)`);
    }
    version = features.endpointSlice;
    opts.logger.info('watching EndpointSlices', { version, server: features.serverVersion.gitVersion });
    return startInformer<KubeObject>(client, REGISTRY_PATHS.endpointSlices(version), opts);
  }, opts);
  return {
    pods,
    services,
    endpointSlices: slices,
    endpointSliceVersion: () => version,
    listCounts: () => ({ pods: pods.listCount(), services: services.listCount(), endpointslices: slices.listCount() }),
    async stop() {
      await Promise.all([pods.stop(), services.stop(), slices.stop()]);
    },
  };
}

/**
 * An informer started once `start` resolves, retried with backoff until it
 * does; handlers registered before then are attached to it.
 */
function deferredInformer<T extends KubeObject>(start: () => Promise<ResourceInformer<T>>, opts: { logger: Logger; backoff?: BackoffOptions; random?: () => number }): ResourceInformer<T> {
  const handlers: Array<[InformerEvent, (obj: T) => void]> = [];
  const errorHandlers: Array<(err: unknown) => void> = [];
  let inner: ResourceInformer<T> | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let resolveSynced!: () => void;
  const syncedPromise = new Promise<void>((r) => (resolveSynced = r));
  const attempt = (n: number): void => {
    start().then(
      (informer) => {
        if (stopped) {
          void informer.stop();
          return;
        }
        inner = informer;
        for (const [e, h] of handlers) informer.on(e, h);
        for (const h of errorHandlers) informer.onError(h);
        void informer.synced().then(resolveSynced);
      },
      (err: unknown) => {
        for (const h of errorHandlers) h(err);
        if (stopped) return;
        const delay = backoffDelayMs(n, opts.backoff ?? DEFAULT_DISCOVERY_BACKOFF, (opts.random ?? Math.random)());
        opts.logger.warn('API discovery failed; retrying before watching EndpointSlices', { delayMs: delay, error: err });
        timer = setTimeout(() => attempt(n + 1), delay);
        timer.unref();
      },
    );
  };
  attempt(0);
  return {
    on(event, handler) {
      handlers.push([event, handler]);
      inner?.on(event, handler);
    },
    onError(handler) {
      errorHandlers.push(handler);
      inner?.onError(handler);
    },
    synced: () => syncedPromise,
    hasSynced: () => inner?.hasSynced() ?? false,
    list: (namespace) => inner?.list(namespace) ?? [],
    get: (name, namespace) => inner?.get(name, namespace),
    resourceVersion: () => inner?.resourceVersion() ?? '',
    listCount: () => inner?.listCount() ?? 0,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await inner?.stop();
    },
  };
}
