/**
 * The sidecar report: what a sidecar tells the control plane about the
 * traffic it judged and about its own workload, carried as a JSON document
 * in `DiscoveryRequest.report` (field 8). Calls are window totals per
 * (peer, direction): allowed, and refused by reason with the last detail,
 * over the sidecar's report window (a report replaces the previous one
 * whole, so a lost report loses nothing). The workload part is what only
 * the sidecar knows: whether it is ready, its data path, the certificate it
 * serves with, when it will renew it, and its last rotations.
 *
 * The decoder is strict and bounded (sizes, counts, string forms): the
 * control plane stores what it returns, never the raw document, and
 * attributes it to the stream's authenticated identity; the report itself
 * names no source. Unknown fields are dropped. Pure: no I/O.
 */
import { isSpiffeId } from '../identity/spiffe-id';
import { ProtocolError } from './resources';

/** The bounds a report must keep; the control plane refuses one that does not. */
export const SIDECAR_REPORT_LIMITS = Object.freeze({
  /** UTF-8 bytes of the whole document. */
  maxBytes: 32 * 1024,
  /** (peer, direction) entries; a sidecar folds further peers into {@link OTHER_PEERS}. */
  maxCalls: 128,
  /** Refusal reasons per entry. */
  maxReasons: 16,
  /** Characters of a refusal's detail. */
  maxDetail: 256,
  /** Rotations listed, newest first. */
  maxRotations: 8,
  /** Characters of a SPIFFE ID (the SPIFFE spec's URI limit). */
  maxPeer: 2048,
  /** The longest report window, seconds. */
  maxWindowSeconds: 3600,
});

/** The peer of calls whose identity is not proven (plaintext, a chain that did not verify, no certificate). */
export const UNAUTHENTICATED_PEER = '';
/** The peer that stands for every peer past {@link SIDECAR_REPORT_LIMITS.maxCalls}. */
export const OTHER_PEERS = '*';

/** Which way a call went, seen from the reporting sidecar. */
export type CallDirection = 'inbound' | 'outbound';

/** One refusal reason of an entry. */
export interface ReportedRefusal {
  /** The `trellis_refusals_total` reason label (`authz_denied`, `revoked`, ...). */
  readonly reason: string;
  readonly count: number;
  /** The last refusal's detail (a policy decision's reason, a certificate check); may be empty. */
  readonly detail: string;
}

/** The calls with one peer in one direction over the window. */
export interface ReportedCalls {
  /** The peer's SPIFFE ID, {@link UNAUTHENTICATED_PEER} or {@link OTHER_PEERS}. */
  readonly peer: string;
  readonly direction: CallDirection;
  readonly allowed: number;
  readonly refused: readonly ReportedRefusal[];
}

/** A certificate the sidecar installed. */
export interface ReportedCertificate {
  readonly serial: string;
  /** ISO-8601. */
  readonly notBefore: string;
  readonly notAfter: string;
  readonly installedAt: string;
}

/** What the sidecar knows of its own workload. */
export interface ReportedWorkload {
  readonly ready: boolean;
  /** Why it is (not) ready, as its /ready says. */
  readonly readyReason: string;
  readonly dataPath: 'native' | 'node';
  /** When it will renew its certificate (ISO-8601), null when not scheduled. */
  readonly renewAt: string | null;
  /** The certificates it installed, newest (the one in use) first. */
  readonly rotations: readonly ReportedCertificate[];
}

/** The whole report. */
export interface SidecarReport {
  /** How far back the call counts reach, seconds. */
  readonly windowSeconds: number;
  readonly calls: readonly ReportedCalls[];
  readonly workload: ReportedWorkload;
}

/** Stable code of a report that is malformed or over its bounds. */
export const BAD_REPORT_CODE = 'TRELLIS_PROTOCOL_BAD_REPORT';

/** Serialises a report for `DiscoveryRequest.report`. */
export function encodeSidecarReport(r: SidecarReport): Buffer {
  return Buffer.from(JSON.stringify(r), 'utf8');
}

