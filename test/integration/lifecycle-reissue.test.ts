/**
 * Forced re-issue end to end: a real `trellis control-plane` process, and two
 * identities run by the sidecar's own DiscoveryClient and IdentityManager
 * (real gRPC/TLS to the control plane, keys generated in this process) that
 * serve each other over real mutual TLS. `trellis ca reissue --admin` makes
 * every matching identity present a NEW serial with a NEW key inside the
 * window, while requests keep flowing with zero failures.
 */
import { expect } from 'chai';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { silentLogger } from '@trellis/shared';
import { DiscoveryClient, IdentityManager, SidecarState, makeTrustBundle } from '@trellis/sidecar';
import { makeTmpDir, trellisSync } from '@trellis/testkit';
import { adminRaw, CP_ID, initCa, joinToken, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

interface Identity {
  id: string;
  state: SidecarState;
  client: DiscoveryClient;
  identity: IdentityManager;
  /** Serials installed, in order, with the SPKI of their key. */
  installed: Array<{ serial: string; spki: string; at: number }>;
  renewals: Array<{ renewBy: string | null; reason: string }>;
}

describe('forced re-issue over the admin API (real control plane process, real mTLS traffic)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let cp: ControlPlaneProcess;
  const ids: Identity[] = [];
  let server: Server | null = null;

  async function identity(name: string): Promise<Identity> {
    const id = `spiffe://${TD}/ns/shop/sa/${name}`;
    const token = joinToken(caDir, id, ['--uses', '5', '--service', name]);
    const state = new SidecarState();
    const client = new DiscoveryClient({
      addresses: [cp.address],
      bootstrapBundlePem: readFileSync(join(caDir, 'root.pem'), 'utf8'),
      getToken: async () => token,
      getCredentials: () => state.current().credentials ?? null,
      node: { spiffeId: id, namespace: 'shop', labels: {}, service: name, inboundPorts: [] },
      controlPlaneSpiffeId: CP_ID,
      logger: silentLogger,
      backoff: { initialMs: 50, maxMs: 500 },
    });
    const me: Identity = { id, state, client, identity: undefined as unknown as IdentityManager, installed: [], renewals: [] };
    client.on('type.trellis.dev/trellis.v1.TrustBundle', (rs) => {
      state.update({ bundle: makeTrustBundle(rs[0]!.body.rootsPem) });
    });
    state.onChange((s, changed) => {
      if (!changed.includes('credentials') || !s.credentials) return;
      const c = s.credentials;
      me.installed.push({ serial: c.serialHex, spki: createPublicKey(c.keyPem).export({ type: 'spki', format: 'der' }).toString('hex'), at: Date.now() });
    });
    // 1-minute SVIDs renewed on their own schedule only near the end of their life: any earlier renewal was asked for.
    me.identity = new IdentityManager({ state, issue: (csr) => client.requestSvid(csr), logger: silentLogger, clock: () => new Date(), spiffeId: id, rotation: { fraction: 0.95, jitter: 0.01 }, renewHints: {
      on: (t, h) => client.on(t, (rs, v) => {
        me.renewals.push({ renewBy: rs[0]?.body.renewBy ?? null, reason: rs[0]?.body.reason ?? '' });
        return h(rs, v);
      }),
    } });
    client.start();
    await me.identity.start();
    await waitFor(() => state.current().bundle !== undefined, `${name} to hold the bundle`);
    ids.push(me);
    return me;
  }

  function rootsPem(s: SidecarState): string {
    return s.current().bundle!.rootsPem.join('\n');
  }

  /** A TLS server presenting `a`'s current certificate (swapped on every install) that answers "pong" to verified peers. */
  async function serve(a: Identity): Promise<number> {
    const ctx = (): { key: string; cert: string; ca: string } => ({ key: a.state.current().credentials!.keyPem, cert: a.state.current().credentials!.chainPem, ca: rootsPem(a.state) });
    server = createServer({ ...ctx(), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (sock) => {
      sock.once('data', () => sock.end('pong'));
      sock.on('error', () => undefined);
    });
    a.state.onChange((_s, changed) => {
      if (changed.includes('credentials') || changed.includes('bundle')) server!.setSecureContext(ctx());
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    return (server.address() as { port: number }).port;
  }

  /** One request from `b` (its current certificate) to the server; resolves with the server's serial. */
  function ping(b: Identity, port: number): Promise<string> {
    const c = b.state.current().credentials!;
    return new Promise((resolve, reject) => {
      const sock: TLSSocket = connect({ host: '127.0.0.1', port, key: c.keyPem, cert: c.chainPem, ca: rootsPem(b.state), checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' }, () => sock.write('ping'));
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString()));
      sock.on('end', () => (got === 'pong' ? resolve(new X509Certificate(sock.getPeerX509Certificate()!.raw).serialNumber.toLowerCase().replace(/^0+/, '')) : reject(new Error(`answer "${got}"`))));
      sock.on('error', reject);
      sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
    });
  }

  before(async () => {
    tmp = makeTmpDir('trellis-lifecycle-reissue-');
    caDir = join(tmp.dir, 'ca');
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
    cp = await startControlPlaneProcess(caDir, policyDir, ['--svid-ttl', '1m']);
  });

  after(async () => {
    for (const i of ids) {
      i.identity.stop();
      i.client.stop();
    }
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('trellis ca reissue --admin --all makes both identities present new serials with new keys inside the window, with zero failed requests', async () => {
    const a = await identity('web');
    const b = await identity('cart');
    const port = await serve(a);
    const firstA = a.installed[a.installed.length - 1]!;
    const firstB = b.installed[b.installed.length - 1]!;
    expect(await ping(b, port)).to.equal(firstA.serial.toLowerCase().replace(/^0+/, ''));

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const traffic = (async () => {
      while (!stop) {
        try {
          await ping(b, port);
          ok++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();

    const orderedAt = Date.now();
    const r = trellisSync(['ca', 'reissue', '--admin', cp.admin, '--all', '--window', '3s', '-o', 'json'], { env: cp.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { sidecars: number; renewBy: { earliest: string; latest: string } };
    expect(out.sidecars).to.equal(2);
    expect(Date.parse(out.renewBy.earliest)).to.be.at.least(orderedAt - 1000);
    expect(Date.parse(out.renewBy.latest)).to.be.at.most(Date.now() + 3000);
    const audit = readFileSync(join(caDir, 'audit.log'), 'utf8').split('\n').filter((l) => l.includes('"reissue.ordered"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit, 'the order is a line in the CA audit log').to.have.length(1);
    expect(audit[0]).to.include({ reason: 'reissue', target: 'all', windowMs: 3000, sidecars: 2 });

    await waitFor(() => a.installed.length >= 2 && b.installed.length >= 2, 'both identities to renew', 20_000);
    await waitFor(async () => (await ping(b, port)) !== firstA.serial.toLowerCase().replace(/^0+/, ''), 'the server to present its new certificate');
    stop = true;
    await traffic;

    for (const [me, first] of [[a, firstA], [b, firstB]] as const) {
      const now = me.installed[me.installed.length - 1]!;
      expect(now.serial, me.id).to.not.equal(first.serial);
      expect(now.spki, `${me.id} renewed with a fresh key`).to.not.equal(first.spki);
      expect(me.renewals.some((x) => x.renewBy !== null && x.reason === 'reissue'), me.id).to.equal(true);
      // Renewing answered the order: the control plane withdrew it.
      await waitFor(() => me.renewals[me.renewals.length - 1]!.renewBy === null, `${me.id}'s renewal request to be withdrawn`);
      expect(me.installed.length, `${me.id} renewed exactly once`).to.equal(2);
    }
    expect(failures, failures.slice(0, 3).join('; ')).to.deep.equal([]);
    expect(ok).to.be.greaterThan(0);
  });

  it('trellis ca reissue --admin --spiffe-id renews only that identity; the other keeps its certificate', async () => {
    const [a, b] = ids as [Identity, Identity];
    const beforeA = a.installed.length;
    const beforeB = b.installed.length;
    const asksA = a.renewals.length;
    const r = trellisSync(['ca', 'reissue', '--admin', cp.admin, '--spiffe-id', b.id, '--window', '1s', '-o', 'json'], { env: cp.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    expect((JSON.parse(r.stdout) as { sidecars: number }).sidecars).to.equal(1);
    await waitFor(() => b.installed.length === beforeB + 1, 'the named identity to renew');
    await waitFor(() => b.renewals[b.renewals.length - 1]!.renewBy === null, 'its request to be withdrawn');
    expect(a.installed.length, 'the other identity did not renew').to.equal(beforeA);
    expect(a.renewals.slice(asksA).filter((x) => x.renewBy !== null), 'the other identity was not asked').to.deep.equal([]);
  });

  it('refuses a reissue without a target, with both targets, or with a bad window, naming the flag or field', async () => {
    expect(trellisSync(['ca', 'reissue', '--admin', cp.admin], { env: cp.adminEnv }).status).to.equal(2);
    expect(trellisSync(['ca', 'reissue', '--admin', cp.admin, '--all', '--spiffe-id', `spiffe://${TD}/x`], { env: cp.adminEnv }).status).to.equal(2);
    expect(trellisSync(['ca', 'reissue', '--admin', cp.admin, '--all', '--window', 'soon'], { env: cp.adminEnv }).status).to.equal(2);
    for (const body of ['{}', '{"all": "yes"}', '{"all": true, "windowSeconds": -1}', '{"all": true, "spiffeId": "spiffe://example.org/x"}']) {
      const res = await adminRaw(cp, '/lifecycle/reissue', body);
      expect(res.status, body).to.equal(400);
      expect(res.body.error?.code, body).to.equal('TRELLIS_ADMIN_BAD_BODY');
    }
  });

  // Last: the root switches, and the admin credentials written at the start (bundle.pem holds the old
  // root only) no longer verify the control plane once it serves under the new one (docs/ca-lifecycle.md).
  it('asks every sidecar to renew onto the new root when a root rotation switches (phase 2), long before their own schedule', async () => {
    const [a, b] = ids as [Identity, Identity];
    const before = [a.installed.length, b.installed.length];
    const start = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '--root-dir', join(tmp.dir, 'root2'), '--current-root-dir', caDir, '-o', 'json'], { env: cp.adminEnv });
    expect(start.status, start.stderr).to.equal(0);
    const newRoot = new X509Certificate(readFileSync(join(tmp.dir, 'root2', 'root.pem')));
    await waitFor(() => {
      const r = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '-o', 'json'], { env: cp.adminEnv });
      return r.status === 0 && (JSON.parse(r.stdout) as { phase: string }).phase === 'renew';
    }, 'the switch to the new root', 20_000);
    for (const [i, me] of [a, b].entries()) {
      await waitFor(() => me.installed.length > before[i]! && me.renewals.some((x) => x.reason === 'root-rotation'), `${me.id} to renew onto the new root`, 30_000);
      const chain = me.state.current().credentials!.chainPem.split(/(?=-----BEGIN CERTIFICATE-----)/).map((pem) => new X509Certificate(pem));
      expect(chain[1]!.verify(newRoot.publicKey), `${me.id}'s intermediate is signed by the new root`).to.equal(true);
    }
  });

});
