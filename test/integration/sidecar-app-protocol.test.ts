/**
 * The app's protocol declared on the inbound spec (`/http1`, `/grpc`,
 * `/h2c`) instead of learned by an h2c probe (`/http`): a real sidecar
 * in STRICT mTLS with real clients (node:http2, node:https, ws, grpc-js) in
 * front of real apps (an HTTP/1.1-only node:http server that counts what its
 * parser refused, a grpc-js server and a node:http2 h2c server, each behind
 * a TCP counter of the connections the sidecar opens to it), on each data path.
 */
import { expect } from 'chai';
import { createServer as createH1Server, type IncomingMessage, type Server as H1Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as h2Connect, createServer as createH2Server, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type Server as NetServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { WebSocket, WebSocketServer } from 'ws';
import { AUTHZ_WIRE_VERSION, encodeAuthorizationPolicies, policiesFromJSON, silentLogger, type AuthorizationPolicy } from '@trellis/shared';
import { Sidecar, makeCredentials, makeTrustBundle, nativeRelay, parseInboundSpec, policiesFromWire, sharedAuthorizer, type InboundSpec } from '@trellis/sidecar';
import { h2Get, TestCa } from '@trellis/testkit';
import { chat, ECHO_SERVICE, EchoClient, unary } from './grpc-echo';

const TD = 'cluster.local';
const SERVER = `spiffe://${TD}/ns/shop/sa/server`;
const CLIENT = `spiffe://${TD}/ns/shop/sa/client`;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

const POLICIES = [
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'no-admin', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin', '/trellis.test.Admin/*'] } }] }] },
  },
];

/** The AuthorizationPolicies body a control plane pushes for these manifests (compiled wire form). */
function compiled(manifests: unknown[]): unknown {
  const policies = policiesFromJSON(manifests, 'test manifests').filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy');
  return JSON.parse(JSON.stringify({ wireVersion: AUTHZ_WIRE_VERSION, policies: encodeAuthorizationPolicies(policies) }));
}

/** Which data paths to run on: the Node path always, the native relay when it is built and the suite is not told to run on the Node path only. */
function dataPaths(): Array<'native' | 'node'> {
  return process.env.TRELLIS_DATA_PATH === 'node' || !nativeRelay() ? ['node'] : ['native', 'node'];
}


/** A TCP counter in front of an app: every connection the sidecar opens, and the first bytes it sent on it. */
interface ConnectionCounter {
  readonly server: NetServer;
  readonly port: number;
  readonly connections: Array<{ first: Buffer; bytes: number }>;
}

/** `drop`: how many first connections are closed as soon as accepted, as an app that is still starting may do. */
async function countConnections(appPort: number, drop = 0): Promise<ConnectionCounter> {
  const connections: ConnectionCounter['connections'] = [];
  let dropped = 0;
  const server = createNetServer((down) => {
    if (dropped < drop) {
      dropped++;
      down.destroy();
      return;
    }
    const seen = { first: Buffer.alloc(0), bytes: 0 };
    connections.push(seen);
    const up = netConnect({ host: '127.0.0.1', port: appPort });
    down.on('data', (d: Buffer) => {
      if (seen.first.length < 64) seen.first = Buffer.concat([seen.first, d]).subarray(0, 64);
      seen.bytes += d.length;
    });
    down.pipe(up).pipe(down);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as { port: number }).port, connections };
}


for (const dataPath of dataPaths()) describe(`An app protocol declared on the inbound spec instead of probed [${dataPath}]`, function () {
  this.timeout(30_000);
  let ca: TestCa;
  let sidecar: Sidecar;
  let h1App: H1Server;
  let grpcApp: grpc.Server;
  let h2App: Http2Server;
  let grpcFront: ConnectionCounter;
  let h2Front: ConnectionCounter;
  /** In front of the same grpc-js app: closes its first connection at once. */
  let flakyFront: ConnectionCounter;
  /** What the HTTP/1.1 app's parser refused (an HTTP/2 preface would be one), the connections it accepted, and what it served. */
  const h1 = { refused: [] as string[], connections: 0, served: [] as Array<{ path: string; version: string; xfcc: string | undefined }> };
  const grpcCalls: string[] = [];
  const h2Seen: string[] = [];
  let ports: { http1: number; grpc: number; h2c: number; flaky: number };
  const tls = { ca: '', key: '', cert: '' };

  before(async () => {
    ca = await TestCa.create(TD);
    h1App = createH1Server((req: IncomingMessage, res) => {
      h1.served.push({ path: req.url!, version: req.httpVersion, xfcc: req.headers['x-forwarded-client-cert'] as string | undefined });
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`h1 ${req.url}`);
    });
    h1App.on('connection', () => h1.connections++);
    h1App.on('upgrade', (req: IncomingMessage) => h1.served.push({ path: req.url!, version: req.httpVersion, xfcc: req.headers['x-forwarded-client-cert'] as string | undefined }));
    h1App.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      h1.refused.push(err.code ?? err.message);
      socket.destroy();
    });
    const wss = new WebSocketServer({ server: h1App });
    wss.on('connection', (ws) => ws.on('message', (m: Buffer) => ws.send(`echo:${m.toString()}`)));
    await new Promise<void>((r) => h1App.listen(0, '127.0.0.1', () => r()));

    grpcApp = new grpc.Server();
    grpcApp.addService(ECHO_SERVICE, {
      Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        grpcCalls.push(`Unary ${call.request.toString()}`);
        cb(null, call.request);
      },
      Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        grpcCalls.push('Count');
        for (let i = 0; i < 5; i++) call.write(Buffer.from(`n${i}`));
        call.end();
      },
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        grpcCalls.push('Chat');
        call.on('data', (m: Buffer) => call.write(Buffer.concat([Buffer.from('echo:'), m])));
        call.on('end', () => call.end());
      },
      Reset: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        grpcCalls.push('Reset');
        cb(null, Buffer.from('reset!'));
      },
    });
    const grpcPort = await new Promise<number>((res, rej) => grpcApp.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    grpcFront = await countConnections(grpcPort);

    h2App = createH2Server();
    h2App.on('stream', (stream, headers: IncomingHttpHeaders) => {
      h2Seen.push(String(headers[':path']));
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`h2 ${headers[':path']}`);
    });
    await new Promise<void>((r) => h2App.listen(0, '127.0.0.1', () => r()));
    h2Front = await countConnections((h2App.address() as { port: number }).port);
    flakyFront = await countConnections(grpcPort, 1);

    // The specs are read as `trellis sidecar --inbound` reads them.
    const specs = [`127.0.0.1:0=${(h1App.address() as { port: number }).port}/http1`, `127.0.0.1:0=${grpcFront.port}/grpc`, `127.0.0.1:0=${h2Front.port}/h2c`, `127.0.0.1:0=${flakyFront.port}/grpc`].map((s) => {
      const spec = parseInboundSpec(s);
      expect(spec, s).to.be.an('object');
      return spec as InboundSpec;
    });
    sidecar = new Sidecar({ inbound: specs, outbound: [], dataPath, workload: { namespace: 'shop', labels: { app: 'server' } } }, { logger: silentLogger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false });
    const s = await ca.issueLeaf(SERVER);
    sidecar.state.update({ credentials: makeCredentials(s.key.keyPem, s.chainPem), bundle: makeTrustBundle(ca.root.pem), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: policiesFromWire(compiled(POLICIES)) } });
    await sidecar.start();
    ports = { http1: sidecar.inbound[0]!.port, grpc: sidecar.inbound[1]!.port, h2c: sidecar.inbound[2]!.port, flaky: sidecar.inbound[3]!.port };
    const c = await ca.issueLeaf(CLIENT);
    Object.assign(tls, { ca: ca.root.pem, key: c.key.keyPem, cert: c.chainPem });
  });

  after(async () => {
    await sidecar?.stop(0);
    h1App?.closeAllConnections();
    h1App?.close();
    grpcApp?.forceShutdown();
    h2App?.close();
    grpcFront?.server.close();
    h2Front?.server.close();
    flakyFront?.server.close();
  });

  /** An mTLS HTTP/2 session to the sidecar (ALPN h2). */
  function h2Session(port: number): ClientHttp2Session {
    const session = h2Connect(`https://127.0.0.1:${port}`, { ...tls, checkServerIdentity: () => undefined });
    session.on('error', () => undefined);
    return session;
  }


  /** An mTLS HTTP/1.1 GET (node:https offers no ALPN: the sidecar reads no h2 preface and serves HTTP/1.1). */
  function h1Get(port: number, path: string): Promise<{ status: number; body: string; version: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path, ...tls, checkServerIdentity: () => undefined, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, version: res.httpVersion }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('Should say each port\'s declared protocol in /config_dump', () => {
    const inbound = (sidecar.configDump().listeners as { inbound: Array<{ appPort: number; http: boolean; protocol?: string }> }).inbound;
    expect(inbound.map((l) => [l.http, l.protocol])).to.deep.equal([
      [true, 'http1'],
      [true, 'grpc'],
      [true, 'h2c'],
      [true, 'grpc'],
    ]);
  });

  it('Should serve HTTP/2 and HTTP/1.1 clients on /http1, and WebSocket, and never send the HTTP/1.1 app an h2 preface', async () => {
    const session = h2Session(ports.http1);
    try {
      expect(await h2Get(session, '/from-h2')).to.deep.equal({ status: 200, body: 'h1 /from-h2' });
      expect(await h2Get(session, '/admin')).to.deep.equal({ status: 403, body: 'RBAC: access denied\n' });
      expect(session.alpnProtocol).to.equal('h2');
    } finally {
      session.close();
    }
    expect(await h1Get(ports.http1, '/from-h1')).to.deep.equal({ status: 200, body: 'h1 /from-h1', version: '1.1' });
    expect(await h1Get(ports.http1, '/admin')).to.deep.include({ status: 403 });
    const ws = new WebSocket(`wss://127.0.0.1:${ports.http1}/ws`, { ...tls, checkServerIdentity: (() => undefined) as never });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('hello'));
      ws.once('message', (m: Buffer) => resolve(m.toString()));
      ws.once('error', reject);
    });
    ws.close();
    expect(echoed).to.equal('echo:hello');

    // Both requests reached the app as HTTP/1.1 with the XFCC we vouch for; the DENYs never reached it.
    expect(h1.served.map((s) => [s.path, s.version])).to.deep.equal([
      ['/from-h2', '1.1'],
      ['/from-h1', '1.1'],
      ['/ws', '1.1'],
    ]);
    for (const s of h1.served) expect(s.xfcc).to.match(new RegExp(`^By=${SERVER};Hash=[0-9a-f]{64};URI=${CLIENT}$`));
    expect(h1.refused, 'requests the app\'s HTTP/1.1 parser refused (an h2 preface is one)').to.deep.equal([]);
    expect(h1.connections).to.be.greaterThan(0);
  });

  it('Should carry unary and streaming gRPC calls to a grpc-js app on /grpc over one h2 connection with no probe, and deny with status 7', async () => {
    const creds = grpc.credentials.createSsl(Buffer.from(tls.ca), Buffer.from(tls.key), Buffer.from(tls.cert), { checkServerIdentity: () => undefined });
    const c = new EchoClient(`127.0.0.1:${ports.grpc}`, creds, { 'grpc.ssl_target_name_override': 'server.shop' });
    try {
      const ok = await unary(c, 'Unary', Buffer.from('ping'));
      expect(ok.err, String(ok.err?.details)).to.equal(null);
      expect(ok.res!.toString()).to.equal('ping');
      const counted: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = c.Count!(Buffer.from('go')) as grpc.ClientReadableStream<Buffer>;
        call.on('data', (m: Buffer) => counted.push(m.toString()));
        call.on('end', resolve);
        call.on('error', reject);
      });
      expect(counted).to.deep.equal(['n0', 'n1', 'n2', 'n3', 'n4']);
      const got = await chat(c, 10);
      expect(got).to.deep.equal(Array.from({ length: 10 }, (_, i) => `echo:m${i}`));
      const denied = await unary(c, 'Reset', Buffer.from('x'));
      expect(denied.err!.code).to.equal(grpc.status.PERMISSION_DENIED);
      expect(denied.err!.details).to.equal('RBAC: access denied');
    } finally {
      c.close();
    }
    expect(grpcCalls.slice(0, 3)).to.deep.equal(['Unary ping', 'Count', 'Chat']);
    // One connection from the sidecar to the app, an HTTP/2 session that carried every call: no connection that was only a probe.
    expect(grpcFront.connections).to.have.length(1);
    expect(grpcFront.connections[0]!.first.subarray(0, PREFACE.length).equals(PREFACE)).to.equal(true);
  });

  it('Should not take a /grpc app whose first connection closes before SETTINGS for an HTTP/1.1 app (a probe would)', async () => {
    const creds = grpc.credentials.createSsl(Buffer.from(tls.ca), Buffer.from(tls.key), Buffer.from(tls.cert), { checkServerIdentity: () => undefined });
    const c = new EchoClient(`127.0.0.1:${ports.flaky}`, creds, { 'grpc.ssl_target_name_override': 'server.shop' });
    try {
      const first = await unary(c, 'Unary', Buffer.from('early'));
      expect(first.err?.code, 'the call whose connection the app closed').to.equal(grpc.status.UNAVAILABLE);
      for (const body of ['one', 'two']) {
        const r = await unary(c, 'Unary', Buffer.from(body));
        expect(r.err, String(r.err?.details)).to.equal(null);
        expect(r.res!.toString()).to.equal(body);
      }
    } finally {
      c.close();
    }
    // Every connection that reached the app was HTTP/2 from its first byte: no request was translated to HTTP/1.1 for it.
    expect(flakyFront.connections).to.have.length(1);
    expect(flakyFront.connections[0]!.first.subarray(0, PREFACE.length).equals(PREFACE)).to.equal(true);
  });

  it('Should send HTTP/2 and HTTP/1.1 clients on /h2c to an h2c app as streams of one h2 connection', async () => {
    const session = h2Session(ports.h2c);
    try {
      expect(await h2Get(session, '/from-h2')).to.deep.equal({ status: 200, body: 'h2 /from-h2' });
    } finally {
      session.close();
    }
    expect(await h1Get(ports.h2c, '/from-h1')).to.deep.equal({ status: 200, body: 'h2 /from-h1', version: '1.1' });
    expect(h2Seen).to.deep.equal(['/from-h2', '/from-h1']);
    expect(h2Front.connections).to.have.length(1);
  });
});
