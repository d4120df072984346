/**
 * `trellis install` / `uninstall` on a fresh real API server (1.20 here, so
 * the install adapts: no CEL, policy/v1beta1 PDBs, classic sidecars), and
 * its manifests against `kubectl kustomize deploy/`. There is no kubelet:
 * Deployments never become ready, so installs run with --no-wait and the
 * injector runs as a local process with its own ServiceAccount's token,
 * which also proves its RBAC is enough. Nothing routes a Service here, so to
 * admit a pod the webhooks are pointed at that process by url (as
 * k8s-injector-tls.test.ts does), after the install re-run.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KubeClient, objectPath } from '@trellis/kubernetes';
import { ProcessGroup, REPO_ROOT, injectorPort as readInjectorPort, makeTmpDir, requireKubeApiServer, startKubeApiServer, trellisSync, waitFor, type KubeApiServer } from '@trellis/testkit';

type Obj = Record<string, any>;
const key = (o: Obj): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

describe('trellis install --dry-run', () => {
  it('Should print exactly the objects kubectl kustomize deploy/ builds (deploy/ stays the one source)', function () {
    const k = spawnSync('kubectl', ['kustomize', join(REPO_ROOT, 'deploy')], { encoding: 'utf8' });
    if (k.error) {
      console.warn('      skipped: kubectl is not installed');
      this.skip();
    }
    const kustomized = parseAllDocuments(k.stdout).map((d) => d.toJS() as Obj).filter(Boolean);
    const r = trellisSync(['install', '--dry-run', '-o', 'json']);
    expect(r.status, r.stderr).to.equal(0);
    const ours = (JSON.parse(r.stdout) as Obj).items as Obj[];
    expect(ours.map(key).sort()).to.deep.equal(kustomized.map(key).sort());
    const byKey = new Map(kustomized.map((o) => [key(o), o]));
    for (const o of ours) expect(o, key(o)).to.deep.equal(byKey.get(key(o)));
  });

  it('Should never print a private key, and say how to make the CA Secret', () => {
    const tmp = makeTmpDir('trellis-install-dry-');
    try {
      const r = trellisSync(['install', '--dry-run', '--generate-ca', '--trust-domain', 'example.org', '--ca-out', join(tmp.dir, 'ca')]);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.not.match(/PRIVATE KEY|intermediate\.key:/);
      expect(r.stdout).to.include('create secret generic trellis-ca');
      expect(r.stdout).to.include('trustDomain: example.org');
      expect(r.stderr).to.include(join(tmp.dir, 'ca', 'root.key'));
    } finally {
      tmp.cleanup();
    }
  });
});

describe('trellis install on a real API server', function () {
  this.timeout(240_000);
  const tmp = makeTmpDir('trellis-install-');
  const procs = new ProcessGroup(tmp.dir);
  const caOut = join(tmp.dir, 'ca');
  let k8s: KubeApiServer;
  let installed: Obj[] = [];
  let injectorPort = 0;

  const install = (args: string[]): { status: number; stdout: string; stderr: string } =>
    trellisSync(['install', '--kubeconfig', k8s.kubeconfig, '--no-wait', ...args], { timeoutMs: 120_000 });
  let client: KubeClient;
  const get = (o: Obj): Promise<Obj | null> => client.getOrNull(objectPath(o)) as Promise<Obj | null>;
  const versions = async (): Promise<Record<string, string>> => Object.fromEntries(await Promise.all(installed.map(async (o) => [key(o), (await get(o))?.metadata.resourceVersion ?? 'missing'])));
  const caBundles = (): string[] =>
    ['mutatingwebhookconfiguration/trellis-sidecar-injector', 'validatingwebhookconfiguration/trellis-policy-validator'].flatMap(
      (o) => (JSON.parse(k8s.kubectlOk(['get', o, '-o', 'json'])) as Obj).webhooks.map((w: Obj) => w.clientConfig.caBundle ?? ''),
    );

  before(async function () {
    this.timeout(120_000);
    requireKubeApiServer(this, 'the trellis install tests');
    // No controller manager: nothing here needs pods, and the namespace's deletion is checked as started.
    k8s = await startKubeApiServer({ noControllerManager: true });
    client = await KubeClient.connect({ kubeconfig: k8s.kubeconfig });
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') procs.dumpLogs(30);
  });
  after(async () => {
    procs.killAll();
    await k8s?.stop();
    tmp.cleanup();
  });

  it('Should install everything in one command, with a new CA whose root key stays on this machine', async () => {
    const r = install(['--generate-ca', '--trust-domain', 'prod.example', '--ca-out', caOut]);
    expect(r.status, r.stderr + r.stdout).to.equal(0);
    expect(r.stdout).to.include('trust domain prod.example');
    expect(r.stdout).to.match(/root key \(.*root\.key\) never entered the cluster/);
    expect(statSync(join(caOut, 'root.key')).mode & 0o777).to.equal(0o600);
    const dry = trellisSync(['install', '--dry-run', '-o', 'json', '--kubeconfig', k8s.kubeconfig, '--ca-dir', caOut]);
    installed = [...((JSON.parse(dry.stdout) as Obj).items as Obj[]), { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'trellis-ca', namespace: 'trellis-system' } }];
    for (const o of installed) expect(await get(o), key(o)).to.not.equal(null);
    const secret = (await get({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'trellis-ca', namespace: 'trellis-system' } }))!;
    expect(Object.keys(secret.data).sort()).to.deep.equal(['chain.pem', 'intermediate.key', 'intermediate.pem', 'root.pem']);
    // Adapted to 1.20 from discovery.
    const cp = (await get({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'trellis-control-plane', namespace: 'trellis-system' } }))!;
    const args = cp.spec.template.spec.containers[0].args as string[];
    expect(args[args.indexOf('--trust-domain') + 1]).to.equal('prod.example');
    const cfg = (await get({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'trellis-injector-config', namespace: 'trellis-system' } }))!;
    expect(cfg.data['config.yaml']).to.include('trustDomain: prod.example').and.include('nativeSidecar: false');
    if (/^v1\.20\./.test(k8s.version)) {
      expect(r.stdout).to.include('policy/v1beta1');
      expect(k8s.kubectl(['-n', 'trellis-system', 'get', 'pdb', 'trellis-injector']).status).to.equal(0);
    }
  });

  it('Should change nothing when run again, with or without the CA flags (every resourceVersion stays)', async () => {
    const before = await versions();
    for (const args of [[], ['--ca-dir', caOut]]) {
      const r = install(args);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/, 0 changed,/);
      expect(r.stdout.split('\n').filter((l) => / (created|configured)$/.test(l))).to.deep.equal([]);
    }
    expect(await versions()).to.deep.equal(before);
  });

  it('Should grant the injector exactly what it needs: it makes its certificate and publishes caBundle with its own ServiceAccount', async () => {
    const token = k8s.kubectlOk(['-n', 'trellis-system', 'create', 'token', 'trellis-injector', '--duration', '1h']).trim();
    const kubeconfig = join(tmp.dir, 'injector.kubeconfig');
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${k8s.server}", certificate-authority: "${join(k8s.pkiDir, 'ca.crt')}"}}]\nusers: [{name: u, user: {token: "${token}"}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`);
    // --ip-san: later the webhooks are pointed at it by url (the API server here cannot dial a Service). Port 0: it
    // prints the port it bound (a port picked free here could be taken before it binds).
    const injector = procs.spawn(['injector', '--listen', '127.0.0.1:0', '--ip-san', '127.0.0.1', '--cert-secret', 'trellis-injector-tls', '--kubeconfig', kubeconfig, '--refresh-interval', '1s', '--lease-duration', '3s', '--config', join(REPO_ROOT, 'deploy', 'injector-config.yaml')]);
    injectorPort = await readInjectorPort(injector);
    await waitFor('the injector to publish caBundle', () => caBundles().every((b) => b !== ''), 30_000, 250);
    const can = (verb: string, what: string): boolean => k8s.kubectl(['auth', 'can-i', verb, what, '--as', 'system:serviceaccount:trellis-system:trellis-injector', '-n', 'trellis-system']).stdout.trim() === 'yes';
    expect(can('get', 'secrets/trellis-injector-tls')).to.equal(true);
    expect(can('get', 'secrets/trellis-ca'), 'the injector cannot read the CA Secret').to.equal(false);
    expect(can('list', 'secrets')).to.equal(false);
    expect(can('update', 'mutatingwebhookconfigurations/some-other')).to.equal(false);
    expect(k8s.kubectl(['auth', 'can-i', 'get', '/openid/v1/jwks', '--as', 'system:serviceaccount:trellis-system:trellis-control-plane']).stdout.trim(), 'the control plane reads the token keys').to.equal('yes');
  });

  it('Should admit a pod through the webhooks after install runs again, with caBundle and the injector\'s certificate kept', async () => {
    const bundles = caBundles();
    const r = install([]);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/, 0 changed,/);
    expect(caBundles(), 'the re-run left the injector\'s caBundle').to.deep.equal(bundles);
    // As k8s-injector-tls does: the webhooks pointed at the injector by url, since no Service routes
    // here; put back afterwards, as installed.
    const kinds = ['mutatingwebhookconfiguration/trellis-sidecar-injector', 'validatingwebhookconfiguration/trellis-policy-validator'];
    const services = new Map<string, Obj[]>();
    for (const kind of kinds) {
      const hooks = (JSON.parse(k8s.kubectlOk(['get', kind, '-o', 'json'])) as Obj).webhooks as Obj[];
      services.set(kind, hooks.map((w) => w.clientConfig.service as Obj));
      const ops = hooks.flatMap((w, i) => [
        { op: 'remove', path: `/webhooks/${i}/clientConfig/service` },
        { op: 'add', path: `/webhooks/${i}/clientConfig/url`, value: `https://127.0.0.1:${injectorPort}${w.clientConfig.service.path}` },
      ]);
      k8s.kubectlOk(['patch', kind, '--type=json', '-p', JSON.stringify(ops)]);
    }
    try {
      k8s.kubectlOk(['create', 'namespace', 'shop']);
      k8s.kubectlOk(['label', 'namespace', 'shop', 'trellis-injection=enabled']);
      k8s.kubectlOk(['-n', 'shop', 'create', 'serviceaccount', 'default']); // no controller manager here to make it
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web' } }, spec: { automountServiceAccountToken: false, containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }] }] } };
      const created = k8s.kubectl(['create', '-o', 'json', '-f', '-'], { input: JSON.stringify(pod) });
      expect(created.status, created.stderr).to.equal(0);
      expect((JSON.parse(created.stdout) as Obj).metadata.annotations['sidecar.trellis.dev/status'], 'injected by the webhook').to.be.a('string');
    } finally {
      for (const kind of kinds) {
        const ops = services.get(kind)!.flatMap((service, i) => [{ op: 'remove', path: `/webhooks/${i}/clientConfig/url` }, { op: 'add', path: `/webhooks/${i}/clientConfig/service`, value: service }]);
        k8s.kubectlOk(['patch', kind, '--type=json', '-p', JSON.stringify(ops)]);
      }
    }
  });

  it('Should keep caBundle when the manifests are applied again with kubectl, and the second kubectl apply is unchanged', () => {
    const bundles = caBundles();
    // The same manifests install applied (its CA, so its trust domain).
    const dry = trellisSync(['install', '--dry-run', '-o', 'yaml', '--kubeconfig', k8s.kubeconfig, '--ca-dir', caOut]);
    const file = join(tmp.dir, 'manifests.yaml');
    writeFileSync(file, dry.stdout);
    const first = k8s.kubectl(['apply', '-f', file]);
    expect(first.status, first.stderr).to.equal(0);
    expect(first.stdout.split('\n').filter((l) => l !== '' && !/ unchanged$/.test(l)), 'kubectl finds nothing install did not already apply').to.deep.equal([]);
    expect(caBundles()).to.deep.equal(bundles);
    const second = k8s.kubectlOk(['apply', '-f', file]);
    expect(second.split('\n').filter((l) => l !== '' && !/ unchanged$/.test(l))).to.deep.equal([]);
    expect(caBundles()).to.deep.equal(bundles);
  });

  it('Should remove everything with trellis uninstall, webhooks first, and keep the CRDs unless --purge', async () => {
    // A dying injector must not renew its Lease or rewrite its Secret after the uninstall deleted them.
    await procs.killAllAndWait();
    const r = trellisSync(['uninstall', '--kubeconfig', k8s.kubeconfig], { timeoutMs: 120_000 });
    expect(r.status, r.stderr).to.equal(0);
    const lines = r.stdout.split('\n');
    expect(lines.findIndex((l) => l.startsWith('MutatingWebhookConfiguration/'))).to.be.below(lines.findIndex((l) => l.startsWith('Deployment/')));
    for (const o of installed.filter((x) => x.kind !== 'Namespace' && x.kind !== 'CustomResourceDefinition')) expect(await get(o), key(o)).to.equal(null);
    expect(await get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'peerauthentications.security.trellis.dev' } })).to.not.equal(null);
    const ns = k8s.kubectl(['get', 'namespace', 'trellis-system', '-o', 'json']);
    expect(ns.status === 0 ? (JSON.parse(ns.stdout) as Obj).status.phase : 'gone', 'the namespace is going').to.be.oneOf(['Terminating', 'gone']);
    const purge = trellisSync(['uninstall', '--kubeconfig', k8s.kubeconfig, '--purge'], { timeoutMs: 120_000 });
    expect(purge.status, purge.stderr).to.equal(0);
    expect(await get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'peerauthentications.security.trellis.dev' } })).to.equal(null);
    expect(existsSync(join(caOut, 'root.key')), 'the local CA is the operator\'s, never touched').to.equal(true);
  });
});
