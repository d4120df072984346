/**
 * Pods as network namespaces on a bridge, each running what injection
 * produces: the init step (`trellis redirect apply`, real iptables in the
 * pod's namespace), then the app and `trellis sidecar` inside it. The control
 * plane runs on the "node" (the root namespace, on the bridge address).
 */
import { expect } from 'chai';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlPlanePorts, describeWith, makeTmpDir, NETNS, TRELLIS_BIN, trellisSpawn, trellisSync, httpGet, waitFor } from '@trellis/testkit';
import { PodNetwork, type Pod } from '../src/netns/pod-network';

const TD = 'e2e.local';
const APP_PORT = 8080;
const PROXY_PORT = 15100;
const OUT_PORT = 19001;

function spiffeId(sa: string): string {
  return `spiffe://${TD}/ns/shop/sa/${sa}`;
}

/** Polls like waitFor, at the slower pace namespaced processes need. */
const eventually = (what: string, timeoutMs: number, fn: () => Promise<boolean> | boolean): Promise<void> => waitFor(what, fn, timeoutMs, 250);

const PERMISSIVE_OR_STRICT = (mode: string): string => `apiVersion: security.trellis.dev/v1
kind: PeerAuthentication
metadata: { name: default, namespace: trellis-system }
spec:
  mtls: { mode: ${mode} }
`;

