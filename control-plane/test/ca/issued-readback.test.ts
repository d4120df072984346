import { expect } from 'chai';
import * as fc from 'fast-check';
import { createHash, createPublicKey } from 'node:crypto';
import { der, parseCertificate, pemToDer } from '@trellis/shared';
import { CaError } from '../../src/ca/ca-error';
import { loadCertificateAuthority, type CertificateAuthority, type IssuedSvid } from '../../src/ca/certificate-authority';
import { checkIssuedSvid, type ExpectedSvid } from '../../src/ca/issued-check';
import { readBackIssuedSvid } from '../../src/ca/issued-readback';
import { SIGNATURE_ALGORITHMS } from '../../src/ca/key-types';
import { makeCaFixture, type CaFixture } from './ca-fixture';
import { makeCsr } from './csr-fixtures';

const ID = 'spiffe://example.org/ns/default/sa/web';

function ruleOf(fn: () => void): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(CaError);
    expect((err as CaError).code).to.equal('TRELLIS_CA_SELF_CHECK_FAILED');
    return String((err as CaError).details['rule']);
  }
  return undefined;
}

/** What the CA decided for `svid`, read from the CA and the CSR, not from the certificate under test. */
function expectation(ca: CertificateAuthority, svid: IssuedSvid, spkiDer: Buffer, dnsNames?: string[]): ExpectedSvid {
  const intermediate = parseCertificate(pemToDer(ca.intermediatePem)[0]!);
  return {
    serial: Buffer.from(svid.serialHex.length % 2 ? `0${svid.serialHex}` : svid.serialHex, 'hex'),
    spiffeId: svid.spiffeId,
    dnsNames,
    trustDomain: 'example.org',
    notBefore: svid.notBefore,
    notAfter: svid.notAfter,
    spkiDer,
    issuerDer: intermediate.subject,
    issuerKeyId: intermediate.subjectKeyId!,
    algorithm: SIGNATURE_ALGORITHMS['1.2.840.10045.4.3.2']!,
  };
}

function ext(oid: string, critical: boolean, value: Buffer): Buffer {
  return critical ? der.sequence(der.oid(oid), der.boolean(true), der.octetString(value)) : der.sequence(der.oid(oid), der.octetString(value));
}

interface Parts {
  version: Buffer;
  serial: Buffer;
  alg: Buffer;
  issuer: Buffer;
  validity: Buffer;
  subject: Buffer;
  spki: Buffer;
  extensions: Buffer[];
  afterExtensions: Buffer;
  outerAlg: Buffer;
  signature: Buffer;
}

/**
 * Rebuilds a leaf from parts with the shared DER writer, written here from
 * RFC 5280 rather than with the CA's template, so each test can change one thing.
 */
function standardParts(want: ExpectedSvid): Parts {
  const keyBits = der.decodeBitString(want.spkiDer, der.expectTlv(want.spkiDer, der.expectTlv(want.spkiDer, 2, 0x30, 'alg').end, 0x03, 'bits')).bytes;
  return {
    version: der.contextExplicit(0, der.integer(2)),
    serial: der.integer(want.serial),
    alg: want.algorithm.identifierDer,
    issuer: want.issuerDer,
    validity: der.sequence(der.time(want.notBefore), der.time(want.notAfter)),
    subject: der.sequence(),
    spki: want.spkiDer,
    extensions: [
      ext('2.5.29.19', true, der.sequence()),
      ext('2.5.29.15', true, der.namedBits([0])),
      ext('2.5.29.37', false, der.sequence(der.oid('1.3.6.1.5.5.7.3.1'), der.oid('1.3.6.1.5.5.7.3.2'))),
      ext('2.5.29.14', false, der.octetString(createHash('sha1').update(keyBits).digest())),
      ext('2.5.29.35', false, der.sequence(der.contextImplicit(0, want.issuerKeyId))),
      ext('2.5.29.17', true, der.sequence(der.contextImplicit(6, Buffer.from(want.spiffeId)), ...(want.dnsNames ?? []).map((d) => der.contextImplicit(2, Buffer.from(d))))),
    ],
    afterExtensions: Buffer.alloc(0),
    outerAlg: want.algorithm.identifierDer,
    signature: der.bitString(Buffer.alloc(70, 1)),
  };
}

function build(p: Parts): Buffer {
  const tbs = der.sequence(p.version, p.serial, p.alg, p.issuer, p.validity, p.subject, p.spki, der.contextExplicit(3, der.sequence(...p.extensions)), p.afterExtensions);
  return der.sequence(tbs, p.outerAlg, p.signature);
}

