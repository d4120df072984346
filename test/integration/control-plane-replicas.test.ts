/**
 * Two control-plane replicas on one CA dir, without Kubernetes, serve one
 * mesh (the "two replicas split the mesh": with the frontend's
 * sidecar on one replica and payments' on the other, the frontend saw only
 * itself and 896 of 896 requests failed). Real processes: two `trellis
 * control-plane`, two `trellis sidecar` carrying HTTP over mTLS, the web
 * sidecar reaching `cart` by service name, so only the replicas' shared
 * reports can tell it where cart is.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { controlPlanePorts, freePort, httpGet, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, waitFor } from '@trellis/testkit';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

const POLICIES = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: trellis-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["${TD}/ns/shop/sa/web"]}}]
`;

describe('two control-plane replicas on one CA dir serve one mesh (real processes)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-replicas-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  const port: Record<string, number> = {};
  let app: Server;
  let a: ChildProcess;
  let b: ChildProcess;

  // Port 0 wherever the process says what it bound (a port picked free here could be taken before the child binds it).
  const replica = (name: 'a' | 'b'): { child: ChildProcess; ready: Promise<void> } => {
    const child = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    return { child, ready: controlPlanePorts(child).then((p) => void ([port[name], port[`${name}Admin`]] = [p.listen, p.admin])) };
  };

  before(async () => {
    // cart's inbound port is published by its join token, so it is picked before the start.
    port.cartIn = await freePort();
    expect(trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status).to.equal(0);
    const attested: Record<string, string[]> = { cart: ['--service', 'cart', '--labels', 'app=cart', '--ports', String(port.cartIn)], web: ['--service', 'web', '--labels', 'app=web'] };
    for (const [name, id] of [['cart', CART], ['web', WEB]] as const) {
      const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', '5', ...attested[name]!]);
      expect(t.status, t.stderr).to.equal(0);
      writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
    }
    mkdirSync(f('policies'));
    writeFileSync(f('policies/shop.yaml'), POLICIES);
    app = createServer((_req, res) => res.end('cart'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    port.app = (app.address() as { port: number }).port;
    const [ra, rb] = [replica('a'), replica('b')];
    [a, b] = [ra.child, rb.child];
    await Promise.all([ra.ready, rb.ready]);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') group.dumpLogs(30);
  });

  after(async () => {
    await group.killAllAndWait();
    await new Promise<void>((r) => app.close(() => r()));
    tmp.cleanup();
  });

  it('Should let the web sidecar on replica A reach cart, whose sidecar is on replica B, by service name', async () => {
    const common = ['--ca-bundle', f('ca/root.pem'), '--namespace', 'shop'];
    // cart knows replica B first (A only to fail over to); web knows replica A alone.
    const cart = group.spawn(['sidecar', ...common, '--control-plane', `127.0.0.1:${port.b}`, '--control-plane', `127.0.0.1:${port.a}`, '--token-file', f('cart.token'), '--service', 'cart', '--service-account', 'cart', '--labels', 'app=cart',
      '--inbound', `127.0.0.1:${port.cartIn}=${port.app}/http`, '--admin', '127.0.0.1:0']);
    const web = group.spawn(['sidecar', ...common, '--control-plane', `127.0.0.1:${port.a}`, '--token-file', f('web.token'), '--service', 'web', '--service-account', 'web', '--labels', 'app=web',
      '--outbound', '0=cart', '--admin', '127.0.0.1:0']);
    const [cartPorts, webPorts] = await Promise.all([sidecarPorts(cart), sidecarPorts(web)]);
    [port.cartAdmin, port.webOut, port.webAdmin] = [cartPorts.admin!, webPorts.outbound[0]!, webPorts.admin!];
    const ready = async (p: number): Promise<boolean> => (await httpGet(p, '/ready')).status === 200;
    await waitFor('both sidecars ready', async () => (await ready(port.cartAdmin!)) && (await ready(port.webAdmin!)));
    type Reports = { replicas: Record<string, { endpoints: Array<{ service: string }> }> };
    const reports = (): Reports => JSON.parse(readFileSync(f('ca/replicas.json'), 'utf8')) as Reports;
    // Replica B writes its report after the sidecar's stream is up: wait for a report naming cart, then check them all.
    await waitFor('a replica to report cart', async () => Object.values(reports().replicas).some((r) => r.endpoints.some((e) => e.service === 'cart')));
    const replicas = reports();
    expect(Object.keys(replicas.replicas)).to.have.length(2);
    expect(Object.values(replicas.replicas).flatMap((r) => r.endpoints.map((e) => e.service))).to.deep.equal(['cart'], 'cart is reported by the replica it is connected to');

    // Where the split mesh failed every request, the first one may only wait for the report (a second at most).
    await waitFor('web to reach cart through replica A', async () => (await httpGet(port.webOut!, '/')).status === 200, 5000);
    let failed = 0;
    for (let i = 0; i < 200; i++) if ((await httpGet(port.webOut!, '/')).status !== 200) failed++;
    expect(failed, 'requests from web (on A) to cart (on B) that failed').to.equal(0);
  });

  it('Should drop a killed replica\'s report at once and serve its sidecars again from the replica they fail over to', async () => {
    b.kill('SIGKILL');
    const othersOfA = (): unknown[] | undefined => {
      const seen = group.log(a).split('\n').filter((l) => l.includes('"msg":"other replicas"'));
      return seen.length === 0 ? undefined : (JSON.parse(seen[seen.length - 1]!) as { replicas: unknown[] }).replicas;
    };
    // Killed on this machine: its pid is gone, so A stops counting it whatever its last report says.
    await waitFor('replica A to drop replica B', () => othersOfA()?.length === 0, 5000);
    await waitFor('cart to fail over to replica A', () => group.log(a).split('\n').some((l) => l.includes('"msg":"stream authenticated"') && l.includes(`"spiffeId":"${CART}"`)), 15_000);
    await waitFor('web to reach cart, now known to replica A itself', async () => (await httpGet(port.webOut!, '/')).status === 200, 10_000);
    let failed = 0;
    for (let i = 0; i < 100; i++) if ((await httpGet(port.webOut!, '/')).status !== 200) failed++;
    expect(failed).to.equal(0);
  });
});
