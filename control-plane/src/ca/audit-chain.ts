/**
 * The audit log's hash chain, as pure functions over bytes. Every record is
 * one JSON line that carries `prev` (the hash of the record before it) and,
 * last, its own `hash`: the SHA-256 (hex) of the line as it would read
 * without `,"hash":"…"`. So editing a record breaks its own hash, and
 * removing or reordering one breaks the next record's `prev`.
 *
 * Logs written before the chain existed keep their lines: the first chained
 * record's `prev` is the SHA-256 of every byte before it (of nothing, for a
 * new log), so that unchained prefix cannot be edited unnoticed either.
 * Removing records from the end is not detectable from the log alone: the
 * head (last hash) and record count that `trellis audit verify` prints are
 * what to keep elsewhere (a SIEM, a ticket) to detect that.
 */
import { createHash } from 'node:crypto';

/** The `prev` of the first record of an empty log: SHA-256 of no bytes. */
export const EMPTY_LOG_HASH = sha256Hex(Buffer.alloc(0));

const HASH_SUFFIX = /,"hash":"([0-9a-f]{64})"\}$/;
const HEX64 = /^[0-9a-f]{64}$/;

/** SHA-256 of `bytes`, lower-case hex. */
export function sha256Hex(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The line (without its newline) for `fields` chained after `prev`, and its
 * hash. Fields named `prev` or `hash` in `fields` are replaced.
 */
export function chainRecord(fields: Readonly<Record<string, unknown>>, prev: string): { line: string; hash: string } {
  const { prev: _p, hash: _h, ...rest } = fields as Record<string, unknown>;
  const body = JSON.stringify({ ...rest, prev });
  const hash = sha256Hex(body);
  return { line: `${body.slice(0, -1)},"hash":"${hash}"}`, hash };
}

/** The first problem found in a log. */
export interface AuditProblem {
  /** 1-based line number. */
  readonly line: number;
  readonly reason: string;
}

/** What {@link verifyAuditChain} found. */
export interface AuditVerification {
  readonly ok: boolean;
  /** Complete, chained records checked. */
  readonly records: number;
  /** Lines before the first chained record (written before chaining), covered by its `prev`. */
  readonly unchainedPrefixLines: number;
  /** The hash of the last good record: what the next record must carry as `prev`. */
  readonly head: string;
  /** The first bad record, when not ok. */
  readonly problem: AuditProblem | null;
}

/** The hash that a chained line carries, or null when the line is not a chained record. */
export function recordHash(line: string): string | null {
  const m = HASH_SUFFIX.exec(line);
  return m ? m[1]! : null;
}

/**
 * Checks a whole log: every line complete, every chained record's hash
 * matching its content and its `prev` matching the record before it; stops
 * at the first bad record and names it (line number and reason).
 */
export function verifyAuditChain(log: Buffer): AuditVerification {
  let offset = 0;
  let lineNo = 0;
  let records = 0;
  let prefixLines = 0;
  let head: string | null = null;
  const fail = (reason: string): AuditVerification => ({ ok: false, records, unchainedPrefixLines: prefixLines, head: head ?? sha256Hex(log.subarray(0, offset)), problem: { line: lineNo, reason } });
  while (offset < log.length) {
    lineNo++;
    const nl = log.indexOf(0x0a, offset);
    if (nl < 0) return fail('incomplete record: the line has no end (a torn write)');
    const line = log.toString('utf8', offset, nl);
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(line) as Record<string, unknown>;
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('not an object');
    } catch {
      return fail(line.trim() === '' ? 'empty line' : 'not a JSON object (a torn or edited record)');
    }
    if (doc['hash'] === undefined && doc['prev'] === undefined) {
      if (head !== null) return fail('record is not hash-chained, but follows chained records (added by hand or by an older writer)');
      prefixLines++;
      offset = nl + 1;
      continue;
    }
    const hash = recordHash(line);
    if (hash === null || doc['hash'] !== hash) return fail('the hash field is missing, malformed or not last');
    if (typeof doc['prev'] !== 'string' || !HEX64.test(doc['prev'])) return fail('the prev field is missing or malformed');
    const body = line.slice(0, line.length - `,"hash":"${hash}"}`.length) + '}';
    if (sha256Hex(body) !== hash) return fail('the record does not match its hash (edited)');
    const expected = head ?? sha256Hex(log.subarray(0, offset));
    if (doc['prev'] !== expected) {
      return fail(head === null ? 'prev does not match the lines before the first chained record (an earlier line was edited or removed)' : 'prev does not match the record before it (a record was removed, inserted or reordered)');
    }
    head = hash;
    records++;
    offset = nl + 1;
  }
  return { ok: true, records, unchainedPrefixLines: prefixLines, head: head ?? sha256Hex(log), problem: null };
}
