/**
 * How many discovery streams each identity holds open on this replica, and
 * the cap. A sidecar needs one stream (two for a moment while it reconnects);
 * without a cap one SVID could open hundreds and make the control plane hold
 * a session, its node and its pushes for each. Replicas of a workload that
 * share a ServiceAccount share its identity, so the cap must be at least the
 * replica count per identity (the `maxStreamsPerIdentity` setting).
 */

/** Streams one identity may hold by default: its stream, a reconnect overlapping it, and a little room (replicas sharing an identity need more). */
export const DEFAULT_MAX_STREAMS_PER_IDENTITY = 4;

/** Open streams per SPIFFE ID, bounded. */
export class StreamQuota {
  private readonly held = new Map<string, number>();

  constructor(readonly maxPerIdentity: number) {}

  /** Takes one slot for `spiffeId`; false (nothing taken) when it already holds the maximum. */
  acquire(spiffeId: string): boolean {
    const n = this.held.get(spiffeId) ?? 0;
    if (n >= this.maxPerIdentity) return false;
    this.held.set(spiffeId, n + 1);
    return true;
  }

  /** Gives back one slot taken by `acquire`. */
  release(spiffeId: string): void {
    const n = this.held.get(spiffeId) ?? 0;
    if (n <= 1) this.held.delete(spiffeId);
    else this.held.set(spiffeId, n - 1);
  }

  /** Streams `spiffeId` holds now. */
  count(spiffeId: string): number {
    return this.held.get(spiffeId) ?? 0;
  }
}
