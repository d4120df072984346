/**
 * Who this sidecar let through and whom it refused, per (peer, direction),
 * over a sliding window: the calls half of the sidecar report the control
 * plane draws its service graph from. Counts live in fixed-size time
 * buckets (10 s over 5 min by default), so a report is the window's totals
 * and a lost report loses nothing. Bounded: at most
 * SIDECAR_REPORT_LIMITS.maxCalls entries (further peers fold into `*`),
 * maxReasons reasons per entry (further reasons fold into `other`), details
 * cut to maxDetail characters. The time is a parameter; no timers.
 */
import { OTHER_PEERS, SIDECAR_REPORT_LIMITS, type CallDirection, type ReportedCalls } from '@trellis/shared';

/** Window and bucket sizes. */
export interface CallLedgerOptions {
  windowMs: number;
  bucketMs: number;
}

/** The default: five minutes in ten-second buckets. */
export const DEFAULT_CALL_WINDOW: CallLedgerOptions = Object.freeze({ windowMs: 5 * 60_000, bucketMs: 10_000 });

interface Bucket {
  start: number;
  allowed: number;
  refused: Map<string, number>;
}

interface Entry {
  peer: string;
  direction: CallDirection;
  buckets: Bucket[];
  /** The last detail seen per reason. */
  details: Map<string, string>;
}

/** The reason every refusal past the per-entry limit is counted under. */
const OTHER_REASON = 'other';

/** Per-peer allowed and refused counts over a sliding window. */
export class CallLedger {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly opts: CallLedgerOptions = DEFAULT_CALL_WINDOW) {}

  /** The window the totals cover, in whole seconds. */
  get windowSeconds(): number {
    return Math.max(1, Math.round(this.opts.windowMs / 1000));
  }

  /** Counts one call let through. `peer`: its SPIFFE ID, or '' when not proven. */
  allowed(now: number, direction: CallDirection, peer: string): void {
    this.bucket(now, direction, peer).allowed++;
  }

  /** Counts one refusal with its reason and detail. */
  refused(now: number, direction: CallDirection, peer: string, reason: string, detail = ''): void {
    const entry = this.entry(direction, peer);
    const b = this.bucketOf(entry, now);
    const known = b.refused.has(reason) || entry.details.has(reason);
    const r = known || entry.details.size < SIDECAR_REPORT_LIMITS.maxReasons - 1 ? reason : OTHER_REASON;
    b.refused.set(r, (b.refused.get(r) ?? 0) + 1);
    entry.details.set(r, detail.slice(0, SIDECAR_REPORT_LIMITS.maxDetail));
  }

  /** The window's totals at `now`, sorted by direction then peer; entries with nothing left in the window are dropped. */
  snapshot(now: number): ReportedCalls[] {
    const from = now - this.opts.windowMs;
    const out: ReportedCalls[] = [];
    for (const [key, e] of this.entries) {
      e.buckets = e.buckets.filter((b) => b.start + this.opts.bucketMs > from);
      if (e.buckets.length === 0) {
        this.entries.delete(key);
        continue;
      }
      let allowed = 0;
      const refused = new Map<string, number>();
      for (const b of e.buckets) {
        allowed += b.allowed;
        for (const [r, n] of b.refused) refused.set(r, (refused.get(r) ?? 0) + n);
      }
      for (const r of [...e.details.keys()]) if (!refused.has(r)) e.details.delete(r);
      out.push({
        peer: e.peer,
        direction: e.direction,
        allowed,
        refused: [...refused.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([reason, count]) => ({ reason, count, detail: e.details.get(reason) ?? '' })),
      });
    }
    return out.sort((a, b) => a.direction.localeCompare(b.direction) || a.peer.localeCompare(b.peer));
  }

  private bucket(now: number, direction: CallDirection, peer: string): Bucket {
    return this.bucketOf(this.entry(direction, peer), now);
  }

  private entry(direction: CallDirection, peer: string): Entry {
    let key = `${direction} ${peer}`;
    let e = this.entries.get(key);
    if (e) return e;
    // Two places stay free for the `*` entries of both directions.
    if (this.entries.size >= SIDECAR_REPORT_LIMITS.maxCalls - 2) {
      peer = OTHER_PEERS;
      key = `${direction} ${peer}`;
      e = this.entries.get(key);
      if (e) return e;
    }
    e = { peer, direction, buckets: [], details: new Map() };
    this.entries.set(key, e);
    return e;
  }

  private bucketOf(e: Entry, now: number): Bucket {
    const start = now - (now % this.opts.bucketMs);
    const last = e.buckets[e.buckets.length - 1];
    if (last && last.start === start) return last;
    const b: Bucket = { start, allowed: 0, refused: new Map() };
    e.buckets.push(b);
    const from = now - this.opts.windowMs;
    if (e.buckets[0]!.start + this.opts.bucketMs <= from) e.buckets = e.buckets.filter((x) => x.start + this.opts.bucketMs > from);
    return b;
  }
}
