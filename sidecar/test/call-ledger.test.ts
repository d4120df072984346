/**
 * The call ledger: per-peer allowed and refused counts over a sliding
 * window, bounded however many peers and reasons a flood brings, and always
 * a report the control plane accepts. Time is a parameter.
 */
import { expect } from 'chai';
import { decodeSidecarReport, encodeSidecarReport, fitSidecarReport, SIDECAR_REPORT_LIMITS } from '@trellis/shared';
import { CallLedger } from '../src/metrics/call-ledger';
import { SidecarMetrics } from '../src/metrics/sidecar-metrics';

const FRONTEND = 'spiffe://trellis.local/ns/shop/sa/frontend';
const PAYMENTS = 'spiffe://trellis.local/ns/shop/sa/payments';
const T0 = Date.parse('2030-01-01T00:00:00Z');

function reportOf(l: CallLedger, now: number): ReturnType<typeof decodeSidecarReport> {
  return decodeSidecarReport(encodeSidecarReport(fitSidecarReport({ windowSeconds: l.windowSeconds, calls: l.snapshot(now), workload: { ready: true, readyReason: 'ready', dataPath: 'node', renewAt: null, rotations: [] } })));
}

describe('call ledger (the calls of the sidecar report)', () => {
  it('Should count allowed and refused calls per peer and direction, keeping the last detail of each reason', () => {
    const l = new CallLedger();
    l.allowed(T0, 'inbound', FRONTEND);
    l.allowed(T0 + 1, 'inbound', FRONTEND);
    l.refused(T0 + 2, 'inbound', FRONTEND, 'authz_denied', 'first');
    l.refused(T0 + 3, 'inbound', FRONTEND, 'authz_denied', 'second');
    l.refused(T0 + 4, 'inbound', '', 'handshake_failed');
    l.allowed(T0 + 5, 'outbound', PAYMENTS);
    expect(l.snapshot(T0 + 6)).to.deep.equal([
      { peer: '', direction: 'inbound', allowed: 0, refused: [{ reason: 'handshake_failed', count: 1, detail: '' }] },
      { peer: FRONTEND, direction: 'inbound', allowed: 2, refused: [{ reason: 'authz_denied', count: 2, detail: 'second' }] },
      { peer: PAYMENTS, direction: 'outbound', allowed: 1, refused: [] },
    ]);
  });

  it('Should let counts older than the window drop out, and forget a peer with nothing left in it', () => {
    const l = new CallLedger({ windowMs: 60_000, bucketMs: 10_000 });
    l.refused(T0, 'inbound', FRONTEND, 'revoked', 'serial 1a is revoked');
    l.allowed(T0 + 30_000, 'inbound', FRONTEND);
    expect(l.snapshot(T0 + 45_000)[0]).to.deep.include({ allowed: 1, refused: [{ reason: 'revoked', count: 1, detail: 'serial 1a is revoked' }] });
    // A bucket counts while any part of it is inside the window.
    expect(l.snapshot(T0 + 75_000)[0]).to.deep.include({ allowed: 1, refused: [] });
    expect(l.snapshot(T0 + 105_000)).to.deep.equal([]);
  });

  it('Should stay within the report bounds under a flood of peers and reasons, and give a report the control plane accepts', () => {
    const l = new CallLedger();
    for (let i = 0; i < 1000; i++) l.refused(T0, 'inbound', `spiffe://trellis.local/ns/flood/sa/w${i}`, 'authz_denied', 'x'.repeat(1000));
    for (let i = 0; i < 40; i++) l.refused(T0, 'outbound', PAYMENTS, `reason_${i}`);
    expect(l.snapshot(T0 + 1)[0]!.refused[0]!.detail).to.have.length(SIDECAR_REPORT_LIMITS.maxDetail);
    const r = reportOf(l, T0 + 1);
    expect(r.calls.length).to.be.at.most(SIDECAR_REPORT_LIMITS.maxCalls);
    // Fitting the size bound drops details and folds peers, never a count.
    const inbound = r.calls.filter((c) => c.direction === 'inbound');
    expect(inbound.reduce((n, c) => n + c.refused.reduce((m, x) => m + x.count, 0), 0)).to.equal(1000);
    expect(inbound.find((c) => c.peer === '*')!.refused[0]!.count).to.be.greaterThan(1000 - SIDECAR_REPORT_LIMITS.maxCalls);
    const reasons = r.calls.filter((c) => c.direction === 'outbound').flatMap((c) => c.refused);
    expect(reasons.length).to.be.at.most(SIDECAR_REPORT_LIMITS.maxReasons);
    expect(reasons.reduce((n, x) => n + x.count, 0)).to.equal(40);
    expect(reasons.map((x) => x.reason)).to.include('other');
  });

  it('Should be fed by the refusal metric: each counted refusal is in the ledger against its peer', () => {
    let now = T0;
    const m = new SidecarMetrics({ certExpirySeconds: () => undefined, ready: () => true, processMetrics: false, now: () => now });
    m.refuse('inbound', 'authz_denied', FRONTEND, 'RBAC: no ALLOW policy matched');
    m.refuse('inbound', 'not_ready');
    m.allow('inbound', PAYMENTS);
    now += 1000;
    expect(m.calls.snapshot(now).map((c) => [c.peer, c.allowed, c.refused.map((r) => r.reason).join()])).to.deep.equal([
      ['', 0, 'not_ready'],
      [FRONTEND, 0, 'authz_denied'],
      [PAYMENTS, 1, ''],
    ]);
  });
});
