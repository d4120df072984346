/**
 * The sidecar report's JSON contract: what a sidecar sends decodes to the
 * same value, and anything malformed or over its bounds is refused with
 * TRELLIS_PROTOCOL_BAD_REPORT naming the field, before the control plane
 * keeps any of it.
 */
import { expect } from 'chai';
import { decodeSidecarReport, encodeSidecarReport, SIDECAR_REPORT_LIMITS, type SidecarReport } from '../../src/protocol/sidecar-report';
import { ProtocolError } from '../../src/protocol/resources';

const PAYMENTS = 'spiffe://trellis.local/ns/shop/sa/payments';
const valid: SidecarReport = {
  windowSeconds: 300,
  calls: [
    { peer: PAYMENTS, direction: 'inbound', allowed: 3, refused: [{ reason: 'authz_denied', count: 2, detail: 'RBAC_DENY: no ALLOW policy matched' }] },
    { peer: '', direction: 'inbound', allowed: 0, refused: [{ reason: 'handshake_failed', count: 1, detail: '' }] },
    { peer: '*', direction: 'outbound', allowed: 9, refused: [] },
  ],
  workload: {
    ready: true,
    readyReason: 'ready',
    dataPath: 'native',
    renewAt: '2030-01-01T00:00:30.000Z',
    rotations: [{ serial: '1a2b', notBefore: '2030-01-01T00:00:00.000Z', notAfter: '2030-01-01T00:01:00.000Z', installedAt: '2030-01-01T00:00:01.000Z' }],
  },
};

function refused(body: unknown): ProtocolError {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  try {
    decodeSidecarReport(buf);
  } catch (err) {
    expect(err).to.be.instanceOf(ProtocolError);
    expect((err as ProtocolError).code).to.equal('TRELLIS_PROTOCOL_BAD_REPORT');
    return err as ProtocolError;
  }
  throw new Error('expected TRELLIS_PROTOCOL_BAD_REPORT');
}

const withCalls = (calls: unknown[]): unknown => ({ ...valid, calls });
const withWorkload = (w: Record<string, unknown>): unknown => ({ ...valid, workload: { ...valid.workload, ...w } });
const call = (extra: Record<string, unknown>): unknown => ({ peer: PAYMENTS, direction: 'inbound', allowed: 0, refused: [], ...extra });

describe('sidecar report (DiscoveryRequest.report)', () => {
  it('Should decode what a sidecar encodes to the same value, frozen', () => {
    const decoded = decodeSidecarReport(encodeSidecarReport(valid));
    expect(decoded).to.deep.equal(valid);
    expect(Object.isFrozen(decoded.calls[0])).to.equal(true);
  });

  it('Should drop fields the contract does not define, so nothing unbounded is kept', () => {
    const decoded = decodeSidecarReport(Buffer.from(JSON.stringify({ ...valid, source: 'spiffe://trellis.local/ns/shop/sa/ledger', extra: 'x'.repeat(100) })));
    expect(decoded).to.deep.equal(valid);
    expect(decoded).to.not.have.property('source');
  });

  const cases: Array<[string, unknown, string]> = [
    ['a document over 32 KiB', Buffer.alloc(SIDECAR_REPORT_LIMITS.maxBytes + 1, 0x20), ''],
    ['text that is not JSON', Buffer.from('{"calls":'), ''],
    ['a window of 0 seconds', { ...valid, windowSeconds: 0 }, 'windowSeconds'],
    ['more than 128 call entries', withCalls(Array.from({ length: 129 }, (_, i) => call({ peer: `${PAYMENTS}${i}` }))), 'calls'],
    ['a peer that is not a SPIFFE ID', withCalls([call({ peer: 'payments' })]), 'calls[0].peer'],
    ['a direction other than inbound or outbound', withCalls([call({ direction: 'sideways' })]), 'calls[0].direction'],
    ['two entries for one peer and direction', withCalls([call({}), call({})]), 'calls[1]'],
    ['a negative count', withCalls([call({ allowed: -1 })]), 'calls[0].allowed'],
    ['a fractional count', withCalls([call({ refused: [{ reason: 'revoked', count: 1.5, detail: '' }] })]), 'calls[0].refused[0].count'],
    ['a reason that is not a label', withCalls([call({ refused: [{ reason: 'Denied!', count: 1, detail: '' }] })]), 'calls[0].refused[0].reason'],
    ['one reason twice', withCalls([call({ refused: [{ reason: 'revoked', count: 1, detail: '' }, { reason: 'revoked', count: 1, detail: '' }] })]), 'calls[0].refused[1].reason'],
    ['more than 16 reasons', withCalls([call({ refused: Array.from({ length: 17 }, (_, i) => ({ reason: `r${i}`, count: 1, detail: '' })) })]), 'calls[0].refused'],
    ['a detail over 256 characters', withCalls([call({ refused: [{ reason: 'revoked', count: 1, detail: 'x'.repeat(257) }] })]), 'calls[0].refused[0].detail'],
    ['a ready that is not a boolean', withWorkload({ ready: 'yes' }), 'workload.ready'],
    ['an unknown data path', withWorkload({ dataPath: 'ebpf' }), 'workload.dataPath'],
    ['a renewal time that is not a date', withWorkload({ renewAt: 'soon' }), 'workload.renewAt'],
    ['a serial that is not lower-case hex', withWorkload({ rotations: [{ ...valid.workload.rotations[0], serial: 'XYZ' }] }), 'workload.rotations[0].serial'],
    ['more than 8 rotations', withWorkload({ rotations: Array.from({ length: 9 }, () => valid.workload.rotations[0]) }), 'workload.rotations'],
    ['no workload', { windowSeconds: 300, calls: [] }, 'workload'],
  ];
  for (const [what, body, field] of cases) {
    it(`Should refuse ${what}, naming the field`, () => {
      const err = refused(body);
      expect(err.details['field']).to.equal(field);
    });
  }
});
