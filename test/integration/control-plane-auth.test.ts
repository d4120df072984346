/**
 * How a workload proves who it is to a real `trellis control-plane` process:
 * join tokens, Kubernetes ServiceAccount tokens, and the refusals for
 * forged, expired, wrong-audience, reused and impersonating requests.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from 'jose';
import { DiscoveryError } from '@trellis/sidecar';
import { makeTmpDir, openssl, hasOpenssl, OPENSSL, skipUnless } from '@trellis/testkit';
import { generateKeyPairSync } from 'node:crypto';
import { SVID_TYPE_URL } from '@trellis/shared';
import { buildWorkloadCsr } from '@trellis/shared';
import { FakeSidecar, initCa, joinToken, rawStream, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';
import { createJoinToken, JoinTokenStore } from '@trellis/control-plane';

function csrFor(spiffeId: string): Buffer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }) as Buffer, spiffeId);
}

const ISSUER = 'https://kubernetes.default.svc.cluster.local';

interface K8sKeys {
  privateKey: KeyLike;
  kid: string;
}

async function k8sToken(keys: K8sKeys, o: { ns?: string; sa?: string; aud?: string; expOffset?: number; iss?: string } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const ns = o.ns ?? 'shop';
  const sa = o.sa ?? 'cart';
  return new SignJWT({
    'kubernetes.io': { namespace: ns, serviceaccount: { name: sa, uid: '3f1c1f7e-1111-4d5e-9a8b-000000000001' }, pod: { name: `${sa}-7d9f8-abcde`, uid: '3f1c1f7e-2222-4d5e-9a8b-000000000002' } },
  })
    .setProtectedHeader({ alg: 'RS256', kid: keys.kid })
    .setIssuer(o.iss ?? ISSUER)
    .setSubject(`system:serviceaccount:${ns}:${sa}`)
    .setAudience(o.aud ?? 'trellis')
    .setIssuedAt(now - 10)
    .setNotBefore(now - 10)
    .setExpirationTime(now + (o.expOffset ?? 600))
    .sign(keys.privateKey);
}

describe('control plane workload authentication (real process, real gRPC/TLS)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let cp: ControlPlaneProcess;
  let cluster: K8sKeys;
  let attacker: K8sKeys;
  const sidecars: FakeSidecar[] = [];

  function sidecar(spiffeId: string, token: () => string, extra: Partial<ConstructorParameters<typeof FakeSidecar>[0]> = {}): FakeSidecar {
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId, token, ...extra });
    sidecars.push(s);
    return s.start();
  }

  /** Resolves with the refusal (grpc code + server code) that ends the first stream. */
  async function refusal(s: FakeSidecar): Promise<{ grpcCode: number; serverCode: string | null }> {
    await waitFor(() => s.client.connection().lastError !== null, 'the stream to be refused');
    const e = s.client.connection().lastError!;
    s.stop();
    return { grpcCode: e.grpcCode, serverCode: e.serverCode };
  }

  before(async () => {
    tmp = makeTmpDir('trellis-cp-auth-');
    caDir = join(tmp.dir, 'ca');
    initCa(caDir);
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    const gen = async (kid: string): Promise<K8sKeys & { jwk: object }> => {
      const { privateKey, publicKey } = await generateKeyPair('RS256');
      return { privateKey, kid, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
    };
    const c = await gen('cluster-key-1');
    const a = await gen('cluster-key-1'); // same kid, different key: a forgery
    cluster = c;
    attacker = a;
    const jwksFile = join(tmp.dir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [c.jwk] }));
    cp = await startControlPlaneProcess(caDir, policyDir, ['--k8s-issuer', ISSUER, '--k8s-jwks', jwksFile]);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('issues an SVID for a join token, which openssl verifies against the CA root', async () => {
    const id = `spiffe://${TD}/vm/billing`;
    const token = joinToken(caDir, id);
    const s = sidecar(id, () => token);
    const leaf = await s.rotate();
    expect(leaf.subjectAltName).to.equal(`URI:${id}`);
    const chainFile = join(tmp.dir, 'billing-chain.pem');
    writeFileSync(chainFile, s.creds!.chainPem);
    if (hasOpenssl()) {
      const r = openssl(['verify', '-CAfile', join(caDir, 'root.pem'), '-untrusted', chainFile, chainFile]);
      expect(r.status, r.stderr).to.equal(0);
    }
    s.stop();
  });

  it('refuses a join token that was already used, even by a new connection', async () => {
    const id = `spiffe://${TD}/vm/reused`;
    const token = joinToken(caDir, id, ['--uses', '1']);
    const first = sidecar(id, () => token);
    await first.rotate();
    first.stop();
    const second = sidecar(id, () => token);
    expect(await refusal(second)).to.deep.equal({ grpcCode: 16, serverCode: 'TRELLIS_CP_TOKEN_SPENT' });
  });

  it('refuses an expired join token with UNAUTHENTICATED', async () => {
    const id = `spiffe://${TD}/vm/late`;
    // Minted as `trellis token create --ttl 1s` would have been 10 s ago: expired now, without waiting for it.
    const { token } = await createJoinToken(new JoinTokenStore(caDir).key(false), { spiffeId: id, ttlSeconds: 1, uses: 1, nowMs: Date.now() - 10_000 });
    expect(await refusal(sidecar(id, () => token))).to.deep.equal({ grpcCode: 16, serverCode: 'TRELLIS_CP_TOKEN_EXPIRED' });
  });

  it('refuses a join token whose signature was tampered with', async () => {
    const id = `spiffe://${TD}/vm/forged`;
    const token = joinToken(caDir, id);
    const [h, p, sig] = token.slice(4).split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), sub: `spiffe://${TD}/ns/kube-system/sa/admin` })).toString('base64url');
    const forged = `tj1.${h}.${forgedPayload}.${sig}`;
    expect(await refusal(sidecar(`spiffe://${TD}/ns/kube-system/sa/admin`, () => forged))).to.deep.equal({ grpcCode: 16, serverCode: 'TRELLIS_CP_TOKEN_BAD_SIGNATURE' });
  });

  it('maps a Kubernetes ServiceAccount token to spiffe://<td>/ns/NS/sa/SA and issues its SVID', async () => {
    const token = await k8sToken(cluster);
    const s = sidecar(`spiffe://${TD}/ns/shop/sa/cart`, () => token, { namespace: 'shop' });
    const leaf = await s.rotate();
    expect(leaf.subjectAltName).to.equal(`URI:spiffe://${TD}/ns/shop/sa/cart`);
    // The pod name from the token reaches the audit line.
    await waitFor(() => cp.logs.some((l) => l.includes('"svid issued"') && l.includes('cart-7d9f8-abcde')), 'the audit line');
    s.stop();
  });

  const k8sRefusals: Array<[string, () => Promise<string>, string]> = [
    ['an expired token', () => k8sToken(cluster, { expOffset: -120 }), 'TRELLIS_CP_TOKEN_EXPIRED'],
    ['a token for another audience', () => k8sToken(cluster, { aud: 'vault' }), 'TRELLIS_CP_TOKEN_WRONG_AUDIENCE'],
    ['a token from another issuer', () => k8sToken(cluster, { iss: 'https://evil.example' }), 'TRELLIS_CP_TOKEN_WRONG_ISSUER'],
    ['a token signed by a key the cluster never published', () => k8sToken(attacker), 'TRELLIS_CP_TOKEN_BAD_SIGNATURE'],
    ['garbage instead of a JWT', async () => 'not-a-jwt', 'TRELLIS_CP_TOKEN_MALFORMED'],
  ];
  for (const [what, make, code] of k8sRefusals) {
    it(`refuses ${what} with UNAUTHENTICATED ${code}`, async () => {
      const token = await make();
      expect(await refusal(sidecar(`spiffe://${TD}/ns/shop/sa/cart`, () => token, { namespace: 'shop' }))).to.deep.equal({ grpcCode: 16, serverCode: code });
    });
  }

  const unattested: Array<[string, Partial<ConstructorParameters<typeof FakeSidecar>[0]>]> = [
    ['a service', { service: 'cart' }],
    ['labels', { labels: { app: 'cart' } }],
    ['inbound ports', { inboundPorts: [8080] }],
  ];
  for (const [what, node] of unattested) {
    it(`Should refuse a Kubernetes-token stream that claims ${what}, which the token does not attest, with PERMISSION_DENIED`, async () => {
      const token = await k8sToken(cluster);
      expect(await refusal(sidecar(`spiffe://${TD}/ns/shop/sa/cart`, () => token, { namespace: 'shop', ...node }))).to.deep.equal({ grpcCode: 7, serverCode: 'TRELLIS_CP_ATTESTATION_MISMATCH' });
    });
  }

  it('Should refuse a second CSR on a join-token stream: the token attests one issuance, renewals go over mTLS', async () => {
    const id = `spiffe://${TD}/vm/one-issuance`;
    const raw = rawStream(cp.address, caDir, joinToken(caDir, id, ['--uses', '5']));
    const responses: unknown[] = [];
    raw.call.on('data', (d) => responses.push(d));
    raw.call.write({ node: { spiffe_id: id }, type_url: SVID_TYPE_URL, csr: csrFor(id) });
    await waitFor(() => responses.length === 1, 'the first SVID');
    raw.call.write({ type_url: SVID_TYPE_URL, csr: csrFor(id) });
    const st = await raw.done;
    raw.client.close();
    expect({ code: st.code, serverCode: st.serverCode }).to.deep.equal({ code: 9, serverCode: 'TRELLIS_CP_TOKEN_STREAM_SPENT' });
    expect(responses).to.have.length(1);
    // The refusal's log line comes through the control plane's stderr pipe, read on its own schedule: wait for it, then check it.
    const refusedLine = (): boolean => cp.logs.some((l) => l.includes('"svid refused"') && l.includes(id) && l.includes('TRELLIS_CP_TOKEN_STREAM_SPENT'));
    await waitFor(refusedLine, 'the refusal in the log');
    expect(refusedLine()).to.equal(true);
  });

  it('Should renew over a new mTLS stream when the stream it holds was opened with a join token', async () => {
    const id = `spiffe://${TD}/vm/renews-once`;
    const token = joinToken(caDir, id, ['--uses', '1']);
    const s = sidecar(id, () => token);
    const first = await s.rotate();
    const second = await s.rotate();
    expect(second.serialNumber).to.not.equal(first.serialNumber);
    expect(s.ends.map((e) => e.serverCode)).to.not.include('TRELLIS_CP_TOKEN_STREAM_SPENT');
    await waitFor(() => cp.logs.some((l) => l.includes('"svid issued"') && l.includes(id) && l.includes('"authMethod":"svid"')), 'the renewal, authenticated by the SVID');
    s.stop();
  });

  it('refuses a stream with no credential at all', async () => {
    expect(await refusal(sidecar(`spiffe://${TD}/ns/shop/sa/cart`, () => ''))).to.deep.equal({ grpcCode: 16, serverCode: 'TRELLIS_CP_TOKEN_MISSING' });
  });

  it('refuses a node that claims another identity than its token proves, with PERMISSION_DENIED', async () => {
    const token = await k8sToken(cluster);
    expect(await refusal(sidecar(`spiffe://${TD}/ns/kube-system/sa/admin`, () => token))).to.deep.equal({ grpcCode: 7, serverCode: 'TRELLIS_CP_IDENTITY_MISMATCH' });
  });

  it('refuses a CSR asking for another SPIFFE ID with PERMISSION_DENIED and an audit line', async () => {
    const token = await k8sToken(cluster);
    const s = sidecar(`spiffe://${TD}/ns/shop/sa/cart`, () => token, { namespace: 'shop' });
    const err = await s.rotate(`spiffe://${TD}/ns/kube-system/sa/admin`).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(DiscoveryError);
    expect((err as DiscoveryError).code).to.equal('TRELLIS_DISCOVERY_REFUSED');
    expect((err as DiscoveryError).details).to.include({ grpcCode: 7, serverCode: 'TRELLIS_CA_CSR_IDENTITY_MISMATCH' });
    // The audit line travels over the child's stderr pipe, so it may land just after the status.
    await waitFor(() => cp.logs.some((l) => l.includes('"svid refused"') && l.includes('"event":"audit"') && l.includes('TRELLIS_CA_CSR_IDENTITY_MISMATCH')), 'the audit line');
    s.stop();
  });

  it('refuses CSRs with two URI SANs or asking to be a CA, with PERMISSION_DENIED', async function () {
    skipUnless(this, OPENSSL); // needs openssl to craft CSRs our own builder would never produce
    const id = `spiffe://${TD}/ns/shop/sa/cart`;
    const craft = (ext: string): Buffer => {
      const keyFile = join(tmp.dir, `k-${Math.random().toString(36).slice(2)}.pem`);
      expect(openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile]).status).to.equal(0);
      const out = join(tmp.dir, `csr-${Math.random().toString(36).slice(2)}.der`);
      const res = openssl(['req', '-new', '-key', keyFile, '-subj', '/O=x', '-addext', ext, '-outform', 'DER', '-out', out]);
      expect(res.status, res.stderr).to.equal(0);
      return readFileSync(out);
    };
    for (const [ext, label] of [
      [`subjectAltName=URI:${id},URI:spiffe://${TD}/ns/kube-system/sa/admin`, 'two URIs'],
      ['basicConstraints=critical,CA:TRUE', 'a CA request'],
    ] as const) {
      const token = await k8sToken(cluster);
      const s = sidecar(id, () => token, { namespace: 'shop' });
      const err = await s.client.requestSvid(craft(ext)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, label).to.be.instanceOf(DiscoveryError);
      expect((err as DiscoveryError).details, label).to.include({ grpcCode: 7 });
      s.stop();
    }
  });
});
