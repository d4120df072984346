/**
 * The registry from a real Kubernetes API server (1.20: EndpointSlice
 * discovery.k8s.io/v1beta1), with the real controller manager writing the
 * EndpointSlices, a real `trellis control-plane --k8s-registry` reading them
 * with the RBAC deploy/rbac.yaml grants, and real `trellis sidecar` processes
 * for three pods. Pods are stored, never run (no kubelet): the test sets what
 * the kubelet would report (pod IP, Running, Ready) through the status
 * subresource, and runs each injected pod's sidecar as a local process with a
 * TokenRequest token bound to that pod, its listener on the pod IP (127.0.0.x:
 * all of 127/8 is loopback).
 *
 * Two control-plane replicas, A and B, run as deploy/control-plane.yaml runs
 * them (`--k8s-registry --k8s-jwks-from-api`; policy CRDs, root-cert
 * ConfigMaps, the Lease and the shared state on the API server; each with its
 * own copy of Secret trellis-ca), and the sidecars are spread over them:
 * payments' on B, web's and rogue's on A.
 *
 * The sidecars' discovery streams reach the control plane from 127.0.0.1, not
 * from their pod IPs: a Kubernetes sidecar is tied to its pod by the token's
 * bound pod claim (checked against the pod watch), and the address published
 * is the pod IP from the API server, never the stream's peer address.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { freePort, httpGet, makeTmpDir, ProcessGroup, REPO_ROOT, requireKubeApiServer, sidecarPorts, startKubeApiServer, trellisSync, waitFor, type KubeApiServer } from '@trellis/testkit';
import { adminGet, FakeSidecar, initCa, startControlPlaneProcess, TD, type ControlPlaneProcess } from './control-plane-harness';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const id = (sa: string): string => `spiffe://${TD}/ns/shop/sa/${sa}`;

const POLICIES = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: trellis-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: payments}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["${TD}/ns/shop/sa/web"]}}]
    to: [{operation: {methods: ["GET"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: quarantine, namespace: shop}
spec:
  selector: {matchLabels: {quarantine: "true"}}
  action: DENY
  rules: [{}]
`;

interface PodSpec {
  name: string;
  sa: string;
  ip: string;
  labels: Record<string, string>;
  /** App port → sidecar listener port (the injection status annotation). */
  inbound: Record<string, number>;
}

