import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { freePort, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, httpGet, waitFor } from '@trellis/testkit';

const get = (port: number, path: string) => httpGet(port, path);

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
    to: [{operation: {methods: ["GET"]}}]
`;

/**
 * Resolves with `p`'s exit code once it has exited and its stderr has ended: 'exit' can come before the
 * last lines it logged have been read from the pipe, and the tests check those lines.
 */
function exited(p: ChildProcess): Promise<number | null> {
  const code = p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  const ended = !p.stderr || p.stderr.readableEnded ? Promise.resolve() : new Promise<void>((r) => p.stderr!.once('end', () => r()));
  return Promise.all([code, ended]).then(([c]) => c);
}

describe('trellis sidecar with a real control plane (real processes, real gRPC and mTLS over loopback)', function () {
  this.timeout(90_000);
  const tmp = makeTmpDir('trellis-sidecar-cp-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  let app: Server;
  let cp: ChildProcess;
  let cartSidecar: ChildProcess;
  const port: Record<string, number> = {};

  const startControlPlane = (): ChildProcess =>
    group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--revocations', f('revocations.yaml'), '--svid-ttl', '1m', '--listen', `127.0.0.1:${port.cp}`, '--admin', '127.0.0.1:0']);
  const ready = async (adminPort: number): Promise<boolean> => (await get(adminPort, '/ready')).status === 200;
  const stat = async (adminPort: number, name: string): Promise<number> => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec((await get(adminPort, '/stats')).body);
    return m ? Number(m[1]) : NaN;
  };

  before(async () => {
    // The control plane is restarted on its discovery port, and cart's inbound port is published by its join token: those
    // are picked before the start. Every other port is bound from port 0 and read back from the process's log line.
    for (const k of ['cp', 'cartIn']) port[k] = await freePort();
    const init = trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]);
    expect(init.status, init.stderr).to.equal(0);
    // Each token attests what its sidecar announces: service, labels and, for cart, its inbound listener.
    const attested: Record<string, string[]> = { cart: ['--service', 'cart', '--labels', 'app=cart', '--ports', String(port.cartIn)], web: ['--service', 'web', '--labels', 'app=web'] };
    for (const [name, id] of [['cart', CART], ['web', WEB]] as const) {
      const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', '5', ...attested[name]!]);
      expect(t.status, t.stderr).to.equal(0);
      writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
    }
    mkdirSync(f('policies'));
    writeFileSync(f('revocations.yaml'), 'serials: []\nspiffeIds: []\n');
    writeFileSync(f('policies/shop.yaml'), POLICIES);
    app = createServer((req, res) => {
      const body = JSON.stringify({ path: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    port.app = (app.address() as { port: number }).port;

    cp = startControlPlane();
    await waitFor('the control plane', async () => group.log(cp).includes('control plane ready'));
    // 1-minute SVIDs renewed at 5% ± 1% of their lifetime: a rotation every ~3 s.
    const common = ['--control-plane', `127.0.0.1:${port.cp}`, '--ca-bundle', f('ca/root.pem'), '--namespace', 'shop', '--drain', '2s', '--rotate-at', '0.05', '--rotate-jitter', '0.01'];
    cartSidecar = group.spawn(['sidecar', ...common, '--token-file', f('cart.token'), '--service', 'cart', '--service-account', 'cart', '--labels', 'app=cart',
      '--inbound', `127.0.0.1:${port.cartIn}=${port.app}/http`, '--admin', '127.0.0.1:0']);
    const cartPorts = sidecarPorts(cartSidecar);
    // The web sidecar takes its settings from the environment, as injection may pass them.
    const web = group.spawn(['sidecar', ...common, '--service', 'web'], {
      ...process.env,
      TRELLIS_TOKEN_FILE: f('web.token'),
      TRELLIS_SERVICE_ACCOUNT: 'web',
      TRELLIS_LABELS: 'app=web',
      TRELLIS_OUTBOUND: `127.0.0.1:0=127.0.0.1:${port.cartIn}#${CART},127.0.0.1:0=cart`,
      TRELLIS_ADMIN: '127.0.0.1:0',
    });
    const [cartBound, webBound] = await Promise.all([cartPorts, sidecarPorts(web)]);
    [port.cartAdmin, port.webOut, port.webSvc, port.webAdmin] = [cartBound.admin!, webBound.outbound[0]!, webBound.outbound[1]!, webBound.admin!];
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

  it('Should carry a request from web to cart over mTLS, and cart should see web\'s SPIFFE ID', async () => {
    const r = await get(port.webOut!, '/items');
    expect(r.status).to.equal(200);
    const body = JSON.parse(r.body) as { path: string; xfcc: string };
    expect(body.path).to.equal('/items');
    expect(body.xfcc).to.match(new RegExp(`^By=${CART};Hash=[0-9a-f]{64};URI=${WEB}$`));
  });

  it('Should carry STRICT traffic on the native relay in the real binary when it is required (CI), and say so in /config_dump', async function () {
    // Without TRELLIS_REQUIRE_NATIVE_RELAY the relay may legitimately be absent (auto falls back).
    if (process.env.TRELLIS_REQUIRE_NATIVE_RELAY !== '1' || process.env.TRELLIS_DATA_PATH === 'node') this.skip();
    for (const admin of [port.webAdmin!, port.cartAdmin!]) {
      const dump = JSON.parse((await get(admin, '/config_dump')).body) as { dataPath: string };
      expect(dump.dataPath).to.equal('native');
    }
  });

  it('Should reach cart by service name through the endpoints the control plane pushes', async () => {
    await waitFor('the cart endpoint', async () => {
      const dump = JSON.parse((await get(port.webAdmin!, '/config_dump')).body) as { endpoints: Record<string, { addresses: string[] }> };
      return (dump.endpoints.cart?.addresses.length ?? 0) > 0;
    });
    const r = await get(port.webSvc!, '/by-name');
    expect(r.status).to.equal(200);
    expect((JSON.parse(r.body) as { xfcc: string }).xfcc).to.contain(`URI=${WEB}`);
  });

  it('Should refuse a rogue sidecar whose token attests another service when it announces cart, so web only ever reaches the real cart', async () => {
    const rogueIn = await freePort();
    const rogueId = `spiffe://${TD}/ns/shop/sa/rogue`;
    const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', rogueId, '--uses', '5', '--service', 'ledger', '--ports', String(rogueIn)]);
    expect(t.status, t.stderr).to.equal(0);
    writeFileSync(f('rogue.token'), t.stdout.trim() + '\n', { mode: 0o600 });
    const rogue = group.spawn(['sidecar', '--control-plane', `127.0.0.1:${port.cp}`, '--ca-bundle', f('ca/root.pem'), '--namespace', 'shop', '--token-file', f('rogue.token'),
      '--service', 'cart', '--service-account', 'rogue', '--inbound', `127.0.0.1:${rogueIn}=${port.app}/http`, '--admin', '127.0.0.1:0']);
    const rogueAdmin = (await sidecarPorts(rogue)).admin!;
    await waitFor('the control plane to refuse the rogue', async () => group.log(cp).split('\n').some((l) => l.includes('"node claim refused"') && l.includes(rogueId) && l.includes('"reason":"service"')));
    // The rogue's own log line comes through its pipe after the control plane's: wait for it, then check it.
    await waitFor('the rogue to log the refusal', async () => group.log(rogue).includes('TRELLIS_CP_ATTESTATION_MISMATCH'));
    expect(group.log(rogue)).to.contain('TRELLIS_CP_ATTESTATION_MISMATCH');
    expect((await get(rogueAdmin, '/ready')).status, 'the rogue never gets an identity').to.equal(503);
    const dump = JSON.parse((await get(port.webAdmin!, '/config_dump')).body) as { endpoints: Record<string, { addresses: string[] }> };
    expect(dump.endpoints['cart']!.addresses).to.deep.equal([`127.0.0.1:${port.cartIn}`]);
    for (let i = 0; i < 10; i++) expect((await get(port.webSvc!, '/by-name')).status).to.equal(200);
    rogue.kill('SIGTERM');
    await exited(rogue);
  });

  it('Should rotate both SVIDs every few seconds under continuous traffic with zero failed requests, resuming TLS sessions', async () => {
    const rotations = async (): Promise<number[]> => [
      await stat(port.webAdmin!, 'trellis_certificate_rotations_total{result="ok"}'),
      await stat(port.cartAdmin!, 'trellis_certificate_rotations_total{result="ok"}'),
    ];
    const serial = async (adminPort: number): Promise<string> => (JSON.parse((await get(adminPort, '/config_dump')).body) as { identity: { serial: string } }).identity.serial;
    const start = await rotations();
    const serialsBefore = [await serial(port.webAdmin!), await serial(port.cartAdmin!)];
    const failures: string[] = [];
    let ok = 0;
    const deadline = Date.now() + 20_000;
    let now = start;
    while (Date.now() < deadline && (now[0]! < start[0]! + 2 || now[1]! < start[1]! + 2)) {
      for (let i = 0; i < 20; i++) {
        try {
          const r = await get(port.webOut!, '/rotate');
          if (r.status === 200) ok++;
          else failures.push(`status ${r.status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      now = await rotations();
    }
    expect(failures).to.deep.equal([]);
    expect(now[0]).to.be.at.least(start[0]! + 2);
    expect(now[1]).to.be.at.least(start[1]! + 2);
    expect(await serial(port.webAdmin!)).to.not.equal(serialsBefore[0]);
    expect(await serial(port.cartAdmin!)).to.not.equal(serialsBefore[1]);
    expect(ok).to.be.greaterThan(20);
    expect(await stat(port.webAdmin!, 'trellis_handshakes_total{direction="outbound",result="resumed",group="X25519MLKEM768"}')).to.be.greaterThan(0);
  });

  it('Should answer 403 when the pushed AuthorizationPolicy does not allow the method', async () => {
    const r = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: port.webOut, path: '/items', method: 'DELETE', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(r).to.equal(403);
  });

  it('Should fail no request while the control plane is killed and restarted under traffic', async () => {
    const failures: string[] = [];
    let ok = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          const r = await get(port.webOut!, '/ping');
          if (r.status === 200) ok++;
          else failures.push(`status ${r.status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    cp.kill('SIGKILL');
    await exited(cp);
    await waitFor('the sidecars to notice', async () => (await stat(port.webAdmin!, 'trellis_control_plane_connected')) === 0);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await ready(port.cartAdmin!)).to.equal(true);
    expect(await ready(port.webAdmin!)).to.equal(true);
    cp = startControlPlane();
    await waitFor('the control plane to come back', async () => group.log(cp).includes('control plane ready'));
    await waitFor('both sidecars to reconnect', async () => (await stat(port.webAdmin!, 'trellis_control_plane_connected')) === 1 && (await stat(port.cartAdmin!, 'trellis_control_plane_connected')) === 1, 40_000);
    running = false;
    await loop;
    expect(failures).to.deep.equal([]);
    expect(ok).to.be.greaterThan(10);
  });

  it('Should close an open connection of an identity the control plane revokes, and refuse it afterwards', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const keepAliveGet = (): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port: port.webOut, path: '/kept', agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.end();
        });
      expect(await keepAliveGet()).to.equal(200);
      const socketClosed = new Promise<void>((resolve) => {
        const sockets = Object.values(agent.freeSockets).flat();
        expect(sockets).to.have.length(1);
        sockets[0]!.once('close', () => resolve());
      });
      writeFileSync(f('revocations.yaml'), `serials: []\nspiffeIds: ["${WEB}"]\n`);
      await socketClosed;
      await waitFor('the revocation to refuse new requests', async () => {
        try {
          await get(port.webOut!, '/after');
          return false;
        } catch {
          return true;
        }
      });
      expect(await stat(port.cartAdmin!, 'trellis_refusals_total{direction="inbound",reason="revoked"}')).to.be.at.least(1);
    } finally {
      agent.destroy();
    }
  });

  it('Should reach the control plane behind a dead first address in --control-plane', async () => {
    const dead = await freePort();
    const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', `spiffe://${TD}/ns/shop/sa/batch`, '--service', 'batch']);
    expect(t.status, t.stderr).to.equal(0);
    writeFileSync(f('batch.token'), t.stdout.trim() + '\n', { mode: 0o600 });
    const batch = group.spawn(['sidecar', '--control-plane', `127.0.0.1:${dead},127.0.0.1:${port.cp}`, '--ca-bundle', f('ca/root.pem'), '--token-file', f('batch.token'),
      '--namespace', 'shop', '--service', 'batch', '--service-account', 'batch', '--admin', '127.0.0.1:0']);
    const adminPort = (await sidecarPorts(batch)).admin!;
    await waitFor('the batch sidecar to get ready', () => ready(adminPort), 40_000);
    batch.kill('SIGTERM');
    expect(await exited(batch)).to.equal(0);
  });

  it('Should drain and exit 0 on SIGTERM', async () => {
    cartSidecar.kill('SIGTERM');
    expect(await exited(cartSidecar)).to.equal(0);
    expect(group.log(cartSidecar)).to.contain('"msg":"sidecar stopped"');
    expect(group.log(cartSidecar)).to.not.contain('PRIVATE KEY');
  });
});
