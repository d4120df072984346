import { expect } from 'chai';
import { exportJWK, generateKeyPair, SignJWT, type JSONWebKeySet, type JWK, type KeyLike } from 'jose';
import { silentLogger } from '@trellis/shared';
import { createKubernetesTokenVerifier } from '../../src/auth/kubernetes-token';
import { discoverOidcTokenKeys } from '../../src/auth/oidc-token-keys';
import { mayRefetchKeys, staticTokenKeys, type PodLiveness } from '../../src/auth/token-keys';
import { ControlPlaneError } from '../../src/errors/control-plane-error';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const NOW = 1_700_000_000_000;

async function key(kid: string): Promise<{ kid: string; privateKey: KeyLike; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

function token(k: { kid: string; privateKey: KeyLike }, pod?: { name: string; uid: string }): Promise<string> {
  return new SignJWT({ 'kubernetes.io': { namespace: 'shop', serviceaccount: { name: 'cart', uid: 'u1' }, ...(pod ? { pod } : {}) } })
    .setProtectedHeader({ alg: 'RS256', kid: k.kid })
    .setIssuer(ISSUER)
    .setAudience('trellis')
    .setSubject('system:serviceaccount:shop:cart')
    .setIssuedAt(NOW / 1000)
    .setExpirationTime(NOW / 1000 + 600)
    .sign(k.privateKey);
}

describe('Kubernetes token keys', () => {
  it('Should allow a refetch at most once per interval', () => {
    expect(mayRefetchKeys(1000, null, 30_000)).to.equal(true);
    expect(mayRefetchKeys(20_000, 1000, 30_000)).to.equal(false);
    expect(mayRefetchKeys(31_000, 1000, 30_000)).to.equal(true);
  });

  it('Should verify a token signed by a key the API server added after start, refetching once on the unknown kid', async () => {
    const k1 = await key('k1');
    const k2 = await key('k2');
    let served: JSONWebKeySet = { keys: [k1.jwk] };
    const paths: string[] = [];
    let now = NOW;
    const keys = await discoverOidcTokenKeys({
      fetchJson: async (path) => {
        paths.push(path);
        return path === '/.well-known/openid-configuration' ? { issuer: ISSUER, jwks_uri: 'https://unreachable.example/openid/v1/jwks' } : served;
      },
      logger: silentLogger,
      nowMs: () => now,
    });
    expect(keys.issuer).to.equal(ISSUER);
    const verify = createKubernetesTokenVerifier({ issuer: keys.issuer, audience: 'trellis', keys }, 'cluster.local');
    expect((await verify(await token(k1), NOW)).spiffeId).to.equal('spiffe://cluster.local/ns/shop/sa/cart');
    served = { keys: [k2.jwk, k1.jwk] }; // the API server rotated
    now += 31_000;
    expect((await verify(await token(k2), NOW)).spiffeId).to.equal('spiffe://cluster.local/ns/shop/sa/cart');
    expect(keys.fetches()).to.equal(2);
    // Keys are read from the API server's own path, never from the advertised jwks_uri host.
    expect(paths.filter((p) => p !== '/.well-known/openid-configuration')).to.deep.equal(['/openid/v1/jwks', '/openid/v1/jwks']);
  });

  it('Should refuse unknown kids without refetching more than once per 30 s', async () => {
    const k1 = await key('k1');
    const forger = await key('made-up');
    let now = NOW;
    const keys = await discoverOidcTokenKeys({
      fetchJson: async (path) => (path.includes('openid-configuration') ? { issuer: ISSUER } : { keys: [k1.jwk] }),
      logger: silentLogger,
      nowMs: () => now,
    });
    const verify = createKubernetesTokenVerifier({ issuer: ISSUER, audience: 'trellis', keys }, 'cluster.local');
    now += 31_000;
    for (let i = 0; i < 5; i++) {
      const err = await verify(await token(forger), NOW).then(() => null, (e: unknown) => e);
      expect((err as ControlPlaneError).code).to.equal('TRELLIS_CP_TOKEN_BAD_SIGNATURE');
    }
    expect(keys.fetches(), 'the first fetch plus one refetch').to.equal(2);
  });

  it('Should keep the last good keys when a refetch fails', async () => {
    const k1 = await key('k1');
    let fail = false;
    let now = NOW;
    const keys = await discoverOidcTokenKeys({
      fetchJson: async (path) => {
        if (fail) throw new Error('connection refused');
        return path.includes('openid-configuration') ? { issuer: ISSUER } : { keys: [k1.jwk] };
      },
      logger: silentLogger,
      nowMs: () => now,
    });
    fail = true;
    now += 31_000;
    expect((await keys.refresh('test')).keys).to.have.length(1);
    const verify = createKubernetesTokenVerifier({ issuer: ISSUER, audience: 'trellis', keys }, 'cluster.local');
    expect((await verify(await token(k1), NOW)).spiffeId).to.equal('spiffe://cluster.local/ns/shop/sa/cart');
  });

  it('Should refuse to start when the API server names no issuer', async () => {
    const err = await discoverOidcTokenKeys({ fetchJson: async () => ({}), logger: silentLogger }).then(() => null, (e: unknown) => e);
    expect((err as ControlPlaneError).code).to.equal('TRELLIS_CP_CONFIG_INVALID');
  });

  it('Should refuse a token bound to a pod the liveness hook says is gone, and accept it while alive or unknown', async () => {
    const k1 = await key('k1');
    let status: 'alive' | 'gone' | 'unknown' = 'alive';
    const asked: unknown[] = [];
    const pods: PodLiveness = { podStatus: (p) => (asked.push(p), status) };
    const verify = createKubernetesTokenVerifier({ issuer: ISSUER, audience: 'trellis', keys: staticTokenKeys({ keys: [k1.jwk] }), pods }, 'cluster.local');
    const t = await token(k1, { name: 'cart-1', uid: 'pod-uid' });
    await verify(t, NOW);
    expect(asked).to.deep.equal([{ namespace: 'shop', name: 'cart-1', uid: 'pod-uid' }]);
    status = 'unknown';
    await verify(t, NOW);
    status = 'gone';
    const err = await verify(t, NOW).then(() => null, (e: unknown) => e);
    expect((err as ControlPlaneError).code).to.equal('TRELLIS_CP_TOKEN_POD_GONE');
  });

  it('Should attest the bound pod with the API-server registry, and the identity alone without it or without a pod claim', async () => {
    const k1 = await key('k1');
    const keys = staticTokenKeys({ keys: [k1.jwk] });
    const pods: PodLiveness = { podStatus: () => 'alive' };
    const withRegistry = createKubernetesTokenVerifier({ issuer: ISSUER, audience: 'trellis', keys, pods }, 'cluster.local');
    const without = createKubernetesTokenVerifier({ issuer: ISSUER, audience: 'trellis', keys }, 'cluster.local');
    const bound = await token(k1, { name: 'cart-1', uid: 'pod-uid' });
    expect((await withRegistry(bound, NOW)).attestation).to.deep.equal({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart', source: 'kubernetes-pod', namespace: 'shop', workload: { service: '', labels: {}, inboundPorts: [] }, pod: { namespace: 'shop', name: 'cart-1', uid: 'pod-uid' } });
    expect((await without(bound, NOW)).attestation.source).to.equal('identity-only');
    expect((await withRegistry(await token(k1), NOW)).attestation.source, 'a token bound to no pod').to.equal('identity-only');
  });
});
