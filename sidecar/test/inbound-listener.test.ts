import { expect } from 'chai';
import { TestCa, waitFor } from '@trellis/testkit';
import { dataPaths, Sidecar, makeRevocations, silentAuthz, type Authorizer } from './helpers/harness';
import { bundleOf, credentialsFrom, startEchoApp, startGreeterApp, startHttpApp, tcpExchange, tlsExchange } from './helpers/fixture';
import { connect as tlsConnect } from 'node:tls';
import { createServer as createHttpServer } from 'node:http';

const TD = 'cluster.local';
const SERVER_ID = `spiffe://${TD}/ns/default/sa/server`;
const CLIENT_ID = `spiffe://${TD}/ns/default/sa/client`;

/** A policy shape for these tests only: deny listed principals, or paths. */
const testAuthorizer: Authorizer = (policies, _w, req) => {
  for (const p of policies as Array<{ denyPrincipals?: string[]; denyPaths?: string[] }>) {
    if (req.principal && p.denyPrincipals?.includes(req.principal)) return { decision: 'DENY', reason: `principal ${req.principal} denied` };
    if (req.http && p.denyPaths?.includes(req.http.path)) return { decision: 'DENY', reason: `path ${req.http.path} denied` };
  }
  return { decision: 'ALLOW', reason: 'no deny matched' };
};

async function refusals(sc: Sidecar, reason: string): Promise<number> {
  const m = await sc.metrics.refusals.get();
  return m.values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
}

