/**
 * The service graph: who called whom over the sidecars' report windows,
 * with allowed and refused counts per edge and the refusal reasons, merged
 * from the last report of every connected sidecar. Pure.
 *
 * Each report is attributed to the authenticated identity of the stream it
 * came on (`reporter`), never to anything it says: a sidecar can only speak
 * for its own end of an edge. Its inbound entries are edges peer → reporter,
 * its outbound entries reporter → peer. Both ends may report one call: the
 * callee is the one that enforces policy, so an edge's `allowed` is the
 * callee's count when the callee reported on that caller, else the caller's
 * (a callee without a sidecar); refusals of both ends add up, each reason
 * marked with the end that refused (`inbound`: the callee, `outbound`: the
 * caller). The peer '' stands for callers whose identity was not proven,
 * '*' for peers a sidecar folded together past its bounds.
 */
import type { SidecarReport } from '@trellis/shared';

/** One refusal reason on an edge. */
export interface EdgeRefusal {
  readonly reason: string;
  readonly count: number;
  /** The last detail either end gave (a policy decision's reason, a certificate check). */
  readonly detail: string;
  /** Which end refused: `inbound` (the callee) or `outbound` (the caller). */
  readonly by: 'inbound' | 'outbound';
}

/** Calls from one identity to another over the window. */
export interface GraphEdge {
  /** The caller's SPIFFE ID, '' when not proven, '*' for folded peers. */
  readonly from: string;
  readonly to: string;
  readonly allowed: number;
  readonly refused: number;
  readonly reasons: readonly EdgeRefusal[];
}

/** The graph. */
export interface ServiceGraph {
  /** Every identity that reported or appears on an edge, sorted. */
  readonly nodes: readonly string[];
  /** Sorted by caller, then callee. */
  readonly edges: readonly GraphEdge[];
  /** The longest window any report covers, seconds (0 without reports). */
  readonly windowSeconds: number;
}

/** A report and who sent it. */
export interface AttributedReport {
  /** The stream's authenticated SPIFFE ID. */
  readonly reporter: string;
  readonly report: SidecarReport;
}

interface Acc {
  calleeAllowed: number;
  calleeSeen: boolean;
  callerAllowed: number;
  reasons: Map<string, { reason: string; count: number; detail: string; by: 'inbound' | 'outbound' }>;
}

/** Merges the reports into one graph; `identities` are nodes even without edges (connected sidecars). */
export function serviceGraph(reports: readonly AttributedReport[], identities: readonly string[] = []): ServiceGraph {
  const edges = new Map<string, { from: string; to: string; acc: Acc }>();
  const nodes = new Set<string>(identities);
  let windowSeconds = 0;
  const accOf = (from: string, to: string): Acc => {
    const key = JSON.stringify([from, to]);
    let e = edges.get(key);
    if (!e) edges.set(key, (e = { from, to, acc: { calleeAllowed: 0, calleeSeen: false, callerAllowed: 0, reasons: new Map() } }));
    return e.acc;
  };
  for (const { reporter, report } of reports) {
    nodes.add(reporter);
    windowSeconds = Math.max(windowSeconds, report.windowSeconds);
    for (const c of report.calls) {
      const inbound = c.direction === 'inbound';
      const acc = inbound ? accOf(c.peer, reporter) : accOf(reporter, c.peer);
      if (inbound) {
        acc.calleeAllowed += c.allowed;
        acc.calleeSeen = true;
      } else acc.callerAllowed += c.allowed;
      for (const r of c.refused) {
        const k = `${c.direction} ${r.reason}`;
        const prev = acc.reasons.get(k);
        if (prev) {
          prev.count += r.count;
          if (r.detail !== '') prev.detail = r.detail;
        } else acc.reasons.set(k, { reason: r.reason, count: r.count, detail: r.detail, by: c.direction });
      }
    }
  }
  const out: GraphEdge[] = [];
  for (const { from, to, acc } of edges.values()) {
    const reasons = [...acc.reasons.values()].filter((r) => r.count > 0).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
    const allowed = acc.calleeSeen ? acc.calleeAllowed : acc.callerAllowed;
    const refused = reasons.reduce((n, r) => n + r.count, 0);
    if (allowed === 0 && refused === 0) continue;
    if (from !== '' && from !== '*') nodes.add(from);
    if (to !== '' && to !== '*') nodes.add(to);
    out.push(Object.freeze({ from, to, allowed, refused, reasons: Object.freeze(reasons.map((r) => Object.freeze({ ...r }))) }));
  }
  out.sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
  return Object.freeze({ nodes: Object.freeze([...nodes].sort()), edges: Object.freeze(out), windowSeconds });
}
