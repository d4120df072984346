/**
 * Kubernetes ServiceAccount tokens verified against the keys a real API
 * server publishes (OIDC discovery + /openid/v1/jwks), fetched with the
 * control plane's own ServiceAccount credentials, across a signing-key
 * rotation of that API server without restarting the verifier.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createKubernetesTokenVerifier, discoverOidcTokenKeys, type KubernetesTokenVerifier, type OidcTokenKeys } from '@trellis/control-plane';
import { KubeClient } from '@trellis/kubernetes';
import { silentLogger } from '@trellis/shared';
import { makeTmpDir, requireKubeApiServer, startKubeApiServer, type KubeApiServer } from '@trellis/testkit';
import { FakeSidecar, TD, initCa, startControlPlaneProcess, waitFor, type ControlPlaneProcess } from './control-plane-harness';

describe('Kubernetes token keys from a real API server', function () {
  this.timeout(120_000);
  let k8s: KubeApiServer;
  let keys: OidcTokenKeys;
  let verify: KubernetesTokenVerifier;
  let tokenBeforeRotation: string;
  let cp: ControlPlaneProcess | undefined;
  const tmp = makeTmpDir('trellis-k8s-keys-');
  const sidecars: FakeSidecar[] = [];
  /** A sidecar presenting `token` to the real control plane process; resolves to its SVID's SPIFFE ID. */
  const svidFor = async (token: string): Promise<string> => {
    const s = new FakeSidecar({ addresses: [cp!.address], caDir: join(tmp.dir, 'ca'), spiffeId: `spiffe://${TD}/ns/shop/sa/cart`, namespace: 'shop', token: () => token });
    sidecars.push(s);
    const leaf = await s.start().rotate();
    s.stop();
    return leaf.subjectAltName ?? '';
  };

  const tokenFor = (sa: string, ns: string, extra: string[] = []): string =>
    k8s.kubectlOk(['-n', ns, 'create', 'token', sa, '--audience', 'trellis', '--duration', '10m', ...extra]).trim();

  before(async function () {
    this.timeout(120_000);
    requireKubeApiServer(this, 'the Kubernetes token-key tests');
    k8s = await startKubeApiServer({ noControllerManager: true });
    k8s.kubectlOk(['create', 'namespace', 'trellis-system']);
    k8s.kubectlOk(['create', 'namespace', 'shop']);
    k8s.kubectlOk(['-n', 'trellis-system', 'create', 'serviceaccount', 'trellis-control-plane']);
    k8s.kubectlOk(['-n', 'shop', 'create', 'serviceaccount', 'cart']);
    // The control plane's own credentials: its ServiceAccount's token, no extra RBAC (the default
    // system:service-account-issuer-discovery binding lets every ServiceAccount read the keys).
    // (audience: the API server's own, as a pod's in-cluster token has; `trellis` tokens are for us only)
    const cpToken = k8s.kubectlOk(['-n', 'trellis-system', 'create', 'token', 'trellis-control-plane', '--duration', '1h']).trim();
    const kubeconfig = join(k8s.runDir, 'control-plane.kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${k8s.server}", certificate-authority: "${join(k8s.pkiDir, 'ca.crt')}"}}]\n` +
        `users: [{name: cp, user: {token: "${cpToken}"}}]\ncontexts: [{name: c, context: {cluster: c, user: cp}}]\ncurrent-context: c\n`,
    );
    const client = await KubeClient.connect({ kubeconfig });
    keys = await discoverOidcTokenKeys({ fetchJson: (p) => client.request('GET', p, { accept: 'application/json, application/jwk-set+json' }), logger: silentLogger, minRefreshIntervalMs: 1000 });
    verify = createKubernetesTokenVerifier({ issuer: keys.issuer, audience: 'trellis', keys }, 'cluster.local');
    // The real control plane, reading the keys the same way with the same credentials.
    initCa(join(tmp.dir, 'ca'));
    mkdirSync(join(tmp.dir, 'policies'));
    cp = await startControlPlaneProcess(join(tmp.dir, 'ca'), join(tmp.dir, 'policies'), ['--k8s-jwks-from-api', '--kubeconfig', kubeconfig, '--k8s-jwks-min-refresh', '1s']);
  });
  after(async () => {
    for (const s of sidecars) s.stop();
    await cp?.stop();
    await k8s?.stop();
    tmp.cleanup();
  });

  it('Should verify a real TokenRequest token and map it to the workload SPIFFE ID', async () => {
    expect(keys.issuer).to.equal('https://kubernetes.default.svc.cluster.local');
    tokenBeforeRotation = tokenFor('cart', 'shop');
    const peer = await verify(tokenBeforeRotation, Date.now());
    expect(peer.spiffeId).to.equal('spiffe://cluster.local/ns/shop/sa/cart');
    expect(peer.method).to.equal('kubernetes-token');
    expect(await svidFor(tokenBeforeRotation), 'trellis control-plane --k8s-jwks-from-api issues the SVID').to.equal(`URI:spiffe://${TD}/ns/shop/sa/cart`);
  });

  it('Should verify a pod-bound token and report the pod it is bound to', async () => {
    k8s.kubectlOk(['apply', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'cart-1', namespace: 'shop' }, spec: { serviceAccountName: 'cart', automountServiceAccountToken: false, containers: [{ name: 'c', image: 'x' }] } }),
    });
    const t = tokenFor('cart', 'shop', ['--bound-object-kind', 'Pod', '--bound-object-name', 'cart-1']);
    const peer = await verify(t, Date.now());
    expect(peer.audit).to.deep.include({ podName: 'cart-1' });
  });

  it('Should verify tokens signed by a new service-account key after the API server rotates it, without a restart', async () => {
    const fetchesBefore = keys.fetches();
    await k8s.restart({ rotateServiceAccountKey: true });
    await new Promise((r) => setTimeout(r, 1100)); // past the test's 1 s refetch interval
    const after = tokenFor('cart', 'shop');
    const kid = (t: string): string => JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString()).kid;
    expect(kid(after), 'the API server signs with a new key').to.not.equal(kid(tokenBeforeRotation));
    expect((await verify(after, Date.now())).spiffeId).to.equal('spiffe://cluster.local/ns/shop/sa/cart');
    expect(keys.fetches(), 'one refetch on the unknown kid').to.equal(fetchesBefore + 1);
    // Tokens signed before the rotation still verify: the API server still publishes the old key.
    expect((await verify(tokenBeforeRotation, Date.now())).spiffeId).to.equal('spiffe://cluster.local/ns/shop/sa/cart');
    // The running control plane process, started before the rotation, accepts the new token too.
    expect(await svidFor(after)).to.equal(`URI:spiffe://${TD}/ns/shop/sa/cart`);
    // Logged before the SVID was sent, but read from the control plane's stderr pipe on its own schedule: wait for it, then check it.
    const keysChanged = (): boolean => cp!.logs.some((l) => l.includes('kubernetes token keys changed'));
    await waitFor(keysChanged, 'the key change in the log');
    expect(keysChanged()).to.equal(true);
  });
});
