import { expect } from 'chai';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { joinTokenSpiffeId } from '@trellis/shared';
import { authenticate } from '../../src/auth/authenticator';
import { createJoinToken } from '../../src/auth/join-token';
import { JoinTokenStore } from '../../src/auth/join-token-store';
import { readConfigFile, resolveConfig } from '../../src/config/control-plane-config';
import { SigningLimiter } from '../../src/issuance/signing-limiter';
import { shouldRotate } from '../../src/tls/server-identity';

describe('control-plane config', () => {
  it('reports every problem in a config file with its path', () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const file = join(dir, 'cp.yaml');
      writeFileSync(file, 'listen: nope\nsvidTtl: forever\ndefaultMtlsMode: LOOSE\nsigning:\n  concurrency: 0\nbogus: 1\n');
      let err: unknown;
      try {
        readConfigFile(file);
      } catch (e) {
        err = e;
      }
      expect(err).to.have.property('code', 'TRELLIS_CP_CONFIG_INVALID');
      const problems = (err as { details: { problems: string[] } }).details.problems;
      for (const path of ['/listen', '/svidTtl', '/defaultMtlsMode', '/signing/concurrency', 'unknown field "bogus"']) {
        expect(problems.some((p) => p.includes(path) && p.startsWith(file)), path).to.equal(true);
      }
    } finally {
      cleanup();
    }
  });

  it('lets flags win over the file and resolves relative paths against the file', () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const file = join(dir, 'cp.yaml');
      writeFileSync(file, 'caDir: ./ca\npolicyDir: ./pol\nsvidTtl: 30m\nsigning:\n  concurrency: 2\n');
      const cfg = resolveConfig(readConfigFile(file), { svidTtl: '2h', signing: { maxQueue: 5 } });
      expect(cfg).to.include({ caDir: join(dir, 'ca'), policyDir: join(dir, 'pol'), svidTtlSeconds: 7200, listen: '127.0.0.1:15012', defaultMtlsMode: 'STRICT' });
      expect(cfg.signing).to.deep.equal({ concurrency: 2, maxQueue: 5 });
    } finally {
      cleanup();
    }
  });

  it('Should default to 4 streams per identity, 10,000 connections, a 10 s authentication deadline and failing closed on invalid policies', () => {
    const cfg = resolveConfig({}, { caDir: '/ca', policyDir: '/p' });
    expect(cfg).to.include({ maxStreamsPerIdentity: 4, maxConnections: 10_000, authTimeoutMs: 10_000, allowInvalidPolicies: false });
    const set = resolveConfig({ maxStreamsPerIdentity: 50, authTimeout: '2s' }, { caDir: '/ca', policyDir: '/p', maxConnections: 20, allowInvalidPolicies: true });
    expect(set).to.include({ maxStreamsPerIdentity: 50, maxConnections: 20, authTimeoutMs: 2000, allowInvalidPolicies: true });
    expect(() => resolveConfig({}, { caDir: '/ca', policyDir: '/p', maxStreamsPerIdentity: 0 })).to.throw(/maxStreamsPerIdentity/);
  });

  it('Should keep a lost stream\'s endpoints 30 s and hold endpoint lists at most 10 s after a start by default, 0s turning either off', () => {
    expect(resolveConfig({}, { caDir: '/ca', policyDir: '/p' })).to.include({ endpointGraceMs: 30_000, endpointsSettleMs: 10_000 });
    expect(resolveConfig({ endpointGrace: '2m' }, { caDir: '/ca', policyDir: '/p', endpointsSettle: '0s' })).to.include({ endpointGraceMs: 120_000, endpointsSettleMs: 0 });
    expect(() => resolveConfig({}, { caDir: '/ca', policyDir: '/p', endpointGrace: '2h', endpointsSettle: 'soon' }))
      .to.throw()
      .that.satisfies((e: { details: { problems: string[] } }) => e.details.problems.some((p) => p.includes('/endpointGrace')) && e.details.problems.some((p) => p.includes('/endpointsSettle')));
  });

  it('requires the CA and policy dirs and an SVID TTL within 1m..24h', () => {
    expect(() => resolveConfig({}, { svidTtl: '48h' }))
      .to.throw()
      .that.satisfies((e: { code: string; details: { problems: string[] } }) => e.code === 'TRELLIS_CP_CONFIG_INVALID' && e.details.problems.length === 3);
  });
});

describe('signing limiter', () => {
  it('refuses beyond the queue with TRELLIS_CP_OVERLOADED and a retry hint, and runs everything it accepted', async () => {
    const limiter = new SigningLimiter({ concurrency: 1, maxQueue: 2 }, Date.now, () => 0);
    const started: number[] = [];
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => limiter.run(() => started.push(i))));
    const refused = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(refused.map((r) => r.reason.code)).to.deep.equal(['TRELLIS_CP_OVERLOADED', 'TRELLIS_CP_OVERLOADED']);
    expect(refused[0]!.reason.details.retryAfterMs).to.be.at.least(100);
    expect(started).to.deep.equal([1, 2, 3]);
    expect(limiter.depth).to.equal(0);
  });
});

