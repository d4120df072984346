/**
 * Gauges of the Kubernetes registry, read at scrape time: whether it has
 * synced, how many objects it holds, and how many times each collection has
 * been listed (1 at steady state: the registry watches; a relist follows
 * only an expired resourceVersion, 410 Gone, or an API server outage).
 */
import { Gauge, type Registry } from 'prom-client';
import type { KubernetesRegistry } from './kubernetes-registry';

/** Registers the registry's gauges on `registry`; `lists` reports each watched collection's list count. */
export function registerKubernetesRegistryGauges(registry: Registry, kube: KubernetesRegistry, lists: () => Readonly<Record<string, number>> = () => ({})): void {
  new Gauge({
    name: 'trellis_kubernetes_registry_synced',
    help: '1 once Pods, Services and EndpointSlices have been listed from the API server, else 0.',
    registers: [registry],
    collect() {
      this.set(kube.hasSynced() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'trellis_kubernetes_registry_objects',
    help: 'Objects the registry holds, by kind (pods, services, endpointslices) and the Service resource names it publishes (published).',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const s = kube.stats();
      this.set({ kind: 'pods' }, s.pods);
      this.set({ kind: 'services' }, s.services);
      this.set({ kind: 'endpointslices' }, s.endpointSlices);
      this.set({ kind: 'published' }, s.published);
    },
  });
  new Gauge({
    name: 'trellis_kubernetes_lists',
    help: 'Times each watched collection was listed from the API server (the first list, then one per relist).',
    labelNames: ['resource'],
    registers: [registry],
    collect() {
      for (const [resource, n] of Object.entries(lists())) this.set({ resource }, n);
    },
  });
}
