/**
 * The headline scenario with real processes only: `trellis
 * control-plane --svid-ttl 1m`, two `trellis sidecar` processes carrying
 * continuous HTTP traffic over mTLS, and a full root rotation started with
 * `trellis ca rotate-root`, driven by the control plane on the ACKs it
 * observes, with the control plane restarted in the middle. Not one request
 * may fail. About 80 s: phase 3 waits for the one-minute leaves of the old
 * root to expire.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { loadRootRotationState } from '@trellis/control-plane';
import { freePort, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, httpGet, waitFor } from '@trellis/testkit';

const get = (port: number, path: string) => httpGet(port, path);

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

/** The certificate chain a TLS server presents (no client certificate is offered; the handshake may then be refused). */
function servedChain(port: number): Promise<X509Certificate[]> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const out: X509Certificate[] = [];
      let c = s.getPeerCertificate(true);
      const seen = new Set<string>();
      while (c && c.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        out.push(new X509Certificate(c.raw));
        c = c.issuerCertificate;
      }
      s.destroy();
      resolve(out);
    });
    s.on('error', reject);
  });
}

describe('root rotation with real control plane and sidecar processes under traffic', function () {
  this.timeout(240_000);
  const tmp = makeTmpDir('trellis-e2e-rotation-');
  const f = (n: string): string => join(tmp.dir, n);
  // Minute-long SVIDs renewed every few seconds log a lot: keep the tail of each log.
  const group = new ProcessGroup(tmp.dir, 200_000);
  const port: Record<string, number> = {};
  let app: Server;
  let cp: ChildProcess;

  const startControlPlane = async (): Promise<ChildProcess> => {
    const p = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--svid-ttl', '1m', '--listen', `127.0.0.1:${port.cp}`, '--admin', `127.0.0.1:${port.cpAdmin}`]);
    await waitFor('the control plane', () => group.log(p).includes('control plane ready'));
    return p;
  };
  const ready = async (adminPort: number): Promise<boolean> => (await get(adminPort, '/ready')).status === 200;

  before(async () => {
    // The control plane is restarted on its ports, and cart's inbound port is published by its join token: those are
    // picked before the start. The sidecars' admin and outbound ports are bound from port 0 and read back.
    for (const k of ['cp', 'cpAdmin', 'cartIn']) port[k] = await freePort();
    expect(trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status).to.equal(0);
    // Each token attests what its sidecar announces: its service and, for cart, its inbound listener.
    const attested: Record<string, string[]> = { cart: ['--service', 'cart', '--ports', String(port.cartIn)], web: ['--service', 'web'] };
    for (const [name, id] of [['cart', CART], ['web', WEB]] as const) {
      const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', '5', ...attested[name]!]);
      expect(t.status, t.stderr).to.equal(0);
      writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
    }
    mkdirSync(f('policies'));
    app = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    port.app = (app.address() as { port: number }).port;
    cp = await startControlPlane();
    // One-minute SVIDs renewed at 5% ± 1% of their lifetime.
    const common = ['--control-plane', `127.0.0.1:${port.cp}`, '--ca-bundle', f('ca/root.pem'), '--namespace', 'shop', '--rotate-at', '0.05', '--rotate-jitter', '0.01'];
    const cart = group.spawn(['sidecar', ...common, '--token-file', f('cart.token'), '--service', 'cart', '--service-account', 'cart', '--inbound', `127.0.0.1:${port.cartIn}=${port.app}`, '--admin', '127.0.0.1:0']);
    const web = group.spawn(['sidecar', ...common, '--token-file', f('web.token'), '--service', 'web', '--service-account', 'web', '--outbound', `0=127.0.0.1:${port.cartIn}#${CART}`, '--admin', '127.0.0.1:0']);
    const [cartPorts, webPorts] = await Promise.all([sidecarPorts(cart), sidecarPorts(web)]);
    [port.cartAdmin, port.webOut, port.webAdmin] = [cartPorts.admin!, webPorts.outbound[0]!, webPorts.admin!];
    await waitFor('both sidecars ready', async () => (await ready(port.cartAdmin!)) && (await ready(port.webAdmin!)));
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      group.dumpLogs(20);
    }
  });

  after(async () => {
    group.killAll();
    await new Promise<void>((r) => app.close(() => r()));
    tmp.cleanup();
  });

  it('rotates the root through all three phases, restarting the control plane in the middle, with zero failed requests', async () => {
    let ok = 0;
    const failures: string[] = [];
    let traffic = true;
    const loop = (async () => {
      while (traffic) {
        try {
          const r = await get(port.webOut!, '/');
          if (r.status === 200) ok++;
          else failures.push(`HTTP ${r.status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await waitFor('traffic to flow', () => ok > 5);
      // The --ca-dir form writes the CA dir itself; --admin (mTLS, short-lived credentials) only reports the sidecars' ACKs.
      expect(trellisSync(['admin', 'credentials', '--ca-dir', f('ca'), '--out', f('admin'), '--ttl', '1m']).status).to.equal(0);
      const start = trellisSync(['ca', 'rotate-root', '--ca-dir', f('ca'), '--root-dir', f('newroot'), '--admin', `127.0.0.1:${port.cpAdmin}`, '--admin-credentials', f('admin'), '--reload-grace', '3s']);
      expect(start.status, start.stderr).to.equal(0);
      await waitFor('phase 2 (both sidecars ACKed the two-root bundle)', () => loadRootRotationState(f('ca'))?.phase === 'renew', 30_000);

      cp.kill('SIGTERM');
      await new Promise((r) => (cp.exitCode !== null ? r(null) : cp.once('exit', r)));
      cp = await startControlPlane();
      expect(loadRootRotationState(f('ca'))?.phase, 'the restarted control plane resumes the rotation').to.be.oneOf(['renew', 'done']);

      await waitFor('phase 3 (every leaf of the old root expired, old root dropped)', () => loadRootRotationState(f('ca'))?.phase === 'done', 150_000);
      const newRoot = new X509Certificate(readFileSync(f('newroot/root.pem')));
      const bundle = readFileSync(f('ca/root.pem'), 'utf8');
      expect(bundle.match(/BEGIN CERTIFICATE/g)).to.have.length(1);
      expect(new X509Certificate(bundle).fingerprint256).to.equal(newRoot.fingerprint256);
      // Traffic keeps flowing on the new root alone, and cart serves a leaf whose intermediate the new root signed.
      const after = ok;
      await waitFor('more requests after the old root left', () => ok > after + 20);
      await waitFor('cart to serve a leaf under the new root', async () => {
        const chain = await servedChain(port.cartIn!);
        return chain.length >= 2 && chain[1]!.verify(newRoot.publicKey);
      }, 20_000);
    } finally {
      traffic = false;
      await loop;
    }
    expect(failures, failures.slice(0, 5).join('; ')).to.deep.equal([]);
    expect(ok).to.be.greaterThan(100);
  });
});
