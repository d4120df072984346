/**
 * The registry of local mode: each connected sidecar's attested service, at
 * the address its stream comes from, on the attested ports it announces
 * (what ProxyRegistry indexes), merged with what the other replicas report
 * of theirs (state/replica-report.ts): a sidecar connected to replica A
 * reaches a service whose sidecars are connected to replica B. On
 * Kubernetes the API server is the registry instead (kubernetes-registry.ts).
 */
import type { ProxyRegistry } from '../discovery/proxy-registry';
import { mergedEndpoints, type ReplicaReport } from '../state/replica-report';
import { fixedEndpointsView, type EndpointsView, type RegistrySource } from './registry-source';

/** The sessions' endpoints as a registry source. */
export class SessionRegistrySource implements RegistrySource {
  private readonly listeners = new Set<() => void>();
  private viewOf: { map: unknown; peers: readonly ReplicaReport[]; view: EndpointsView } | null = null;
  private peers: readonly ReplicaReport[] = [];

  constructor(private readonly sessions: ProxyRegistry) {}

  view(): EndpointsView {
    const map = this.sessions.endpoints();
    if (this.viewOf?.map !== map || this.viewOf.peers !== this.peers) this.viewOf = { map, peers: this.peers, view: fixedEndpointsView(mergedEndpoints(map, this.peers)) };
    return this.viewOf.view;
  }

  /** The other replicas' reports changed. */
  setPeers(peers: readonly ReplicaReport[]): void {
    this.peers = peers;
    this.changed();
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
