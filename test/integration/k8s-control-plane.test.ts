/**
 * `trellis control-plane` on a real API server (1.20 here), running with its
 * own ServiceAccount's token and the shipped RBAC (so what it needs is
 * exactly what deploy/rbac.yaml grants), two replicas electing one writer:
 *
 * - policies from CRDs: a security.trellis.dev AuthorizationPolicy applied,
 *   edited, broken (no webhook is registered here, so the API server stores
 *   what the webhook would refuse), fixed and deleted reaches a connected
 *   sidecar (FakeSidecar: the real discovery protocol) or stays at its last
 *   good version, with the verdict on the object's status and in an Event
 *   in the text `trellis validate` prints; Istio's security.istio.io v1 and
 *   v1beta1 objects load as the same manifests do from a file; an invalid
 *   object at start keeps a control plane not ready until it is fixed;
 * - the trust bundle: ConfigMap trellis-ca-root-cert in every non-system
 *   namespace, put back when deleted or edited, rewritten when a root
 *   rotation changes the bundle, and kept by the other replica once the
 *   leader is gone.
 */
import { expect } from 'chai';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildPolicySet, encodeAuthorizationPolicies, parsePolicyFile, resolvePeerAuthentication, selectAuthorizationPolicies } from '@trellis/shared';
import { REPO_ROOT, corpusPath, makeTmpDir, requireKubeApiServer, startKubeApiServer, trellisSync, type KubeApiServer } from '@trellis/testkit';
import { adminGet, adminJson, FakeSidecar, initCa, joinToken, startControlPlaneProcess, TD, waitFor, type ControlPlaneProcess } from './control-plane-harness';

type Obj = Record<string, any>;

const NOT_READY_LINE = '"control plane started but NOT ready';
const SA = 'system:serviceaccount:trellis-system:trellis-control-plane';

/** A Trellis AuthorizationPolicy for app=web in shop, allowing one principal. */
const allowWeb = (principal: string, extra = ''): string => `apiVersion: security.trellis.dev/v1
kind: AuthorizationPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["${principal}"]
${extra}`;

/** The same object broken in a way the CRD schema lets through and `trellis validate` refuses: DENY without rules. */
const BROKEN = `apiVersion: security.trellis.dev/v1
kind: AuthorizationPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  action: DENY
`;

/**
 * Istio's CRDs as istio/istio ships them, reduced to what matters here
 * (written for this test, not copied): v1 served, v1beta1 served and stored,
 * the status subresource, and a spec the API server keeps as sent.
 */
function istioCrd(kind: string, plural: string): Obj {
  const schema = { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }, status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } } };
  const version = (name: string, storage: boolean): Obj => ({ name, served: true, storage, subresources: { status: {} }, schema });
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.security.istio.io` },
    spec: { group: 'security.istio.io', scope: 'Namespaced', names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` }, versions: [version('v1', false), version('v1beta1', true)] },
  };
}