for (const dataPath of dataPaths()) describe(`Inbound listener [${dataPath}]`, function () {
  this.timeout(20_000);
  let ca: TestCa;
  let otherCa: TestCa;
  let sidecar: Sidecar;
  const apps: Array<{ close(): Promise<void> }> = [];
  let strictPort: number;
  let permissivePort: number;
  let disablePort: number;
  let greeterPort: number;
  let httpPort: number;
  let httpAppPort: number;
  let client: Awaited<ReturnType<TestCa['issueLeaf']>>;

  before(async () => {
    ca = await TestCa.create(TD);
    otherCa = await TestCa.create(TD);
    const strictApp = await startEchoApp();
    const permissiveApp = await startEchoApp();
    const disableApp = await startEchoApp();
    const greeter = await startGreeterApp();
    const httpApp = await startHttpApp();
    httpAppPort = httpApp.port;
    apps.push(strictApp, permissiveApp, disableApp, greeter, httpApp);
    sidecar = new Sidecar(
      {
        inbound: [
          { host: '127.0.0.1', port: 0, appPort: strictApp.port, http: false },
          { host: '127.0.0.1', port: 0, appPort: permissiveApp.port, http: false },
          { host: '127.0.0.1', port: 0, appPort: disableApp.port, http: false },
          { host: '127.0.0.1', port: 0, appPort: greeter.port, http: false },
          { host: '127.0.0.1', port: 0, appPort: httpApp.port, http: true },
        ],
        outbound: [],
        dataPath, workload: { namespace: 'default', labels: { app: 'server' } },
        detectTimeoutMs: 200,
      },
      { logger: silentAuthz.logger, authorize: testAuthorizer, processMetrics: false },
    );
    sidecar.state.update({
      credentials: await credentialsFrom(ca, SERVER_ID),
      bundle: bundleOf(ca),
      peerAuth: { mode: 'STRICT', portModes: { [permissiveApp.port]: 'PERMISSIVE', [disableApp.port]: 'DISABLE', [greeter.port]: 'PERMISSIVE' } },
      authz: { policies: [] },
    });
    await sidecar.start();
    [strictPort, permissivePort, disablePort, greeterPort, httpPort] = sidecar.inbound.map((l) => l.port) as [number, number, number, number, number];
    client = await ca.issueLeaf(CLIENT_ID);
  });

  after(async () => {
    await sidecar.stop(0);
    for (const a of apps) await a.close();
  });

  it('Should forward mTLS from a valid peer on a STRICT port', async () => {
    const r = await tlsExchange(strictPort, { client, ca: ca.root.pem, payload: 'ping' });
    expect(r.data).to.equal('echo:ping');
  });

  it('Should refuse plaintext on a STRICT port', async () => {
    const before = await refusals(sidecar, 'handshake_failed');
    const r = await tcpExchange(strictPort, 'GET / HTTP/1.0\r\n\r\n');
    expect(r.data).to.not.contain('echo:');
    expect(await refusals(sidecar, 'handshake_failed')).to.equal(before + 1);
  });

  const badPeers: Array<[string, () => Promise<Awaited<ReturnType<TestCa['issueLeaf']>>>, string]> = [
    ['a client certificate from another CA', () => otherCa.issueLeaf(CLIENT_ID), 'untrusted_chain'],
    ['a client certificate from another trust domain', () => ca.issueLeaf('spiffe://other.org/ns/default/sa/client'), 'foreign_trust_domain'],
    ['an expired client certificate', () => ca.issueLeaf(CLIENT_ID, { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) }), 'expired'],
    ['a client certificate without a SPIFFE URI', () => ca.issueLeaf(CLIENT_ID, { uris: [], dnsNames: ['client.default.svc'] }), 'not_svid'],
    ['a client certificate with two URI SANs', () => ca.issueLeaf(CLIENT_ID, { uris: [CLIENT_ID, `spiffe://${TD}/ns/x/sa/y`] }), 'not_svid'],
    ['a CA certificate as the client leaf', () => ca.issueLeaf(CLIENT_ID, { ca: true }), 'not_svid'],
  ];
  for (const [what, make, reason] of badPeers) {
    it(`Should refuse ${what} on a STRICT port (reason ${reason})`, async () => {
      const bad = await make();
      const before = await refusals(sidecar, reason);
      const r = await tlsExchange(strictPort, { client: bad, ca: ca.root.pem, payload: 'ping' });
      expect(r.data).to.equal('');
      expect(await refusals(sidecar, reason)).to.equal(before + 1);
    });
  }

  it('Should refuse a client that presents no certificate', async () => {
    const before = await refusals(sidecar, 'no_certificate');
    const r = await tlsExchange(strictPort, { ca: ca.root.pem, payload: 'ping' });
    expect(r.data).to.equal('');
    expect(await refusals(sidecar, 'no_certificate')).to.equal(before + 1);
  });

  it('Should refuse a revoked serial and a revoked SPIFFE ID, and accept again once unrevoked', async () => {
    const victim = await ca.issueLeaf(`spiffe://${TD}/ns/default/sa/victim`);
    expect((await tlsExchange(strictPort, { client: victim, ca: ca.root.pem, payload: 'a' })).data).to.equal('echo:a');
    sidecar.state.update({ revocations: makeRevocations([victim.cert.serialNumber], []) });
    expect((await tlsExchange(strictPort, { client: victim, ca: ca.root.pem, payload: 'b' })).data).to.equal('');
    sidecar.state.update({ revocations: makeRevocations([], [`spiffe://${TD}/ns/default/sa/victim`]) });
    expect((await tlsExchange(strictPort, { client: victim, ca: ca.root.pem, payload: 'c' })).data).to.equal('');
    expect((await tlsExchange(strictPort, { client, ca: ca.root.pem, payload: 'd' })).data).to.equal('echo:d');
    sidecar.state.update({ revocations: makeRevocations() });
    expect((await tlsExchange(strictPort, { client: victim, ca: ca.root.pem, payload: 'e' })).data).to.equal('echo:e');
  });

  it('Should close an already-open connection when its identity is revoked', async () => {
    const victim = await ca.issueLeaf(`spiffe://${TD}/ns/default/sa/long-lived`);
    const closed = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: strictPort, ca: ca.root.pem, key: victim.key.keyPem, cert: victim.chainPem, checkServerIdentity: () => undefined });
      s.on('error', () => undefined);
      s.once('secureConnect', () => s.write('first'));
      s.once('data', () => {
        sidecar.state.update({ revocations: makeRevocations([], [`spiffe://${TD}/ns/default/sa/long-lived`]) });
      });
      s.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 4000).unref();
    });
    sidecar.state.update({ revocations: makeRevocations() });
    expect(closed).to.equal(true);
  });

  it('Should serve both mTLS and plaintext on a PERMISSIVE port', async () => {
    expect((await tlsExchange(permissivePort, { client, ca: ca.root.pem, payload: 'tls' })).data).to.equal('echo:tls');
    expect((await tcpExchange(permissivePort, 'plain')).data).to.equal('echo:plain');
  });

  it('Should still refuse a bad certificate on a PERMISSIVE port', async () => {
    const bad = await otherCa.issueLeaf(CLIENT_ID);
    expect((await tlsExchange(permissivePort, { client: bad, ca: ca.root.pem, payload: 'x' })).data).to.equal('');
  });

  it('Should pass a server-first protocol on a PERMISSIVE port after the detection timeout', async () => {
    const r = await tcpExchange(greeterPort, undefined);
    expect(r.data).to.equal('hello-from-server\n');
  });

  it('Should pass plaintext and never terminate TLS on a DISABLE port', async () => {
    expect((await tcpExchange(disablePort, 'plain')).data).to.equal('echo:plain');
    const r = await tlsExchange(disablePort, { client, ca: ca.root.pem, payload: 'tls', timeoutMs: 2000 });
    expect(r.data).to.equal('');
    expect(r.error).to.be.a('string');
  });

  it('Should deny a principal that policy denies on a TCP port', async () => {
    const denied = await ca.issueLeaf(`spiffe://${TD}/ns/default/sa/denied`);
    sidecar.state.update({ authz: { policies: [{ denyPrincipals: [`spiffe://${TD}/ns/default/sa/denied`] }] } });
    try {
      const before = await refusals(sidecar, 'authz_denied');
      expect((await tlsExchange(strictPort, { client: denied, ca: ca.root.pem, payload: 'x' })).data).to.equal('');
      expect(await refusals(sidecar, 'authz_denied')).to.equal(before + 1);
      expect((await tlsExchange(strictPort, { client, ca: ca.root.pem, payload: 'y' })).data).to.equal('echo:y');
    } finally {
      sidecar.state.update({ authz: { policies: [] } });
    }
  });

  it('Should serve plaintext HTTP on a PERMISSIVE /http port with no x-forwarded-client-cert, even a forged one', async () => {
    sidecar.state.update({ peerAuth: { ...sidecar.state.current().peerAuth!, portModes: { ...sidecar.state.current().peerAuth!.portModes, [httpAppPort]: 'PERMISSIVE' } } });
    try {
      const r = await tcpExchange(httpPort, 'GET /plain HTTP/1.1\r\nHost: server\r\nx-forwarded-client-cert: URI=spiffe://cluster.local/ns/kube-system/sa/admin\r\nConnection: close\r\n\r\n');
      expect(r.data).to.match(/^HTTP\/1\.1 200/);
      const body = JSON.parse(r.data.slice(r.data.indexOf('\r\n\r\n') + 4)) as { xfcc: string | null; path: string };
      expect(body.path).to.equal('/plain');
      expect(body.xfcc).to.equal(null);
    } finally {
      const pa = sidecar.state.current().peerAuth!;
      const portModes = { ...pa.portModes };
      delete portModes[httpAppPort];
      sidecar.state.update({ peerAuth: { mode: pa.mode, portModes } });
    }
  });

  it('Should answer 403 on an /http port for a denied path and set a trustworthy x-forwarded-client-cert on allowed ones', async () => {
    sidecar.state.update({ authz: { policies: [{ denyPaths: ['/admin'] }] } });
    try {
      const forged = 'GET /hello?x=1 HTTP/1.1\r\nHost: server\r\nx-forwarded-client-cert: By=evil;URI=spiffe://cluster.local/ns/kube-system/sa/admin\r\nConnection: close\r\n\r\n';
      const ok = await tlsExchange(httpPort, { client, ca: ca.root.pem, payload: forged });
      expect(ok.data).to.match(/^HTTP\/1\.1 200/);
      const body = JSON.parse(ok.data.slice(ok.data.indexOf('\r\n\r\n') + 4)) as { xfcc: string; path: string };
      expect(body.path).to.equal('/hello?x=1');
      expect(body.xfcc).to.match(new RegExp(`^By=${SERVER_ID};Hash=[0-9a-f]{64};URI=${CLIENT_ID}$`));
      const denied = await tlsExchange(httpPort, { client, ca: ca.root.pem, payload: 'GET /admin HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n' });
      expect(denied.data).to.match(/^HTTP\/1\.1 403/);
    } finally {
      sidecar.state.update({ authz: { policies: [] } });
    }
  });
  it('Should answer 400 to a request with two Host headers, and never forward it', async () => {
    // Policy reads the first Host; an app may read the last: the request must not pass on one and be routed on the other.
    // (Repeated or conflicting Transfer-Encoding/Content-Length never get this far: Node's parser refuses them.)
    const before = await refusals(sidecar, 'bad_request');
    const twoHosts = await tlsExchange(httpPort, { client, ca: ca.root.pem, payload: 'GET /x HTTP/1.1\r\nHost: public.example\r\nHost: admin.example\r\nConnection: close\r\n\r\n' });
    expect(twoHosts.data).to.match(/^HTTP\/1\.1 400/);
    expect(twoHosts.data).to.contain('bad request: more than one host header');
    expect(twoHosts.data, 'the app never answered').not.to.contain('"path"');
    expect(await refusals(sidecar, 'bad_request')).to.equal(before + 1);
    // An ordinary request on the same port still goes through.
    const ok = await tlsExchange(httpPort, { client, ca: ca.root.pem, payload: 'GET /fine HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n' });
    expect(ok.data).to.match(/^HTTP\/1\.1 200/);
  });
});

