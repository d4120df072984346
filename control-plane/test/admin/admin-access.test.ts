import { expect } from 'chai';
import { createTrustBundle, parseCertificate, pemToDer, type CertificateFacts } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { defaultAdminSpiffeId } from '@trellis/shared';
import { decideAdminRequest, type AdminAccessPolicy, type AdminRequestFacts } from '../../src/admin/admin-access';
import { acceptedAdminHosts, isAcceptedHost } from '../../src/admin/admin-host';

const TD = 'example.org';
const ADMIN = defaultAdminSpiffeId(TD);
const facts = (pem: string): CertificateFacts => parseCertificate(pemToDer(pem)[0]!);

describe('admin API access decision (pure)', function () {
  this.timeout(20_000);
  let policy: AdminAccessPolicy;
  let chains: Record<string, CertificateFacts[]>;
  const revoked = { serials: new Set<string>(), ids: new Set<string>() };

  before(async () => {
    const ca = await TestCa.create(TD);
    const rogue = await TestCa.create(TD);
    const chain = async (c: TestCa, id: string, opts = {}): Promise<CertificateFacts[]> => {
      const l = await c.issueLeaf(id, opts);
      return [facts(l.pem), facts(c.intermediate.pem)];
    };
    chains = {
      admin: await chain(ca, ADMIN),
      revokedAdmin: await chain(ca, ADMIN),
      workload: await chain(ca, `spiffe://${TD}/ns/shop/sa/web`),
      rogue: await chain(rogue, ADMIN),
      expired: await chain(ca, ADMIN, { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) }),
      serverOnly: await chain(ca, ADMIN, { extKeyUsage: ['1.3.6.1.5.5.7.3.1'] }),
      otherDomain: await chain(ca, 'spiffe://other.org/ns/trellis-system/sa/trellis-admin'),
    };
    revoked.serials.add(chains['revokedAdmin']![0]!.serialHex.replace(/^0+/, ''));
    policy = {
      trustBundle: createTrustBundle(TD, [facts(ca.root.pem)]),
      allow: new Set([ADMIN]),
      hosts: acceptedAdminHosts('127.0.0.1', 15014, ['10.0.0.7']),
      isRevoked: (serial, id) => revoked.serials.has(serial) || revoked.ids.has(id),
      now: new Date(),
    };
  });

  const req = (o: Partial<AdminRequestFacts> & { chain?: string }): AdminRequestFacts => ({
    method: 'POST',
    path: '/lifecycle/revoke',
    host: '127.0.0.1:15014',
    contentType: 'application/json',
    route: { method: 'POST' },
    tlsVerified: true,
    ...o,
    peerChain: o.chain === undefined ? chains['admin']! : o.chain === '' ? [] : chains[o.chain]!,
  });

  const cases: Array<[string, Partial<AdminRequestFacts> & { chain?: string }, string]> = [
    ['Should allow the admin certificate to change state with JSON', {}, 'allow'],
    ['Should allow anyone to GET /healthz, without a certificate or a matching Host', { method: 'GET', path: '/healthz', route: { method: 'GET' }, chain: '', host: 'evil.example' }, 'allow'],
    ['Should allow anyone to HEAD /metrics', { method: 'HEAD', path: '/metrics', route: { method: 'GET' }, chain: '' }, 'allow'],
    ['Should refuse a POST to /healthz from a stranger as unauthenticated, not as a method error', { path: '/healthz', route: { method: 'GET' }, chain: '' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse a request without a client certificate', { chain: '' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse a GET of /debug/proxies without a client certificate', { method: 'GET', path: '/debug/proxies', route: { method: 'GET' }, chain: '' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse the admin SPIFFE ID from an unrelated CA', { chain: 'rogue' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse an expired admin certificate', { chain: 'expired' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse an admin certificate without clientAuth', { chain: 'serverOnly' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse an ID of another trust domain', { chain: 'otherDomain' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse when OpenSSL did not verify the chain, even if the shared verifier did', { tlsVerified: false, tlsError: 'CERT_REVOKED' }, 'TRELLIS_ADMIN_UNAUTHENTICATED'],
    ['Should refuse a workload SVID not on the allow-list', { chain: 'workload' }, 'TRELLIS_ADMIN_FORBIDDEN'],
    ['Should refuse an admin certificate whose serial is revoked', { chain: 'revokedAdmin' }, 'TRELLIS_ADMIN_FORBIDDEN'],
    ['Should refuse a foreign Host before looking at the certificate', { host: 'attacker.example:15014', chain: '' }, 'TRELLIS_ADMIN_MISDIRECTED'],
    ['Should refuse a request without a Host', { host: undefined }, 'TRELLIS_ADMIN_MISDIRECTED'],
    ['Should accept any loopback address on any port', { host: '127.0.0.2:1' }, 'allow'],
    ['Should accept an --admin-host entry (port defaults to the bound one)', { host: '10.0.0.7:15014' }, 'allow'],
    ['Should refuse an --admin-host entry on another port', { host: '10.0.0.7:80' }, 'TRELLIS_ADMIN_MISDIRECTED'],
    ['Should accept localhost on any port (kubectl port-forward)', { host: 'localhost:25014' }, 'allow'],
    ['Should refuse an unknown path only after authentication', { path: '/nope', route: null }, 'TRELLIS_ADMIN_NOT_FOUND'],
    ['Should refuse GET on a POST route', { method: 'GET' }, 'TRELLIS_ADMIN_METHOD_NOT_ALLOWED'],
    ['Should refuse a text/plain state change', { contentType: 'text/plain;charset=UTF-8' }, 'TRELLIS_ADMIN_UNSUPPORTED_MEDIA_TYPE'],
    ['Should refuse a form-encoded state change', { contentType: 'application/x-www-form-urlencoded' }, 'TRELLIS_ADMIN_UNSUPPORTED_MEDIA_TYPE'],
    ['Should refuse a state change without a Content-Type', { contentType: undefined }, 'TRELLIS_ADMIN_UNSUPPORTED_MEDIA_TYPE'],
    ['Should accept JSON with a charset', { contentType: 'Application/JSON; charset=utf-8' }, 'allow'],
  ];
  for (const [name, o, want] of cases) {
    it(name, () => {
      const d = decideAdminRequest(req(o), policy);
      if (want === 'allow') expect(d.allow, JSON.stringify(d)).to.equal(true);
      else {
        expect(d.allow, name).to.equal(false);
        if (!d.allow) {
          expect(d.code).to.equal(want);
          expect(d.reason).to.not.equal('');
        }
      }
    });
  }

  it('Should name the authenticated admin, and name the refused identity', () => {
    const ok = decideAdminRequest(req({}), policy);
    expect(ok.allow && ok.identity).to.equal(ADMIN);
    const no = decideAdminRequest(req({ chain: 'workload' }), policy);
    expect(!no.allow && no.details['spiffeId']).to.equal(`spiffe://${TD}/ns/shop/sa/web`);
  });
});

describe('admin Host rules', () => {
  it('Should not accept a wildcard listen address as a Host, only loopback names and --admin-host entries', () => {
    const hosts = acceptedAdminHosts('0.0.0.0', 15014, ['10.1.2.3:15014', 'cp.trellis-system.svc']);
    expect([...hosts].sort()).to.deep.equal(['10.1.2.3:15014', 'cp.trellis-system.svc:15014']);
    expect(isAcceptedHost('0.0.0.0:15014', hosts)).to.equal(false);
    expect(isAcceptedHost('[::1]:15014', hosts)).to.equal(true);
    expect(isAcceptedHost('CP.trellis-system.svc:15014', hosts)).to.equal(true);
    expect(isAcceptedHost('cp.trellis-system.svc', hosts), 'no port means 443').to.equal(false);
  });

  it('Should bracket IPv6 listen addresses and take a bare IPv6 --admin-host (an expanded $(POD_IP)) on the bound port', () => {
    const hosts = acceptedAdminHosts('fd00::7', 15014, ['fd00::9']);
    expect(isAcceptedHost('[fd00::7]:15014', hosts)).to.equal(true);
    expect(isAcceptedHost('[fd00::9]:15014', hosts)).to.equal(true);
    expect(isAcceptedHost('[fd00::8]:15014', hosts)).to.equal(false);
  });

  it('Should refuse malformed Host values', () => {
    const hosts = acceptedAdminHosts('10.0.0.1', 15014);
    for (const h of ['', ' ', 'a b:1', 'user@10.0.0.1:15014', '10.0.0.1:99999', '10.0.0.1:15014/x']) expect(isAcceptedHost(h, hosts), h).to.equal(false);
  });
});
