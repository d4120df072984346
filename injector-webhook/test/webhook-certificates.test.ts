import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { issueServingCert, makeWebhookCa, servingCertDecision } from '../src/kubernetes/webhook-certificates';
import { withCaBundle } from '../src/kubernetes/ca-bundle-publisher';

const T0 = new Date('2026-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);
const DAY = 86_400_000;

describe('webhook certificates', () => {
  it('Should make a CA and a serving certificate that chains to it, names the DNS names and IPs, and never outlives the CA', async () => {
    const ca = await makeWebhookCa(T0, 30 * DAY);
    const leaf = await issueServingCert(ca, { dnsNames: ['trellis-injector.trellis-system.svc'], ipAddresses: ['127.0.0.1'], now: T0, validityMs: 90 * DAY });
    const c = new X509Certificate(leaf.certPem);
    const issuer = new X509Certificate(ca.certPem);
    expect(c.checkIssued(issuer) && c.verify(issuer.publicKey)).to.equal(true);
    expect(c.subjectAltName).to.include('DNS:trellis-injector.trellis-system.svc').and.include('IP Address:127.0.0.1');
    expect(c.ca).to.equal(false);
    expect(new Date(c.validTo).getTime()).to.be.at.most(new Date(issuer.validTo).getTime());
  });

  const ca = { notBefore: T0, notAfter: at(3000 * DAY) };
  const cert = { notBefore: T0, notAfter: at(90 * DAY), dnsNames: ['a.svc'], issuedByCa: true };
  const table: Array<[string, Parameters<typeof servingCertDecision>[0], Date, string]> = [
    ['nothing stored', { ca: null, cert: null }, T0, 'renew-ca'],
    ['a fresh pair', { ca, cert }, at(10 * DAY), 'keep'],
    ['a certificate past 2/3 of its life', { ca, cert }, at(61 * DAY), 'renew-cert'],
    ['a certificate lacking a wanted name', { ca, cert: { ...cert, dnsNames: ['b.svc'] } }, at(DAY), 'renew-cert'],
    ['a certificate from another CA', { ca, cert: { ...cert, issuedByCa: false } }, at(DAY), 'renew-cert'],
    ['a CA past 2/3 of its life', { ca, cert }, at(2001 * DAY), 'renew-ca'],
  ];
  for (const [name, w, now, action] of table) {
    it(`Should decide ${action} for ${name}`, () => {
      expect(servingCertDecision(w, ['a.svc'], now).action).to.equal(action);
    });
  }

  it('Should set caBundle on every webhook of a configuration, and change nothing when it is already set', () => {
    const cfg = { webhooks: [{ name: 'a', clientConfig: { url: 'https://x' } }, { name: 'b', clientConfig: { url: 'https://x', caBundle: 'old' } }] };
    const next = withCaBundle(cfg, 'NEW')!;
    expect(next.webhooks!.map((w) => w.clientConfig?.caBundle)).to.deep.equal(['NEW', 'NEW']);
    expect(next.webhooks![0]!.clientConfig!.url).to.equal('https://x');
    expect(withCaBundle(next, 'NEW')).to.equal(null);
  });
});
