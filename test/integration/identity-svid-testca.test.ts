/**
 * The shared identity code against certificates it did not write: TestCa
 * (@peculiar/x509, built the slow obvious way) crafts SVIDs that break one
 * rule each, and openssl independently confirms what our reader says.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Oid,
  SvidErrorCode,
  createTrustBundle,
  formatPemBundle,
  formatSpiffeBundle,
  parseCertificate,
  parseSpiffeBundle,
  parseX509SvidPem,
  pemToDer,
  validateLeafSvid,
  validateSigningCertificate,
  validateSvidChain,
  verifyX509Svid,
  type CertificateFacts,
} from '@trellis/shared';
import { TestCa, makeTmpDir, openssl, type LeafOptions } from '@trellis/testkit';

// @peculiar/x509 KeyUsageFlags
const DS = 1;
const KE = 4;
const KCS = 32;
const CRL = 64;

function facts(pem: string): CertificateFacts {
  return parseCertificate(pemToDer(pem)[0]!);
}

describe('Identity checks on TestCa certificates', function () {
  this.timeout(30_000);
  let ca: TestCa;
  let other: TestCa;
  let tmp: { dir: string; cleanup: () => void };

  before(async () => {
    ca = await TestCa.create('example.org');
    other = await TestCa.create('other.org');
    tmp = makeTmpDir('trellis-identity-');
  });
  after(() => tmp.cleanup());

  it('accepts a well-formed leaf + intermediate chain that openssl also verifies', async () => {
    const leaf = await ca.issueLeaf('spiffe://example.org/ns/default/sa/web');
    const v = validateSvidChain(facts(leaf.pem), [facts(ca.intermediate.pem)], { now: new Date(), trustDomain: 'example.org' });
    expect(v.ok && v.spiffeId.toString()).to.equal('spiffe://example.org/ns/default/sa/web');
    writeFileSync(join(tmp.dir, 'root.pem'), ca.root.pem);
    writeFileSync(join(tmp.dir, 'int.pem'), ca.intermediate.pem);
    writeFileSync(join(tmp.dir, 'leaf.pem'), leaf.pem);
    const r = openssl(['verify', '-CAfile', join(tmp.dir, 'root.pem'), '-untrusted', join(tmp.dir, 'int.pem'), join(tmp.dir, 'leaf.pem')]);
    expect(r.status, r.stderr).to.equal(0);
  });

  it('reads the same extensions openssl x509 -text prints', async () => {
    const leaf = await ca.issueLeaf('spiffe://example.org/ns/a/sa/b', { dnsNames: ['b.a.svc'], keyUsage: DS | KE });
    const f = facts(leaf.pem);
    const text = openssl(['x509', '-noout', '-text'], leaf.pem).stdout;
    expect(text).to.contain('URI:spiffe://example.org/ns/a/sa/b');
    expect(text).to.contain('DNS:b.a.svc');
    expect(f.subjectAltName.uris).to.deep.equal(['spiffe://example.org/ns/a/sa/b']);
    expect(f.subjectAltName.dnsNames).to.deep.equal(['b.a.svc']);
    expect(text).to.match(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(f.keyUsage).to.include({ critical: true, digitalSignature: true, keyEncipherment: true, keyCertSign: false });
    expect(text).to.match(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(f.basicConstraints).to.include({ present: true, critical: true, ca: false });
    expect(text).to.match(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(f.extKeyUsage.oids).to.deep.equal([Oid.serverAuth, Oid.clientAuth]);
    const serial = openssl(['x509', '-noout', '-serial'], leaf.pem).stdout.trim().replace('serial=', '').toLowerCase();
    expect(f.serialHex).to.equal(serial.replace(/^(00)+(?=.)/, ''));
    const inter = facts(ca.intermediate.pem);
    expect(f.authorityKeyId?.equals(inter.subjectKeyId!)).to.equal(true);
    const interText = openssl(['x509', '-noout', '-text'], ca.intermediate.pem).stdout;
    expect(interText).to.match(/CA:TRUE, pathlen:0/);
    expect(inter.basicConstraints).to.include({ ca: true, pathLen: 0 });
  });

  const broken: [string, string, LeafOptions, string][] = [
    ['a CA:true leaf', 'spiffe://example.org/w', { ca: true }, SvidErrorCode.LEAF_IS_CA],
    ['a leaf with no URI SAN', 'spiffe://example.org/w', { uris: [], dnsNames: ['w.example.org'] }, SvidErrorCode.NO_URI_SAN],
    ['a leaf with two URI SANs', 'spiffe://example.org/w', { uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] }, SvidErrorCode.MULTIPLE_URI_SANS],
    ['a leaf with an https URI SAN', 'spiffe://example.org/w', { uris: ['https://example.org/w'] }, SvidErrorCode.BAD_SPIFFE_ID],
    ['a leaf for the trust domain itself', 'spiffe://example.org', {}, SvidErrorCode.LEAF_ID_WITHOUT_PATH],
    ['a leaf with keyCertSign', 'spiffe://example.org/w', { keyUsage: DS | KCS }, SvidErrorCode.LEAF_HAS_KEY_CERT_SIGN],
    ['a leaf with cRLSign', 'spiffe://example.org/w', { keyUsage: DS | CRL }, SvidErrorCode.LEAF_HAS_CRL_SIGN],
    ['a leaf without digitalSignature', 'spiffe://example.org/w', { keyUsage: KE }, SvidErrorCode.LEAF_MISSING_DIGITAL_SIGNATURE],
    ['a leaf with serverAuth only', 'spiffe://example.org/w', { extKeyUsage: [Oid.serverAuth] }, SvidErrorCode.LEAF_EKU_INCOMPLETE],
    ['a leaf from another trust domain', 'spiffe://other.org/w', {}, SvidErrorCode.WRONG_TRUST_DOMAIN],
    ['an expired leaf', 'spiffe://example.org/w', { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) }, SvidErrorCode.EXPIRED],
    ['a leaf not valid yet', 'spiffe://example.org/w', { notBefore: new Date(Date.now() + 3600_000) }, SvidErrorCode.NOT_YET_VALID],
  ];
  for (const [what, id, opts, code] of broken) {
    it(`rejects ${what} with ${code}`, async () => {
      const leaf = await ca.issueLeaf(id, opts);
      const v = validateLeafSvid(facts(leaf.pem), { trustDomain: 'example.org', now: new Date() });
      expect(v).to.include({ ok: false, code });
    });
  }

  it('treats TestCa roots and intermediates as signing certificates and leaves as not', async () => {
    expect(validateSigningCertificate(facts(ca.root.pem)).ok).to.equal(true);
    expect(validateSigningCertificate(facts(ca.intermediate.pem), { trustDomain: 'example.org' })).to.deep.include({ ok: true });
    const leaf = await ca.issueLeaf('spiffe://example.org/w');
    expect(validateSigningCertificate(facts(leaf.pem))).to.include({ ok: false, code: SvidErrorCode.SIGNING_CERT_NOT_CA });
  });

  it('rejects a chain whose intermediate belongs to another trust domain', async () => {
    const leaf = await ca.issueLeaf('spiffe://example.org/w');
    expect(validateSvidChain(facts(leaf.pem), [facts(other.intermediate.pem)])).to.include({ ok: false, code: SvidErrorCode.WRONG_TRUST_DOMAIN, index: 1 });
  });

  it('loads a TestCa SVID with its key and refuses it with another key', async () => {
    const leaf = await ca.issueLeaf('spiffe://example.org/ns/x/sa/y');
    const svid = parseX509SvidPem(leaf.chainPem, leaf.key.keyPem);
    expect(svid.spiffeId.toString()).to.equal('spiffe://example.org/ns/x/sa/y');
    expect(svid.certificates).to.have.length(2);
    const stranger = await ca.issueLeaf('spiffe://example.org/z');
    expect(() => parseX509SvidPem(leaf.chainPem, stranger.key.keyPem)).to.throw().with.property('code', SvidErrorCode.KEY_MISMATCH);
  });

  it('exports a SPIFFE bundle whose PEM form openssl uses to verify a leaf', async () => {
    const bundle = createTrustBundle('example.org', [facts(ca.root.pem)], { sequenceNumber: 1, refreshHintSeconds: 300 });
    const back = parseSpiffeBundle('example.org', formatSpiffeBundle(bundle));
    expect(back.x509Authorities[0]!.der.equals(facts(ca.root.pem).der)).to.equal(true);
    const leaf = await ca.issueLeaf('spiffe://example.org/w');
    writeFileSync(join(tmp.dir, 'bundle.pem'), formatPemBundle(back));
    writeFileSync(join(tmp.dir, 'chain-int.pem'), ca.intermediate.pem);
    writeFileSync(join(tmp.dir, 'chain-leaf.pem'), leaf.pem);
    const ok = openssl(['verify', '-CAfile', join(tmp.dir, 'bundle.pem'), '-untrusted', join(tmp.dir, 'chain-int.pem'), join(tmp.dir, 'chain-leaf.pem')]);
    expect(ok.status, ok.stderr).to.equal(0);
    writeFileSync(join(tmp.dir, 'other-bundle.pem'), formatPemBundle(createTrustBundle('other.org', [facts(other.root.pem)])));
    const bad = openssl(['verify', '-CAfile', join(tmp.dir, 'other-bundle.pem'), '-untrusted', join(tmp.dir, 'chain-int.pem'), join(tmp.dir, 'chain-leaf.pem')]);
    expect(bad.status).to.not.equal(0);
  });
  it('verifies a TestCa SVID against its bundle and agrees with openssl on an impostor CA', async () => {
    const impostor = await TestCa.create('example.org'); // same names, different keys
    const leaf = await ca.issueLeaf('spiffe://example.org/ns/a/sa/b');
    const chain = [facts(leaf.pem), facts(ca.intermediate.pem)];
    const good = verifyX509Svid(chain, createTrustBundle('example.org', [facts(ca.root.pem)]), { now: new Date(), requiredEku: Oid.serverAuth });
    expect(good.ok && good.spiffeId.toString()).to.equal('spiffe://example.org/ns/a/sa/b');
    const bad = verifyX509Svid(chain, createTrustBundle('example.org', [facts(impostor.root.pem)]), { now: new Date() });
    expect(bad).to.include({ ok: false, code: 'TRELLIS_X509_PATH_UNTRUSTED' });
    writeFileSync(join(tmp.dir, 'impostor.pem'), impostor.root.pem);
    writeFileSync(join(tmp.dir, 'v-int.pem'), ca.intermediate.pem);
    writeFileSync(join(tmp.dir, 'v-leaf.pem'), leaf.pem);
    const r = openssl(['verify', '-CAfile', join(tmp.dir, 'impostor.pem'), '-untrusted', join(tmp.dir, 'v-int.pem'), join(tmp.dir, 'v-leaf.pem')]);
    expect(r.status).to.not.equal(0);
  });

  it('refuses a leaf signed by a key other than its named issuer', async () => {
    const impostor = await TestCa.create('example.org');
    const forged = await impostor.issueLeaf('spiffe://example.org/admin');
    // Presented with the genuine intermediate: names chain, the signature does not.
    const v = verifyX509Svid([facts(forged.pem), facts(ca.intermediate.pem)], createTrustBundle('example.org', [facts(ca.root.pem)]), { now: new Date() });
    expect(v.ok).to.equal(false);
    expect(!v.ok && v.code).to.be.oneOf(['TRELLIS_X509_PATH_BAD_SIGNATURE', 'TRELLIS_X509_PATH_UNTRUSTED']);
  });
});
