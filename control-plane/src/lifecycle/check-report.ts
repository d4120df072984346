/**
 * `trellis check`: every certificate Trellis depends on, its expiry
 * verdict, and what to run when it needs attention. Building the report
 * from facts is pure ({@link buildCheckReport}); {@link caDirCheckItems}
 * reads a CA dir into those facts.
 */
import { join } from 'node:path';
import { classifyExpiry, DEFAULT_THRESHOLDS, worstStatus, type CertificateKind, type ExpiryStatus, type ExpiryThresholds } from './expiry-check';
import { readIntermediateSlots } from './intermediate-slots';
import { shouldPrepareNextIntermediate } from './rotation-timing';
import { loadRootRotationState } from './root-rotation-store';

/** One certificate to check. */
export interface CheckSubject {
  readonly kind: CertificateKind;
  /** Where it was found: a file, a host:port, a SPIFFE ID. */
  readonly name: string;
  readonly subject: string;
  readonly notBefore: Date | null;
  readonly notAfter: Date;
  /** Raise to at least this status, with this reason (e.g. no next intermediate past half life). */
  readonly floor?: { status: ExpiryStatus; reason: string };
  /** What to run when it is not ok. */
  readonly fix: string;
}

/** One checked certificate. */
export interface CheckItem {
  readonly kind: CertificateKind;
  readonly name: string;
  readonly subject: string;
  readonly notAfter: string;
  readonly remainingSeconds: number;
  readonly status: ExpiryStatus;
  readonly reason: string;
  /** Empty when ok. */
  readonly fix: string;
}

/** The whole report. */
export interface CheckReport {
  readonly checkedAt: string;
  readonly status: ExpiryStatus;
  readonly items: readonly CheckItem[];
  /** Things worth knowing that are not expiries (a rotation in progress, an unreachable address). */
  readonly notes: readonly string[];
}

/** Classifies every subject with its kind's thresholds (overridable) and takes the worst status. */
export function buildCheckReport(now: Date, subjects: readonly CheckSubject[], notes: readonly string[] = [], thresholds: Partial<Record<CertificateKind, ExpiryThresholds>> = {}): CheckReport {
  let status: ExpiryStatus = 'ok';
  const items = subjects.map((s) => {
    const t = thresholds[s.kind] ?? DEFAULT_THRESHOLDS[s.kind];
    // Without a start the lifetime is unknown: CA and serving certificates keep their absolute
    // thresholds; a short-lived leaf is only flagged once expired (a 1-minute SVID is always "a day" from expiry).
    const unknownLife = s.kind === 'leaf' ? { ...t, warnSeconds: 0, criticalSeconds: 0 } : { ...t, warnFraction: Infinity, criticalFraction: Infinity };
    const v = classifyExpiry(now, s.notBefore ?? new Date(0), s.notAfter, s.notBefore ? t : unknownLife);
    let st = v.status;
    let reason = v.reason;
    if (s.floor && worstStatus(st, s.floor.status) !== st) {
      st = s.floor.status;
      reason = `${s.floor.reason}; ${v.reason}`;
    }
    status = worstStatus(status, st);
    return Object.freeze({ kind: s.kind, name: s.name, subject: s.subject, notAfter: s.notAfter.toISOString(), remainingSeconds: v.remainingSeconds, status: st, reason, fix: st === 'ok' ? '' : s.fix });
  });
  return Object.freeze({ checkedAt: now.toISOString(), status, items: Object.freeze(items), notes: Object.freeze([...notes]) });
}

/** The certificates of a CA dir (roots, current and next intermediate) and notes on rotations in progress. */
export function caDirCheckItems(caDir: string, now: Date): { subjects: CheckSubject[]; notes: string[] } {
  const slots = readIntermediateSlots(caDir);
  const subjects: CheckSubject[] = [];
  const notes: string[] = [];
  const rotation = loadRootRotationState(caDir);
  const rotating = rotation !== null && rotation.phase !== 'done';
  slots.current.roots.forEach((r, i) => {
    subjects.push({
      kind: 'root',
      name: `${join(caDir, 'root.pem')}#${i + 1}`,
      subject: r.facts.subjectText,
      notBefore: r.facts.notBefore,
      notAfter: r.facts.notAfter,
      fix: rotating ? `a root rotation is in progress: run "trellis ca rotate-root --ca-dir ${caDir} --admin ADDR" to advance it` : `rotate the root: trellis ca rotate-root --ca-dir ${caDir} --new-root-dir NEW_ROOT_DIR --admin ADDR`,
    });
  });
  const cur = slots.current.cert;
  const intermediateFix = ((): string => {
    switch (slots.nextState) {
      case 'empty':
        return `prepare the next intermediate: trellis ca prepare-intermediate --dir ${caDir} [--root-dir ROOT_DIR]`;
      case 'prepared':
        return `sign it where the root lives: trellis ca sign-intermediate --root-dir ROOT_DIR --csr ${slots.nextCsrPath} --out next.pem, then trellis ca activate-intermediate --dir ${caDir} --cert next.pem`;
      case 'signed':
        return `activate it: trellis ca activate-intermediate --dir ${caDir}`;
    }
  })();
  const prepare = shouldPrepareNextIntermediate(now, cur.facts);
  subjects.push({
    kind: 'intermediate',
    name: join(caDir, 'intermediate.pem'),
    subject: cur.facts.subjectText,
    notBefore: cur.facts.notBefore,
    notAfter: cur.facts.notAfter,
    floor: prepare.yes && slots.nextState !== 'signed' ? { status: 'warn', reason: `past half its life and the next intermediate is ${slots.nextState === 'empty' ? 'not prepared' : 'not signed'}` } : undefined,
    fix: intermediateFix,
  });
  if (slots.next) {
    subjects.push({
      kind: 'next-intermediate',
      name: join(caDir, 'next', 'intermediate.pem'),
      subject: slots.next.facts.subjectText,
      notBefore: slots.next.facts.notBefore,
      notAfter: slots.next.facts.notAfter,
      fix: `prepare a fresh one: trellis ca prepare-intermediate --dir ${caDir} --force`,
    });
  }
  if (slots.nextState === 'prepared') notes.push(`next intermediate prepared, waiting to be signed: ${slots.nextCsrPath}`);
  if (rotating) notes.push(`root rotation in phase ${rotation.phase} since ${rotation.phaseSince} (trellis ca status --ca-dir ${caDir})`);
  return { subjects, notes };
}

/** Exit code for a report: 0 ok/warn, 1 critical or expired. */
export function checkExitCode(report: CheckReport): number {
  return report.status === 'critical' || report.status === 'expired' ? 1 : 0;
}
