/**
 * The connected sidecars of this replica and the endpoints they announce.
 * The endpoints map is rebuilt whole (never mutated in place) so a snapshot
 * handed to the resource builder stays consistent.
 *
 * A sidecar whose stream was lost (not one that said goodbye, nor one cut
 * for revocation) keeps its endpoints listed until a deadline the caller
 * gives (the grace period): a sidecar reconnecting after a network blip, a
 * control-plane-side reset or a crash-and-restart is still serving, and
 * withdrawing it for the moments it takes to come back fails its callers'
 * requests. Its return (the same service, address and identity) replaces
 * what lingered. Pure: time comes in as a parameter.
 */
import type { Endpoint, EndpointsResource } from '@trellis/shared';
import type { ProxyStatus, StreamSession } from './stream-session';

/** An endpoint of a lost stream, kept until `untilMs`. */
interface Lingering {
  readonly service: string;
  readonly endpoint: Endpoint;
  /** The serial the stream authenticated with, when it was an SVID ('' otherwise). */
  readonly serialHex: string;
  readonly untilMs: number;
}

/** Sessions by id, plus the endpoints index derived from them. */
export class ProxyRegistry {
  private readonly sessions = new Map<number, StreamSession>();
  /** Endpoints of lost streams, by service|address|SPIFFE ID. */
  private readonly lingering = new Map<string, Lingering>();
  private endpointsCache: ReadonlyMap<string, EndpointsResource> = new Map();
  private endpointsDirty = false;

  /** Registers a session whose node is known; returns true when endpoints changed. */
  add(s: StreamSession): boolean {
    this.sessions.set(s.id, s);
    const served = s.servedEndpoints();
    // Back before its grace ran out: what lingered is now served again (the map key is the same).
    for (const e of served) this.lingering.delete(lingerKey(s.node?.service ?? '', e));
    const changed = served.length > 0;
    if (changed) this.endpointsDirty = true;
    return changed;
  }

  /**
   * Forgets a session; returns true when endpoints changed. With
   * `lingerUntilMs` its endpoints stay listed until then (see the file
   * comment), so nothing changes now.
   */
  remove(s: StreamSession, lingerUntilMs?: number): boolean {
    if (!this.sessions.delete(s.id)) return false;
    const served = s.servedEndpoints();
    if (served.length === 0) return false;
    if (lingerUntilMs !== undefined) {
      const serialHex = s.peer?.method === 'svid' && typeof s.peer.audit['serialHex'] === 'string' ? s.peer.audit['serialHex'] : '';
      for (const e of served) this.lingering.set(lingerKey(s.node?.service ?? '', e), { service: s.node?.service ?? '', endpoint: e, serialHex, untilMs: lingerUntilMs });
      return false;
    }
    this.endpointsDirty = true;
    return true;
  }

  /** Drops the lingering endpoints whose grace ended by `nowMs`; returns true when endpoints changed. */
  expireLingering(nowMs: number): boolean {
    return this.dropLingering((l) => l.untilMs <= nowMs);
  }

  /** Drops the lingering endpoints of a revoked identity or serial at once; returns true when endpoints changed. */
  dropRevoked(isRevoked: (serialHex: string, spiffeId: string) => boolean): boolean {
    return this.dropLingering((l) => isRevoked(l.serialHex, l.endpoint.spiffeId));
  }

  /** The earliest end of a grace period still running, or null. */
  nextLingerExpiryMs(): number | null {
    let next: number | null = null;
    for (const l of this.lingering.values()) if (next === null || l.untilMs < next) next = l.untilMs;
    return next;
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

  /** service → endpoints (of connected sessions and lingering ones), rebuilt only after a change. */
  endpoints(): ReadonlyMap<string, EndpointsResource> {
    if (!this.endpointsDirty) return this.endpointsCache;
    const by = new Map<string, Map<string, Endpoint>>();
    const put = (service: string, e: Endpoint): void => {
      let m = by.get(service);
      if (!m) by.set(service, (m = new Map()));
      m.set(`${e.address}|${e.spiffeId}`, e);
    };
    for (const s of this.sessions.values()) {
      const service = s.node?.service;
      if (!service) continue;
      for (const e of s.servedEndpoints()) put(service, e);
    }
    for (const l of this.lingering.values()) if (l.service) put(l.service, l.endpoint);
    const out = new Map<string, EndpointsResource>();
    for (const [service, m] of [...by.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      const endpoints = [...m.values()].sort((a, b) => a.address.localeCompare(b.address) || a.spiffeId.localeCompare(b.spiffeId));
      out.set(service, Object.freeze({ service, endpoints }));
    }
    this.endpointsCache = out;
    this.endpointsDirty = false;
    return out;
  }

  private dropLingering(hit: (l: Lingering) => boolean): boolean {
    let changed = false;
    for (const [k, l] of this.lingering) {
      if (!hit(l)) continue;
      this.lingering.delete(k);
      changed = true;
    }
    if (changed) this.endpointsDirty = true;
    return changed;
  }
}

function lingerKey(service: string, e: Endpoint): string {
  return `${service}|${e.address}|${e.spiffeId}`;
}
