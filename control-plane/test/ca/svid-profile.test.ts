import { expect } from 'chai';
import { CaError } from '../../src/ca/ca-error';
import { checkCsrIdentity, svidValidity } from '../../src/ca/svid-profile';

const NOW = new Date('2026-03-01T12:00:00.500Z');
const INTERMEDIATE = { notBefore: new Date('2026-01-01T00:00:00Z'), notAfter: new Date('2027-01-01T00:00:00Z') };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(CaError);
    return (err as CaError).code;
  }
  return undefined;
}

describe('SVID profile decisions', () => {
  it('Should back-date notBefore by 60 s and default the TTL to one hour, in whole seconds', () => {
    const v = svidValidity(NOW, undefined, INTERMEDIATE);
    expect(v.notBefore.toISOString()).to.equal('2026-03-01T11:59:00.000Z');
    expect(v.notAfter.toISOString()).to.equal('2026-03-01T13:00:00.000Z');
  });

  it('Should never let an SVID outlive its intermediate', () => {
    const late = new Date(INTERMEDIATE.notAfter.getTime() - 10 * 60_000);
    const v = svidValidity(late, 3600, INTERMEDIATE);
    expect(v.notAfter.getTime()).to.equal(INTERMEDIATE.notAfter.getTime());
  });

  it('Should never back-date before the intermediate became valid', () => {
    const v = svidValidity(new Date(INTERMEDIATE.notBefore.getTime() + 5000), 3600, INTERMEDIATE);
    expect(v.notBefore.getTime()).to.equal(INTERMEDIATE.notBefore.getTime());
  });

  const ttls: Array<[number | undefined, string | undefined]> = [
    [60, undefined],
    [86_400, undefined],
    [59, 'TRELLIS_CA_TTL_OUT_OF_RANGE'],
    [86_401, 'TRELLIS_CA_TTL_OUT_OF_RANGE'],
    [0, 'TRELLIS_CA_TTL_OUT_OF_RANGE'],
    [-3600, 'TRELLIS_CA_TTL_OUT_OF_RANGE'],
    [90.5, 'TRELLIS_CA_TTL_OUT_OF_RANGE'],
    [Number.NaN, 'TRELLIS_CA_TTL_OUT_OF_RANGE'],
  ];
  for (const [ttl, code] of ttls) {
    it(`Should ${code ? 'refuse' : 'accept'} a TTL of ${ttl} seconds`, () => {
      expect(codeOf(() => svidValidity(NOW, ttl, INTERMEDIATE))).to.equal(code);
    });
  }

  it('Should refuse to issue when the intermediate has expired or is not yet valid', () => {
    expect(codeOf(() => svidValidity(INTERMEDIATE.notAfter, 3600, INTERMEDIATE))).to.equal('TRELLIS_CA_INTERMEDIATE_EXPIRED');
    expect(codeOf(() => svidValidity(new Date('2025-12-31T23:59:59Z'), 3600, INTERMEDIATE))).to.equal('TRELLIS_CA_INTERMEDIATE_EXPIRED');
  });

  const id = 'spiffe://example.org/ns/default/sa/web';
  const identities: Array<[string, { uris: string[]; requestsCa: boolean }, string | undefined]> = [
    ['no URI SAN', { uris: [], requestsCa: false }, undefined],
    ['exactly the authorized ID', { uris: [id], requestsCa: false }, undefined],
    ['another ID', { uris: ['spiffe://example.org/ns/default/sa/admin'], requestsCa: false }, 'TRELLIS_CA_CSR_IDENTITY_MISMATCH'],
    ['the ID with different case', { uris: [id.toUpperCase()], requestsCa: false }, 'TRELLIS_CA_CSR_IDENTITY_MISMATCH'],
    ['two URIs including the authorized one', { uris: [id, id], requestsCa: false }, 'TRELLIS_CA_CSR_IDENTITY_MISMATCH'],
    ['a CA certificate', { uris: [id], requestsCa: true }, 'TRELLIS_CA_CSR_IDENTITY_MISMATCH'],
  ];
  for (const [name, req, code] of identities) {
    it(`Should ${code ? 'refuse' : 'accept'} a CSR asking for ${name}`, () => {
      expect(codeOf(() => checkCsrIdentity(req, id))).to.equal(code);
    });
  }
});
