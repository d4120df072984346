/**
 * Where the endpoints the control plane serves come from: a registry
 * source. Two implement it: the connected sidecars' attested sessions
 * (session-registry-source.ts: local mode, join tokens, `trellis up`), and
 * the Kubernetes API server (kubernetes-registry.ts: Pods, Services and
 * EndpointSlices, the same on every replica). The discovery service serves
 * whichever it is given and never mixes them.
 */
import type { EndpointsResource } from '@trellis/shared';

/** One immutable view of the registry, replaced whole on every change. */
export interface EndpointsView {
  /**
   * Resource name → endpoints, as a workload in `namespace` sees them. The
   * same view answers the same namespace with the same map object, so what
   * is built from it can be memoised on it.
   */
  forNamespace(namespace: string): ReadonlyMap<string, EndpointsResource>;
}

/** A registry the discovery service reads endpoints from. */
export interface RegistrySource {
  /** The current view. */
  view(): EndpointsView;
  /** Calls `listener` after every change of the view; returns an unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

/** A view that shows every namespace the same map (names are not namespaced). */
export function fixedEndpointsView(endpoints: ReadonlyMap<string, EndpointsResource>): EndpointsView {
  return Object.freeze({ forNamespace: () => endpoints });
}
