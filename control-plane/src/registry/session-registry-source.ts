/**
 * The registry of local mode: each connected sidecar's attested service, at
 * the address its stream comes from, on the attested ports it announces
 * (what ProxyRegistry indexes). Per replica: a sidecar appears on the
 * replica it is connected to. On Kubernetes the API server is the registry
 * instead (kubernetes-registry.ts).
 */
import type { ProxyRegistry } from '../discovery/proxy-registry';
import { fixedEndpointsView, type EndpointsView, type RegistrySource } from './registry-source';

/** The sessions' endpoints as a registry source. */
export class SessionRegistrySource implements RegistrySource {
  private readonly listeners = new Set<() => void>();
  private viewOf: { map: unknown; view: EndpointsView } | null = null;

  constructor(private readonly sessions: ProxyRegistry) {}

  view(): EndpointsView {
    const map = this.sessions.endpoints();
    if (this.viewOf?.map !== map) this.viewOf = { map, view: fixedEndpointsView(map) };
    return this.viewOf.view;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A session that serves endpoints was added or removed. */
  changed(): void {
    for (const l of this.listeners) l();
  }
}
