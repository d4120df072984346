/**
 * Forced re-issue orders and the per-sidecar decision they lead to. An
 * order (from `trellis ca reissue`, or a root rotation's switch to the new
 * root) says: every matching sidecar whose certificate was issued before
 * `orderedAtMs` renews with a fresh key at a jittered instant inside
 * `windowMs`, so the CA is not stormed. The decision is pure (time, jitter
 * and what is known of the sidecar's certificate are inputs); the book only
 * remembers orders and when each serial was issued, in memory. Orders made
 * through the admin API are also shared with every replica (a shared
 * document: `reissue-orders.json` in the CA dir, or a ConfigMap), so a
 * sidecar connected to another replica, or one that restarted, is asked too.
 */
import { randomInt } from 'node:crypto';
import { normaliseSerial, type RenewalResource } from '@trellis/shared';
import type { DocumentCodec } from '../state/shared-document';

/** One re-issue order. */
export interface ReissueOrder {
  readonly id: number;
  readonly orderedAtMs: number;
  readonly windowMs: number;
  /** The SPIFFE ID it targets; null: every sidecar. */
  readonly spiffeId: string | null;
  readonly reason: 'reissue' | 'root-rotation';
  /** After this, every certificate issued before the order has expired: the order is moot. */
  readonly untilMs: number;
}

/** What is known of the certificate a sidecar holds. */
export interface HeldCertificate {
  spiffeId: string;
  /** When the control plane issued it (its own clock); null when unknown (issued by another replica or before a restart). */
  issuedAtMs: number | null;
}

/** The body of the no-renewal-asked resource. */
export const NO_RENEWAL: RenewalResource = Object.freeze({ renewBy: null, orderedAt: null, reason: '' });

/**
 * The renewal this sidecar is asked for: the earliest `orderedAt + jitter *
 * window` (never before `nowMs`) among live orders that match its SPIFFE ID
 * and postdate its certificate. A certificate of unknown issuance counts as
 * older than the order (fail closed: a suspected-compromised key is not left
 * in place because we lost track of it). `jitter(orderId)` is in [0, 1).
 */
export function renewalFor(orders: readonly ReissueOrder[], held: HeldCertificate, jitter: (orderId: number) => number, nowMs: number): RenewalResource {
  let best: { at: number; order: ReissueOrder } | null = null;
  for (const o of orders) {
    if (nowMs >= o.untilMs) continue;
    if (o.spiffeId !== null && o.spiffeId !== held.spiffeId) continue;
    if (held.issuedAtMs !== null && held.issuedAtMs >= o.orderedAtMs) continue;
    const j = Math.min(Math.max(jitter(o.id), 0), 1);
    const at = Math.max(o.orderedAtMs + Math.floor(j * o.windowMs), nowMs);
    if (!best || at < best.at) best = { at, order: o };
  }
  if (!best) return NO_RENEWAL;
  return Object.freeze({ renewBy: new Date(best.at).toISOString(), orderedAt: new Date(best.order.orderedAtMs).toISOString(), reason: best.order.reason });
}

/** A serial as a map key: the one serial form (shared x509/serial.ts); text that is no serial is kept as is and so matches none. */
function serialKey(hex: string): string {
  try {
    return normaliseSerial(hex);
  } catch {
    return hex;
  }
}

/** File name of the shared orders inside the CA dir. */
export const REISSUE_ORDERS_FILE = 'reissue-orders.json';

/**
 * The shared orders as a document: `{version: 1, orders: [...]}`. A bad
 * entry fails the whole read (the last good list stays in force).
 */
export const reissueOrdersCodec: DocumentCodec<readonly ReissueOrder[]> = Object.freeze({
  empty: Object.freeze([]) as readonly ReissueOrder[],
  parse(text: string, source: string): readonly ReissueOrder[] {
    const doc = JSON.parse(text) as { version?: unknown; orders?: unknown };
    if (doc?.version !== 1 || !Array.isArray(doc.orders)) throw new Error(`${source}: expected {"version": 1, "orders": [...]}`);
    return Object.freeze(doc.orders.map((o: Record<string, unknown>, i: number) => {
      const num = (k: string): number => {
        if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) throw new Error(`${source}: orders[${i}].${k} must be a number`);
        return o[k] as number;
      };
      if (o['spiffeId'] !== null && typeof o['spiffeId'] !== 'string') throw new Error(`${source}: orders[${i}].spiffeId must be a SPIFFE ID or null`);
      if (o['reason'] !== 'reissue' && o['reason'] !== 'root-rotation') throw new Error(`${source}: orders[${i}].reason must be reissue or root-rotation`);
      return Object.freeze({ id: num('id'), orderedAtMs: num('orderedAtMs'), windowMs: num('windowMs'), spiffeId: o['spiffeId'] as string | null, reason: o['reason'], untilMs: num('untilMs') });
    }));
  },
  format: (orders: readonly ReissueOrder[]): string => JSON.stringify({ version: 1, orders }, null, 2) + '\n',
});

/** `orders` plus `order`, without the ones moot at `nowMs` (shared documents stay small). */
export function withOrder(orders: readonly ReissueOrder[], order: ReissueOrder, nowMs: number): readonly ReissueOrder[] {
  return Object.freeze([...orders.filter((o) => o.id !== order.id && nowMs < o.untilMs), order]);
}

/** The live orders and the issuance times of serials issued while any order is live. */
export class ReissueBook {
  private orders: ReissueOrder[] = [];
  private readonly issued = new Map<string, number>();

  constructor(private readonly svidTtlMs: number) {}

  /** Records an order (with an id unique across replicas); returns it. */
  order(o: { nowMs: number; windowMs: number; spiffeId: string | null; reason: ReissueOrder['reason'] }): ReissueOrder {
    const order: ReissueOrder = Object.freeze({ id: randomInt(1, 2 ** 47), orderedAtMs: o.nowMs, windowMs: o.windowMs, spiffeId: o.spiffeId, reason: o.reason, untilMs: o.nowMs + o.windowMs + this.svidTtlMs });
    this.orders.push(order);
    return order;
  }

  /** Takes over orders another replica made (known ids are skipped); returns how many were new. */
  adopt(orders: readonly ReissueOrder[], nowMs: number): number {
    let added = 0;
    for (const o of orders) {
      if (nowMs >= o.untilMs || this.orders.some((x) => x.id === o.id)) continue;
      this.orders.push(o);
      added++;
    }
    return added;
  }

  /** Remembers that `serialHex` was issued at `nowMs` (only while an order is live: nothing else needs it). */
  noteIssued(serialHex: string, nowMs: number): void {
    this.prune(nowMs);
    if (this.orders.length > 0) this.issued.set(serialKey(serialHex), nowMs);
  }

  /** When `serialHex` was issued, if this control plane issued it while an order was live. */
  issuedAt(serialHex: string): number | null {
    return this.issued.get(serialKey(serialHex)) ?? null;
  }

  /** The live orders. */
  live(nowMs: number): readonly ReissueOrder[] {
    this.prune(nowMs);
    return this.orders;
  }

  private prune(nowMs: number): void {
    if (this.orders.some((o) => nowMs >= o.untilMs)) this.orders = this.orders.filter((o) => nowMs < o.untilMs);
    if (this.orders.length === 0) this.issued.clear();
  }
}
