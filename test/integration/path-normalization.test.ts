/**
 * The mesh-wide path normalization end to end (issue #13 §2): set on the
 * real `trellis control-plane`, pushed on the discovery stream with the
 * AuthorizationPolicies, applied by a real `trellis sidecar` before policy
 * and forwarded to the app. Attack bytes from curl --path-as-is over a
 * PERMISSIVE plaintext /http port.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { controlPlanePorts, freePort, httpGet, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, waitFor } from '@trellis/testkit';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;

const POLICIES = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: trellis-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
`;

function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', ...args]);
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out));
  });
}

describe('Path normalization from the control plane to the sidecar (real processes)', function () {
  this.timeout(90_000);
  const tmp = makeTmpDir('trellis-pathnorm-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  const seen: string[] = [];
  let app: Server;
  let cp: ChildProcess;
  const port: Record<string, number> = {};

  before(async () => {
    // cart's inbound port is published by its join token, so it is picked before the start; the rest are bound from port 0.
    port.cartIn = await freePort();
    const init = trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]);
    expect(init.status, init.stderr).to.equal(0);
    const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', CART, '--uses', '5', '--service', 'cart', '--labels', 'app=cart', '--ports', String(port.cartIn)]);
    expect(t.status, t.stderr).to.equal(0);
    writeFileSync(f('cart.token'), t.stdout.trim() + '\n', { mode: 0o600 });
    mkdirSync(f('policies'));
    writeFileSync(f('policies/shop.yaml'), POLICIES);
    writeFileSync(f('cp.yaml'), 'pathNormalization: MERGE_SLASHES\n');
    app = createServer((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(200, { 'content-length': 2 });
      res.end('ok');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    port.app = (app.address() as { port: number }).port;
    cp = group.spawn(['control-plane', '--config', f('cp.yaml'), '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    port.cp = (await controlPlanePorts(cp)).listen;
    const cart = group.spawn([
      'sidecar', '--control-plane', `127.0.0.1:${port.cp}`, '--ca-bundle', f('ca/root.pem'), '--namespace', 'shop', '--token-file', f('cart.token'),
      '--service', 'cart', '--service-account', 'cart', '--labels', 'app=cart',
      '--inbound', `127.0.0.1:${port.cartIn}=${port.app}/http`, '--admin', '127.0.0.1:0',
    ]);
    port.cartAdmin = (await sidecarPorts(cart)).admin!;
    await waitFor('the sidecar ready', async () => (await httpGet(port.cartAdmin!, '/ready')).status === 200);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') group.dumpLogs();
  });

  after(async () => {
    group.killAll();
    await new Promise<void>((r) => app.close(() => r()));
    tmp.cleanup();
  });

  it('Should push the control plane\'s pathNormalization to the sidecar, which shows it in /config_dump', async () => {
    const dump = JSON.parse((await httpGet(port.cartAdmin!, '/config_dump')).body) as { pathNormalization: string };
    expect(dump.pathNormalization).to.equal('MERGE_SLASHES');
  });

  it('Should deny what the app would route to /admin, and forward the path it judged', async () => {
    const base = `http://127.0.0.1:${port.cartIn}`;
    for (const attack of ['/./admin', '/x/../admin', '/%2e/admin', '/%61dmin', '//admin', '///admin//']) {
      expect(await curl(['--path-as-is', `${base}${attack}`]), attack).to.equal('403');
    }
    const before = seen.length;
    expect(await curl(['--path-as-is', `${base}/a//b/./c?q=//x`])).to.equal('200');
    expect(seen.slice(before)).to.deep.equal(['/a/b/c?q=//x']);
    expect(seen.some((u) => u.includes('admin')), 'no attack reached the app').to.equal(false);
  });

  it('Should refuse a path normalization Istio does not name, with the field it came from', () => {
    const r = trellisSync(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--path-normalization', 'merge_slashes', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    expect(r.status).to.not.equal(0);
    expect(r.stderr).to.contain('TRELLIS_CP_CONFIG_INVALID');
    expect(r.stderr).to.match(/\/pathNormalization: must be one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES/);
  });
});
