import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { TestCa } from '@trellis/testkit';
import { spiffeIdOfUriSans, splitSubjectAltNameText, trustDomainOfCaUriSans, uriSansOfPeerCertificate } from '../../src/identity/uri-san';
import { parseCertificate } from '../../src/x509/certificate-facts';
import { pemToDer } from '../../src/x509/pem';

describe('URI SANs of a peer certificate (one reader for every package)', () => {
  it("Should read the URI SANs of Node's subjectaltname text the way the certificate holds them, even when another name carries a comma", async () => {
    const ca = await TestCa.create('example.org');
    // Node JSON-quotes a value holding a comma; a naive split makes a second "URI:" entry out of this DNS name.
    const leaf = await ca.issueLeaf('spiffe://example.org/w', { dnsNames: ['x, URI:spiffe://example.org/admin'] });
    const text = new X509Certificate(leaf.pem).subjectAltName;
    expect(text).to.contain('"');
    const fromText = uriSansOfPeerCertificate({ subjectaltname: text });
    expect(fromText).to.deep.equal(parseCertificate(pemToDer(leaf.pem)[0]!).subjectAltName.uris);
    expect(fromText).to.deep.equal(['spiffe://example.org/w']);
  });

  it('Should unquote JSON-quoted values and keep plain ones as they are', () => {
    expect(splitSubjectAltNameText('URI:spiffe://a/b, DNS:"c,d", IP Address:10.0.0.1')).to.deep.equal(['URI:spiffe://a/b', 'DNS:c,d', 'IP Address:10.0.0.1']);
    expect(splitSubjectAltNameText('')).to.deep.equal([]);
  });

  it('Should give no URI SAN for text Node would not write (an unterminated quote)', () => {
    expect(uriSansOfPeerCertificate({ subjectaltname: 'URI:"spiffe://a/b' })).to.deep.equal([]);
    expect(uriSansOfPeerCertificate({})).to.deep.equal([]);
  });

  it('Should accept exactly one URI SAN that is a valid SPIFFE ID, and say why otherwise', () => {
    const ok = spiffeIdOfUriSans(['spiffe://a/b']);
    expect(ok.ok && ok.spiffeId.toString()).to.equal('spiffe://a/b');
    expect(spiffeIdOfUriSans([])).to.include({ ok: false, refusal: 'no_uri_san' });
    expect(spiffeIdOfUriSans(['spiffe://a/b', 'spiffe://a/c'])).to.include({ ok: false, refusal: 'multiple_uri_sans' });
    expect(spiffeIdOfUriSans(['spiffe://a/b%41'])).to.include({ ok: false, refusal: 'bad_spiffe_id', cause: 'TRELLIS_SPIFFE_ID_PERCENT_ENCODED' });
  });

  it('Should take a CA certificate trust domain only from a single bare spiffe://<td> URI SAN', () => {
    expect(trustDomainOfCaUriSans(['spiffe://example.org'])).to.deep.equal({ ok: true, trustDomain: 'example.org' });
    for (const uris of [[], ['spiffe://example.org/x'], ['spiffe://Example.org'], ['spiffe://a', 'spiffe://b'], ['https://example.org']]) {
      expect(trustDomainOfCaUriSans(uris), JSON.stringify(uris)).to.include({ ok: false });
    }
  });
});
