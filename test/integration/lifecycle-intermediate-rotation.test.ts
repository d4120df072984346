/**
 * An intermediate rotation and then a full root rotation under continuous mTLS traffic, against a control
 * plane running in this process (the real discovery server over loopback
 * gRPC/TLS, with the lifecycle manager and the reloading CA) and sidecars
 * speaking the real discovery protocol. The rotation is started with the
 * real `trellis ca rotate-root`; the control plane is restarted in the
 * middle and resumes; not one handshake between the sidecars fails.
 *
 * Takes about 70 s: phase 3 really waits for the leaves issued under the
 * old root (TTL 1 minute, the CA's minimum) to expire.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:tls';
import { join } from 'node:path';
import {
  loadCertificateAuthority,
  openReloadingAuthority,
  proxiesFromAdmin,
  startControlPlane,
  startLifecycleManager,
  staticPolicySource,
  type LifecycleManager,
  type ReloadingAuthority,
  type RunningControlPlane,
} from '@trellis/control-plane';
import { silentLogger } from '@trellis/shared';
import { freePort, makeTmpDir, trellisSync } from '@trellis/testkit';
import { FakeSidecar, initCa, joinToken, waitFor, TD } from './control-plane-harness';

interface Plane {
  running: RunningControlPlane;
  authority: ReloadingAuthority;
  manager: LifecycleManager;
}

function rootsOf(s: FakeSidecar): string {
  const b = s.bodies.get('bundle')?.[0] as { rootsPem?: string[] } | undefined;
  return (b?.rootsPem ?? []).join('\n');
}

describe('intermediate rotation under traffic (in-process control plane, real gRPC/TLS and mTLS)', function () {
  this.timeout(180_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let ports: { listen: number; admin: number };
  let plane: Plane | null = null;
  const sidecars: FakeSidecar[] = [];
  let server: Server | null = null;

  async function startPlane(): Promise<Plane> {
    const authority = await openReloadingAuthority(caDir, { load: (d) => loadCertificateAuthority(d), logger: silentLogger, closeDelayMs: 1000 });
    const running = await startControlPlane(
      {
        caDir,
        listen: `127.0.0.1:${ports.listen}`,
        admin: `127.0.0.1:${ports.admin}`,
        svidTtlSeconds: 60,
        defaultMtlsMode: 'STRICT',
        signing: { concurrency: 2, maxQueue: 100 },
        idleStreamTimeoutMs: 60_000,
        debounceMs: 10,
        refreshMs: 200,
      },
      { authority, policy: staticPolicySource('STRICT'), logger: silentLogger, caExpiry: () => authority.expiry() },
    );
    const manager = startLifecycleManager({ caDir, intervalMs: 200 }, { authority, logger: silentLogger, proxies: () => proxiesFromAdmin({ proxies: running.service.registry.statuses() }) });
    return { running, authority, manager };
  }

  async function stopPlane(p: Plane): Promise<void> {
    p.manager.stop();
    await p.running.stop(1000);
    p.authority.close();
  }

  before(async () => {
    tmp = makeTmpDir('trellis-root-rotation-');
    caDir = join(tmp.dir, 'ca');
    initCa(caDir);
    ports = { listen: await freePort(), admin: await freePort() };
    plane = await startPlane();
  });

  after(async () => {
    traffic = false;
    await loop;
    await renewals;
    for (const s of sidecars) s.stop();
    server?.close();
    if (plane) await stopPlane(plane);
    tmp?.cleanup();
  });

  let web: FakeSidecar;
  let cart: FakeSidecar;
  let ok = 0;
  const failures: string[] = [];
  let traffic = false;
  let loop: Promise<void> = Promise.resolve();
  let renewals: Promise<void> = Promise.resolve();

  before(async () => {
    const make = (name: string): FakeSidecar => {
      const id = `spiffe://${TD}/ns/shop/sa/${name}`;
      const token = joinToken(caDir, id, ['--uses', '10']);
      const s = new FakeSidecar({ addresses: [`127.0.0.1:${ports.listen}`], caDir, spiffeId: id, token: () => token, namespace: 'shop' });
      sidecars.push(s);
      return s.start();
    };
    web = make('web');
    cart = make('cart');
    await web.rotate();
    await cart.rotate();
    await waitFor(() => rootsOf(web) !== '' && rootsOf(cart) !== '', 'both sidecars to hold the bundle');

    // cart serves mTLS with its current SVID and the bundle it was pushed; web dials it with its own.
    server = createServer({ requestCert: true, rejectUnauthorized: true }, (sock) => sock.end('ok'));
    const serverContext = (): void => {
      server!.setSecureContext({ key: cart.creds!.keyPem, cert: cart.creds!.chainPem, ca: rootsOf(cart) });
    };
    serverContext();
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const handshake = (): Promise<void> =>
      new Promise((resolve) => {
        const sock = connect({ host: '127.0.0.1', port, key: web.creds!.keyPem, cert: web.creds!.chainPem, ca: rootsOf(web), checkServerIdentity: () => undefined }, () => {
          sock.once('data', () => {
            ok++;
            sock.destroy();
            resolve();
          });
        });
        sock.on('error', (e) => {
          failures.push(e.message);
          resolve();
        });
      });
    traffic = true;
    // Like a real sidecar, renew at half life (the CA's minimum TTL is one minute).
    renewals = (async () => {
      while (traffic) {
        for (const s of [web, cart]) {
          if (s.creds && s.creds.notAfter.getTime() - Date.now() < 30_000) await s.rotate().catch(() => undefined);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    loop = (async () => {
      while (traffic) {
        serverContext();
        await handshake();
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

  });

  it('rotates the intermediate under traffic: new leaves come from the new one at once, none of the old ones breaks', async () => {
    const failedBefore = failures.length;
    const oldIntermediate = readFileSync(join(caDir, 'intermediate.pem'), 'utf8').trim();
    const p = trellisSync(['ca', 'prepare-intermediate', '--dir', caDir, '--root-dir', caDir]);
    expect(p.status, p.stderr).to.equal(0);
    const a = trellisSync(['ca', 'activate-intermediate', '--dir', caDir]);
    expect(a.status, a.stderr).to.equal(0);
    const newIntermediate = readFileSync(join(caDir, 'intermediate.pem'), 'utf8').trim();
    expect(newIntermediate).to.not.equal(oldIntermediate);
    await waitFor(async () => {
      await web.rotate();
      return web.creds!.chainPem.includes(newIntermediate);
    }, 'a renewal to come from the new intermediate', 20_000);
    expect(cart.creds!.chainPem, 'cart still holds a leaf of the old intermediate').to.contain(oldIntermediate);
    const before = ok;
    await waitFor(() => ok > before + 5 || failures.length > failedBefore, 'traffic between a new-intermediate client and an old-intermediate server');
    expect(failures.slice(failedBefore), failures.slice(failedBefore, failedBefore + 3).join('; ')).to.deep.equal([]);
  });

});
