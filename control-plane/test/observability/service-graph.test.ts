/**
 * The service graph merged from sidecar reports: each report speaks only for
 * its own end of an edge (it is attributed to the stream's authenticated
 * identity, never to anything it says), the callee's count of what it let
 * through wins, and refusals of both ends add up with their reasons.
 */
import { expect } from 'chai';
import type { ReportedCalls, SidecarReport } from '@trellis/shared';
import { serviceGraph } from '../../src/observability/service-graph';
import { reportRefusalEvents, MAX_EVENTS_PER_REPORT } from '../../src/observability/report-refusal-events';

const id = (sa: string): string => `spiffe://trellis.local/ns/shop/sa/${sa}`;
const [FRONTEND, PAYMENTS, LEDGER] = [id('frontend'), id('payments'), id('ledger')];
const report = (calls: ReportedCalls[]): SidecarReport => ({ windowSeconds: 300, calls, workload: { ready: true, readyReason: 'ready', dataPath: 'node', renewAt: null, rotations: [] } });

describe('service graph (merged from sidecar reports)', () => {
  it('Should draw inbound entries as peer → reporter and outbound as reporter → peer, preferring the callee\'s allowed count', () => {
    const g = serviceGraph([
      { reporter: FRONTEND, report: report([{ peer: PAYMENTS, direction: 'outbound', allowed: 5, refused: [] }, { peer: LEDGER, direction: 'outbound', allowed: 2, refused: [] }]) },
      { reporter: PAYMENTS, report: report([{ peer: FRONTEND, direction: 'inbound', allowed: 7, refused: [] }]) },
      { reporter: LEDGER, report: report([{ peer: FRONTEND, direction: 'inbound', allowed: 0, refused: [{ reason: 'authz_denied', count: 2, detail: 'RBAC_DENY: no ALLOW policy matched' }] }]) },
    ]);
    expect(g.edges.map((e) => [e.from, e.to, e.allowed, e.refused])).to.deep.equal([
      [FRONTEND, LEDGER, 0, 2],
      [FRONTEND, PAYMENTS, 7, 0],
    ]);
    expect(g.edges[0]!.reasons).to.deep.equal([{ reason: 'authz_denied', count: 2, detail: 'RBAC_DENY: no ALLOW policy matched', by: 'inbound' }]);
    expect(g.nodes).to.deep.equal([FRONTEND, LEDGER, PAYMENTS]);
  });

  it('Should never let a report draw an edge between two other identities: whatever it says, one end is its stream\'s identity', () => {
    // A compromised ledger claims traffic between frontend and payments: it can only ever describe calls to or from ledger.
    const g = serviceGraph([{ reporter: LEDGER, report: report([{ peer: FRONTEND, direction: 'inbound', allowed: 1, refused: [] }, { peer: PAYMENTS, direction: 'outbound', allowed: 1, refused: [] }]) }]);
    for (const e of g.edges) expect([e.from, e.to]).to.include(LEDGER);
  });

  it('Should add the caller\'s refusals to the callee\'s, each marked with the end that refused, and keep unauthenticated callers apart', () => {
    const g = serviceGraph([
      { reporter: FRONTEND, report: report([{ peer: PAYMENTS, direction: 'outbound', allowed: 0, refused: [{ reason: 'wrong_server_identity', count: 1, detail: 'x' }] }]) },
      { reporter: PAYMENTS, report: report([{ peer: FRONTEND, direction: 'inbound', allowed: 1, refused: [{ reason: 'revoked', count: 3, detail: `${FRONTEND} is revoked` }] }, { peer: '', direction: 'inbound', allowed: 0, refused: [{ reason: 'handshake_failed', count: 1, detail: '' }] }]) },
    ]);
    const e = g.edges.find((x) => x.from === FRONTEND)!;
    expect(e).to.deep.include({ allowed: 1, refused: 4 });
    expect(e.reasons.map((r) => [r.reason, r.by])).to.deep.equal([['revoked', 'inbound'], ['wrong_server_identity', 'outbound']]);
    expect(g.edges.find((x) => x.from === '')).to.deep.include({ to: PAYMENTS, refused: 1 });
    expect(g.nodes).to.not.include('');
  });

  it('Should add up the reports of replicas that share an identity', () => {
    const one = report([{ peer: FRONTEND, direction: 'inbound', allowed: 2, refused: [] }]);
    const g = serviceGraph([{ reporter: PAYMENTS, report: one }, { reporter: PAYMENTS, report: one }]);
    expect(g.edges[0]).to.deep.include({ from: FRONTEND, to: PAYMENTS, allowed: 4 });
  });
});

describe('refusal events from sidecar reports', () => {
  const at = new Date('2030-01-01T00:00:00Z');
  it('Should give none for a stream\'s first report, then one per reason whose count grew, attributed to the reporter', () => {
    const a = report([{ peer: FRONTEND, direction: 'inbound', allowed: 0, refused: [{ reason: 'authz_denied', count: 1, detail: 'd' }] }]);
    const b = report([{ peer: FRONTEND, direction: 'inbound', allowed: 0, refused: [{ reason: 'authz_denied', count: 3, detail: 'd2' }] }]);
    expect(reportRefusalEvents(LEDGER, null, a, at)).to.deep.equal([]);
    expect(reportRefusalEvents(LEDGER, a, a, at)).to.deep.equal([]);
    expect(reportRefusalEvents(LEDGER, a, b, at)).to.deep.equal([
      { time: at.toISOString(), kind: 'refusal', action: 'call refused', spiffeId: LEDGER, fields: { by: 'inbound', from: FRONTEND, to: LEDGER, reason: 'authz_denied', count: 2, detail: 'd2' } },
    ]);
  });

  it(`Should give at most ${MAX_EVENTS_PER_REPORT} events for one report`, () => {
    const calls = (n: number): ReportedCalls[] => Array.from({ length: 20 }, (_, i) => ({ peer: id(`w${i}`), direction: 'inbound' as const, allowed: 0, refused: [{ reason: 'revoked', count: n, detail: '' }] }));
    expect(reportRefusalEvents(LEDGER, report(calls(1)), report(calls(2)), at)).to.have.length(MAX_EVENTS_PER_REPORT);
  });
});