describe('the control plane on a real API server: policies from CRDs, trust-bundle ConfigMaps', function () {
  this.timeout(120_000);
  const tmp = makeTmpDir('trellis-k8s-cp-');
  const caDir = join(tmp.dir, 'ca');
  const policyDir = join(tmp.dir, 'policies');
  let k8s: KubeApiServer;
  let kubeconfig: string;
  let leader: ControlPlaneProcess;
  let follower: ControlPlaneProcess;
  const extra: ControlPlaneProcess[] = [];
  const sidecars: FakeSidecar[] = [];

  const kubectl = (args: string[], input?: string): string => k8s.kubectlOk(args, input === undefined ? {} : { input });
  const apply = (yaml: string): string => kubectl(['apply', '-f', '-'], yaml);
  const getJson = (args: string[]): Obj | null => {
    const r = k8s.kubectl(['get', ...args, '-o', 'json']);
    return r.status === 0 ? (JSON.parse(r.stdout) as Obj) : null;
  };
  const condition = (o: Obj | null, type: string): Obj | undefined => (o?.status?.conditions as Obj[] | undefined)?.find((c) => c.type === type);
  const events = (ns: string, name: string, reason: string): Obj[] =>
    (getJson(['events', '-n', ns, '--field-selector', `involvedObject.name=${name}`])?.items as Obj[]).filter((e) => e.reason === reason);
  const readyz = async (cp: ControlPlaneProcess): Promise<number> => (await adminGet(cp, '/readyz')).status;

  /** A sidecar in `ns` whose join token attests `labels`. */
  function sidecar(cp: ControlPlaneProcess, ns: string, sa: string, labels: string): FakeSidecar {
    const id = `spiffe://${TD}/ns/${ns}/sa/${sa}`;
    const token = joinToken(caDir, id, ['--labels', labels, '--uses', '5']);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token });
    sidecars.push(s);
    return s.start();
  }
  const authz = (s: FakeSidecar): Obj[] => ((s.bodies.get('authz')?.[0] as Obj | undefined)?.policies as Obj[] | undefined) ?? [];
  const served = (s: FakeSidecar, name: string): Obj | undefined => authz(s).find((p) => p.name === name);

  /** What `trellis validate` prints for `yaml`, reduced to what an object can repeat: field path, reason, code. */
  function validateErrors(yaml: string, name: string): string[] {
    const file = join(tmp.dir, `${name}.yaml`);
    writeFileSync(file, yaml);
    const r = trellisSync(['validate', file]);
    expect(r.status, 'trellis validate refuses it').to.equal(1);
    return r.stderr
      .split('\n')
      .filter((l) => l.includes('[TRELLIS_POLICY_'))
      .map((l) => l.replace(/^.*? document \d+ /, ''));
  }

  const startReplica = (args: string[] = [], readyLine?: string): Promise<ControlPlaneProcess> =>
    startControlPlaneProcess(caDir, policyDir, ['--kubeconfig', kubeconfig, '--default-mtls-mode', 'PERMISSIVE', ...args], undefined, readyLine);

  before(async function () {
    this.timeout(120_000);
    requireKubeApiServer(this, 'the control plane Kubernetes tests');
    k8s = await startKubeApiServer({ noControllerManager: true });
    // 1.20 knows no x-kubernetes-validations (CEL, 1.25+): kubectl's client-side check refuses the field, the server drops it.
    kubectl(['apply', '--validate=false', '-f', join(REPO_ROOT, 'deploy', 'crds')]);
    kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [istioCrd('PeerAuthentication', 'peerauthentications'), istioCrd('AuthorizationPolicy', 'authorizationpolicies')] }));
    for (const ns of ['trellis-system', 'shop']) kubectl(['create', 'namespace', ns]);
    kubectl(['apply', '-f', join(REPO_ROOT, 'deploy', 'rbac.yaml')]);
    // The control plane runs as its own ServiceAccount: what it does below, the shipped RBAC allows.
    const token = kubectl(['-n', 'trellis-system', 'create', 'token', 'trellis-control-plane', '--duration', '1h']).trim();
    kubeconfig = join(tmp.dir, 'control-plane.kubeconfig');
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${k8s.server}", certificate-authority: "${join(k8s.pkiDir, 'ca.crt')}"}}]\nusers: [{name: u, user: {token: "${token}"}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`);
    await waitFor(() => k8s.kubectl(['wait', '--for=condition=Established', '--timeout=1s', 'crd', '--all']).status === 0, 'the CRDs to be established', 20_000);
    initCa(caDir);
    mkdirSync(policyDir);
    // The policy dir still works beside the CRDs: one file for another workload.
    writeFileSync(join(policyDir, 'cart.yaml'), 'apiVersion: security.trellis.dev/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: from-file\n  namespace: shop\nspec:\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        namespaces: ["shop"]\n');
    leader = await startReplica();
    await waitFor(() => leader.logs.some((l) => l.includes('"became leader"')), 'the first replica to take the Lease');
    follower = await startReplica();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      for (const cp of [leader, follower, ...extra]) if (cp) process.stderr.write(`--- control plane ${cp.address}\n${cp.logs.slice(-40).join('\n')}\n`);
    }
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    for (const cp of [...extra, follower, leader]) if (cp) await cp.stop();
    await k8s?.stop();
    tmp.cleanup();
  });

  it('Should serve a security.trellis.dev policy to the sidecars it selects, push its edits, withdraw it when deleted, and say Accepted on its status', async () => {
    const web = sidecar(leader, 'shop', 'web', 'app=web');
    await web.rotate();
    await waitFor(() => served(web, 'from-file') !== undefined, 'the policy dir\'s policy');
    apply(allowWeb(`${TD}/ns/shop/sa/frontend`));
    await waitFor(() => served(web, 'allow-web') !== undefined, 'the applied policy to reach the sidecar');
    expect(served(web, 'allow-web')!.rules[0].from[0].principals).to.deep.equal([{ exact: `${TD}/ns/shop/sa/frontend` }]);
    expect(served(web, 'from-file'), 'the policy dir and the CRDs are served together').to.not.equal(undefined);
    await waitFor(() => condition(getJson(['authorizationpolicies.security.trellis.dev', '-n', 'shop', 'allow-web']), 'Accepted')?.status === 'True', 'Accepted=True');
    const accepted = condition(getJson(['authorizationpolicies.security.trellis.dev', '-n', 'shop', 'allow-web']), 'Accepted')!;
    expect(accepted).to.include({ reason: 'Valid', observedGeneration: 1 });

    apply(allowWeb(`${TD}/ns/shop/sa/cart`));
    await waitFor(() => served(web, 'allow-web')?.rules[0].from[0].principals[0].exact === `${TD}/ns/shop/sa/cart`, 'the edit to be pushed');
    await waitFor(() => condition(getJson(['authorizationpolicies.security.trellis.dev', '-n', 'shop', 'allow-web']), 'Accepted')?.observedGeneration === 2, 'the status to follow the edit');

    kubectl(['-n', 'shop', 'delete', 'authorizationpolicies.security.trellis.dev', 'allow-web']);
    await waitFor(() => served(web, 'allow-web') === undefined, 'the deleted policy to be withdrawn');
    expect(served(web, 'from-file')).to.not.equal(undefined);
  });

  it('Should keep the last good version of an object broken past the webhook, and say why on its status and in one Event, in the text trellis validate prints', async () => {
    const web = sidecar(leader, 'shop', 'web-2', 'app=web');
    await web.rotate();
    apply(allowWeb(`${TD}/ns/shop/sa/frontend`));
    await waitFor(() => served(web, 'allow-web') !== undefined, 'the good version to be served');
    const get = (): Obj => getJson(['authorizationpolicies.security.trellis.dev', '-n', 'shop', 'allow-web'])!;
    const goodGeneration = get().metadata.generation as number;
    // Count from a settled stream. rotate() resolves when the SVID arrives; the sidecar then moves to a
    // stream authenticated with it, subscribing with the versions it holds at that moment. A policy that
    // reached the old stream meanwhile is sent once more on the new one: a legitimate push of the good
    // version, which under load landed after the count was taken (CI: 3, not 2). So wait until the leader
    // sees one stream for web-2, on its SVID, with the version the sidecar holds acknowledged and nothing
    // in flight; from then on any authz push is the control plane's own doing.
    const webId = `spiffe://${TD}/ns/shop/sa/web-2`;
    await waitFor(async () => {
      const streams = (await adminJson<{ proxies: Obj[] }>(leader, '/debug/proxies')).proxies.filter((p) => p.spiffeId === webId);
      const authzSync = streams[0]?.types?.authz as Obj | undefined;
      return streams.length === 1 && streams[0]!.authMethod === 'svid' && authzSync?.state === 'SYNCED' && authzSync.ackedVersion === web.last('authz');
    }, 'web-2 on one SVID stream with the good version acknowledged');
    const pushes = web.count('authz');

    expect(k8s.kubectl(['apply', '-f', '-'], { input: BROKEN }).status, 'no webhook here: the API server stores it').to.equal(0);
    await waitFor(() => condition(get(), 'Accepted')?.status === 'False', 'Accepted=False');
    const c = condition(get(), 'Accepted')!;
    expect(c.reason).to.equal('Invalid');
    expect(c.observedGeneration).to.equal(goodGeneration + 1);
    expect(c.message).to.include('AuthorizationPolicy shop/allow-web');
    for (const line of validateErrors(BROKEN, 'broken')) expect(c.message, 'every error trellis validate prints').to.include(line);
    expect(c.message).to.include(`the last valid version (generation ${goodGeneration}) stays in force`);

    // The sidecar keeps the good version: no push took it away.
    await new Promise((r) => setTimeout(r, 500));
    expect(web.count('authz'), `authz versions received: ${(web.received.get('authz') ?? []).join(', ')}`).to.equal(pushes);
    expect(served(web, 'allow-web')!).to.deep.include({ action: 'ALLOW' });
    const debug = await adminJson<Obj>(leader, '/debug/policies');
    expect(debug.servable).to.equal(true);
    expect((debug.sources.kubernetes.objects as Obj[]).find((o) => o.object === 'AuthorizationPolicy shop/allow-web')).to.deep.include({ state: 'rejected', inForceGeneration: goodGeneration });

    // One Event, from the one replica that holds the Lease, with the condition's text.
    await waitFor(() => events('shop', 'allow-web', 'PolicyInvalid').length > 0, 'the Warning Event');
    await new Promise((r) => setTimeout(r, 1000));
    const warnings = events('shop', 'allow-web', 'PolicyInvalid');
    expect(warnings, 'two replicas, one writer').to.have.length(1);
    expect(warnings[0]).to.deep.include({ type: 'Warning', message: c.message });
    expect(follower.logs.some((l) => l.includes('"became leader"')), 'the second replica follows').to.equal(false);

    apply(allowWeb(`${TD}/ns/shop/sa/cart`));
    await waitFor(() => condition(get(), 'Accepted')?.status === 'True', 'Accepted=True again');
    await waitFor(() => served(web, 'allow-web')?.rules[0].from[0].principals[0].exact === `${TD}/ns/shop/sa/cart`, 'the fixed version to be pushed');
    await waitFor(() => events('shop', 'allow-web', 'PolicyValid').length === 1, 'the Normal Event');
    kubectl(['-n', 'shop', 'delete', 'authorizationpolicies.security.trellis.dev', 'allow-web']);
  });

  it('Should load security.istio.io v1 and v1beta1 objects as the same manifests load from a file, root namespace included', async () => {
    // Istio's own example (the corpus), unchanged: a v1 PeerAuthentication for app=httpbin,version=v1 in default.
    const pa = readFileSync(corpusPath('istio-security-policies', 'validation-dataset', 'security-v1-PeerAuthentication.yaml'), 'utf8');
    // Istio's v1beta1 example AuthorizationPolicy without its `when` (JWT claims, which Trellis refuses), and a mesh-wide v1 policy.
    const ap = `apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: authorization-policy
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        namespaces: ["test"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*"]
    - operation:
        methods: ["POST"]
        paths: ["/data"]
`;
    const mesh = 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: trellis-system\nspec:\n  mtls:\n    mode: STRICT\n';
    const httpbin = sidecar(leader, 'default', 'httpbin', 'app=httpbin,version=v1');
    const web = sidecar(leader, 'shop', 'web-3', 'app=web');
    await httpbin.rotate();
    await web.rotate();
    await waitFor(() => (web.bodies.get('peer_authn')?.[0] as Obj | undefined)?.mode === 'PERMISSIVE', 'the default mode before the mesh-wide policy');
    for (const y of [pa, ap, mesh]) apply(y);

    await waitFor(() => authz(httpbin).some((p) => p.name === 'authorization-policy'), 'the v1beta1 AuthorizationPolicy');
    await waitFor(() => (httpbin.bodies.get('peer_authn')?.[0] as Obj | undefined)?.portModes?.['8080'] === 'STRICT', 'the v1 PeerAuthentication');
    await waitFor(() => (web.bodies.get('peer_authn')?.[0] as Obj | undefined)?.mode === 'STRICT', 'the mesh-wide policy in the root namespace');

    // The same manifests as one file: what each sidecar gets is the same (the watch reads v1, the file says v1beta1).
    const file = parsePolicyFile([pa, ap, mesh].join('---\n'), 'istio.yaml', { firstSeen: new Date(), rootNamespace: 'trellis-system' });
    expect(file.issues.filter((i) => i.severity === 'error')).to.deep.equal([]);
    const set = buildPolicySet(file.policies);
    const w = { namespace: 'default', labels: { app: 'httpbin', version: 'v1' } };
    // Everything but the creation time (the API server's, not the file's) means the same.
    const meaning = ({ creationTimestamp: _t, ...m }: Obj): Obj => m;
    expect(authz(httpbin).map(meaning)).to.deep.equal(encodeAuthorizationPolicies(selectAuthorizationPolicies(set, w, { rootNamespace: 'trellis-system' })).map((p) => meaning(JSON.parse(JSON.stringify(p)) as Obj)));
    const expected = resolvePeerAuthentication(set, w, { rootNamespace: 'trellis-system', defaultMode: 'PERMISSIVE' });
    expect(httpbin.bodies.get('peer_authn')?.[0]).to.deep.equal({ mode: expected.mode, portModes: Object.fromEntries(Object.entries(expected.portModes).map(([p, m]) => [String(p), m])), keyExchange: 'prefer' });

    // Their verdict goes on Istio's status subresource too, under a condition type istiod never writes.
    await waitFor(() => condition(getJson(['authorizationpolicies.security.istio.io', '-n', 'default', 'authorization-policy']), 'TrellisAccepted')?.status === 'True', 'TrellisAccepted=True');
    for (const [kind, ns, name] of [['authorizationpolicies.security.istio.io', 'default', 'authorization-policy'], ['peerauthentications.security.istio.io', 'default', 'valid-peer-authentication'], ['peerauthentications.security.istio.io', 'trellis-system', 'default']] as const) {
      kubectl(['-n', ns, 'delete', kind, name]);
    }
    await waitFor(() => (web.bodies.get('peer_authn')?.[0] as Obj | undefined)?.mode === 'PERMISSIVE', 'the mesh-wide policy withdrawn');
  });

  it('Should not be ready while an object present at start fails validation, serve no policy meanwhile, and be ready once it is fixed', async () => {
    kubectl(['create', 'namespace', 'startup']);
    apply(BROKEN.replace('namespace: shop', 'namespace: startup').replace('name: allow-web', 'name: broken-at-start'));
    const cp = await startReplica([], NOT_READY_LINE);
    extra.push(cp);
    expect(await readyz(cp)).to.equal(503);
    const status = await adminJson<Obj>(cp, '/debug/policies');
    expect(status.servable).to.equal(false);
    expect((status.sources.kubernetes.objects as Obj[]).map((o) => o.object)).to.include('AuthorizationPolicy startup/broken-at-start');
    const s = sidecar(cp, 'startup', 'app', 'app=web');
    await s.rotate();
    await waitFor(() => s.last('bundle') !== undefined, 'the bundle');
    await new Promise((r) => setTimeout(r, 500));
    expect(s.count('authz'), 'no policy is served while not ready').to.equal(0);

    apply(allowWeb(`${TD}/ns/startup/sa/frontend`).replace('namespace: shop', 'namespace: startup').replace('name: allow-web', 'name: broken-at-start'));
    await waitFor(async () => (await readyz(cp)) === 200, 'readyz 200 once the object validates', 20_000);
    await waitFor(() => served(s, 'broken-at-start') !== undefined, 'the policies to be served');

    // --allow-invalid-policies serves the valid objects at once, as it does for files.
    apply(BROKEN.replace('namespace: shop', 'namespace: startup').replace('name: allow-web', 'name: still-broken'));
    const lax = await startReplica(['--allow-invalid-policies']);
    extra.push(lax);
    expect(await readyz(lax)).to.equal(200);
    kubectl(['-n', 'startup', 'delete', 'authorizationpolicies.security.trellis.dev', '--all']);
    for (const p of extra.splice(0)) await p.stop();
  });

  it('Should publish trellis-ca-root-cert with the roots in every namespace but Kubernetes\' own, and in a namespace created later', async () => {
    const root = readFileSync(join(caDir, 'root.pem'), 'utf8');
    const pem = (ns: string): string | undefined => getJson(['configmap', '-n', ns, 'trellis-ca-root-cert'])?.data?.['root-cert.pem'];
    for (const ns of ['shop', 'default', 'trellis-system', 'startup']) await waitFor(() => pem(ns) === root, `the ConfigMap in ${ns}`);
    for (const ns of ['kube-system', 'kube-public', 'kube-node-lease']) expect(pem(ns), ns).to.equal(undefined);
    kubectl(['create', 'namespace', 'later']);
    await waitFor(() => pem('later') === root, 'the ConfigMap in a new namespace');
    // Exactly what it needs: one ConfigMap name, no Secrets.
    const can = (verb: string, what: string, ns = 'shop'): string => k8s.kubectl(['auth', 'can-i', verb, what, '--as', SA, '-n', ns]).stdout.trim();
    expect(can('update', 'configmaps/trellis-ca-root-cert')).to.equal('yes');
    expect(can('update', 'configmaps/other')).to.equal('no');
    expect(can('list', 'configmaps')).to.equal('no');
    expect(can('get', 'secrets')).to.equal('no');
    expect(can('update', 'authorizationpolicies.security.trellis.dev/x'), 'status only, never spec').to.equal('no');
  });

  it('Should put the ConfigMap back when it is deleted or edited', async () => {
    const root = readFileSync(join(caDir, 'root.pem'), 'utf8');
    const pem = (): string | undefined => getJson(['configmap', '-n', 'shop', 'trellis-ca-root-cert'])?.data?.['root-cert.pem'];
    kubectl(['-n', 'shop', 'delete', 'configmap', 'trellis-ca-root-cert']);
    await waitFor(() => pem() === root, 'the deleted ConfigMap to be created again');
    kubectl(['-n', 'shop', 'patch', 'configmap', 'trellis-ca-root-cert', '--type', 'merge', '-p', JSON.stringify({ data: { 'root-cert.pem': 'tampered' } })]);
    await waitFor(() => pem() === root, 'the edited ConfigMap to be put back');
  });

  it('Should rewrite every namespace\'s ConfigMap when a root rotation changes the bundle, and keep it so from the other replica once the leader is gone', async () => {
    const r = trellisSync(['ca', 'rotate-root', '--ca-dir', caDir, '--root-dir', join(tmp.dir, 'new-root')]);
    expect(r.status, r.stderr).to.equal(0);
    const newRoot = readFileSync(join(tmp.dir, 'new-root', 'root.pem'), 'utf8').trim();
    const roots = (ns: string): string[] => (getJson(['configmap', '-n', ns, 'trellis-ca-root-cert'])?.data?.['root-cert.pem'] ?? '').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
    for (const ns of ['shop', 'default', 'trellis-system', 'later']) {
      await waitFor(() => roots(ns).length === 2 && roots(ns).includes(newRoot), `both roots in ${ns}`);
    }

    // The leader leaves (and releases the Lease): the other replica takes over the writing.
    await leader.stop();
    await waitFor(() => follower.logs.some((l) => l.includes('"became leader"')), 'the second replica to lead', 20_000);
    kubectl(['-n', 'later', 'delete', 'configmap', 'trellis-ca-root-cert']);
    await waitFor(() => roots('later').length === 2, 'the new leader to restore it');
  });
});
