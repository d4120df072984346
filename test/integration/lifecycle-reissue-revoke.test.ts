/**
 * `trellis revoke --admin` against real processes: a `trellis control-plane`
 * and two `trellis sidecar` processes with an HTTP app behind mTLS. The
 * revocation made through the admin API reaches the sidecars, cuts an open
 * kept-alive connection of the revoked identity, and refuses it afterwards;
 * `--lift` lets it back in.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { controlPlanePorts, freePort, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, httpGet, waitFor } from '@trellis/testkit';

const get = (port: number, path: string, agent: Agent | false = false): Promise<number> => httpGet(port, path, { agent }).then((r) => r.status);

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

describe('trellis revoke --admin with real control plane and sidecar processes', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-revoke-admin-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  const port: Record<string, number> = {};
  let app: Server;

  const ready = async (adminPort: number): Promise<boolean> => new Promise((resolve) => {
    get(adminPort, '/ready').then((s) => resolve(s === 200), () => resolve(false));
  });

  before(async () => {
    // cart's inbound port is published by its join token, so it is picked before the start; the rest are bound from port 0.
    port.cartIn = await freePort();
    expect(trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status).to.equal(0);
    // Each token attests what its sidecar announces: service, labels and, for cart, its inbound listener.
    const attested: Record<string, string[]> = { cart: ['--service', 'cart', '--labels', 'app=cart', '--ports', String(port.cartIn)], web: ['--service', 'web', '--labels', 'app=web'] };
    for (const [name, id] of [['cart', CART], ['web', WEB]] as const) {
      const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', '5', ...attested[name]!]);
      expect(t.status, t.stderr).to.equal(0);
      writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
    }
    expect(trellisSync(['admin', 'credentials', '--ca-dir', f('ca'), '--out', f('admin'), '--ttl', '10m']).status).to.equal(0);
    mkdirSync(f('policies'));
    writeFileSync(f('policies/shop.yaml'), POLICIES);
    app = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    port.app = (app.address() as { port: number }).port;
    const cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    ({ listen: port.cp, admin: port.cpAdmin } = await controlPlanePorts(cp));
    const common = ['--control-plane', `127.0.0.1:${port.cp}`, '--ca-bundle', f('ca/root.pem'), '--namespace', 'shop', '--drain', '1s'];
    const cart = group.spawn(['sidecar', ...common, '--token-file', f('cart.token'), '--service', 'cart', '--service-account', 'cart', '--labels', 'app=cart',
      '--inbound', `127.0.0.1:${port.cartIn}=${port.app}/http`, '--admin', '127.0.0.1:0']);
    const web = group.spawn(['sidecar', ...common, '--token-file', f('web.token'), '--service', 'web', '--service-account', 'web', '--labels', 'app=web',
      '--outbound', `0=127.0.0.1:${port.cartIn}#${CART}`, '--admin', '127.0.0.1:0']);
    const [cartPorts, webPorts] = await Promise.all([sidecarPorts(cart), sidecarPorts(web)]);
    [port.cartAdmin, port.webOut, port.webAdmin] = [cartPorts.admin!, webPorts.outbound[0]!, webPorts.admin!];
    await waitFor('both sidecars ready', async () => (await ready(port.cartAdmin!)) && (await ready(port.webAdmin!)));
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      group.dumpLogs();
    }
  });

  after(async () => {
    group.killAll();
    await new Promise<void>((r) => app.close(() => r()));
    tmp.cleanup();
  });

  it('makes real sidecar processes renew with new serials after trellis ca reissue --admin, with no failed request', async () => {
    const serialOf = async (adminPort: number): Promise<string> =>
      (JSON.parse((await httpGet(adminPort, '/config_dump')).body) as { identity: { serial: string } }).identity.serial;
    const before = { cart: await serialOf(port.cartAdmin!), web: await serialOf(port.webAdmin!) };
    const r = trellisSync(['ca', 'reissue', '--admin', `127.0.0.1:${port.cpAdmin}`, '--admin-credentials', f('admin'), '--all', '--window', '3s']);
    expect(r.status, r.stderr).to.equal(0);
    let failed = 0;
    let ok = 0;
    await waitFor('both sidecars to present new serials', async () => {
      if ((await get(port.webOut!, '/during-reissue').catch(() => 0)) === 200) ok++;
      else failed++;
      return (await serialOf(port.cartAdmin!)) !== before.cart && (await serialOf(port.webAdmin!)) !== before.web;
    });
    expect(ok).to.be.greaterThan(0);
    expect(failed, 'requests failed during the forced re-issue').to.equal(0);
  });

  it('cuts an open connection of the identity revoked through the admin API, refuses it afterwards, and lets it back once lifted', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect(await get(port.webOut!, '/kept', agent)).to.equal(200);
      const sockets = Object.values(agent.freeSockets).flat();
      expect(sockets).to.have.length(1);
      const socketClosed = new Promise<void>((resolve) => sockets[0]!.once('close', () => resolve()));

      const r = trellisSync(['revoke', '--admin', `127.0.0.1:${port.cpAdmin}`, '--admin-credentials', f('admin'), '--spiffe-id', WEB, '--reason', 'key compromise']);
      expect(r.status, r.stderr).to.equal(0);
      await socketClosed;
      await waitFor('new requests of the revoked identity to be refused', async () => {
        try {
          return (await get(port.webOut!, '/after')) !== 200;
        } catch {
          return true;
        }
      });

      const lift = trellisSync(['revoke', '--admin', `127.0.0.1:${port.cpAdmin}`, '--admin-credentials', f('admin'), '--spiffe-id', WEB, '--lift']);
      expect(lift.status, lift.stderr).to.equal(0);
      await waitFor('the lifted identity to be served again', async () => (await get(port.webOut!, '/again')) === 200);
    } finally {
      agent.destroy();
    }
  });
});
