import { expect } from 'chai';
import { createServer as createNetServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { TestCa } from '@trellis/testkit';
import { dataPaths, Sidecar, sharedAuthorizer, silentAuthz } from './helpers/harness';
import { bundleOf, credentialsFrom, startEchoApp, startHttpApp, tlsExchange } from './helpers/fixture';

const TD = 'cluster.local';

function admin(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const dataPath of dataPaths()) describe(`Admin endpoint and drain [${dataPath}]`, function () {
  this.timeout(20_000);
  let ca: TestCa;
  let app: Awaited<ReturnType<typeof startEchoApp>>;
  let sidecar: Sidecar;
  let quits = 0;

  before(async () => {
    ca = await TestCa.create(TD);
    app = await startEchoApp();
    sidecar = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }], outbound: [], admin: { host: '127.0.0.1', port: 0 }, dataPath, workload: { namespace: 'shop', labels: { app: 'cart' } } },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), onQuit: () => quits++ },
    );
    await sidecar.start();
  });

  after(async () => {
    await sidecar.stop(0);
    await app.close();
  });

  it('Should answer /ready 503 with the reason until SVID, bundle and policy are present, then 200', async () => {
    const before = await admin(sidecar.adminBoundPort, '/ready');
    expect(before.status).to.equal(503);
    expect(before.body).to.contain('no SVID');
    sidecar.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/cart`), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    expect((await admin(sidecar.adminBoundPort, '/ready')).status).to.equal(200);
  });

  it('Should export trellis_ metrics in Prometheus text, counting connections and refusals by reason', async () => {
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    const port = sidecar.inbound[0]!.port;
    expect((await tlsExchange(port, { client, ca: ca.root.pem, payload: 'x' })).data).to.equal('echo:x');
    await tlsExchange(port, { ca: ca.root.pem, payload: 'x' });
    const r = await admin(sidecar.adminBoundPort, '/stats');
    expect(r.status).to.equal(200);
    expect(r.type).to.contain('text/plain');
    expect(r.body).to.match(/^trellis_connections_total\{direction="inbound"\} [1-9]/m);
    expect(r.body).to.match(/^trellis_refusals_total\{direction="inbound",reason="no_certificate"\} 1$/m);
    expect(r.body).to.match(/^trellis_handshakes_total\{direction="inbound",result="ok",group="X25519MLKEM768"\} [1-9]/m);
    expect(r.body).to.match(/^trellis_certificate_expiry_seconds \d+/m);
    expect(r.body).to.match(/^trellis_bytes_total\{direction="inbound",flow="rx"\} [1-9]/m);
    expect(r.body).to.match(/^trellis_ready 1$/m);
  });

  it('Should dump identity, bundle fingerprints, policy and listeners, and never a private key', async () => {
    const r = await admin(sidecar.adminBoundPort, '/config_dump');
    const dump = JSON.parse(r.body) as Record<string, unknown> & { identity: { spiffeId: string; serial: string }; bundle: { fingerprints: string[] } };
    expect(dump.identity.spiffeId).to.equal(`spiffe://${TD}/ns/shop/sa/cart`);
    expect(dump.identity.serial).to.match(/^[0-9a-f]+$/);
    expect(dump.bundle.fingerprints[0]).to.match(/^[0-9a-f]{64}$/);
    expect(dump).to.have.keys(['ready', 'identity', 'bundle', 'peerAuthentication', 'authorizationPolicies', 'pathNormalization', 'revocations', 'endpoints', 'dataPath', 'listeners', 'workload', 'openConnections', 'keyExchange']);
    expect(dump.pathNormalization, 'the path normalization in force, BASE when none was pushed').to.equal('BASE');
    expect(r.body).to.not.contain('PRIVATE KEY');
    expect(r.body).to.not.contain(sidecar.state.current().credentials!.keyPem.split('\n')[1]!);
  });

  it('Should accept only POST on /quitquitquit and call the quit hook', async () => {
    expect((await admin(sidecar.adminBoundPort, '/quitquitquit')).status).to.equal(405);
    expect((await admin(sidecar.adminBoundPort, '/quitquitquit', 'POST')).status).to.equal(200);
    await new Promise((r) => setImmediate(r));
    expect(quits).to.equal(1);
  });

  it('Should stop accepting on stop() but let an open connection finish within the drain time', async () => {
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    const port = sidecar.inbound[0]!.port;
    const s = tlsConnect({ host: '127.0.0.1', port, ca: ca.root.pem, key: client.key.keyPem, cert: client.chainPem, checkServerIdentity: () => undefined });
    await new Promise<void>((r) => s.once('secureConnect', () => r()));
    s.write('one');
    await new Promise<void>((r) => s.once('data', () => r()));
    const stopping = sidecar.stop(5000);
    // New connections are refused once stop() begins...
    await new Promise((r) => setTimeout(r, 50));
    const late = await tlsExchange(port, { client, ca: ca.root.pem, payload: 'late', timeoutMs: 1000 });
    expect(late.error).to.equal('ECONNREFUSED');
    // ...while the open one still works, and the drain ends when it closes.
    const reply = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
    s.write('two');
    expect(await reply).to.equal('echo:two');
    s.end();
    await stopping;
    expect(sidecar.tracker.size).to.equal(0);
  });
});

