/**
 * Audit events for the refusals a sidecar reports on the data path: for
 * each (peer, direction, reason) whose count grew since the same stream's
 * previous report, one `call refused` event attributed to the reporting
 * stream's identity. The first report of a stream yields none (its counts
 * may predate the stream: a reconnect must not replay them), and at most
 * MAX_EVENTS_PER_REPORT come from one report, so a noisy sidecar cannot
 * flush the feed. Pure.
 */
import type { SidecarReport } from '@trellis/shared';
import type { AuditEventInit } from './audit-feed';

/** Events one report may add to the feed at most. */
export const MAX_EVENTS_PER_REPORT = 8;

/** The events for `next` after `prev` from `reporter`, at `time`. */
export function reportRefusalEvents(reporter: string, prev: SidecarReport | null, next: SidecarReport, time: Date): AuditEventInit[] {
  if (prev === null) return [];
  const before = new Map<string, number>();
  for (const c of prev.calls) for (const r of c.refused) before.set(`${c.direction} ${c.peer} ${r.reason}`, r.count);
  const out: AuditEventInit[] = [];
  for (const c of next.calls) {
    for (const r of c.refused) {
      const grew = r.count - (before.get(`${c.direction} ${c.peer} ${r.reason}`) ?? 0);
      if (grew <= 0) continue;
      if (out.length >= MAX_EVENTS_PER_REPORT) return out;
      const caller = c.direction === 'inbound' ? c.peer : reporter;
      const callee = c.direction === 'inbound' ? reporter : c.peer;
      out.push({ time: time.toISOString(), kind: 'refusal', action: 'call refused', spiffeId: reporter, fields: { by: c.direction, from: caller, to: callee, reason: r.reason, count: grew, detail: r.detail } });
    }
  }
  return out;
}