/**
 * `r` made to fit in `maxBytes` when encoded, losing detail before counts:
 * first every refusal's detail is dropped, then the entries with the fewest
 * calls are folded into their direction's {@link OTHER_PEERS} entry (counts
 * summed, reasons past the limit under `other`) until it fits. Totals are
 * kept. Pure.
 */
export function fitSidecarReport(r: SidecarReport, maxBytes: number = SIDECAR_REPORT_LIMITS.maxBytes): SidecarReport {
  const size = (x: SidecarReport): number => Buffer.byteLength(JSON.stringify(x));
  if (size(r) <= maxBytes) return r;
  let calls: ReportedCalls[] = r.calls.map((c) => ({ ...c, refused: c.refused.map((x) => ({ ...x, detail: '' })) }));
  const fitted = (): SidecarReport => ({ ...r, calls });
  const total = (c: ReportedCalls): number => c.allowed + c.refused.reduce((n, x) => n + x.count, 0);
  while (size(fitted()) > maxBytes) {
    const victims = calls.filter((c) => c.peer !== OTHER_PEERS).sort((a, b) => total(a) - total(b));
    if (victims.length === 0) break;
    // Fold a quarter of what is left at a time: a few passes, whatever the size.
    const fold = new Set(victims.slice(0, Math.max(1, Math.ceil(victims.length / 4))));
    const kept = calls.filter((c) => !fold.has(c));
    for (const c of fold) {
      const i = kept.findIndex((k) => k.peer === OTHER_PEERS && k.direction === c.direction);
      const into = i >= 0 ? kept[i]! : { peer: OTHER_PEERS, direction: c.direction, allowed: 0, refused: [] };
      const reasons = new Map(into.refused.map((x) => [x.reason, x.count]));
      for (const x of c.refused) {
        const reason = reasons.has(x.reason) || reasons.size < SIDECAR_REPORT_LIMITS.maxReasons - 1 ? x.reason : 'other';
        reasons.set(reason, (reasons.get(reason) ?? 0) + x.count);
      }
      const merged = { peer: OTHER_PEERS, direction: c.direction, allowed: into.allowed + c.allowed, refused: [...reasons].map(([reason, count]) => ({ reason, count, detail: '' })) };
      if (i >= 0) kept[i] = merged;
      else kept.push(merged);
    }
    calls = kept;
  }
  return fitted();
}

const REASON = /^[a-z][a-z0-9_]{0,63}$/;
const SERIAL = /^[0-9a-f]{1,64}$/;

/**
 * Parses and checks a report; throws ProtocolError
 * `TRELLIS_PROTOCOL_BAD_REPORT` naming the field when it is malformed or
 * over {@link SIDECAR_REPORT_LIMITS}. Returns a frozen copy holding only
 * the known fields.
 */
