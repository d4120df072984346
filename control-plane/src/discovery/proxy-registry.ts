/**
 * The connected sidecars of this replica and the endpoints they announce.
 * The endpoints map is rebuilt whole (never mutated in place) so a snapshot
 * handed to the resource builder stays consistent.
 */
import type { EndpointsResource } from '@trellis/shared';
import type { ProxyStatus, StreamSession } from './stream-session';

/** Sessions by id, plus the endpoints index derived from them. */
export class ProxyRegistry {
  private readonly sessions = new Map<number, StreamSession>();
  private endpointsCache: ReadonlyMap<string, EndpointsResource> = new Map();
  private endpointsDirty = false;

  /** Registers a session whose node is known; returns true when endpoints changed. */
  add(s: StreamSession): boolean {
    this.sessions.set(s.id, s);
    const changed = s.servedEndpoints().length > 0;
    if (changed) this.endpointsDirty = true;
    return changed;
  }

  /** Forgets a session; returns true when endpoints changed. */
  remove(s: StreamSession): boolean {
    if (!this.sessions.delete(s.id)) return false;
    const changed = s.servedEndpoints().length > 0;
    if (changed) this.endpointsDirty = true;
    return changed;
  }

  /** Connected sessions. */
  get size(): number {
    return this.sessions.size;
  }

  /** Every session, for pushes and shutdown. */
  all(): StreamSession[] {
    return [...this.sessions.values()];
  }

  /** What /debug/proxies shows, sorted by SPIFFE ID. */
  statuses(): ProxyStatus[] {
    return this.all()
      .map((s) => s.status())
      .sort((a, b) => (a.spiffeId ?? '').localeCompare(b.spiffeId ?? '') || a.id - b.id);
  }

  /** service → endpoints, rebuilt only after a change. */
  endpoints(): ReadonlyMap<string, EndpointsResource> {
    if (!this.endpointsDirty) return this.endpointsCache;
    const by = new Map<string, Map<string, { address: string; spiffeId: string }>>();
    for (const s of this.sessions.values()) {
      const service = s.node?.service;
      if (!service) continue;
      let m = by.get(service);
      if (!m) by.set(service, (m = new Map()));
      for (const e of s.servedEndpoints()) m.set(`${e.address}|${e.spiffeId}`, e);
    }
    const out = new Map<string, EndpointsResource>();
    for (const [service, m] of [...by.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      const endpoints = [...m.values()].sort((a, b) => a.address.localeCompare(b.address) || a.spiffeId.localeCompare(b.spiffeId));
      out.set(service, Object.freeze({ service, endpoints }));
    }
    this.endpointsCache = out;
    this.endpointsDirty = false;
    return out;
  }
}
