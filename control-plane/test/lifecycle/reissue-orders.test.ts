import { expect } from 'chai';
import { decodeResource, RENEWAL_TYPE_URL } from '@trellis/shared';
import { NO_RENEWAL, ReissueBook, renewalFor, type ReissueOrder } from '../../src/discovery/reissue-orders';

const ID = 'spiffe://example.org/ns/shop/sa/web';
const T0 = Date.parse('2026-01-01T00:00:00Z');
const order = (o: Partial<ReissueOrder> = {}): ReissueOrder => ({ id: 1, orderedAtMs: T0, windowMs: 60_000, spiffeId: null, reason: 'reissue', untilMs: T0 + 60_000 + 3_600_000, ...o });
const iso = (ms: number): string => new Date(ms).toISOString();

describe('Forced re-issue: which sidecar renews, and by when', () => {
  const cases: Array<{ name: string; orders: ReissueOrder[]; issuedAtMs: number | null; jitter?: number; now?: number; renewBy: string | null }> = [
    { name: 'asks nothing when there is no order', orders: [], issuedAtMs: T0 - 1, renewBy: null },
    { name: 'asks a sidecar whose certificate predates the order to renew at its jittered place in the window', orders: [order()], issuedAtMs: T0 - 1000, jitter: 0.25, renewBy: iso(T0 + 15_000) },
    { name: 'leaves alone a sidecar whose certificate was issued at or after the order', orders: [order()], issuedAtMs: T0, renewBy: null },
    { name: 'asks a sidecar whose certificate issuance is unknown (fail closed)', orders: [order()], issuedAtMs: null, jitter: 0, renewBy: iso(T0) },
    { name: 'leaves alone a sidecar another SPIFFE ID is targeted', orders: [order({ spiffeId: 'spiffe://example.org/ns/shop/sa/other' })], issuedAtMs: null, renewBy: null },
    { name: 'asks the SPIFFE ID an order targets', orders: [order({ spiffeId: ID })], issuedAtMs: null, jitter: 0.5, renewBy: iso(T0 + 30_000) },
    { name: 'forgets an order once every certificate issued before it has expired', orders: [order({ untilMs: T0 + 10 })], issuedAtMs: null, now: T0 + 10, renewBy: null },
    { name: 'asks a sidecar that connects after the window to renew now, not in the past', orders: [order()], issuedAtMs: T0 - 1, jitter: 0.1, now: T0 + 120_000, renewBy: iso(T0 + 120_000) },
    { name: 'takes the earliest deadline among matching orders', orders: [order({ id: 1, orderedAtMs: T0 + 5000 }), order({ id: 2, windowMs: 4000 })], issuedAtMs: T0 - 1, jitter: 0.5, renewBy: iso(T0 + 2000) },
  ];
  for (const c of cases) {
    it(`Should say it ${c.name}`, () => {
      const r = renewalFor(c.orders, { spiffeId: ID, issuedAtMs: c.issuedAtMs }, () => c.jitter ?? 0, c.now ?? T0);
      expect(r.renewBy).to.equal(c.renewBy);
      if (c.renewBy === null) expect(r).to.deep.equal(NO_RENEWAL);
      else expect(r.orderedAt).to.not.equal(null);
    });
  }

  it('Should remember serials issued while an order is live, whatever their spelling, and forget them with the order', () => {
    const book = new ReissueBook(3_600_000);
    book.noteIssued('0aBc', T0 - 10);
    expect(book.issuedAt('abc'), 'nothing is remembered without a live order').to.equal(null);
    const o = book.order({ nowMs: T0, windowMs: 1000, spiffeId: null, reason: 'reissue' });
    book.noteIssued('00:0A:BC', T0 + 5);
    expect(book.issuedAt('abc')).to.equal(T0 + 5);
    expect(book.live(T0 + 1)).to.deep.equal([o]);
    expect(book.live(o.untilMs)).to.deep.equal([]);
    expect(book.issuedAt('abc')).to.equal(null);
  });

  it('Should refuse a renewal resource with a bad date or only one of renewBy and orderedAt', () => {
    const bad = (body: unknown, field: string): void => {
      try {
        decodeResource(RENEWAL_TYPE_URL, JSON.stringify(body));
        expect.fail(`accepted ${JSON.stringify(body)}`);
      } catch (err) {
        expect((err as { code: string }).code).to.equal('TRELLIS_PROTOCOL_BAD_RESOURCE');
        expect((err as { details: { field: string } }).details.field).to.equal(field);
      }
    };
    bad({ renewBy: 'tomorrow', orderedAt: iso(T0), reason: 'reissue' }, 'renewBy');
    bad({ renewBy: iso(T0), orderedAt: null, reason: 'reissue' }, 'renewBy');
    bad({ renewBy: null, orderedAt: null }, 'reason');
    expect(decodeResource(RENEWAL_TYPE_URL, JSON.stringify(NO_RENEWAL))).to.deep.equal(NO_RENEWAL);
  });
});