export function decodeSidecarReport(body: Uint8Array): SidecarReport {
  const L = SIDECAR_REPORT_LIMITS;
  if (body.length > L.maxBytes) throw bad('', `${body.length} bytes, over ${L.maxBytes}`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (err) {
    throw bad('', `not JSON: ${(err as Error).message}`);
  }
  const o = obj(v, '');
  const windowSeconds = o['windowSeconds'];
  if (typeof windowSeconds !== 'number' || !Number.isInteger(windowSeconds) || windowSeconds < 1 || windowSeconds > L.maxWindowSeconds) throw bad('windowSeconds', `must be an integer from 1 to ${L.maxWindowSeconds}`);
  const callsIn = o['calls'];
  if (!Array.isArray(callsIn)) throw bad('calls', 'must be an array');
  if (callsIn.length > L.maxCalls) throw bad('calls', `${callsIn.length} entries, over ${L.maxCalls}`);
  const seen = new Set<string>();
  const calls = callsIn.map((c, i): ReportedCalls => {
    const at = `calls[${i}]`;
    const co = obj(c, at);
    const peer = co['peer'];
    if (typeof peer !== 'string' || peer.length > L.maxPeer || !(peer === UNAUTHENTICATED_PEER || peer === OTHER_PEERS || isSpiffeId(peer))) throw bad(`${at}.peer`, 'must be a SPIFFE ID, "" (unauthenticated) or "*" (other peers)');
    const direction = co['direction'];
    if (direction !== 'inbound' && direction !== 'outbound') throw bad(`${at}.direction`, 'must be inbound or outbound');
    const key = `${direction} ${peer}`;
    if (seen.has(key)) throw bad(at, `a second entry for ${direction} peer "${peer}"`);
    seen.add(key);
    const refusedIn = co['refused'];
    if (!Array.isArray(refusedIn)) throw bad(`${at}.refused`, 'must be an array');
    if (refusedIn.length > L.maxReasons) throw bad(`${at}.refused`, `${refusedIn.length} reasons, over ${L.maxReasons}`);
    const reasons = new Set<string>();
    const refused = refusedIn.map((x, j): ReportedRefusal => {
      const rat = `${at}.refused[${j}]`;
      const ro = obj(x, rat);
      const reason = ro['reason'];
      if (typeof reason !== 'string' || !REASON.test(reason)) throw bad(`${rat}.reason`, 'must be a reason label (lower-case letters, digits, _)');
      if (reasons.has(reason)) throw bad(`${rat}.reason`, `"${reason}" twice`);
      reasons.add(reason);
      const detail = ro['detail'];
      if (typeof detail !== 'string' || detail.length > L.maxDetail) throw bad(`${rat}.detail`, `must be a string of at most ${L.maxDetail} characters`);
      return Object.freeze({ reason, count: count(ro['count'], `${rat}.count`), detail });
    });
    return Object.freeze({ peer, direction, allowed: count(co['allowed'], `${at}.allowed`), refused: Object.freeze(refused) });
  });
  const w = obj(o['workload'], 'workload');
  if (typeof w['ready'] !== 'boolean') throw bad('workload.ready', 'must be a boolean');
  const readyReason = w['readyReason'];
  if (typeof readyReason !== 'string' || readyReason.length > L.maxDetail) throw bad('workload.readyReason', `must be a string of at most ${L.maxDetail} characters`);
  const dataPath = w['dataPath'];
  if (dataPath !== 'native' && dataPath !== 'node') throw bad('workload.dataPath', 'must be native or node');
  const renewAt = w['renewAt'];
  if (renewAt !== null) date(renewAt, 'workload.renewAt');
  const rotationsIn = w['rotations'];
  if (!Array.isArray(rotationsIn)) throw bad('workload.rotations', 'must be an array');
  if (rotationsIn.length > L.maxRotations) throw bad('workload.rotations', `${rotationsIn.length} entries, over ${L.maxRotations}`);
  const rotations = rotationsIn.map((x, i): ReportedCertificate => {
    const at = `workload.rotations[${i}]`;
    const ro = obj(x, at);
    const serial = ro['serial'];
    if (typeof serial !== 'string' || !SERIAL.test(serial)) throw bad(`${at}.serial`, 'must be a lower-case hex serial');
    return Object.freeze({ serial, notBefore: date(ro['notBefore'], `${at}.notBefore`), notAfter: date(ro['notAfter'], `${at}.notAfter`), installedAt: date(ro['installedAt'], `${at}.installedAt`) });
  });
  return Object.freeze({
    windowSeconds,
    calls: Object.freeze(calls),
    workload: Object.freeze({ ready: w['ready'] as boolean, readyReason, dataPath, renewAt: renewAt as string | null, rotations: Object.freeze(rotations) }),
  });
}

function bad(field: string, reason: string): ProtocolError {
  return new ProtocolError(BAD_REPORT_CODE, `sidecar report${field ? ' field ' + field : ''}: ${reason}`, { field });
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(field, 'must be an object');
  return v as Record<string, unknown>;
}

function count(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(field, 'must be a non-negative integer');
  return v;
}

function date(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length > 40 || Number.isNaN(Date.parse(v))) throw bad(field, 'must be an ISO-8601 date');
  return v;
}
