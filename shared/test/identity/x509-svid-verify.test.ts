import { expect } from 'chai';
import { parseCertificates } from '../../src/x509/certificate-facts';
import { pemToDer } from '../../src/x509/pem';
import { createTrustBundle, parsePemBundle } from '../../src/x509/trust-bundle';
import { PathErrorCode } from '../../src/x509/path-validation';
import { Oid } from '../../src/x509/oids';
import { SvidErrorCode } from '../../src/identity/x509-svid';
import { verifyX509Svid } from '../../src/identity/x509-svid-verify';
import { CORPORA, describeWith, readCorpusFile } from '@trellis/testkit';

describeWith(CORPORA, 'X.509-SVID verification against a trust bundle', () => {
  // go-spiffe's ECDSA chain omits its root, so its intermediate serves as the trust anchor (corpus SOURCE.md).
  const [leaf, intermediate] = parseCertificates(pemToDer(readCorpusFile('go-spiffe', 'x509svid', 'good-leaf-and-intermediate.pem')));
  const bundle = createTrustBundle('example.org', [intermediate!]);
  const inWindow = new Date('2020-03-24T14:30:00Z');

  it('accepts the go-spiffe leaf chained to its intermediate at a time inside both windows', () => {
    const v = verifyX509Svid([leaf!, intermediate!], bundle, { now: inWindow, requiredEku: Oid.clientAuth });
    expect(v.ok && v.spiffeId.toString()).to.equal('spiffe://example.org/workload-1');
    expect(v.ok && v.path.length).to.equal(2);
  });

  it('accepts the leaf alone when the bundle holds its issuer', () => {
    expect(verifyX509Svid([leaf!], bundle, { now: inWindow }).ok).to.equal(true);
  });

  it('refuses an expired chain', () => {
    expect(verifyX509Svid([leaf!, intermediate!], bundle, { now: new Date('2021-01-01T00:00:00Z') })).to.include({ ok: false, code: SvidErrorCode.EXPIRED });
  });

  it('refuses when only another trust domain has a bundle', () => {
    const foreign = createTrustBundle('other.org', [intermediate!]);
    expect(verifyX509Svid([leaf!], foreign, { now: inWindow })).to.include({ ok: false, code: SvidErrorCode.NO_BUNDLE_FOR_TRUST_DOMAIN });
    expect(verifyX509Svid([leaf!], new Map([['other.org', foreign]]), { now: inWindow })).to.include({ ok: false, code: SvidErrorCode.NO_BUNDLE_FOR_TRUST_DOMAIN });
  });

  it('refuses a chain that does not reach the bundle of its own trust domain', () => {
    const unrelated = parsePemBundle('example.org', readCorpusFile('go-spiffe', 'x509bundle', 'certs.pem'));
    expect(verifyX509Svid([leaf!, intermediate!], unrelated, { now: inWindow })).to.include({ ok: false, code: PathErrorCode.UNTRUSTED });
  });

  it('trusts nothing with an empty bundle', () => {
    expect(verifyX509Svid([leaf!], createTrustBundle('example.org', []), { now: inWindow })).to.include({ ok: false, code: PathErrorCode.UNTRUSTED });
  });

  it('refuses an empty chain and a profile violation before looking at the bundle', () => {
    expect(verifyX509Svid([], bundle, { now: inWindow })).to.include({ ok: false, code: SvidErrorCode.NO_CERTIFICATES });
    const [caTrue] = parseCertificates(pemToDer(readCorpusFile('go-spiffe', 'x509svid', 'wrong-leaf-ca-true.pem')));
    expect(verifyX509Svid([caTrue!], bundle, { now: new Date('2021-01-01T00:00:00Z') })).to.include({ ok: false, code: SvidErrorCode.LEAF_IS_CA, index: 0 });
  });
});
