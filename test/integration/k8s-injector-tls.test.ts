/**
 * The injector's serving certificate and the webhooks' caBundle on a real API
 * server, with nothing made by hand: two real injector processes
 * (`trellis injector --cert-secret`) share one Secret, the Lease leader alone
 * writes caBundle into the shipped webhook configurations (registered by url:
 * the API server cannot dial a Service here), re-applying those manifests
 * leaves it in place, a wiped caBundle comes back, and the certificate renews
 * before it expires (short lifetimes here) while admission keeps working.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ProcessGroup, REPO_ROOT, injectorPort, makeTmpDir, requireKubeApiServer, startKubeApiServer, waitFor, type KubeApiServer } from '@trellis/testkit';

type Obj = Record<string, any>;

function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const serial = s.getPeerX509Certificate()!.serialNumber;
      s.end();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

describe('injector certificates and caBundle on a real API server', function () {
  this.timeout(180_000);
  const tmp = makeTmpDir('trellis-injector-tls-');
  const procs = new ProcessGroup(tmp.dir);
  let k8s: KubeApiServer;
  const ports: number[] = [];
  const injectors: ChildProcess[] = [];
  let manifests = '';

  const secret = (): Obj => JSON.parse(k8s.kubectlOk(['-n', 'trellis-system', 'get', 'secret', 'trellis-injector-tls', '-o', 'json'])) as Obj;
  const caBundles = (): string[] =>
    ['mutatingwebhookconfiguration/trellis-sidecar-injector', 'validatingwebhookconfiguration/trellis-policy-validator'].flatMap(
      (o) => (JSON.parse(k8s.kubectlOk(['get', o, '-o', 'json'])) as Obj).webhooks.map((w: Obj) => w.clientConfig.caBundle ?? ''),
    );
  const createPod = (name: string): { status: number; stderr: string; pod?: Obj } => {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels: { app: 'web' } }, spec: { automountServiceAccountToken: false, containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }] }] } };
    const r = k8s.kubectl(['create', '-o', 'json', '-f', '-'], { input: JSON.stringify(pod) });
    return { status: r.status, stderr: r.stderr, ...(r.status === 0 ? { pod: JSON.parse(r.stdout) as Obj } : {}) };
  };

  before(async function () {
    this.timeout(120_000);
    requireKubeApiServer(this, 'the injector certificate tests');
    k8s = await startKubeApiServer({ noControllerManager: true });
    k8s.kubectlOk(['create', 'namespace', 'trellis-system']);
    k8s.kubectlOk(['create', 'namespace', 'shop']);
    k8s.kubectlOk(['label', 'namespace', 'shop', 'trellis-injection=enabled']);
    k8s.kubectlOk(['-n', 'shop', 'create', 'serviceaccount', 'default']); // no controller manager here to make it
    k8s.kubectlOk(['apply', '--validate=false', '-f', join(REPO_ROOT, 'deploy', 'crds')]);
    // Port 0: each injector prints the port it bound (a port picked free here could be taken before it binds). The
    // webhooks are applied once injector 0's port is known; the leader publishes caBundle every round, so it finds them.
    for (const i of [0, 1]) {
      injectors.push(
        procs.spawn([
          'injector', '--listen', '127.0.0.1:0', '--cert-secret', 'trellis-injector-tls', '--namespace', 'trellis-system', '--kubeconfig', k8s.kubeconfig,
          '--ip-san', '127.0.0.1', '--identity', `injector-${i}`, '--cert-ttl', '12s', '--refresh-interval', '1s', '--lease-duration', '3s',
          '--config', join(REPO_ROOT, 'deploy', 'injector-config.yaml'),
        ]),
      );
    }
    ports.push(...(await Promise.all(injectors.map((p) => injectorPort(p)))));
    // The shipped webhook configurations, pointed at injector 0 by url instead of the Service; no caBundle, as shipped.
    const docs = ['mutating-webhook.yaml', 'validating-webhook.yaml'].map((f) => parseYaml(readFileSync(join(REPO_ROOT, 'deploy', f), 'utf8')) as Obj);
    for (const d of docs) for (const w of d.webhooks) w.clientConfig = { url: `https://127.0.0.1:${ports[0]}${w.clientConfig.service.path}` };
    manifests = join(tmp.dir, 'webhooks.json');
    writeFileSync(manifests, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));
    k8s.kubectlOk(['apply', '-f', manifests]);
    await waitFor('both injectors to serve', async () => (await Promise.all(ports.map(servedSerial))).length === 2, 30_000, 200);
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') procs.dumpLogs(30);
  });
  after(async () => {
    procs.killAll();
    await k8s?.stop();
    tmp.cleanup();
  });

  it('Should have one Secret both replicas serve, and the Lease leader alone publish its CA as caBundle', async () => {
    const s = secret();
    const bundle = Buffer.from(s.data['ca.crt'], 'base64').toString();
    await waitFor('the caBundle in every webhook', () => caBundles().every((b) => b !== '' && Buffer.from(b, 'base64').toString() === bundle), 20_000, 200);
    const leaf = new X509Certificate(Buffer.from(s.data['tls.crt'], 'base64'));
    expect(leaf.subjectAltName).to.include('DNS:trellis-injector.trellis-system.svc').and.include('IP Address:127.0.0.1');
    await waitFor('both replicas serving the Secret', async () => (await Promise.all(ports.map(servedSerial))).every((x) => x === leaf.serialNumber), 10_000, 200);
    const lease = JSON.parse(k8s.kubectlOk(['-n', 'trellis-system', 'get', 'lease', 'trellis-injector', '-o', 'json'])) as Obj;
    const leader = lease.spec.holderIdentity as string;
    expect(leader).to.match(/^injector-[01]$/);
    const published = injectors.map((p) => procs.log(p).includes('webhook caBundle published'));
    expect(published, 'only the leader wrote caBundle').to.deep.equal([leader === 'injector-0', leader === 'injector-1']);
  });

  it('Should admit through the webhooks: a pod is injected and an invalid policy refused', () => {
    const r = createPod('web-1');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.pod!.metadata.annotations['sidecar.trellis.dev/status']).to.be.a('string');
    const bad = k8s.kubectl(['apply', '-f', '-'], { input: 'apiVersion: security.trellis.dev/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\nspec:\n  portLevelMtls:\n    "80": {mode: STRICT}\n' });
    expect(bad.stderr).to.match(/denied the request.*portLevelMtls requires selector/);
  });

  it('Should leave caBundle in place when the shipped manifests are applied again (unchanged), and admission working', () => {
    const before = caBundles();
    const out = k8s.kubectlOk(['apply', '-f', manifests]);
    expect(out).to.match(/trellis-sidecar-injector unchanged/).and.match(/trellis-policy-validator unchanged/);
    expect(caBundles()).to.deep.equal(before);
    expect(createPod('web-2').status).to.equal(0);
  });

  it('Should restore a caBundle someone wiped (the old manifests set caBundle: "")', async () => {
    // The patch's answer is the object as stored: the wipe landed (the leader may restore it at any
    // moment after, so admission is not probed in between: that would race the restore).
    const wiped = JSON.parse(k8s.kubectlOk(['patch', 'mutatingwebhookconfiguration', 'trellis-sidecar-injector', '--type=json', '-o', 'json', '-p', '[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":""}]'])) as { webhooks: Array<{ clientConfig: { caBundle?: string } }> };
    expect(wiped.webhooks[0]!.clientConfig.caBundle ?? '', 'the wipe landed').to.equal('');
    await waitFor('the leader to restore caBundle', () => caBundles().every((b) => b !== ''), 15_000, 200);
    expect(createPod('web-4').status).to.equal(0);
  });

  it('Should renew the serving certificate before it expires, and keep admitting pods', async () => {
    const first = await servedSerial(ports[0]!);
    const notAfter = new Date(new X509Certificate(Buffer.from(secret().data['tls.crt'], 'base64')).validTo).getTime();
    await waitFor('a renewed certificate on both replicas', async () => {
      const now = await Promise.all(ports.map(servedSerial));
      return now[0] !== first && now[0] === now[1];
    }, 20_000, 250);
    expect(Date.now(), 'renewed before the old one expired').to.be.below(notAfter);
    expect(createPod('web-5').status).to.equal(0);
  });
});
