import { expect } from 'chai';
import { connect as tlsConnect } from 'node:tls';
import { FakeClock, TestCa, freePort } from '@trellis/testkit';
import { dataPaths, IdentityManager, Sidecar, makeTrustBundle, sharedAuthorizer, silentAuthz } from './helpers/harness';
import { bundleOf, credentialsFrom, httpGet, signCsr, startHttpApp, tlsExchange, tcpExchange, startEchoApp } from './helpers/fixture';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

async function refusals(sc: Sidecar, reason: string): Promise<number> {
  return (await sc.metrics.refusals.get()).values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
}

function sidecar(opts: ConstructorParameters<typeof Sidecar>[0], clock?: () => Date): Sidecar {
  return new Sidecar(opts, { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false, ...(clock ? { clock } : {}) });
}

for (const dataPath of dataPaths()) describe(`Outbound by service endpoints [${dataPath}]`, function () {
  this.timeout(20_000);
  let ca: TestCa;
  let app: Awaited<ReturnType<typeof startHttpApp>>;
  let server: Sidecar;
  let client: Sidecar;

  before(async () => {
    ca = await TestCa.create(TD);
    app = await startHttpApp();
    server = sidecar({ inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: true }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } });
    server.state.update({ credentials: await credentialsFrom(ca, CART), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await server.start();
    client = sidecar({
      inbound: [],
      outbound: [
        { host: '127.0.0.1', port: 0, target: { kind: 'service', service: 'cart' } },
        { host: '127.0.0.1', port: 0, target: { kind: 'service', service: 'unknown' } },
      ],
      dataPath, workload: { namespace: 'shop', labels: {} },
    });
    client.state.update({ credentials: await credentialsFrom(ca, WEB), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await client.start();
  });

  after(async () => {
    await client.stop(0);
    await server.stop(0);
    await app.close();
  });

  it('Should reach a service at the endpoints the control plane lists when the server presents a listed identity', async () => {
    client.state.update({ endpoints: { cart: { addresses: [`127.0.0.1:${server.inbound[0]!.port}`], spiffeIds: [CART] } } });
    const r = await httpGet(client.outbound[0]!.port, '/x');
    expect(r.status).to.equal(200);
    expect((JSON.parse(r.body) as { xfcc: string }).xfcc).to.contain(`URI=${WEB}`);
  });

  it('Should move on to the next endpoint when one refuses connections, so no request fails', async () => {
    const dead = await freePort();
    client.state.update({ endpoints: { cart: { addresses: [`127.0.0.1:${dead}`, `127.0.0.1:${server.inbound[0]!.port}`], spiffeIds: [CART] } } });
    for (let i = 0; i < 4; i++) expect((await httpGet(client.outbound[0]!.port, `/try-${i}`)).status).to.equal(200);
  });

  it('Should refuse a server whose SPIFFE ID the endpoints do not list, whatever its hostname', async () => {
    client.state.update({ endpoints: { cart: { addresses: [`localhost:${server.inbound[0]!.port}`], spiffeIds: [`spiffe://${TD}/ns/shop/sa/payments`] } } });
    const before = await refusals(client, 'wrong_server_identity');
    await httpGet(client.outbound[0]!.port, '/x').then(
      () => expect.fail('the request should not get through'),
      () => undefined,
    );
    expect(await refusals(client, 'wrong_server_identity')).to.equal(before + 1);
  });

  it('Should refuse an outbound connection to a service with no endpoints', async () => {
    const before = await refusals(client, 'no_endpoint');
    expect((await tcpExchange(client.outbound[1]!.port, 'GET / HTTP/1.0\r\n\r\n')).data).to.equal('');
    expect(await refusals(client, 'no_endpoint')).to.equal(before + 1);
  });
});

for (const dataPath of dataPaths()) describe(`Trust bundle updates and certificate expiry [${dataPath}]`, function () {
  this.timeout(20_000);

  it('Should trust both roots during a root rotation, and only the new one after it', async () => {
    const oldCa = await TestCa.create(TD);
    const newCa = await TestCa.create(TD);
    const app = await startEchoApp();
    const sc = sidecar({ inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } });
    sc.state.update({ credentials: await credentialsFrom(oldCa, CART), bundle: bundleOf(oldCa), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    try {
      const port = sc.inbound[0]!.port;
      const fromOld = await oldCa.issueLeaf(WEB);
      const fromNew = await newCa.issueLeaf(WEB);
      const both = [oldCa.root.pem, newCa.root.pem];
      expect((await tlsExchange(port, { client: fromNew, ca: both, payload: 'a' })).data).to.equal('');
      sc.state.update({ bundle: makeTrustBundle(both) });
      expect((await tlsExchange(port, { client: fromOld, ca: both, payload: 'b' })).data).to.equal('echo:b');
      expect((await tlsExchange(port, { client: fromNew, ca: both, payload: 'c' })).data).to.equal('echo:c');
      sc.state.update({ credentials: await credentialsFrom(newCa, CART), bundle: bundleOf(newCa) });
      expect((await tlsExchange(port, { client: fromNew, ca: both, payload: 'd' })).data).to.equal('echo:d');
      expect((await tlsExchange(port, { client: fromOld, ca: both, payload: 'e' })).data).to.equal('');
    } finally {
      await sc.stop(0);
      await app.close();
    }
  });

  it('Should keep serving while renewal fails, then fail closed (not ready, inbound refused) once the certificate expires', async () => {
    const ca = await TestCa.create(TD);
    const app = await startEchoApp();
    // Expiry on the test kit's fake clock: the sidecar, the identity manager and its timers all read it, so nothing sleeps.
    const clock = new FakeClock(new Date());
    const sc = sidecar({ inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } }, clock.now);
    sc.state.update({ bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    let controlPlaneUp = true;
    let issued = 0;
    const errors: string[] = [];
    const im = new IdentityManager({
      state: sc.state,
      issue: async (csr) => {
        if (!controlPlaneUp) throw new Error('control plane unreachable');
        // The first SVID is short-lived; the one after the outage is not, so wall-clock time spent by the test cannot expire it.
        return signCsr(ca, csr, issued++ === 0 ? 2500 : 600_000);
      },
      logger: { ...silentAuthz.logger, error: (msg: string) => errors.push(msg), child: () => silentAuthz.logger } as typeof silentAuthz.logger,
      clock: clock.now,
      timers: clock,
      spiffeId: CART,
    });
    await im.start();
    await sc.start();
    try {
      controlPlaneUp = false;
      const port = sc.inbound[0]!.port;
      const client = await ca.issueLeaf(WEB);
      expect((await tlsExchange(port, { client, ca: ca.root.pem, payload: 'still' })).data).to.equal('echo:still');
      expect(sc.readiness().ready).to.equal(true);
      const first = sc.state.current().credentials!;
      clock.advance(1000);
      expect(sc.readiness().ready, 'still inside the lifetime').to.equal(true);
      clock.set(new Date(first.notAfter.getTime() + 1));
      expect(sc.readiness().ready).to.equal(false);
      const before = await refusals(sc, 'no_valid_svid');
      expect((await tlsExchange(port, { client, ca: ca.root.pem, payload: 'late' })).data).to.equal('');
      expect(await refusals(sc, 'no_valid_svid')).to.equal(before + 1);
      expect(errors.some((m) => /EXPIRED/.test(m))).to.equal(true);
      // Renewal succeeds again: back in service without a restart.
      controlPlaneUp = true;
      await im.rotateNow();
      expect(sc.readiness().ready).to.equal(true);
      expect((await tlsExchange(port, { client, ca: ca.root.pem, payload: 'back' })).data).to.equal('echo:back');
    } finally {
      im.stop();
      await sc.stop(0);
      await app.close();
    }
  });
});

for (const dataPath of dataPaths()) describe(`Session resumption and the trust bundle [${dataPath}]`, function () {
  this.timeout(20_000);

  it('Should not let a session made under a root that was since removed from the bundle be resumed', async () => {
    const oldCa = await TestCa.create(TD);
    const newCa = await TestCa.create(TD);
    const app = await startEchoApp();
    const sc = sidecar({ inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } });
    sc.state.update({ credentials: await credentialsFrom(newCa, CART), bundle: makeTrustBundle([oldCa.root.pem, newCa.root.pem]), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    try {
      const port = sc.inbound[0]!.port;
      const oldClient = await oldCa.issueLeaf(WEB);
      // A full handshake with the old root still trusted, keeping the session ticket.
      const session = await new Promise<Buffer>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ca: newCa.root.pem, key: oldClient.key.keyPem, cert: oldClient.chainPem, checkServerIdentity: () => undefined });
        s.on('session', (t: Buffer) => {
          resolve(t);
          s.destroy();
        });
        s.on('secureConnect', () => s.write('x'));
        s.on('error', reject);
      });
      sc.state.update({ bundle: bundleOf(newCa) });
      const resumed = await new Promise<{ reused: boolean; data: string }>((resolve) => {
        let data = '';
        let reused = false;
        const s = tlsConnect({ host: '127.0.0.1', port, ca: newCa.root.pem, key: oldClient.key.keyPem, cert: oldClient.chainPem, session, checkServerIdentity: () => undefined });
        s.on('secureConnect', () => {
          reused = s.isSessionReused();
          s.end('again');
        });
        s.on('data', (d: Buffer) => (data += d.toString()));
        s.on('error', () => undefined);
        s.on('close', () => resolve({ reused, data }));
      });
      expect(resumed.reused).to.equal(false);
      expect(resumed.data).to.equal('');
    } finally {
      await sc.stop(0);
      await app.close();
    }
  });
});

for (const dataPath of dataPaths()) describe(`Installing a new certificate [${dataPath}]`, function () {
  this.timeout(20_000);

  it('Should present the new certificate on the very next handshake while an open connection keeps working', async () => {
    const ca = await TestCa.create(TD);
    const app = await startEchoApp();
    const sc = sidecar({ inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } });
    const first = await credentialsFrom(ca, CART);
    sc.state.update({ credentials: first, bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    const client = await ca.issueLeaf(WEB);
    const port = sc.inbound[0]!.port;
    const open = tlsConnect({ host: '127.0.0.1', port, ca: ca.root.pem, key: client.key.keyPem, cert: client.chainPem, checkServerIdentity: () => undefined });
    try {
      await new Promise<void>((r) => open.once('secureConnect', () => r()));
      expect(open.getPeerX509Certificate()!.serialNumber.toLowerCase().replace(/^0+/, '')).to.equal(first.serialHex);
      const second = await credentialsFrom(ca, CART);
      sc.state.update({ credentials: second });
      const serialSeen = await new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ca: ca.root.pem, key: client.key.keyPem, cert: client.chainPem, checkServerIdentity: () => undefined });
        s.once('secureConnect', () => {
          resolve(s.getPeerX509Certificate()!.serialNumber.toLowerCase().replace(/^0+/, ''));
          s.destroy();
        });
        s.on('error', reject);
      });
      expect(serialSeen).to.equal(second.serialHex);
      const echoed = new Promise<string>((r) => open.once('data', (d: Buffer) => r(d.toString())));
      open.write('still-open');
      expect(await echoed).to.equal('echo:still-open');
    } finally {
      open.destroy();
      await sc.stop(0);
      await app.close();
    }
  });
});