describeWith(NETNS, 'pods in network namespaces (real iptables, sidecars and control plane)', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof makeTmpDir>;
  let net: PodNetwork;
  let cp: ChildProcess | undefined;
  let cpLog = '';
  let cpAddr = '';
  let cpAdmin = '';
  const pods: Record<string, Pod> = {};
  const logs: Record<string, string> = {};
  let caDir = '';
  let policyDir = '';

  const startControlPlane = async (): Promise<void> => {
    // Port 0: it says in its ready line which ports it bound (a port picked free here could be taken before it binds).
    cp = trellisSpawn(['control-plane', '--ca-dir', caDir, '--policy-dir', policyDir, '--listen', `${net.hostIp}:0`, '--admin', '127.0.0.1:0', '--revocations', join(caDir, 'revocations.json')]);
    cp.stderr!.on('data', (d: Buffer) => (cpLog += d.toString()));
    const bound = await controlPlanePorts(cp);
    cpAddr = `${net.hostIp}:${bound.listen}`;
    cpAdmin = `127.0.0.1:${bound.admin}`;
  };

  /** In `pod`: the init step, then the app and the sidecar, as injection lays them out. */
  const startPod = async (pod: Pod, sa: string, opts: { inbound?: boolean; outboundTo?: string }): Promise<void> => {
    // The token attests what the sidecar announces: its service, labels and (with inbound) the listener port.
    const attested = ['--service', sa, '--labels', `app=${sa}`, ...(opts.inbound ? ['--ports', String(PROXY_PORT)] : [])];
    const token = trellisSync(['token', 'create', '--ca-dir', caDir, '--spiffe-id', spiffeId(sa), '--ttl', '15m', ...attested]);
    expect(token.status, token.stderr).to.equal(0);
    const tokenFile = join(tmp.dir, `${sa}.token`);
    writeFileSync(tokenFile, token.stdout.trim() + '\n', { mode: 0o600 });
    const args = [TRELLIS_BIN, 'sidecar', '--control-plane', cpAddr, '--ca-bundle', join(caDir, 'root.pem'), '--token-file', tokenFile,
      '--trust-domain', TD, '--namespace', 'shop', '--service-account', sa, '--service', sa, '--labels', `app=${sa}`, '--admin', '0.0.0.0:15000', '--admin-allow-remote'];
    if (opts.inbound) {
      const init = net.execSync(pod, process.execPath, [TRELLIS_BIN, 'redirect', 'apply', '--inbound', `${APP_PORT}=${PROXY_PORT}`]);
      expect(init.status, init.stderr).to.equal(0);
      const app = net.spawn(pod, process.execPath, [TRELLIS_BIN, 'echo-app', '--listen', `0.0.0.0:${APP_PORT}`, '--name', sa]);
      app.stderr!.on('data', (d: Buffer) => (logs[`${sa}/app`] = (logs[`${sa}/app`] ?? '') + d.toString()));
      args.push('--inbound', `0.0.0.0:${PROXY_PORT}=${APP_PORT}/http`);
    }
    if (opts.outboundTo) args.push('--outbound', `127.0.0.1:${OUT_PORT}=${opts.outboundTo}`);
    const sidecar = net.spawn(pod, process.execPath, args, { env: { ...process.env, TRELLIS_POD_IP: pod.ip } });
    logs[`${sa}/sidecar`] = '';
    sidecar.stderr!.on('data', (d: Buffer) => (logs[`${sa}/sidecar`] += d.toString()));
    await eventually(`${sa} sidecar ready`, 60_000, async () => (await httpGet(15000, '/ready', { host: pod.ip })).status === 200);
    // Ready says the sidecar holds an identity, not that what the tests call through it is there yet:
    // the app starts beside it (loopback in the pod is not redirected, so this reaches the app itself),
    // and an outbound needs the control plane's endpoint push for its service, which lands a moment later.
    if (opts.inbound) await eventually(`${sa} app listening`, 30_000, () => net.execSync(pod, 'curl', ['-s', '--max-time', '2', '-o', '/dev/null', `http://127.0.0.1:${APP_PORT}/`]).status === 0);
    if (opts.outboundTo) {
      const service = opts.outboundTo;
      await eventually(`${sa} to know an endpoint of ${service}`, 60_000, async () => {
        const dump = JSON.parse((await httpGet(15000, '/config_dump', { host: pod.ip })).body) as { endpoints?: Record<string, { addresses: string[] }> };
        return (dump.endpoints?.[service]?.addresses.length ?? 0) > 0;
      });
    }
  };

  /** curl inside `pod`; returns the HTTP status (0 when no HTTP answer) and body. */
  const curlIn = (pod: Pod, url: string): { status: number; body: string } => {
    const r = net.execSync(pod, 'curl', ['-s', '--max-time', '4', '-o', '-', '-w', '\n%{http_code}', url]);
    const lines = r.stdout.trimEnd().split('\n');
    return { status: Number(lines.pop() ?? 0), body: lines.join('\n') };
  };

  before(async function () {
    tmp = makeTmpDir('trellis-e2e-');
    chmodSync(tmp.dir, 0o755);
    caDir = join(tmp.dir, 'ca');
    policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    writeFileSync(join(policyDir, 'mesh.yaml'), PERMISSIVE_OR_STRICT('STRICT'));
    const init = trellisSync(['ca', 'init', '--dir', caDir, '--trust-domain', TD]);
    expect(init.status, init.stderr).to.equal(0);

    net = new PodNetwork(`10.231.${100 + Math.floor(Math.random() * 100)}`);
    net.create();
    for (const name of ['client', 'auditor', 'server', 'rogue']) pods[name] = net.addPod(name);
    await startControlPlane();
    await startPod(pods.server!, 'server', { inbound: true });
    await startPod(pods.client!, 'client', { outboundTo: 'server' });
    await startPod(pods.auditor!, 'auditor', { outboundTo: 'server' });
  });

  after(async function () {
    if (cp && cp.exitCode === null) cp.kill('SIGKILL');
    await net?.destroy();
    tmp?.cleanup();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      for (const [k, v] of Object.entries(logs)) console.log(`--- ${k}\n${v.slice(-3000)}`);
      console.log(`--- control plane\n${cpLog.slice(-3000)}`);
    }
  });

  it('Should carry mesh traffic from one pod to another over mTLS, with the caller identity at the server app', () => {
    const r = curlIn(pods.client!, `http://127.0.0.1:${OUT_PORT}/hello`);
    expect(r.status, r.body).to.equal(200);
    const body = JSON.parse(r.body) as { service: string; callerSpiffeId: string };
    expect(body.service).to.equal('server');
    expect(body.callerSpiffeId).to.equal(spiffeId('client'));
  });

  it('Should redirect a direct dial of the app port into the sidecar and refuse it under STRICT', () => {
    // The app listens on 0.0.0.0:8080 in the server pod; only the iptables redirect stands between.
    const direct = curlIn(pods.rogue!, `http://${pods.server!.ip}:${APP_PORT}/`);
    expect(direct.status, 'plaintext to the app port must not reach the app').to.equal(0);
    const proxy = curlIn(pods.rogue!, `http://${pods.server!.ip}:${PROXY_PORT}/`);
    expect(proxy.status).to.equal(0);
    const rules = net.execSync(pods.server!, 'iptables', ['-t', 'nat', '-S', 'TRELLIS_INBOUND']);
    expect(rules.stdout).to.contain(`--dport ${APP_PORT} -j REDIRECT --to-ports ${PROXY_PORT}`);
  });

  it('Should serve the same direct dial through the sidecar once the mode is PERMISSIVE', async () => {
    writeFileSync(join(policyDir, 'mesh.yaml'), PERMISSIVE_OR_STRICT('PERMISSIVE'));
    let last = { status: 0, body: '' };
    await eventually('PERMISSIVE pushed to the server sidecar', 20_000, () => {
      last = curlIn(pods.rogue!, `http://${pods.server!.ip}:${APP_PORT}/plain`);
      return last.status === 200;
    });
    const body = JSON.parse(last.body) as { service: string; callerSpiffeId: string | null; path: string };
    expect(body.service).to.equal('server');
    expect(body.path).to.equal('/plain');
    expect(body.callerSpiffeId, 'a plaintext caller has no identity').to.equal(null);
    // mTLS from a meshed pod still works under PERMISSIVE.
    expect(curlIn(pods.client!, `http://127.0.0.1:${OUT_PORT}/`).status).to.equal(200);
    writeFileSync(join(policyDir, 'mesh.yaml'), PERMISSIVE_OR_STRICT('STRICT'));
    await eventually('STRICT pushed back', 20_000, () => curlIn(pods.rogue!, `http://${pods.server!.ip}:${APP_PORT}/`).status === 0);
  });

  it("Should cut a revoked workload's open connection and refuse its new ones", async () => {
    // A kept-alive connection from the auditor's app, through its sidecar, to the server.
    const script = `
      const s = require('net').connect(${OUT_PORT}, '127.0.0.1', () => s.write('GET /keep HTTP/1.1\\r\\nHost: server\\r\\n\\r\\n'));
      let buf = ''; let told = false;
      s.on('data', (d) => { buf += d; if (!told && buf.includes('\\r\\n\\r\\n')) { told = true; console.log('FIRST ' + buf.split('\\r\\n')[0]); } });
      s.on('close', () => { console.log('CLOSED'); process.exit(0); });
      s.on('error', () => {});
      setTimeout(() => { console.log('STILL OPEN'); process.exit(1); }, 60000);
    `;
    const holder = net.spawn(pods.auditor!, process.execPath, ['-e', script]);
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await eventually('the kept-alive request answered', 10_000, () => out.includes('FIRST HTTP/1.1 200'));
    expect(out).to.not.contain('CLOSED');

    const r = trellisSync(['revoke', '--ca-dir', caDir, '--spiffe-id', spiffeId('auditor'), '--reason', 'e2e test']);
    expect(r.status, r.stderr).to.equal(0);
    await eventually('the open connection cut after revocation', 30_000, () => out.includes('CLOSED'));
    expect(curlIn(pods.auditor!, `http://127.0.0.1:${OUT_PORT}/`).status).to.not.equal(200);
    // Other identities are untouched.
    expect(curlIn(pods.client!, `http://127.0.0.1:${OUT_PORT}/`).status).to.equal(200);
  });

  it('Should keep traffic flowing while the control plane is down and certificates are valid', async () => {
    cp!.kill('SIGKILL');
    await new Promise<void>((resolve) => (cp!.exitCode !== null || cp!.signalCode !== null ? resolve() : cp!.once('exit', () => resolve())));
    expect(spawnSync('curl', ['-sk', '--max-time', '2', `https://${cpAdmin}/healthz`]).status, 'the control plane is really gone').to.not.equal(0);
    let ok = 0;
    for (let i = 0; i < 20; i++) {
      if (curlIn(pods.client!, `http://127.0.0.1:${OUT_PORT}/down-${i}`).status === 200) ok++;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ok, 'requests answered while the control plane was down').to.equal(20);
    expect((await httpGet(15000, '/ready', { host: pods.server!.ip })).status).to.equal(200);
  });
});
