/**
 * The revocation list as a value: entries naming a SPIFFE ID or a serial,
 * why and when they were revoked, and until when the revoked certificates
 * can still be presented (the latest notAfter the audit log knows). Pure;
 * every operation returns a new frozen list.
 *
 * Lifetimes: a serial entry leaves the list once its certificate has
 * expired (nothing left to refuse). A SPIFFE ID entry stays, pushed to
 * sidecars and refused at the CA for renewal, until it is lifted: the
 * identity itself is distrusted, and dropping it when today's leaves
 * expire would let a leaf issued tomorrow through (fail closed).
 */
import { normaliseSerial, parseSpiffeId, SpiffeIdError, X509Error, type RevocationsResource } from '@trellis/shared';
import { latestNotAfter, type AuditIndex } from './audit-index';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';

/** What an entry names. */
export type RevocationKind = 'spiffeId' | 'serial';

/** One revocation. */
export interface RevocationEntry {
  readonly kind: RevocationKind;
  /** A SPIFFE ID, or a serial as lower-case hex without leading zeros or colons. */
  readonly value: string;
  readonly reason: string;
  readonly revokedAt: string;
  /** When the last affected certificate expires; null when the audit log knows none (kept until lifted). */
  readonly expiresAt: string | null;
}

/** The whole list. */
export interface RevocationList {
  readonly entries: readonly RevocationEntry[];
}

/** The empty list. */
export const EMPTY_REVOCATIONS: RevocationList = Object.freeze({ entries: Object.freeze([]) });

/** Checks and normalises what to revoke. */
export function revocationTarget(t: { spiffeId?: string; serial?: string }): { kind: RevocationKind; value: string } {
  if ((t.spiffeId === undefined) === (t.serial === undefined)) {
    throw new LifecycleError(LifecycleErrorCode.BAD_REVOCATION, 'name exactly one of a SPIFFE ID or a serial', { field: 'target' });
  }
  if (t.serial !== undefined) {
    try {
      return { kind: 'serial', value: normaliseSerial(t.serial) };
    } catch (err) {
      if (err instanceof X509Error) throw new LifecycleError(LifecycleErrorCode.BAD_REVOCATION, `serial "${t.serial}" is not a hex certificate serial (up to 20 bytes)`, { field: 'serial' }, { cause: err });
      throw err;
    }
  }
  try {
    const id = parseSpiffeId(t.spiffeId!);
    if (id.path === '') throw new LifecycleError(LifecycleErrorCode.BAD_REVOCATION, `"${t.spiffeId}" names a whole trust domain; revoke a workload ID`, { field: 'spiffeId' });
    return { kind: 'spiffeId', value: id.toString() };
  } catch (err) {
    if (err instanceof SpiffeIdError) throw new LifecycleError(LifecycleErrorCode.BAD_REVOCATION, `"${t.spiffeId}" is not a SPIFFE ID: ${err.message}`, { field: 'spiffeId', reason: err.code }, { cause: err });
    throw err;
  }
}

/**
 * Adds (or refreshes) a revocation. The expiry is the latest notAfter of the
 * affected leaves in the audit log; re-revoking an entry keeps the first
 * revocation time and takes the later expiry.
 */
export function addRevocation(list: RevocationList, target: { spiffeId?: string; serial?: string }, o: { now: Date; reason?: string; audit: AuditIndex }): RevocationList {
  const { kind, value } = revocationTarget(target);
  const last = latestNotAfter(o.audit, kind === 'spiffeId' ? { spiffeId: value } : { serial: value });
  const existing = list.entries.find((e) => e.kind === kind && e.value === value);
  const expiresAt = last ? last.toISOString() : null;
  const entry: RevocationEntry = Object.freeze({
    kind,
    value,
    reason: o.reason ?? existing?.reason ?? 'unspecified',
    revokedAt: existing?.revokedAt ?? o.now.toISOString(),
    expiresAt: existing?.expiresAt && expiresAt && existing.expiresAt > expiresAt ? existing.expiresAt : expiresAt,
  });
  const rest = list.entries.filter((e) => e !== existing);
  return Object.freeze({ entries: Object.freeze([...rest, entry]) });
}

/** Removes an entry; NOT_REVOKED when it is not on the list. */
export function liftRevocation(list: RevocationList, target: { spiffeId?: string; serial?: string }): RevocationList {
  const { kind, value } = revocationTarget(target);
  const rest = list.entries.filter((e) => !(e.kind === kind && e.value === value));
  if (rest.length === list.entries.length) throw new LifecycleError(LifecycleErrorCode.NOT_REVOKED, `${kind === 'serial' ? 'serial' : 'SPIFFE ID'} ${value} is not revoked`, { kind, value });
  return Object.freeze({ entries: Object.freeze(rest) });
}

function expired(e: RevocationEntry, now: Date): boolean {
  return e.expiresAt !== null && Date.parse(e.expiresAt) <= now.getTime();
}

/**
 * Drops serial entries whose certificate has expired. SPIFFE ID entries stay
 * (the CA refuses their renewal until lifted) even once nothing is left to push.
 */
export function pruneRevocations(list: RevocationList, now: Date): RevocationList {
  const kept = list.entries.filter((e) => !(e.kind === 'serial' && expired(e, now)));
  return kept.length === list.entries.length ? list : Object.freeze({ entries: Object.freeze(kept) });
}

/** What sidecars must refuse now: every SPIFFE ID entry, and every serial whose certificate has not expired. */
export function revocationsResource(list: RevocationList, now: Date): RevocationsResource {
  const live = list.entries.filter((e) => e.kind === 'spiffeId' || !expired(e, now));
  return {
    serials: live.filter((e) => e.kind === 'serial').map((e) => e.value).sort(),
    spiffeIds: live.filter((e) => e.kind === 'spiffeId').map((e) => e.value).sort(),
  };
}

/**
 * True when the CA must refuse to issue for `spiffeId`: it is on the list and
 * not lifted. Fails closed: an entry counts regardless of its expiry.
 */
export function isRenewalRefused(list: RevocationList, spiffeId: string): { refused: boolean; reason: string } {
  const e = list.entries.find((x) => x.kind === 'spiffeId' && x.value === spiffeId);
  return e ? { refused: true, reason: `revoked at ${e.revokedAt}: ${e.reason}` } : { refused: false, reason: 'not revoked' };
}
