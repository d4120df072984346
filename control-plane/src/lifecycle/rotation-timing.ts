/**
 * When to prepare and when to activate the next intermediate. Pure: the time
 * is a parameter, so the timer that calls these is trivial and the decisions
 * are table-tested (SPIRE's `ShouldPrepareNextX509CA` / `ShouldActivateNextX509CA`).
 *
 * Prepare once the current intermediate passes half its life, so an offline
 * root has half a lifetime to sign; activate once it passes five sixths (or
 * at once if the current one is already unusable), so every sidecar still
 * has a sixth of the lifetime to pick up leaves from the new one.
 */

/** The validity window of a certificate. */
export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** A timing decision and why it was taken. */
export interface TimingDecision {
  readonly yes: boolean;
  readonly reason: string;
  /** When the answer turns to yes (absent when it already is, or never will). */
  readonly at?: Date;
}

/** Fraction of the intermediate's life after which the next one is prepared. */
export const PREPARE_AT_FRACTION = 1 / 2;
/** Fraction of the intermediate's life after which the next one is activated. */
export const ACTIVATE_AT_FRACTION = 5 / 6;

function pointInLife(v: Validity, fraction: number): Date {
  const start = v.notBefore.getTime();
  return new Date(start + Math.floor((v.notAfter.getTime() - start) * fraction));
}

/** True once `current` has passed half its life (or is already expired). */
export function shouldPrepareNextIntermediate(now: Date, current: Validity): TimingDecision {
  const at = pointInLife(current, PREPARE_AT_FRACTION);
  if (now >= current.notAfter) return { yes: true, reason: 'the current intermediate has expired' };
  if (now >= at) return { yes: true, reason: 'the current intermediate is past half its life' };
  return { yes: false, reason: 'the current intermediate is in the first half of its life', at };
}

/**
 * True when `next` should replace `current` now. Never activates a `next`
 * that is not valid yet or already expired, or one that would expire before
 * `current` (that would shorten, not extend, the CA's life): fails closed.
 */
export function shouldActivateNextIntermediate(now: Date, current: Validity, next: Validity): TimingDecision {
  if (now < next.notBefore) return { yes: false, reason: 'the next intermediate is not valid yet', at: next.notBefore };
  if (now >= next.notAfter) return { yes: false, reason: 'the next intermediate has expired' };
  if (next.notAfter <= current.notAfter) return { yes: false, reason: 'the next intermediate expires no later than the current one' };
  if (now >= current.notAfter) return { yes: true, reason: 'the current intermediate has expired' };
  const at = pointInLife(current, ACTIVATE_AT_FRACTION);
  if (now >= at) return { yes: true, reason: 'the current intermediate is past five sixths of its life' };
  return { yes: false, reason: 'the current intermediate has more than a sixth of its life left', at };
}
