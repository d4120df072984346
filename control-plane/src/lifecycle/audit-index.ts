/**
 * What the CA's audit log (one JSON line per issued SVID) tells the
 * lifecycle: until when a revoked identity or serial can still be presented,
 * and whether a leaf issued before a moment is still unexpired (the root
 * rotation's last gate). Parsing is pure; {@link readAuditLog} is the only I/O.
 */
import { readFileSync } from 'node:fs';
import type { AuditRecord } from '../ca/audit-log';
import { normaliseSerial } from '@trellis/shared';

/** The issuance records that parsed, and how many lines did not (lifecycle event lines are neither). */
export interface AuditIndex {
  readonly records: readonly AuditRecord[];
  readonly badLines: number;
}

/** Parses audit log text; lines that are not complete records are counted, not trusted. */
export function parseAuditLog(text: string): AuditIndex {
  const records: AuditRecord[] = [];
  let badLines = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const r = JSON.parse(line) as Partial<AuditRecord> & { event?: unknown };
      if (typeof r.event === 'string') continue;
      if (typeof r.serial === 'string' && typeof r.spiffeId === 'string' && typeof r.notAfter === 'string' && typeof r.time === 'string' && !Number.isNaN(Date.parse(r.notAfter)) && !Number.isNaN(Date.parse(r.time))) {
        records.push(r as AuditRecord);
      } else badLines++;
    } catch {
      badLines++;
    }
  }
  return { records, badLines };
}

/** Reads `path`; a missing log is an empty one (nothing issued yet). */
export function readAuditLog(path: string): AuditIndex {
  try {
    return parseAuditLog(readFileSync(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], badLines: 0 };
    throw err;
  }
}

/**
 * The latest notAfter among leaves matching `spiffeId` or `serial` (lower-case
 * hex without leading zeros, as revocation targets are normalised), or null if
 * none was issued. The log writes whole bytes ("0a3f..."), so its serials are
 * compared without their leading zeros too.
 */
export function latestNotAfter(index: AuditIndex, match: { spiffeId?: string; serial?: string }): Date | null {
  let latest: number | null = null;
  for (const r of index.records) {
    if (match.spiffeId !== undefined && r.spiffeId !== match.spiffeId) continue;
    if (match.serial !== undefined && serialOf(r.serial) !== match.serial) continue;
    const t = Date.parse(r.notAfter);
    if (latest === null || t > latest) latest = t;
  }
  return latest === null ? null : new Date(latest);
}

/**
 * Leaves issued before `before` that are still unexpired at `now`: how many
 * and when the last of them expires.
 */
export function unexpiredIssuedBefore(index: AuditIndex, before: Date, now: Date): { count: number; lastNotAfter: Date | null } {
  let count = 0;
  let last: number | null = null;
  for (const r of index.records) {
    if (Date.parse(r.time) >= before.getTime()) continue;
    const t = Date.parse(r.notAfter);
    if (t <= now.getTime()) continue;
    count++;
    if (last === null || t > last) last = t;
  }
  return { count, lastNotAfter: last === null ? null : new Date(last) };
}

/** A logged serial in the normal form, or null when the record's serial is not one (it then matches nothing). */
function serialOf(s: string): string | null {
  try {
    return normaliseSerial(s);
  } catch {
    return null;
  }
}