for (const dataPath of dataPaths()) describe(`Drain on /http ports [${dataPath}]`, function () {
  this.timeout(20_000);

  it('Should close idle keep-alive HTTP connections once quiet when draining instead of waiting out the drain time', async () => {
    const ca = await TestCa.create(TD);
    const app = await startHttpApp();
    const sc = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: true }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/cart`), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    const s = tlsConnect({ host: '127.0.0.1', port: sc.inbound[0]!.port, ca: ca.root.pem, key: client.key.keyPem, cert: client.chainPem, checkServerIdentity: () => undefined });
    try {
      await new Promise<void>((r) => s.once('secureConnect', () => r()));
      const first = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
      s.write('GET /a HTTP/1.1\r\nHost: cart\r\n\r\n');
      expect(await first).to.match(/^HTTP\/1\.1 200/);
      const closed = new Promise<void>((r) => s.once('close', () => r()));
      // A drain time far beyond the test's timeout: stop() can only return in
      // time because the idle connection was closed, not because time ran out.
      await sc.stop(600_000);
      await closed;
      expect(sc.tracker.size).to.equal(0);
    } finally {
      s.destroy();
      await app.close();
    }
  });
});

for (const dataPath of dataPaths()) describe(`Drain while the app's protocol is still being learned [${dataPath}]`, function () {
  this.timeout(20_000);

  it('Should answer a request that arrived before the probe of the app ended, though the drain began meanwhile', async () => {
    // The first connection to the app is the sidecar's h2c probe: held 1.5 s, then closed, so the app is
    // learned as HTTP/1.1 only then; every later connection is served as HTTP/1.1.
    const http1 = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok');
    });
    let probes = 0;
    const appConns = new Set<Socket>();
    const appServer = createNetServer((c) => {
      appConns.add(c);
      c.once('close', () => appConns.delete(c));
      if (probes++ === 0) {
        c.on('error', () => undefined);
        setTimeout(() => c.destroy(), 1500);
        return;
      }
      http1.emit('connection', c);
    });
    await new Promise<void>((r) => appServer.listen(0, '127.0.0.1', () => r()));
    const appPort = (appServer.address() as { port: number }).port;
    const ca = await TestCa.create(TD);
    const sc = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort, http: true }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/cart`), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    const s = tlsConnect({ host: '127.0.0.1', port: sc.inbound[0]!.port, ca: ca.root.pem, key: client.key.keyPem, cert: client.chainPem, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
    try {
      await new Promise<void>((r) => s.once('secureConnect', () => r()));
      let data = '';
      s.on('data', (d: Buffer) => (data += d.toString()));
      const closed = new Promise<void>((r) => s.once('close', () => r()));
      s.write('GET /early HTTP/1.1\r\nHost: cart\r\n\r\n');
      await new Promise((r) => setTimeout(r, 100));
      // The drain's quiet-close (1 s) would end the connection before the probe (1.5 s) lets it be read.
      const stopping = sc.stop(600_000);
      await closed;
      expect(data).to.match(/^HTTP\/1\.1 200 OK\r\n/);
      expect(data).to.match(/\r\nConnection: close\r\n/i);
      await stopping;
    } finally {
      s.destroy();
      await sc.stop(0);
      // The sidecar's idle keep-alive connection to the app would hold close() for the app's 5 s keep-alive timeout.
      for (const c of appConns) c.destroy();
      await new Promise<void>((r) => appServer.close(() => r()));
    }
  });
});

/** An app that answers after `?delay=MS` (default at once). */
async function startDelayingApp(): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0);
    req.resume();
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok'), delay);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

for (const dataPath of dataPaths()) describe(`Drain without lost requests on /http ports [${dataPath}]`, function () {
  this.timeout(20_000);
  let ca: TestCa;
  let app: Awaited<ReturnType<typeof startDelayingApp>>;
  let sc: Sidecar;
  let agent: HttpsAgent;

  beforeEach(async () => {
    ca = await TestCa.create(TD);
    app = await startDelayingApp();
    sc = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: true }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} } },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/cart`), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    // One keep-alive connection, reused by every request.
    agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: ca.root.pem, key: client.key.keyPem, cert: client.chainPem, checkServerIdentity: () => undefined });
  });

  afterEach(async () => {
    agent.destroy();
    await sc.stop(0);
    await app.close();
  });

  function get(path: string): Promise<{ status: number; headers: IncomingHttpHeaders; reused: boolean }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: sc.inbound[0]!.port, path, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, reused: req.reusedSocket }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('Should serve a request that arrives on a keep-alive connection during the drain, answering it with connection: close', async () => {
    expect((await get('/first')).status).to.equal(200);
    const stopping = sc.stop(600_000);
    const during = await get('/during-the-drain');
    expect(during.reused, 'sent on the open keep-alive connection').to.equal(true);
    expect(during.status).to.equal(200);
    expect(during.headers.connection).to.equal('close');
    // The drain then ends as the connection closes, long before its 600 s.
    await stopping;
    expect(sc.tracker.size).to.equal(0);
  });

  it('Should let a request in flight when the drain starts finish, answering it with connection: close', async () => {
    expect((await get('/first')).status).to.equal(200);
    const slow = get('/slow?delay=400');
    await new Promise((r) => setTimeout(r, 100));
    const stopping = sc.stop(600_000);
    const r = await slow;
    expect(r.status).to.equal(200);
    expect(r.headers.connection, 'the client learns not to reuse the connection').to.equal('close');
    await stopping;
  });
});