for (const dataPath of dataPaths()) describe(`Inbound /http listener when the client goes away mid-response [${dataPath}]`, function () {
  this.timeout(20_000);

  it('Should end the exchange with the app instead of reading its stream forever', async () => {
    const ca = await TestCa.create(TD);
    let appResponseClosed = false;
    let chunksSent = 0;
    const streaming = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const timer = setInterval(() => {
        chunksSent++;
        res.write(Buffer.alloc(16 * 1024, 0x61));
      }, 5);
      res.once('close', () => {
        appResponseClosed = true;
        clearInterval(timer);
      });
    });
    await new Promise<void>((r) => streaming.listen(0, '127.0.0.1', r));
    const appPort = (streaming.address() as { port: number }).port;
    const sc = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort, http: true }], outbound: [], dataPath, workload: { namespace: 'default', labels: { app: 'server' } } },
      { logger: silentAuthz.logger, authorize: testAuthorizer, processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, SERVER_ID), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    try {
      const leaf = await ca.issueLeaf(CLIENT_ID);
      const s = tlsConnect({ host: '127.0.0.1', port: sc.inbound[0]!.port, ca: ca.root.pem, key: leaf.key.keyPem, cert: leaf.chainPem, checkServerIdentity: () => undefined });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.once('secureConnect', () => s.write('GET /events HTTP/1.1\r\nHost: server\r\n\r\n'));
        s.once('data', () => resolve());
      });
      s.destroy();
      await waitFor('the app response to close', () => appResponseClosed, 10_000);
      const sentAtClose = chunksSent;
      await new Promise((r) => setTimeout(r, 200));
      expect(chunksSent, 'the app stopped streaming once its response was closed').to.equal(sentAtClose);
    } finally {
      await sc.stop(0);
      await new Promise<void>((r) => streaming.close(() => r()));
    }
  });
});

for (const dataPath of dataPaths()) describe(`Inbound listener before the first policy [${dataPath}]`, function () {
  it('Should refuse every connection and report not ready until a policy arrives', async () => {
    const ca = await TestCa.create(TD);
    const app = await startEchoApp();
    const sc = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }], outbound: [], dataPath, workload: { namespace: 'default', labels: {} } },
      { logger: silentAuthz.logger, authorize: testAuthorizer, processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, SERVER_ID), bundle: bundleOf(ca) });
    await sc.start();
    try {
      const client = await ca.issueLeaf(CLIENT_ID);
      const port = sc.inbound[0]!.port;
      expect(sc.readiness().ready).to.equal(false);
      expect((await tlsExchange(port, { client, ca: ca.root.pem, payload: 'x' })).data).to.equal('');
      expect((await tcpExchange(port, 'x')).data).to.equal('');
      sc.state.update({ peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
      expect(sc.readiness().ready).to.equal(true);
      expect((await tlsExchange(port, { client, ca: ca.root.pem, payload: 'x' })).data).to.equal('echo:x');
    } finally {
      await sc.stop(0);
      await app.close();
    }
  });
});