describe('The per-request read-back of an issued SVID', () => {
  let fx: CaFixture;
  let ca: CertificateAuthority;
  let svid: IssuedSvid;
  let want: ExpectedSvid;

  before(async () => {
    fx = await makeCaFixture();
    ca = await loadCertificateAuthority(fx.dir);
    const csr = await makeCsr();
    svid = await ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' });
    want = expectation(ca, svid, parseCertificate(svid.leafDer).spki);
  });
  after(() => {
    ca.close();
    fx.cleanup();
  });

  it('Should accept what the CA issued, as the full parser-based check does', () => {
    expect(ruleOf(() => readBackIssuedSvid(svid.leafDer, want))).to.equal(undefined);
    expect(ruleOf(() => checkIssuedSvid(svid.leafDer, want))).to.equal(undefined);
  });

  it('Should accept SVIDs with DNS SANs and for P-384 and RSA keys (RSA with keyEncipherment)', async () => {
    for (const keyType of ['ec-p384', 'rsa-2048'] as const) {
      const s = await ca.issue({ csr: (await makeCsr({ keyType })).der, spiffeId: ID, requester: 'test', dnsNames: ['web.default.svc'] });
      const w = expectation(ca, s, parseCertificate(s.leafDer).spki, ['web.default.svc']);
      expect(ruleOf(() => readBackIssuedSvid(s.leafDer, w)), keyType).to.equal(undefined);
      expect(ruleOf(() => readBackIssuedSvid(s.leafDer, { ...w, dnsNames: undefined })), keyType).to.match(/DNS SANs/);
    }
  });

  it('Should rebuild the issued certificate byte for byte from RFC 5280 parts (so the cases below change one thing each)', () => {
    const p = standardParts(want);
    const rebuilt = build({ ...p, signature: der.encoded(svid.leafDer, lastChild(svid.leafDer)) });
    expect(rebuilt.toString('hex')).to.equal(svid.leafDer.toString('hex'));
  });

  const deviations: Array<[string, (p: Parts, w: ExpectedSvid) => void, RegExp]> = [
    ['a v1 version', (p) => void (p.version = der.contextExplicit(0, der.integer(0))), /version/],
    ['another serial', (p) => void (p.serial = der.integer(Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex'))), /serial/],
    ['an RSA signature algorithm inside', (p) => void (p.alg = SIGNATURE_ALGORITHMS['1.2.840.113549.1.1.11']!.identifierDer), /signature algorithm/],
    ['another outer signature algorithm', (p) => void (p.outerAlg = SIGNATURE_ALGORITHMS['1.2.840.10045.4.3.3']!.identifierDer), /signature algorithm/],
    ['another issuer', (p) => void (p.issuer = der.sequence(der.set(der.sequence(der.oid('2.5.4.3'), der.utf8String('evil'))))), /issuer/],
    ['a notAfter one second later', (p, w) => void (p.validity = der.sequence(der.time(w.notBefore), der.time(new Date(w.notAfter.getTime() + 1000)))), /validity/],
    ['a subject', (p) => void (p.subject = der.sequence(der.set(der.sequence(der.oid('2.5.4.3'), der.utf8String('web'))))), /subject/],
    ['a unique ID after the extensions', (p) => void (p.afterExtensions = der.contextImplicit(2, Buffer.from([0, 1]))), /after the extensions/],
    ['basicConstraints CA:true', (p) => void (p.extensions[0] = ext('2.5.29.19', true, der.sequence(der.boolean(true)))), /basicConstraints/],
    ['basicConstraints not critical', (p) => void (p.extensions[0] = ext('2.5.29.19', false, der.sequence())), /basicConstraints is not critical/],
    ['keyUsage with keyCertSign', (p) => void (p.extensions[1] = ext('2.5.29.15', true, der.namedBits([0, 5]))), /keyCertSign/],
    ['keyUsage keyEncipherment on an EC key', (p) => void (p.extensions[1] = ext('2.5.29.15', true, der.namedBits([0, 2]))), /keyUsage/],
    ['keyUsage without digitalSignature', (p) => void (p.extensions[1] = ext('2.5.29.15', true, der.namedBits([2]))), /digitalSignature/],
    ['keyUsage not critical', (p) => void (p.extensions[1] = ext('2.5.29.15', false, der.namedBits([0]))), /keyUsage is not critical/],
    ['extKeyUsage serverAuth only', (p) => void (p.extensions[2] = ext('2.5.29.37', false, der.sequence(der.oid('1.3.6.1.5.5.7.3.1')))), /extKeyUsage/],
    ['extKeyUsage with codeSigning too', (p) => void (p.extensions[2] = ext('2.5.29.37', false, der.sequence(der.oid('1.3.6.1.5.5.7.3.1'), der.oid('1.3.6.1.5.5.7.3.2'), der.oid('1.3.6.1.5.5.7.3.3')))), /extKeyUsage/],
    ['an SKI that is not the key hash', (p) => void (p.extensions[3] = ext('2.5.29.14', false, der.octetString(Buffer.alloc(20)))), /SKI/],
    ['an AKI of another key', (p) => void (p.extensions[4] = ext('2.5.29.35', false, der.sequence(der.contextImplicit(0, Buffer.alloc(20, 7))))), /AKI/],
    ['no AKI', (p) => void p.extensions.splice(4, 1), /authorityKeyIdentifier is missing/],
    ['a SAN that is not critical', (p, w) => void (p.extensions[5] = ext('2.5.29.17', false, der.sequence(der.contextImplicit(6, Buffer.from(w.spiffeId))))), /subjectAltName is not critical/],
    ['another URI SAN', (p) => void (p.extensions[5] = ext('2.5.29.17', true, der.sequence(der.contextImplicit(6, Buffer.from('spiffe://example.org/ns/default/sa/admin'))))), /URI SAN/],
    ['two URI SANs', (p, w) => void (p.extensions[5] = ext('2.5.29.17', true, der.sequence(der.contextImplicit(6, Buffer.from(w.spiffeId)), der.contextImplicit(6, Buffer.from('spiffe://example.org/x'))))), /URI SAN/],
    ['an email SAN beside the URI', (p, w) => void (p.extensions[5] = ext('2.5.29.17', true, der.sequence(der.contextImplicit(6, Buffer.from(w.spiffeId)), der.contextImplicit(1, Buffer.from('a@b'))))), /tag/],
    ['an unrequested DNS SAN', (p, w) => void (p.extensions[5] = ext('2.5.29.17', true, der.sequence(der.contextImplicit(6, Buffer.from(w.spiffeId)), der.contextImplicit(2, Buffer.from('evil.example'))))), /DNS/],
    ['a duplicate basicConstraints', (p) => void p.extensions.push(ext('2.5.29.19', true, der.sequence())), /duplicate/],
    ['an extra non-critical extension', (p) => void p.extensions.push(ext('1.3.6.1.5.5.7.1.1', false, der.sequence())), /not in the SVID profile/],
    ['an explicit critical FALSE', (p) => void (p.extensions[2] = der.sequence(der.oid('2.5.29.37'), der.boolean(false), der.octetString(der.sequence(der.oid('1.3.6.1.5.5.7.3.1'), der.oid('1.3.6.1.5.5.7.3.2'))))), /critical FALSE/],
    ['a signature BIT STRING with unused bits', (p) => void (p.signature = der.bitString(Buffer.alloc(70, 0x80), 7)), /whole number of bytes/],
    ['bytes after the signature', (p) => void (p.signature = Buffer.concat([p.signature, Buffer.from([0x05, 0x00])])), /after the signature/],
  ];
  for (const [name, change, rule] of deviations) {
    it(`Should refuse a certificate with ${name}`, () => {
      const p = standardParts(want);
      change(p, want);
      expect(ruleOf(() => readBackIssuedSvid(build(p), want))).to.match(rule);
    });
  }

  it('Should refuse a certificate carrying a SPIFFE ID of another trust domain even when it was asked for', () => {
    const w = { ...want, spiffeId: 'spiffe://other.org/ns/default/sa/web' };
    const p = standardParts(w);
    expect(ruleOf(() => readBackIssuedSvid(build(p), w))).to.match(/trust domain/);
  });

  it('Should verify the signature with the intermediate key when asked, and refuse a wrong one', () => {
    const intermediate = parseCertificate(pemToDer(ca.intermediatePem)[0]!);
    const issuerPublicKey = createPublicKey({ key: intermediate.spki, format: 'der', type: 'spki' });
    expect(ruleOf(() => readBackIssuedSvid(svid.leafDer, { ...want, issuerPublicKey }))).to.equal(undefined);
    const p = standardParts(want);
    expect(ruleOf(() => readBackIssuedSvid(build(p), { ...want, issuerPublicKey }))).to.match(/signature does not verify/);
  });

  it('Should refuse every flip of the lowest, highest or all bits of any byte that the full parser-based check refuses (exhaustive)', () => {
    for (let pos = 0; pos < svid.leafDer.length; pos++) {
      for (const xor of [0x01, 0x80, 0xff]) {
        const mutated = Buffer.from(svid.leafDer);
        mutated[pos]! ^= xor;
        if (ruleOf(() => readBackIssuedSvid(mutated, want)) === undefined) {
          expect(ruleOf(() => checkIssuedSvid(mutated, want)), `accepted ^0x${xor.toString(16)} at ${pos}`).to.equal(undefined);
        }
      }
    }
  });

  it('Should never accept a byte change or truncation that the full parser-based check refuses (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: svid.leafDer.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.boolean(), (pos, xor, truncate) => {
        const mutated = truncate ? svid.leafDer.subarray(0, pos) : Buffer.from(svid.leafDer);
        if (!truncate) mutated[pos]! ^= xor;
        const lean = ruleOf(() => readBackIssuedSvid(mutated, want));
        if (lean === undefined) expect(ruleOf(() => checkIssuedSvid(mutated, want)), `accepted a change at ${pos}`).to.equal(undefined);
      }),
      { numRuns: 3000 },
    );
  });
});

function lastChild(cert: Buffer): ReturnType<typeof der.readTlv> {
  const c = der.readWhole(cert, 0x30);
  let t = der.readTlv(cert, c.start, c.end);
  while (t.end < c.end) t = der.readTlv(cert, t.end, c.end);
  return t;
}