describe('join tokens', () => {
  it('counts uses on disk so a new store (a restart, another replica) cannot reuse a spent token', async () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const store = new JoinTokenStore(dir);
      const key = store.key(true);
      expect(statSync(join(dir, 'join-tokens', 'hmac.key')).mode & 0o777).to.equal(0o600);
      const { token } = await createJoinToken(key, { spiffeId: 'spiffe://example.org/vm/a', ttlSeconds: 60, uses: 2, nowMs: Date.now() });
      const deps = { trustDomain: 'example.org', joinTokens: store, isRevoked: () => false };
      expect((await authenticate(deps, { bearerToken: token }, Date.now())).spiffeId).to.equal('spiffe://example.org/vm/a');
      const restarted = { ...deps, joinTokens: new JoinTokenStore(dir) };
      expect((await authenticate(restarted, { bearerToken: token }, Date.now())).audit).to.include({ use: 2 });
      await authenticate(restarted, { bearerToken: token }, Date.now()).then(
        () => expect.fail('third use accepted'),
        (e: { code: string }) => expect(e.code).to.equal('TRELLIS_CP_TOKEN_SPENT'),
      );
    } finally {
      cleanup();
    }
  });

  it('Should let the holder read the SPIFFE ID a minted token names without the key, as the sidecar does', async () => {
    const key = new Uint8Array(32).fill(7);
    const { token } = await createJoinToken(key, { spiffeId: 'spiffe://example.org/ns/shop/sa/web', ttlSeconds: 60, uses: 1, nowMs: Date.now() });
    expect(joinTokenSpiffeId(token)).to.equal('spiffe://example.org/ns/shop/sa/web');
    expect(joinTokenSpiffeId(`${token}\n`)).to.equal('spiffe://example.org/ns/shop/sa/web');
    expect(joinTokenSpiffeId(token.slice(4))).to.equal(undefined);
  });

  it('refuses a token for another trust domain', async () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const store = new JoinTokenStore(dir);
      const { token } = await createJoinToken(store.key(true), { spiffeId: 'spiffe://other.org/vm/a', ttlSeconds: 60, uses: 1, nowMs: Date.now() });
      await authenticate({ trustDomain: 'example.org', joinTokens: store, isRevoked: () => false }, { bearerToken: token }, Date.now()).then(
        () => expect.fail('accepted'),
        (e: { code: string }) => expect(e.code).to.equal('TRELLIS_CP_TOKEN_BAD_CLAIMS'),
      );
    } finally {
      cleanup();
    }
  });
});

describe('client certificate authentication (fails closed)', () => {
  const deps = { trustDomain: 'example.org', joinTokens: new JoinTokenStore('/nonexistent'), isRevoked: (serial: string) => serial === 'abcd' };
  const cert = (san: string, validTo = 'Jan  1 00:00:00 2099 GMT', serialNumber = '0A0B') => ({ subjectaltname: san, valid_from: 'Jan  1 00:00:00 2020 GMT', valid_to: validTo, serialNumber });
  const cases: Array<[string, ReturnType<typeof cert>, string]> = [
    ['two URI SANs', cert('URI:spiffe://example.org/a, URI:spiffe://example.org/b'), 'TRELLIS_CP_CERT_REJECTED'],
    ['no URI SAN', cert('DNS:web.example.org'), 'TRELLIS_CP_CERT_REJECTED'],
    ['another trust domain', cert('URI:spiffe://evil.org/ns/a/sa/b'), 'TRELLIS_CP_CERT_REJECTED'],
    ['an expired certificate', cert('URI:spiffe://example.org/ns/a/sa/b', 'Jan  1 00:00:00 2021 GMT'), 'TRELLIS_CP_CREDENTIAL_EXPIRED'],
    ['a revoked serial', cert('URI:spiffe://example.org/ns/a/sa/b', undefined, '00ABCD'), 'TRELLIS_CP_CERT_REJECTED'],
  ];
  for (const [what, c, code] of cases) {
    it(`refuses ${what} with ${code}`, async () => {
      await authenticate(deps, { peerCertificate: c }, Date.now()).then(
        () => expect.fail('accepted'),
        (e: { code: string }) => expect(e.code).to.equal(code),
      );
    });
  }

  it('accepts one SPIFFE ID in the trust domain', async () => {
    const peer = await authenticate(deps, { peerCertificate: cert('URI:spiffe://example.org/ns/a/sa/b') }, Date.now());
    expect(peer).to.include({ spiffeId: 'spiffe://example.org/ns/a/sa/b', method: 'svid' });
  });
});

describe('control-plane certificate rotation timing', () => {
  it('rotates at half the lifetime, and at once for an inverted validity', () => {
    const nb = new Date(0);
    const na = new Date(3600_000);
    expect(shouldRotate(1799_999, nb, na)).to.equal(false);
    expect(shouldRotate(1800_000, nb, na)).to.equal(true);
    expect(shouldRotate(0, na, nb)).to.equal(true);
  });
});