describe('The registry from a real Kubernetes API server (1.20, EndpointSlice v1beta1; real control plane and sidecar processes)', function () {
  this.timeout(180_000);
  const tmp = makeTmpDir('trellis-k8s-registry-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir, 200_000);
  const fakes: FakeSidecar[] = [];
  const apps: Server[] = [];
  let k8s: KubeApiServer;
  /** Replica A: web's and rogue's sidecars. */
  let cp: ControlPlaneProcess;
  /** Replica B: payments' sidecar. */
  let cpB: ControlPlaneProcess;
  /** A third replica, started while the API server is down. */
  let replicaC: ControlPlaneProcess | undefined;
  let kubeconfig: string;
  const port: Record<string, number> = {};
  const sidecars: Record<string, ChildProcess> = {};
  const pods: Record<string, PodSpec> = {};

  const kubectl = (args: string[], input?: string): string => k8s.kubectlOk(args, input === undefined ? {} : { input });
  const tokenFor = (p: PodSpec): string => kubectl(['-n', 'shop', 'create', 'token', p.sa, '--audience', 'trellis', '--duration', '1h', '--bound-object-kind', 'Pod', '--bound-object-name', p.name]).trim();
  /** Creates the pod as the injector would have mutated it, on node-1, then reports it Running and Ready at its IP (what the kubelet would). */
  const createPod = (p: PodSpec): void => {
    pods[p.name] = p;
    const status = JSON.stringify({ version: 1, initContainers: ['trellis-init'], containers: ['trellis-sidecar'], volumes: ['trellis-token', 'trellis-ca', 'trellis-podinfo'], inbound: p.inbound });
    kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: p.name, namespace: 'shop', labels: p.labels, annotations: { 'sidecar.trellis.dev/status': status } },
      spec: {
        nodeName: 'node-1',
        serviceAccountName: p.sa,
        automountServiceAccountToken: false,
        containers: [
          { name: 'trellis-sidecar', image: 'trellis', args: ['sidecar'] },
          { name: 'app', image: 'app', ports: Object.keys(p.inbound).map((appPort) => ({ name: 'http', containerPort: Number(appPort) })) },
        ],
      },
    }));
    kubectl(['-n', 'shop', 'patch', 'pod', p.name, '--subresource=status', '--type=merge', '-p', JSON.stringify({
      status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: 'Ready', status: 'True' }, { type: 'ContainersReady', status: 'True' }] },
    })]);
  };
  /** Runs the pod's sidecar as `trellis sidecar` with the flags injection gives it and a token bound to the pod. */
  /** Its admin (and any outbound) port bound from port 0: read them back with sidecarPorts. */
  const startSidecar = (p: PodSpec, o: { service: string; labels: string; inbound?: string; outbound?: string; on: ControlPlaneProcess }): ChildProcess => {
    writeFileSync(f(`${p.name}.token`), tokenFor(p) + '\n', { mode: 0o600 });
    const args = ['sidecar', '--control-plane', o.on.address, '--ca-bundle', f('ca/root.pem'), '--token-file', f(`${p.name}.token`), '--trust-domain', TD,
      '--namespace', 'shop', '--service-account', p.sa, '--service', o.service, '--labels', o.labels, '--admin', '127.0.0.1:0', '--drain', '1s'];
    if (o.inbound) args.push('--inbound', o.inbound);
    if (o.outbound) args.push('--outbound', o.outbound);
    const proc = group.spawn(args, { ...process.env, TRELLIS_POD_IP: p.ip });
    sidecars[p.name] = proc;
    return proc;
  };
  const app = async (who: string): Promise<number> => {
    const s = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ who, xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    apps.push(s);
    return (s.address() as { port: number }).port;
  };
  const dump = async (adminPort: number): Promise<{ ready: { ready: boolean }; endpoints: Record<string, { addresses: string[]; spiffeIds: string[] }>; controlPlane: { connection: { connected: boolean; lastError: { serverCode: string | null } | null } } }> =>
    JSON.parse((await httpGet(adminPort, '/config_dump')).body);
  const viaWeb = async (): Promise<{ status: number; body: string }> => httpGet(port.webOut!, '/charge');
  const metric = async (c: ControlPlaneProcess, line: string): Promise<number> => {
    const m = new RegExp(`^${line.replace(/[{}"]/g, (ch) => `\\${ch}`)} (\\S+)$`, 'm').exec((await adminGet(c, '/metrics')).body);
    return m ? Number(m[1]) : 0;
  };

  before(async function () {
    this.timeout(180_000);
    requireKubeApiServer(this, 'the Kubernetes registry tests');
    k8s = await startKubeApiServer();
    // The inbound ports are in the pods' specs, so they are picked before the start; admin and outbound ports are bound from port 0.
    for (const k of ['paymentsIn', 'rogueIn']) port[k] = await freePort();
    // The control plane's own identity and RBAC, exactly as deploy/rbac.yaml grants them.
    kubectl(['create', 'namespace', 'trellis-system']);
    kubectl(['apply', '-f', join(REPO_ROOT, 'deploy', 'rbac.yaml')]);
    kubectl(['create', 'namespace', 'shop']);
    for (const sa of ['payments', 'web', 'rogue']) kubectl(['-n', 'shop', 'create', 'serviceaccount', sa]);
    // The endpointslice controller of 1.20 needs the node a pod runs on to exist.
    kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } }));
    kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'payments', namespace: 'shop' },
      spec: { selector: { app: 'payments' }, ports: [{ name: 'http', port: 9001, targetPort: 8080 }] },
    }));
    createPod({ name: 'payments-1', sa: 'payments', ip: '127.0.0.2', labels: { app: 'payments' }, inbound: { 8080: port.paymentsIn! } });
    createPod({ name: 'web-1', sa: 'web', ip: '127.0.0.3', labels: { app: 'web' }, inbound: {} });
    createPod({ name: 'rogue-1', sa: 'rogue', ip: '127.0.0.4', labels: { app: 'rogue' }, inbound: { 8080: port.rogueIn! } });
    const cpToken = kubectl(['-n', 'trellis-system', 'create', 'token', 'trellis-control-plane', '--duration', '2h']).trim();
    kubeconfig = f('control-plane.kubeconfig');
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${k8s.server}", certificate-authority: "${join(k8s.pkiDir, 'ca.crt')}"}}]\n` +
      `users: [{name: cp, user: {token: "${cpToken}"}}]\ncontexts: [{name: c, context: {cluster: c, user: cp}}]\ncurrent-context: c\n`);
    // For the second replica, which starts while the API server is down: the keys offline.
    writeFileSync(f('jwks.json'), kubectl(['get', '--raw', '/openid/v1/jwks']));
    initCa(f('ca'));
    mkdirSync(f('policies'));
    writeFileSync(f('policies/shop.yaml'), POLICIES);
    // What trellis install leaves: the policy CRDs and Secret trellis-ca, which each replica's init container copies into its own CA dir.
    // 1.20 knows no x-kubernetes-validations (CEL, 1.25+): kubectl's client-side check refuses the field, the server drops it.
    kubectl(['apply', '--validate=false', '-f', join(REPO_ROOT, 'deploy', 'crds')]);
    const caFiles: Record<string, string> = { 'root.pem': 'root.pem', 'intermediate.pem': 'intermediate.pem', 'intermediate.key': 'intermediate.key', 'chain.pem': 'chain.pem' };
    kubectl(['-n', 'trellis-system', 'create', 'secret', 'generic', 'trellis-ca', ...Object.entries(caFiles).map(([k, p]) => `--from-file=${k}=${f(`ca/${p}`)}`)]);
    // deploy/control-plane.yaml's flags; policy CRDs, root-cert ConfigMaps and the shared state are on by default with an API server.
    const deployed = ['--kubeconfig', kubeconfig, '--k8s-audience', 'trellis', '--k8s-jwks-from-api', '--k8s-registry', '--trust-domain', TD];
    [cp, cpB] = await Promise.all(['a', 'b'].map((r) => {
      cpSync(f('ca'), f(`ca-${r}`), { recursive: true });
      return startControlPlaneProcess(f(`ca-${r}`), f('policies'), deployed);
    }));

    const paymentsApp = await app('payments');
    const rogueApp = await app('rogue');
    // Each sidecar announces what the injector derived at admission. rogue claims Service payments,
    // whose selector its pod does not match.
    const [payments, web, rogue] = await Promise.all([
      sidecarPorts(startSidecar(pods['payments-1']!, { service: 'payments', labels: 'app=payments', inbound: `127.0.0.2:${port.paymentsIn}=${paymentsApp}/http`, on: cpB })),
      sidecarPorts(startSidecar(pods['web-1']!, { service: 'web', labels: 'app=web', outbound: '127.0.0.1:0=payments:9001', on: cp })),
      sidecarPorts(startSidecar(pods['rogue-1']!, { service: 'payments', labels: 'app=payments', inbound: `127.0.0.4:${port.rogueIn}=${rogueApp}/http`, on: cp })),
    ]);
    [port.paymentsAdmin, port.webOut, port.webAdmin, port.rogueAdmin] = [payments.admin!, web.outbound[0]!, web.admin!, rogue.admin!];
    await waitFor('the three sidecars ready', async () => (await dump(port.paymentsAdmin!)).ready.ready && (await dump(port.webAdmin!)).ready.ready && (await dump(port.rogueAdmin!)).ready.ready, 60_000);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      group.dumpLogs(30);
      process.stderr.write(`--- replica A\n${cp?.logs.slice(-40).join('\n')}\n--- replica B\n${cpB?.logs.slice(-40).join('\n')}\n--- replica C\n${replicaC?.logs.slice(-20).join('\n') ?? ''}\n`);
    }
  });

  after(async () => {
    for (const s of fakes) s.stop();
    group.killAll();
    await cp?.stop();
    await cpB?.stop();
    await replicaC?.stop();
    for (const s of apps) {
      await new Promise<void>((r) => {
        s.close(() => r());
        s.closeAllConnections();
      });
    }
    await k8s?.stop();
    tmp.cleanup();
  });

  it('Should carry web\'s calls (its sidecar on replica A) to payments (its sidecar on replica B) over mTLS, at the pod IP and sidecar listener from the API server', async () => {
    for (const r of [cp, cpB]) expect(r.logs.some((l) => l.includes('watching EndpointSlices') && l.includes('discovery.k8s.io/v1beta1')), 'the EndpointSlice version comes from discovery').to.equal(true);
    // Each sidecar's stream is on the replica it was given.
    expect(cpB.logs.some((l) => l.includes('stream authenticated') && l.includes(id('payments')))).to.equal(true);
    expect(cp.logs.some((l) => l.includes('stream authenticated') && l.includes(id('payments'))), 'payments is not on A').to.equal(false);
    expect(cp.logs.some((l) => l.includes('stream authenticated') && l.includes(id('web')))).to.equal(true);
    await waitFor('payments in web\'s endpoints', async () => (await dump(port.webAdmin!)).endpoints['payments:9001'] !== undefined);
    const eps = (await dump(port.webAdmin!)).endpoints;
    expect(eps['payments:9001']).to.deep.equal({ addresses: [`127.0.0.2:${port.paymentsIn}`], spiffeIds: [id('payments')] });
    expect(eps['payments.shop:9001'], 'the qualified name too').to.deep.equal(eps['payments:9001']);
    const r = await viaWeb();
    expect(r.status).to.equal(200);
    const body = JSON.parse(r.body) as { who: string; xfcc: string };
    expect(body.who).to.equal('payments');
    expect(body.xfcc).to.match(new RegExp(`^By=${id('payments')};Hash=[0-9a-f]{64};URI=${id('web')}$`));
  });

  it('Should give payments\' sidecar on replica B a new SVID when a re-issue is ordered through replica A (trellis ca reissue --admin)', async () => {
    const identity = async (adminPort: number): Promise<{ serial: string; spiffeId: string }> => (JSON.parse((await httpGet(adminPort, '/config_dump')).body) as { identity: { serial: string; spiffeId: string } }).identity;
    const before = await identity(port.paymentsAdmin!);
    expect(before.spiffeId).to.equal(id('payments'));
    const r = trellisSync(['ca', 'reissue', '--admin', cp.admin, '--spiffe-id', id('payments'), '--window', '0s', '-o', 'json'], { env: cp.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    // The order is shared (ConfigMap trellis-reissue-orders): replica B, which holds payments' stream, carries it out.
    const orders = JSON.parse(JSON.parse(kubectl(['-n', 'trellis-system', 'get', 'configmap', 'trellis-reissue-orders', '-o', 'json'])).data['reissue-orders.json']) as unknown;
    expect(JSON.stringify(orders)).to.contain(id('payments'));
    await waitFor('payments\' sidecar (on replica B) to present a new serial', async () => (await identity(port.paymentsAdmin!)).serial !== before.serial, 30_000);
    expect((await identity(port.paymentsAdmin!)).spiffeId).to.equal(id('payments'));
    expect(cpB.logs.some((l) => l.includes('"msg":"stream authenticated"') && l.includes(id('payments'))), 'the SVID came from replica B').to.equal(true);
    await waitFor('web to reach payments on its new SVID', async () => (await viaWeb()).status === 200);
  });

  it('Should never publish a pod that is not behind Service payments, whatever its sidecar claims, and count the ignored claim', async () => {
    // rogue is a real pod with a valid token: it gets its SVID, but its claim of Service payments is ignored.
    expect((await dump(port.rogueAdmin!)).ready.ready).to.equal(true);
    expect(await metric(cp, 'trellis_attestation_ignored_claims_total{reason="service"}')).to.be.at.least(1);
    expect(cp.logs.some((l) => l.includes('node claim ignored') && l.includes(id('rogue')) && l.includes('shop/rogue-1'))).to.equal(true);
    expect((await dump(port.webAdmin!)).endpoints['payments:9001']!.addresses).to.deep.equal([`127.0.0.2:${port.paymentsIn}`]);
    for (let i = 0; i < 8; i++) expect(JSON.parse((await viaWeb()).body).who).to.equal('payments');
  });

  it('Should select policies by the pod\'s labels on the API server and follow a relabel without a reconnect', async () => {
    // Each SVID install (the re-issue two tests back included) moves the sidecar to a new stream a moment
    // later, which replica B logs as one more authenticated stream: count from after the move, so the
    // only stream that could appear below is one the relabel caused.
    const paymentsLog = (): string => group.log(sidecars['payments-1']!);
    await waitFor('payments on a stream opened with its newest SVID', () => paymentsLog().lastIndexOf('"msg":"discovery stream renewed with the new certificate"') > paymentsLog().lastIndexOf('"msg":"SVID installed"'), 30_000);
    const streamsBefore = cpB.logs.filter((l) => l.includes('stream authenticated') && l.includes(id('payments'))).length;
    kubectl(['-n', 'shop', 'label', 'pod', 'payments-1', 'quarantine=true']);
    await waitFor('the DENY policy selecting quarantine=true to apply to payments', async () => (await viaWeb()).status === 403);
    expect(cpB.logs.some((l) => l.includes('pod relabelled') && l.includes('shop/payments-1')), 'pushed by replica B, which holds payments\' stream').to.equal(true);
    kubectl(['-n', 'shop', 'label', 'pod', 'payments-1', 'quarantine-']);
    await waitFor('payments allowed again', async () => (await viaWeb()).status === 200);
    expect(cpB.logs.filter((l) => l.includes('stream authenticated') && l.includes(id('payments'))).length, 'no new stream: the pod change was pushed').to.equal(streamsBefore);
  });

  it('Should end the stream of a deleted pod\'s sidecar and refuse its token and its certificate from then on', async () => {
    const rogueToken = tokenFor(pods['rogue-1']!);
    kubectl(['-n', 'shop', 'delete', 'pod', 'rogue-1', '--grace-period=0', '--force']);
    await waitFor('rogue\'s stream ended and its reconnection (mTLS, with its SVID) refused', async () => (await dump(port.rogueAdmin!)).controlPlane.connection.lastError?.serverCode === 'TRELLIS_CP_TOKEN_POD_GONE');
    expect(cp.logs.some((l) => l.includes('pod gone: ending its stream') && l.includes('shop/rogue-1'))).to.equal(true);
    await waitFor('the reconnection with its SVID refused', () => cp.logs.some((l) => l.includes('stream authentication refused') && l.includes('was issued to pod shop/rogue-1')));
    const fake = new FakeSidecar({ addresses: [cp.address], caDir: f('ca'), spiffeId: id('rogue'), namespace: 'shop', token: () => rogueToken });
    fakes.push(fake);
    fake.start();
    await waitFor('the bound token refused', () => fake.ends.length > 0);
    expect(fake.ends[0]!.serverCode).to.equal('TRELLIS_CP_TOKEN_POD_GONE');
    fake.stop();
  });

  it('Should keep sidecars serving through an API server outage, make a replica started meanwhile wait and retry, and converge both after it returns', async () => {
    const tokenForB = tokenFor(pods['payments-1']!);
    const issued = new FakeSidecar({ addresses: [cp.address], caDir: f('ca'), spiffeId: id('payments'), namespace: 'shop', token: () => tokenForB });
    fakes.push(issued);
    await issued.start().rotate();
    issued.stop();
    await k8s.down();
    // Sidecars keep their certificates and policies; the control plane keeps its last view, and renews.
    expect((await viaWeb()).status).to.equal(200);
    expect((await dump(port.paymentsAdmin!)).ready.ready).to.equal(true);
    const renewing = new FakeSidecar({ addresses: [cp.address], caDir: f('ca'), spiffeId: id('payments'), namespace: 'shop' });
    fakes.push(renewing);
    renewing.creds = issued.creds;
    expect((await renewing.start().rotate()).subjectAltName, 'a renewal over mTLS while the API server is down').to.equal(`URI:${id('payments')}`);
    renewing.stop();
    // A replica that starts now cannot list the cluster: not ready, and pod-attested sidecars are told to retry.
    replicaC = await startControlPlaneProcess(f('ca'), f('policies'), ['--k8s-issuer', ISSUER, '--k8s-jwks', f('jwks.json'), '--kubeconfig', kubeconfig, '--k8s-registry', '--trust-domain', TD], undefined, 'control plane started but NOT ready');
    expect((await adminGet(replicaC, '/readyz')).status).to.equal(503);
    const onB = new FakeSidecar({ addresses: [replicaC.address], caDir: f('ca'), spiffeId: id('payments'), namespace: 'shop', token: () => tokenForB });
    fakes.push(onB);
    onB.start();
    const svid = onB.rotate();
    await waitFor('replica C to tell the sidecar to retry', () => onB.ends.length > 0);
    expect(onB.ends[0]).to.include({ serverCode: 'TRELLIS_CP_REGISTRY_NOT_SYNCED', retryAfterMs: 2000 });
    expect((await viaWeb()).status, 'still serving').to.equal(200);

    await k8s.up();
    // The SVID the sidecar kept asking for is issued once replica C has listed the cluster.
    expect((await svid).subjectAltName).to.equal(`URI:${id('payments')}`);
    await waitFor('replica C ready', async () => (await adminGet(replicaC!, '/readyz')).status === 200, 60_000);
    // A change made after the restart reaches both replicas' views: the watches resumed (or relisted).
    createPod({ name: 'payments-2', sa: 'payments', ip: '127.0.0.5', labels: { app: 'payments' }, inbound: { 8080: port.paymentsIn! } });
    const both = [`127.0.0.2:${port.paymentsIn}`, `127.0.0.5:${port.paymentsIn}`];
    await waitFor('replica A (through web) to publish payments-2', async () => JSON.stringify((await dump(port.webAdmin!)).endpoints['payments:9001']?.addresses) === JSON.stringify(both), 90_000);
    const onA = new FakeSidecar({ addresses: [cp.address], caDir: f('ca'), spiffeId: id('payments'), namespace: 'shop', token: () => tokenForB });
    fakes.push(onA);
    onA.start();
    await waitFor('both replicas to serve the same endpoints', () => onA.last('endpoints') !== undefined && onA.last('endpoints') === onB.last('endpoints'), 30_000);
    const paymentsOnB = (onB.bodies.get('endpoints') as Array<{ service: string; endpoints: unknown[] }>).find((r) => r.service === 'payments:9001');
    expect(paymentsOnB!.endpoints).to.deep.equal(both.map((address) => ({ address, spiffeId: id('payments') })));
  });
});
