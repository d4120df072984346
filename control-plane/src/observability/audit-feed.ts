/**
 * The recent audit events, for the admin API's `GET /debug/events` and the
 * dashboard's live feed: a bounded in-memory ring of what the control plane
 * already records, never a second account of it. It is fed from the places
 * that write the audit trail:
 * - the CA's `audit.log` (every issuance and every lifecycle step, whoever
 *   made it: this process, the lifecycle timer, a CLI on the CA dir), which
 *   audit-trail-follower.ts follows and classifies with {@link auditTrailEvent};
 * - the control plane's own `"event":"audit"` log lines at warn or error,
 *   the refusals of streams, tokens, CSRs and node claims, which are on no
 *   other trail ({@link tapAuditLog} passes them on as they are logged);
 * - the refusals sidecars report on the data path (mesh-report-events.ts).
 * Events carry what the log lines carry (identities, serials, reasons);
 * never a key, a token or a certificate. Each gets a sequence number, so a
 * reader asks for what came after the last one it saw.
 */
import type { Logger } from '@trellis/shared';

/** What an event is about, for the dashboard's colours and filters. */
export type AuditEventKind = 'issuance' | 'refusal' | 'revocation' | 'rotation' | 'lifecycle';

/** One event. */
export interface AuditEvent {
  /** Increasing from 1 for the life of the process. */
  readonly seq: number;
  /** ISO-8601, when it happened (as its source says). */
  readonly time: string;
  readonly kind: AuditEventKind;
  /** What happened, short: `svid.issued`, `revocation.added`, `svid refused`, `call refused`. */
  readonly action: string;
  /** The identity it concerns, when one. */
  readonly spiffeId: string | null;
  /** The rest of the source's fields (strings, numbers, booleans, null; nested values as JSON text). */
  readonly fields: Readonly<Record<string, string | number | boolean | null>>;
}

/** An event before it has a sequence number (its fields not yet bounded). */
export type AuditEventInit = Omit<AuditEvent, 'seq' | 'fields'> & { readonly fields: Readonly<Record<string, unknown>> };

/** How many events the ring keeps by default. */
export const DEFAULT_AUDIT_FEED_CAPACITY = 1000;
/** Fields of an event kept at most, and characters of one value. */
const MAX_FIELDS = 24;
const MAX_VALUE = 512;

/** A page of events. */
export interface AuditEventPage {
  readonly events: readonly AuditEvent[];
  /** The sequence number of the newest event (0 when none): ask for `since=next` to continue. */
  readonly next: number;
  /** The oldest sequence number still held; a reader behind it missed `oldest - since - 1` events. */
  readonly oldest: number;
}

/** The ring. */
export class AuditFeed {
  private readonly ring: AuditEvent[] = [];
  private seq = 0;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly capacity = DEFAULT_AUDIT_FEED_CAPACITY) {}

  /** Appends an event (fields bounded); returns it with its sequence number. */
  record(e: AuditEventInit): AuditEvent {
    const event: AuditEvent = Object.freeze({ ...e, seq: ++this.seq, fields: boundedFields(e.fields) });
    this.ring.push(event);
    if (this.ring.length > this.capacity) this.ring.splice(0, this.ring.length - this.capacity);
    for (const l of this.listeners) l();
    return event;
  }

  /** Events after `since`, oldest first, at most `limit`. */
  since(since: number, limit = 200): AuditEventPage {
    const events = this.ring.filter((e) => e.seq > since).slice(0, Math.max(0, limit));
    const last = events[events.length - 1];
    return { events, next: last ? last.seq : Math.min(Math.max(since, 0), this.seq), oldest: this.ring[0]?.seq ?? this.seq + 1 };
  }

  /** The newest sequence number (0 before the first event). */
  get latest(): number {
    return this.seq;
  }

  /** Calls `listener` after every append; returns an unsubscribe function. */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** Copies `fields`, keeping scalars (nested values as JSON), at most MAX_FIELDS, each value at most MAX_VALUE characters. */
export function boundedFields(fields: Readonly<Record<string, unknown>>): Readonly<Record<string, string | number | boolean | null>> {
  const out: Record<string, string | number | boolean | null> = {};
  let n = 0;
  for (const [k, v] of Object.entries(fields)) {
    if (n++ >= MAX_FIELDS) break;
    if (v === undefined) continue;
    let value: string | number | boolean | null;
    if (v === null || typeof v === 'number' || typeof v === 'boolean') value = v;
    else if (typeof v === 'string') value = v;
    else if (v instanceof Error) value = (v as Error & { code?: string }).code ? `${v.message} [${(v as Error & { code?: string }).code}]` : v.message;
    else value = JSON.stringify(v) ?? null;
    out[k] = typeof value === 'string' && value.length > MAX_VALUE ? value.slice(0, MAX_VALUE) + '…' : value;
  }
  return Object.freeze(out);
}

/**
 * The event for one line of the CA's `audit.log`, or null for a line that is
 * not one (blank, not JSON). An issuance line (`serial`, `spiffeId`,
 * `requester`, no `event`) is `svid.issued`; a lifecycle line carries its
 * `event` name (lifecycle-audit.ts). Pure.
 */
export function auditTrailEvent(line: string): AuditEventInit | null {
  let rec: Record<string, unknown>;
  try {
    const v = JSON.parse(line) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
    rec = v as Record<string, unknown>;
  } catch {
    return null;
  }
  const { time, event, ...rest } = rec;
  const when = typeof time === 'string' && !Number.isNaN(Date.parse(time)) ? time : new Date(0).toISOString();
  if (event === undefined) {
    if (typeof rec['serial'] !== 'string' || typeof rec['spiffeId'] !== 'string') return null;
    return { time: when, kind: 'issuance', action: 'svid.issued', spiffeId: rec['spiffeId'] as string, fields: rest };
  }
  if (typeof event !== 'string') return null;
  const kind: AuditEventKind = event.startsWith('revocation.') ? 'revocation' : event.startsWith('root-rotation.') || event.startsWith('intermediate.') || event === 'reissue.ordered' ? 'rotation' : 'lifecycle';
  const target = typeof rec['value'] === 'string' && (rec['value'] as string).startsWith('spiffe://') ? (rec['value'] as string) : typeof rec['target'] === 'string' && (rec['target'] as string).startsWith('spiffe://') ? (rec['target'] as string) : null;
  return { time: when, kind, action: event, spiffeId: target, fields: rest };
}

/**
 * A logger that writes through to `logger` and also records, in `feed`,
 * every `"event":"audit"` line at warn or error (a refused stream, token,
 * CSR or node claim). The same call does both, so the feed never says
 * other than the log.
 */
export function tapAuditLog(logger: Logger, feed: AuditFeed, now: () => Date, base: Record<string, unknown> = {}): Logger {
  const pass = (level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void => {
    logger[level](msg, fields);
    if (fields?.['event'] !== 'audit') return;
    const { event: _event, ...rest } = { ...base, ...fields };
    const id = rest['spiffeId'];
    feed.record({ time: now().toISOString(), kind: 'refusal', action: msg, spiffeId: typeof id === 'string' ? id : null, fields: rest });
  };
  return {
    debug: (m, f) => logger.debug(m, f),
    info: (m, f) => logger.info(m, f),
    warn: (m, f) => pass('warn', m, f),
    error: (m, f) => pass('error', m, f),
    child: (fields) => tapAuditLog(logger.child(fields), feed, now, { ...base, ...fields }),
  };
}
