/**
 * A caller's view of a service's endpoints must not flicker while the
 * service's sidecar is healthy: not when its discovery stream moves to a
 * renewed certificate, not when the stream is lost for a moment, and not
 * when the control plane restarts and hears from the caller before the
 * service. Real `trellis control-plane` and `trellis sidecar` processes; the
 * caller is the real DiscoveryClient (FakeSidecar), which records every
 * endpoints update it receives.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, makeTmpDir, ProcessGroup, trellisSync } from '@trellis/testkit';
import { adminJson, FakeSidecar, initCa, joinToken, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

type Endpoints = Array<{ service: string; endpoints: Array<{ address: string; spiffeId: string }> }>;

/** Whether one endpoints update lists cart at `address`. */
function listsCart(update: unknown[], address: string): boolean {
  return (update as Endpoints).some((r) => r.service === 'cart' && r.endpoints.some((e) => e.address === address && e.spiffeId === CART));
}

describe('endpoints while sidecars renew, reconnect and the control plane restarts (real processes)', function () {
  this.timeout(90_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let policyDir: string;
  const group = new ProcessGroup(process.cwd());
  const cps: ControlPlaneProcess[] = [];
  const callers: FakeSidecar[] = [];

  before(() => {
    tmp = makeTmpDir('trellis-endpoint-continuity-');
    caDir = join(tmp.dir, 'ca');
    policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      group.dumpLogs(30);
      for (const cp of cps) process.stderr.write(`--- control plane\n${cp.logs.slice(-30).join('\n')}\n`);
    }
  });

  after(async () => {
    for (const c of callers) void c.stop();
    group.killAll();
    for (const cp of cps) await cp.stop('SIGKILL');
    tmp?.cleanup();
  });

  async function controlPlane(extra: string[] = [], ports?: { port: number; adminPort: number }): Promise<ControlPlaneProcess> {
    const cp = await startControlPlaneProcess(caDir, policyDir, extra, ports);
    cps.push(cp);
    return cp;
  }

  /** A real `trellis sidecar` serving cart on `port`, its identity and port attested by a fresh join token. */
  function cartSidecar(cp: ControlPlaneProcess, port: number): ChildProcess {
    const token = join(tmp.dir, `cart-token-${Math.random().toString(16).slice(2)}`);
    writeFileSync(token, joinToken(caDir, CART, ['--uses', '1', '--service', 'cart', '--ports', String(port)]) + '\n', { mode: 0o600 });
    return group.spawn(['sidecar', '--control-plane', cp.address, '--ca-bundle', join(caDir, 'root.pem'), '--token-file', token, '--service', 'cart', '--inbound', `127.0.0.1:${port}=9`, '--admin', '127.0.0.1:0', '--drain', '0s']);
  }

  /** A caller that records every endpoints update; it holds an SVID, so it reconnects over mTLS as a sidecar does. */
  async function caller(cp: ControlPlaneProcess): Promise<FakeSidecar> {
    const token = joinToken(caDir, WEB, ['--uses', '1', '--service', 'web']);
    const c = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: WEB, token: () => token, namespace: 'shop', service: 'web' });
    callers.push(c);
    c.start();
    await c.rotate();
    return c;
  }

  const updates = (c: FakeSidecar): unknown[][] => c.updates.get('endpoints') ?? [];

  async function proxies(cp: ControlPlaneProcess): Promise<Array<{ spiffeId: string; authMethod: string }>> {
    return (await adminJson<{ proxies: Array<{ spiffeId: string; authMethod: string }> }>(cp, '/debug/proxies')).proxies;
  }

  /**
   * Whether cart holds exactly one stream and it is authenticated by its SVID: the move off the
   * join-token stream (which starts once its first SVID is installed, a moment after it is listed) is over.
   */
  async function cartSettled(cp: ControlPlaneProcess): Promise<boolean> {
    return (await proxies(cp)).filter((p) => p.spiffeId === CART).map((p) => p.authMethod).join() === 'svid';
  }

  it('Should not change a caller\'s endpoints while the service\'s sidecar moves its stream to each renewed certificate', async () => {
    const cp = await controlPlane();
    const port = await freePort();
    const web = await caller(cp);
    const cart = cartSidecar(cp, port);
    const address = `127.0.0.1:${port}`;
    await waitFor(() => updates(web).some((u) => listsCart(u, address)), 'the caller to list cart');
    // Its first SVID is installed after it is listed: count renewals from there, or round 1 could see that install.
    await waitFor(() => cartSettled(cp), 'cart on its SVID stream');
    const seen = updates(web).length;
    // Two forced renewals: the first moves off the join-token stream, the second off the first SVID's.
    for (let round = 1; round <= 2; round++) {
      const before = group.log(cart).split('"msg":"SVID installed"').length;
      const r = trellisSync(['ca', 'reissue', '--admin', cp.admin, '--spiffe-id', CART, '--window', '0s'], { env: cp.adminEnv });
      expect(r.status, r.stderr).to.equal(0);
      await waitFor(() => group.log(cart).split('"msg":"SVID installed"').length > before, `renewal ${round}`);
      await waitFor(async () => (await proxies(cp)).filter((p) => p.spiffeId === CART).length === 1, `one stream for cart after renewal ${round}`);
    }
    expect(updates(web).slice(seen), 'no endpoints update reached the caller').to.deep.equal([]);
    expect((await proxies(cp)).find((p) => p.spiffeId === CART)?.authMethod).to.equal('svid');
    expect(group.log(cart), 'the sidecar stayed connected throughout').to.not.contain('"msg":"control plane disconnected');
    expect(group.log(cart)).to.not.contain('"msg":"discovery stream ended"');
    cart.kill('SIGTERM');
    await cp.stop();
  });

  it('Should keep a lost sidecar\'s endpoints through the grace period, so a quick return changes nothing, and withdraw them at once when it leaves cleanly', async () => {
    const cp = await controlPlane(['--endpoint-grace', '60s']);
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const web = await caller(cp);
    const first = cartSidecar(cp, port);
    await waitFor(() => updates(web).some((u) => listsCart(u, address)), 'the caller to list cart');
    const seen = updates(web).length;
    // Lost: killed, as a crash would; the control plane sees its connection drop.
    first.kill('SIGKILL');
    await waitFor(async () => !(await proxies(cp)).some((p) => p.spiffeId === CART), 'the control plane to drop the lost stream');
    const back = cartSidecar(cp, port);
    await waitFor(async () => (await proxies(cp)).some((p) => p.spiffeId === CART), 'the sidecar back');
    // Back on its join token, it moves to its SVID stream a moment later. A SIGTERM during that move
    // cancels the new stream instead of closing it (DiscoveryClient.stop() today), so the control plane
    // counts that stream lost and keeps the endpoints for the grace period. The goodbye checked here is
    // the one from a settled stream; the mid-move case is a sidecar bug of its own.
    await waitFor(() => cartSettled(cp), 'the sidecar back on its SVID stream');
    expect(updates(web).slice(seen), 'the caller never saw cart withdrawn').to.deep.equal([]);
    // Left: SIGTERM drains and says goodbye; the endpoints go now, not after 60 s.
    back.kill('SIGTERM');
    await waitFor(() => updates(web).length > seen && !listsCart(updates(web).at(-1)!, address), 'the withdrawal after a clean goodbye', 20_000);
    await cp.stop();
  });

  it('Should withdraw a lost sidecar\'s endpoints once its grace period has passed', async () => {
    const cp = await controlPlane(['--endpoint-grace', '2s']);
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const web = await caller(cp);
    const cart = cartSidecar(cp, port);
    await waitFor(() => updates(web).some((u) => listsCart(u, address)), 'the caller to list cart');
    cart.kill('SIGKILL');
    await waitFor(async () => !(await proxies(cp)).some((p) => p.spiffeId === CART), 'the control plane to drop the lost stream');
    expect(listsCart(updates(web).at(-1)!, address), 'still listed right after the loss').to.equal(true);
    await waitFor(() => !listsCart(updates(web).at(-1)!, address), 'the withdrawal after the grace period', 20_000);
    await cp.stop();
  });

  it('Should not push a caller an endpoint list without its upstream when a restarted control plane hears from the caller first', async () => {
    const cp = await controlPlane();
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const web = await caller(cp);
    const cart = cartSidecar(cp, port);
    await waitFor(() => updates(web).some((u) => listsCart(u, address)), 'the caller to list cart');
    await waitFor(async () => (await proxies(cp)).find((p) => p.spiffeId === CART)?.authMethod === 'svid', 'cart on its SVID stream');
    const seen = updates(web).length;
    // cart is frozen while the control plane restarts, so the caller is back first.
    cart.kill('SIGSTOP');
    try {
      expect(await cp.stop('SIGTERM')).to.equal(0);
      const again = await controlPlane([], { port: cp.port, adminPort: cp.adminPort });
      await waitFor(async () => (await proxies(again)).some((p) => p.spiffeId === WEB), 'the caller to reconnect');
      await new Promise((r) => setTimeout(r, 1000));
      cart.kill('SIGCONT');
      await waitFor(async () => (await proxies(again)).some((p) => p.spiffeId === CART), 'cart to reconnect');
      await new Promise((r) => setTimeout(r, 500));
      expect(updates(web).slice(seen).filter((u) => !listsCart(u, address)), 'lists without cart pushed to the caller').to.deep.equal([]);
      cart.kill('SIGTERM');
      await again.stop();
    } finally {
      cart.kill('SIGCONT');
    }
  });
});
