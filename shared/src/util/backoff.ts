/**
 * Reconnect delays: exponential from `initialMs`, capped at `maxMs` (30 s by
 * default), with "equal jitter" (half fixed, half random) so a fleet that lost
 * its control plane at the same instant does not come back in lockstep.
 */

/** Backoff settings. */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/** The default: 250 ms doubling to 30 s. */
export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 250, maxMs: 30_000 });

/** The delay before attempt `attempt` (0-based); `random` in [0,1). */
export function backoffDelayMs(attempt: number, opts: BackoffOptions, random: number): number {
  const base = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base / 2 + (base / 2) * random);
}
