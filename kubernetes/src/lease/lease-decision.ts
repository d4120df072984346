/**
 * Leader election on a coordination.k8s.io/v1 Lease, decided as client-go's
 * leaderelection does: a holder keeps the lease while it renews; another
 * candidate takes it over only after the lease went unrenewed for its whole
 * duration *as observed on the candidate's own clock* (the time it last saw
 * the record change), so clock skew between replicas cannot hand the lease
 * over early. An empty holder (a released lease) is free at once. Pure.
 */

/** The Lease spec fields election uses. */
export interface LeaseRecord {
  readonly holderIdentity?: string | null;
  readonly leaseDurationSeconds?: number | null;
  readonly acquireTime?: string | null;
  readonly renewTime?: string | null;
  readonly leaseTransitions?: number | null;
}

/** What to do now. */
export type LeaseDecision =
  | { readonly action: 'renew' }
  | { readonly action: 'acquire'; readonly leaseTransitions: number }
  | { readonly action: 'follow'; readonly holder: string; readonly expiresInMs: number };

/** Inputs of {@link decideLease}. */
export interface LeaseObservation {
  /** The current record; null when no Lease exists yet. */
  readonly record: LeaseRecord | null;
  readonly identity: string;
  readonly nowMs: number;
  /** When this candidate last saw the record change (its own clock). */
  readonly observedAtMs: number;
  /** Our lease duration, used when the record names none. */
  readonly leaseDurationMs: number;
}

/** Whether to renew, acquire or follow. Pure. */
export function decideLease(o: LeaseObservation): LeaseDecision {
  const r = o.record;
  const holder = r?.holderIdentity ?? '';
  if (!r || holder === '') return { action: 'acquire', leaseTransitions: (r?.leaseTransitions ?? 0) + (r ? 1 : 0) };
  if (holder === o.identity) return { action: 'renew' };
  const durationMs = r.leaseDurationSeconds ? r.leaseDurationSeconds * 1000 : o.leaseDurationMs;
  const expiresInMs = o.observedAtMs + durationMs - o.nowMs;
  if (expiresInMs > 0) return { action: 'follow', holder, expiresInMs };
  return { action: 'acquire', leaseTransitions: (r.leaseTransitions ?? 0) + 1 };
}

/** A MicroTime as the API server expects it (RFC 3339 with 6 fractional digits). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
