/**
 * The open proxied connections, so that a revocation can close those of the
 * revoked identity, the expiry of our own certificate those it secured, and
 * a drain can wait for (then cut) the rest.
 */
import type { Direction } from '../metrics/sidecar-metrics';
import type { RevocationList } from '../state/sidecar-state';

/** A socket, or a connection held by the native relay: what a revocation or a drain closes. */
export interface Closable {
  destroy(): void;
}

/** One proxied connection and the sockets that make it up. */
export interface TrackedConnection {
  readonly direction: Direction;
  /** The peer's SPIFFE ID (inbound: the client; outbound: the server). */
  readonly spiffeId?: string;
  readonly serialHex?: string;
  /** The key-exchange group its TLS handshake used (absent for plaintext). */
  readonly group?: string;
  readonly sockets: Closable[];
}

/** One open connection as /config_dump shows it. */
export interface OpenConnectionView {
  readonly direction: Direction;
  readonly peer: string | null;
  readonly group: string | null;
}

/** The set of open connections. */
export class ConnectionTracker {
  private readonly open = new Set<TrackedConnection>();
  private readonly idleWaiters: Array<() => void> = [];

  constructor(private readonly onCountChange?: (direction: Direction, delta: number) => void) {}

  /** Registers a connection; remove it when it closes. */
  add(c: Omit<TrackedConnection, 'sockets'> & { sockets: Closable[] }): TrackedConnection {
    const t: TrackedConnection = { ...c };
    this.open.add(t);
    this.onCountChange?.(t.direction, 1);
    return t;
  }

  /** Forgets a closed connection. Idempotent. */
  remove(t: TrackedConnection): void {
    if (!this.open.delete(t)) return;
    this.onCountChange?.(t.direction, -1);
    if (this.open.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** How many are open. */
  get size(): number {
    return this.open.size;
  }

  /** The open connections (at most `limit`, oldest first) and how many use each key-exchange group. */
  view(limit: number): { byGroup: Record<string, number>; connections: OpenConnectionView[] } {
    const byGroup: Record<string, number> = {};
    const connections: OpenConnectionView[] = [];
    for (const t of this.open) {
      const g = t.group ?? 'plaintext';
      byGroup[g] = (byGroup[g] ?? 0) + 1;
      if (connections.length < limit) connections.push({ direction: t.direction, peer: t.spiffeId ?? null, group: t.group ?? null });
    }
    return { byGroup, connections };
  }

  /** Destroys every connection whose peer is on `revocations`; returns how many, by direction. */
  closeRevoked(revocations: RevocationList): Record<Direction, number> {
    return this.closeWhere((t) => (t.serialHex !== undefined && revocations.serials.has(t.serialHex)) || (t.spiffeId !== undefined && revocations.spiffeIds.has(t.spiffeId)));
  }

  /**
   * Destroys every connection our certificate secured: every outbound one,
   * and every inbound one whose peer proved an identity (plaintext ones on
   * PERMISSIVE or DISABLE ports carry none and stay). For when that
   * certificate expired with no replacement: failing closed covers open
   * connections too. Returns how many, by direction.
   */
  closeMutualTls(): Record<Direction, number> {
    return this.closeWhere((t) => t.direction === 'outbound' || t.spiffeId !== undefined);
  }

  private closeWhere(hit: (t: TrackedConnection) => boolean): Record<Direction, number> {
    const n: Record<Direction, number> = { inbound: 0, outbound: 0 };
    for (const t of [...this.open]) {
      if (!hit(t)) continue;
      n[t.direction]++;
      for (const s of t.sockets) s.destroy();
      this.remove(t);
    }
    return n;
  }

  /** Resolves when no connection is open, or after `ms` (then destroys what is left). */
  drain(ms: number): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        for (const t of [...this.open]) {
          for (const s of t.sockets) s.destroy();
          this.remove(t);
        }
        resolve();
      }, ms);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
