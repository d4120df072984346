/**
 * When to renew an SVID: at a fraction of its lifetime (default 50%) with
 * symmetric jitter (default ±10% of the lifetime), so a fleet issued at the
 * same moment does not renew at the same moment. Pure: time and randomness
 * are inputs.
 */

/** Rotation timing knobs. */
export interface RotationPolicy {
  /** Fraction of the lifetime after which to renew, in (0, 1). Default 0.5. */
  fraction: number;
  /** Half-width of the jitter as a fraction of the lifetime, in [0, fraction). Default 0.1. */
  jitter: number;
}

/** 50% of the lifetime, ±10%. */
export const DEFAULT_ROTATION: RotationPolicy = Object.freeze({ fraction: 0.5, jitter: 0.1 });

/**
 * The instant to start renewing a certificate valid from `notBefore` to
 * `notAfter`. `random` is a number in [0, 1). Never earlier than `now` and
 * never later than `notAfter`.
 */
export function nextRotation(now: Date, notBefore: Date, notAfter: Date, policy: RotationPolicy = DEFAULT_ROTATION, random = 0.5): Date {
  const start = notBefore.getTime();
  const lifetime = Math.max(0, notAfter.getTime() - start);
  const r = Math.min(Math.max(random, 0), 1);
  const at = start + lifetime * (policy.fraction + policy.jitter * (2 * r - 1));
  const clamped = Math.min(Math.max(at, now.getTime()), notAfter.getTime());
  return new Date(Math.max(clamped, now.getTime()));
}

/** Retry delay after a failed renewal: jittered exponential backoff capped at `capMs`. Pure. */
export function retryDelay(attempt: number, random: number, baseMs = 1000, capMs = 30_000): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(exp / 2 + (exp / 2) * Math.min(Math.max(random, 0), 1));
}
