/**
 * Classifying a certificate's expiry for `trellis check` and the expiry
 * gauges: ok, warn, critical or expired. Pure; the time is a parameter.
 *
 * A threshold is the smaller of an absolute duration and a fraction of the
 * certificate's lifetime, so one rule fits a week-long serving certificate
 * and a one-hour SVID (warn 20 minutes before). CA certificates use the
 * absolute durations alone: a short-lived intermediate 10 days from expiry
 * is an emergency whatever its lifetime.
 */

/** Severity, ordered. */
export type ExpiryStatus = 'ok' | 'warn' | 'critical' | 'expired';

/** When to warn and when to call it critical. */
export interface ExpiryThresholds {
  readonly warnSeconds: number;
  readonly warnFraction: number;
  readonly criticalSeconds: number;
  readonly criticalFraction: number;
}

/** What kind of certificate is checked; each has its own default thresholds. */
export type CertificateKind = 'root' | 'intermediate' | 'next-intermediate' | 'serving' | 'leaf';

const DAY = 86_400;

/** Default thresholds per kind. */
export const DEFAULT_THRESHOLDS: Readonly<Record<CertificateKind, ExpiryThresholds>> = Object.freeze({
  root: Object.freeze({ warnSeconds: 180 * DAY, warnFraction: 1, criticalSeconds: 30 * DAY, criticalFraction: 1 }),
  intermediate: Object.freeze({ warnSeconds: 60 * DAY, warnFraction: 1, criticalSeconds: 14 * DAY, criticalFraction: 1 }),
  'next-intermediate': Object.freeze({ warnSeconds: 60 * DAY, warnFraction: 1, criticalSeconds: 14 * DAY, criticalFraction: 1 }),
  serving: Object.freeze({ warnSeconds: 7 * DAY, warnFraction: 1 / 3, criticalSeconds: DAY, criticalFraction: 1 / 10 }),
  leaf: Object.freeze({ warnSeconds: 7 * DAY, warnFraction: 1 / 3, criticalSeconds: DAY, criticalFraction: 1 / 10 }),
});

/** The verdict on one certificate. */
export interface ExpiryVerdict {
  readonly status: ExpiryStatus;
  /** Seconds until notAfter (negative once expired). */
  readonly remainingSeconds: number;
  readonly reason: string;
}

const RANK: Record<ExpiryStatus, number> = { ok: 0, warn: 1, critical: 2, expired: 3 };

/** The worse of two statuses. */
export function worstStatus(a: ExpiryStatus, b: ExpiryStatus): ExpiryStatus {
  return RANK[a] >= RANK[b] ? a : b;
}

/**
 * Classifies one certificate at `now`. A certificate not valid yet is
 * critical (nothing can use it), never ok: fails closed.
 */
export function classifyExpiry(now: Date, notBefore: Date, notAfter: Date, t: ExpiryThresholds): ExpiryVerdict {
  const remainingSeconds = Math.floor((notAfter.getTime() - now.getTime()) / 1000);
  const lifetime = Math.max(0, (notAfter.getTime() - notBefore.getTime()) / 1000);
  if (remainingSeconds <= 0) return { status: 'expired', remainingSeconds, reason: `expired at ${notAfter.toISOString()}` };
  if (now < notBefore) return { status: 'critical', remainingSeconds, reason: `not valid until ${notBefore.toISOString()}` };
  const critical = Math.min(t.criticalSeconds, lifetime * t.criticalFraction);
  const warn = Math.min(t.warnSeconds, lifetime * t.warnFraction);
  if (remainingSeconds <= critical) return { status: 'critical', remainingSeconds, reason: `expires in ${humanSeconds(remainingSeconds)} (critical under ${humanSeconds(critical)})` };
  if (remainingSeconds <= warn) return { status: 'warn', remainingSeconds, reason: `expires in ${humanSeconds(remainingSeconds)} (warning under ${humanSeconds(warn)})` };
  return { status: 'ok', remainingSeconds, reason: `expires in ${humanSeconds(remainingSeconds)}` };
}

/** `3d 4h`, `25m`, `40s`: two units at most, for humans. */
export function humanSeconds(s: number): string {
  const v = Math.max(0, Math.floor(s));
  const d = Math.floor(v / DAY);
  const h = Math.floor((v % DAY) / 3600);
  const m = Math.floor((v % 3600) / 60);
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  if (m > 0) return `${m}m`;
  return `${v % 60}s`;
}
