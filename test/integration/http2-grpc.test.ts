/**
 * Issue #15: HTTP/2 and gRPC on `/http` ports, end to end through a pair of
 * real sidecars (client side: an `/http` outbound listener pooling HTTP/2
 * mTLS for h2c and passing HTTP/1.1 as bytes; server side: an `/http` inbound port) with real clients: curl
 * (`--http2-prior-knowledge`, `--http2`, HTTP/1.1), nghttp, h2load, a grpc-js
 * client and server, and node:http2 as an independent peer. Apps: an h2c
 * node:http2 app, a grpc-js server, and an HTTP/1.1-only app (translation).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer as createH1Server, request as h1Request, type IncomingHttpHeaders as H1Headers, type OutgoingHttpHeaders as H1OutHeaders, type Server as H1Server } from 'node:http';
import { connect as h2Connect, createServer as createH2Server, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '@trellis/shared';
import { Sidecar, makeCredentials, nativeRelay, makeRevocations, makeTrustBundle, policiesFromWire, sharedAuthorizer } from '@trellis/sidecar';
import { h2Get, makeTmpDir, TestCa, waitFor } from '@trellis/testkit';
import { AUTHZ_WIRE_VERSION, encodeAuthorizationPolicies, policiesFromJSON, type AuthorizationPolicy } from '@trellis/shared';
import { chat, ECHO_SERVICE, EchoClient, unary } from './grpc-echo';

/** The AuthorizationPolicies body a control plane pushes for these manifests (compiled wire form). */
function compiled(manifests: unknown[]): unknown {
  const policies = policiesFromJSON(manifests, 'test manifests').filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy');
  return JSON.parse(JSON.stringify({ wireVersion: AUTHZ_WIRE_VERSION, policies: encodeAuthorizationPolicies(policies) }));
}

const TD = 'cluster.local';
const SERVER = `spiffe://${TD}/ns/shop/sa/server`;
const CLIENT = `spiffe://${TD}/ns/shop/sa/client`;
const FORGED = `URI=spiffe://${TD}/ns/kube-system/sa/admin`;
const BIG_RESPONSE = 48 << 20;

const POLICIES = [
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'no-admin', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin', '/trellis.test.Admin/*'] } }] }] },
  },
];


/** Runs a tool; resolves its exit code, stdout and stderr. */
function run(cmd: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args);
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    c.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

/** An HTTP/1.1 GET with Node's client: status, body and the chunked trailers it read. */
function h1Get(port: number, path: string, headers: H1OutHeaders = {}): Promise<{ status: number; body: string; trailers: Record<string, string | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = h1Request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, trailers: { ...res.trailers } }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}


// `/http` ports are served in TypeScript on both data paths; the pair runs on each to show the relay does not get in the way.
for (const dataPath of nativeRelay() ? (['native', 'node'] as const) : (['node'] as const)) describe(`HTTP/2 and gRPC through an /http sidecar pair (real clients, real mTLS) [${dataPath}]`, function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-h2-');
  let ca: TestCa;
  let h2App: Http2Server;
  let h1App: H1Server;
  let grpcApp: grpc.Server;
  let server: Sidecar;
  let client: Sidecar;
  const seen: Array<{ proto: string; path: string; xfcc: string | undefined }> = [];
  let grpcXfcc: string | undefined;
  /** What the h2 app has been able to hand to the sidecar for /big (it writes only while its stream accepts). */
  let bigWritten = 0;
  const out: Record<'h2' | 'grpc' | 'h1', number> = { h2: 0, grpc: 0, h1: 0 };
  const inb: Record<'h2' | 'grpc' | 'h1', number> = { h2: 0, grpc: 0, h1: 0 };
  const pem = { key: '', cert: '', ca: '' };
  /** A byte-forwarding outbound (no /http) to the h2c app's /http port. */
  let tcpOut = 0;

  before(async () => {
    ca = await TestCa.create(TD);
    h2App = createH2Server();
    h2App.on('stream', (stream, headers: IncomingHttpHeaders) => {
      stream.on('error', () => undefined);
      const path = String(headers[':path']);
      seen.push({ proto: 'h2', path, xfcc: headers['x-forwarded-client-cert'] as string | undefined });
      if (path === '/big') {
        stream.respond({ ':status': 200 });
        const chunk = Buffer.alloc(64 << 10, 0x61);
        const pump = (): void => {
          while (bigWritten < BIG_RESPONSE) {
            bigWritten += chunk.length;
            if (!stream.write(chunk)) return void stream.once('drain', pump);
          }
          stream.end();
        };
        pump();
        return;
      }
      if (path === '/trailers') {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'h2-sum', 'x-rows': '3' }));
        stream.end('h2 body');
        return;
      }
      if (path === '/slow') {
        setTimeout(() => {
          if (stream.destroyed) return;
          stream.respond({ ':status': 200 });
          stream.end('slow done');
        }, 400);
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ path, authority: headers[':authority'] }));
    });
    await new Promise<void>((r) => h2App.listen(0, '127.0.0.1', () => r()));
    h1App = createH1Server((req, res) => {
      seen.push({ proto: `h1/${req.httpVersion}`, path: req.url!, xfcc: (req.headers as H1Headers)['x-forwarded-client-cert'] as string | undefined });
      if (req.url === '/trailers') {
        // Like an app that honours TE (RFC 9110 §10.1.4): trailers only for a request that said it takes them.
        const asked = /(^|,)\s*trailers\s*(,|$)/i.test(String((req.headers as H1Headers).te ?? ''));
        res.writeHead(200, { 'content-type': 'text/plain', ...(asked ? { trailer: 'x-checksum' } : {}) });
        res.write('h1 body');
        if (asked) res.addTrailers({ 'x-checksum': 'h1-sum' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', connection: 'keep-alive' });
      res.end(`h1 ${req.url}`);
    });
    await new Promise<void>((r) => h1App.listen(0, '127.0.0.1', () => r()));
    grpcApp = new grpc.Server({ 'grpc.max_receive_message_length': 16 << 20, 'grpc.max_send_message_length': 16 << 20 });
    grpcApp.addService(ECHO_SERVICE, {
      Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        grpcXfcc = call.metadata.get('x-forwarded-client-cert')[0] as string | undefined;
        const trailer = new grpc.Metadata();
        trailer.set('x-echo-length', String(call.request.length));
        cb(null, call.request, trailer);
      },
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (m: Buffer) => call.write(Buffer.concat([Buffer.from('echo:'), m])));
        call.on('end', () => call.end());
      },
      Slow: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => setTimeout(() => cb(null, Buffer.from('late')), 5_000),
      Reset: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('reset!')),
    });
    const grpcPort = await new Promise<number>((res, rej) => grpcApp.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    const appPorts = { h2: (h2App.address() as { port: number }).port, grpc: grpcPort, h1: (h1App.address() as { port: number }).port };
    const deps = { logger: silentLogger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false };
    server = new Sidecar(
      { inbound: (['h2', 'grpc', 'h1'] as const).map((k) => ({ host: '127.0.0.1', port: 0, appPort: appPorts[k], http: true })), outbound: [], dataPath, workload: { namespace: 'shop', labels: { app: 'server' } } },
      deps,
    );
    const s = await ca.issueLeaf(SERVER);
    // The HTTP/1.1-only app's port is PERMISSIVE: plaintext h2c from outside the mesh is served too.
    server.state.update({ credentials: makeCredentials(s.key.keyPem, s.chainPem), bundle: makeTrustBundle(ca.root.pem), peerAuth: { mode: 'STRICT', portModes: { [appPorts.h1]: 'PERMISSIVE' } }, authz: { policies: policiesFromWire(compiled(POLICIES)) } });
    await server.start();
    (['h2', 'grpc', 'h1'] as const).forEach((k, i) => (inb[k] = server.inbound[i]!.port));
    client = new Sidecar(
      {
        inbound: [],
        outbound: [
          ...(['h2', 'grpc', 'h1'] as const).map((k) => ({ host: '127.0.0.1', port: 0, http: true, target: { kind: 'explicit' as const, address: `127.0.0.1:${inb[k]}`, spiffeId: SERVER } })),
          { host: '127.0.0.1', port: 0, target: { kind: 'explicit' as const, address: `127.0.0.1:${inb.h2}`, spiffeId: SERVER } },
        ],
        dataPath,
        workload: { namespace: 'shop', labels: { app: 'client' } },
      },
      deps,
    );
    const c = await ca.issueLeaf(CLIENT);
    Object.assign(pem, { key: join(tmp.dir, 'client.key'), cert: join(tmp.dir, 'client.pem'), ca: join(tmp.dir, 'ca.pem') });
    writeFileSync(pem.key, c.key.keyPem);
    writeFileSync(pem.cert, c.chainPem);
    writeFileSync(pem.ca, ca.root.pem);
    client.state.update({ credentials: makeCredentials(c.key.keyPem, c.chainPem), bundle: makeTrustBundle(ca.root.pem) });
    await client.start();
    (['h2', 'grpc', 'h1'] as const).forEach((k, i) => (out[k] = client.outbound[i]!.port));
    tcpOut = client.outbound[3]!.port;
  });

  after(async () => {
    await client?.stop(0);
    await server?.stop(0);
    h2App?.close();
    h1App?.close();
    grpcApp?.forceShutdown();
    tmp.cleanup();
  });

  it('Should carry the app\'s h2c streams over one pooled h2 mTLS connection and its HTTP/1.1 as bytes, judging the normalized path and rewriting XFCC', async () => {
    const xfcc = new RegExp(`^By=${SERVER};Hash=[0-9a-f]{64};URI=${CLIENT}$`);
    const h2c = await run('curl', ['-s', '--http2-prior-knowledge', '--path-as-is', '-H', `x-forwarded-client-cert: ${FORGED}`, '-w', '\n%{http_code} %{http_version}', `http://127.0.0.1:${out.h2}/x/../echo`]);
    expect(h2c.out).to.match(/"path":"\/echo"[\s\S]*\n200 2$/);
    expect(seen.at(-1)).to.deep.include({ proto: 'h2', path: '/echo' });
    expect(seen.at(-1)!.xfcc).to.match(xfcc);
    const h1 = await run('curl', ['-s', '--http1.1', '-H', `x-forwarded-client-cert: ${FORGED}`, '-w', '\n%{http_code} %{http_version}', `http://127.0.0.1:${out.h2}/from-h1`]);
    expect(h1.out).to.match(/"path":"\/from-h1"[\s\S]*\n200 1.1$/);
    expect(seen.at(-1)!.xfcc).to.match(xfcc);
    const denied = await run('curl', ['-s', '--http2-prior-knowledge', '-w', '\n%{http_code}', `http://127.0.0.1:${out.h2}/admin`]);
    expect(denied.out).to.equal('RBAC: access denied\n\n403');
    // A path that cannot be read one way is refused on its stream (the dot segment would reach /admin).
    const bad = await run('curl', ['-s', '--http2-prior-knowledge', '--path-as-is', '-w', '\n%{http_code}', `http://127.0.0.1:${out.h2}/x/%00/../admin`]);
    expect(bad.out).to.match(/^bad request: .*\n\n400$/);
    const ng = await run('nghttp', ['-v', `http://127.0.0.1:${out.h2}/nghttp`]);
    expect(ng.out).to.match(/:status: 200/);
    const load = await run('h2load', ['-n', '400', '-c', '4', '-m', '16', `http://127.0.0.1:${out.h2}/load`]);
    expect(load.out, load.out + load.err).to.match(/400 succeeded, 0 failed/);
    // Every h2c request of every app connection went over one HTTP/2 connection to the server's sidecar.
    expect(client.tracker.view(10).connections.filter((c) => c.direction === 'outbound' && c.peer === SERVER)).to.have.length(1);
  });

  it('Should negotiate h2 or HTTP/1.1 by ALPN with mTLS clients, and translate between them and the protocol the app speaks', async () => {
    const tls = ['--cacert', pem.ca, '--cert', pem.cert, '--key', pem.key, '-k'];
    const alpn = await run('curl', ['-s', '--http2', ...tls, '-w', '\n%{http_code} %{http_version}', `https://127.0.0.1:${inb.h2}/alpn`]);
    expect(alpn.out).to.match(/"path":"\/alpn"[\s\S]*\n200 2$/);
    // An app's h2c through a byte-forwarding outbound (TLS without ALPN): HTTP/2 by its preface.
    const noAlpn = await run('curl', ['-s', '--http2-prior-knowledge', '-w', '\n%{http_code} %{http_version}', `http://127.0.0.1:${tcpOut}/no-alpn`]);
    expect(noAlpn.out).to.match(/"path":"\/no-alpn"[\s\S]*\n200 2$/);
    expect(seen.at(-1)!.xfcc).to.match(new RegExp(`URI=${CLIENT}$`));
    // A client that offers only http/1.1 is served HTTP/1.1, and its request reaches the h2c-only app as HTTP/2.
    const old = await run('curl', ['-s', '--http1.1', ...tls, '-w', '\n%{http_code} %{http_version}', `https://127.0.0.1:${inb.h2}/old`]);
    expect(old.out).to.match(/"path":"\/old"[\s\S]*\n200 1.1$/);
    // node:http2 as an independent client, to the HTTP/1.1-only app: h2 in, HTTP/1.1 out, h2 back.
    const c = await ca.issueLeaf(CLIENT);
    const session = h2Connect(`https://127.0.0.1:${inb.h1}`, { ca: ca.root.pem, key: c.key.keyPem, cert: c.chainPem, checkServerIdentity: () => undefined });
    const res = await new Promise<{ status: number; body: string; alpn: string | undefined }>((resolve, reject) => {
      const r = session.request({ ':path': '/via-h2', 'x-forwarded-client-cert': FORGED });
      let status = 0;
      let body = '';
      r.on('response', (h) => (status = Number(h[':status'])));
      r.setEncoding('utf8').on('data', (d: string) => (body += d));
      r.on('end', () => resolve({ status, body, alpn: session.alpnProtocol }));
      r.on('error', reject);
    });
    session.close();
    expect(res).to.deep.equal({ status: 200, body: 'h1 /via-h2', alpn: 'h2' });
    expect(seen.at(-1)!.proto).to.equal('h1/1.1');
    expect(seen.at(-1)!.xfcc).to.match(new RegExp(`URI=${CLIENT}$`));
    // Plaintext h2c with prior knowledge on a PERMISSIVE port: HTTP/2 in, HTTP/1.1 to the app, no XFCC (no peer identity).
    const plain = await run('curl', ['-s', '--http2-prior-knowledge', '-H', `x-forwarded-client-cert: ${FORGED}`, '-w', ' %{http_code} %{http_version}', `http://127.0.0.1:${inb.h1}/plain-h2c`]);
    expect(plain.out).to.equal('h1 /plain-h2c 200 2');
    expect(seen.at(-1)).to.deep.equal({ proto: 'h1/1.1', path: '/plain-h2c', xfcc: undefined });
    // And an HTTP/1.1 app client through the pair (HTTP/1.1 → h2 → HTTP/1.1).
    const h1 = await run('curl', ['-s', '-w', ' %{http_code}', `http://127.0.0.1:${out.h1}/plain`]);
    expect(h1.out).to.equal('h1 /plain 200');
  });

  it('Should pass the app\'s trailers (HTTP/2 or chunked HTTP/1.1) to an HTTP/1.1 client that sent TE: trailers, as chunked trailers, and to an HTTP/2 one that takes them, and drop them for one that did not', async () => {
    // Through the pair: HTTP/1.1 bytes to the server's /http port, then h2c to the h2 app, HTTP/1.1 to the other.
    expect(await h1Get(out.h2, '/trailers', { te: 'trailers' })).to.deep.equal({ status: 200, body: 'h2 body', trailers: { 'x-checksum': 'h2-sum', 'x-rows': '3' } });
    expect(await h1Get(out.h1, '/trailers', { te: 'trailers' })).to.deep.equal({ status: 200, body: 'h1 body', trailers: { 'x-checksum': 'h1-sum' } });
    // RFC 9110 §6.5.1: a recipient may discard trailers; a client that did not ask for them gets none.
    expect(await h1Get(out.h2, '/trailers')).to.deep.equal({ status: 200, body: 'h2 body', trailers: {} });
    expect(await h1Get(out.h1, '/trailers')).to.deep.equal({ status: 200, body: 'h1 body', trailers: {} });
    // And the other way round: an HTTP/2 client (node:http2, mTLS) that takes trailers gets the HTTP/1.1 app's chunked trailers as HTTP/2 trailers.
    const c = await ca.issueLeaf(CLIENT);
    const session = h2Connect(`https://127.0.0.1:${inb.h1}`, { ca: ca.root.pem, key: c.key.keyPem, cert: c.chainPem, checkServerIdentity: () => undefined });
    try {
      const viaH2 = (te: boolean): Promise<{ status: number; body: string; trailers: Record<string, unknown> }> =>
        new Promise((resolve, reject) => {
          const r = session.request({ ':path': '/trailers', ...(te ? { te: 'trailers' } : {}) });
          let status = 0;
          let body = '';
          let trailers: Record<string, unknown> = {};
          r.on('response', (h) => (status = Number(h[':status'])));
          r.on('trailers', (t) => (trailers = Object.fromEntries(Object.entries(t))));
          r.setEncoding('utf8').on('data', (d: string) => (body += d));
          r.on('end', () => resolve({ status, body, trailers }));
          r.on('error', reject);
        });
      expect(await viaH2(true)).to.deep.equal({ status: 200, body: 'h1 body', trailers: { 'x-checksum': 'h1-sum' } });
      expect(await viaH2(false)).to.deep.equal({ status: 200, body: 'h1 body', trailers: {} });
    } finally {
      session.close();
    }
  });

  it('Should carry gRPC unary calls with trailers, bidi streams, deadlines and 8 MB messages, and deny with status 7', async () => {
    const c = new EchoClient(`127.0.0.1:${out.grpc}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 << 20, 'grpc.max_send_message_length': 16 << 20 });
    try {
      const ok = await unary(c, 'Unary', Buffer.from('ping'));
      expect(ok.err, String(ok.err?.details)).to.equal(null);
      expect(ok.res!.toString()).to.equal('ping');
      expect(ok.trailers!.get('x-echo-length')).to.deep.equal(['4']);
      expect(grpcXfcc).to.match(new RegExp(`^By=${SERVER};Hash=[0-9a-f]{64};URI=${CLIENT}$`));
      const big = Buffer.alloc(8 << 20, 7);
      const large = await unary(c, 'Unary', big);
      expect(large.err).to.equal(null);
      expect(large.res!.equals(big)).to.equal(true);
      const denied = await unary(c, 'Reset', Buffer.from('x'));
      expect(denied.err!.code).to.equal(grpc.status.PERMISSION_DENIED);
      expect(denied.err!.details).to.equal('RBAC: access denied');
      const late = await unary(c, 'Slow', Buffer.from('x'), { deadline: Date.now() + 300 });
      expect(late.err!.code).to.equal(grpc.status.DEADLINE_EXCEEDED);
      const got = await chat(c, 50);
      expect(got).to.deep.equal(Array.from({ length: 50 }, (_, i) => `echo:m${i}`));
    } finally {
      c.close();
    }
  });

  it('Should hold a slow reader\'s stream to a bounded buffer, then deliver every byte', async () => {
    bigWritten = 0;
    const session = h2Connect(`http://127.0.0.1:${out.h2}`);
    const r = session.request({ ':path': '/big' });
    r.pause();
    let last = -1;
    // Wait until the app can hand over no more (every hop's window and buffer full): bytes, not time, are asserted.
    await waitFor(
      'the app to stall',
      () => {
        const stalled = bigWritten === last && bigWritten > 0;
        last = bigWritten;
        return stalled;
      },
      20_000,
      300,
    );
    expect(bigWritten, `the app handed over ${bigWritten} bytes to a reader that read none`).to.be.below(12 << 20);
    let received = 0;
    r.on('data', (d: Buffer) => (received += d.length));
    r.resume();
    await new Promise<void>((resolve) => r.on('end', resolve));
    session.close();
    expect(received).to.equal(BIG_RESPONSE);
  });

  it('Should reset open h2 streams of a revoked identity, and keep them across a rotation', async () => {
    const c = new EchoClient(`127.0.0.1:${out.grpc}`, grpc.credentials.createInsecure());
    const chat = c.Chat!() as grpc.ClientDuplexStream<Buffer, Buffer>;
    const next = (): Promise<string> => new Promise((resolve) => chat.once('data', (m: Buffer) => resolve(m.toString())));
    const ended = new Promise<grpc.ServiceError>((resolve) => chat.on('error', resolve));
    let reply = next();
    chat.write(Buffer.from('before'));
    expect(await reply).to.equal('echo:before');
    // Both sides rotate: the open stream carries on.
    const s2 = await ca.issueLeaf(SERVER);
    server.state.update({ credentials: makeCredentials(s2.key.keyPem, s2.chainPem) });
    const c2 = await ca.issueLeaf(CLIENT);
    client.state.update({ credentials: makeCredentials(c2.key.keyPem, c2.chainPem) });
    reply = next();
    chat.write(Buffer.from('after-rotation'));
    expect(await reply).to.equal('echo:after-rotation');
    // The server side revokes the client's identity: its open stream is reset.
    server.state.update({ revocations: makeRevocations([], [CLIENT]) });
    const err = await ended;
    expect(err.code).to.be.oneOf([grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.CANCELLED]);
    server.state.update({ revocations: makeRevocations() });
    c.close();
  });

  it('Should drain an h2 connection with GOAWAY: the stream in flight finishes, the client is told to go elsewhere, and nothing new is accepted', async () => {
    // A sidecar of its own for the h2c app, since a drain ends it.
    const drainer = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort: (h2App.address() as { port: number }).port, http: true }], outbound: [], dataPath, workload: { namespace: 'shop', labels: { app: 'server' } } },
      { logger: silentLogger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false },
    );
    const s = await ca.issueLeaf(SERVER);
    drainer.state.update({ credentials: makeCredentials(s.key.keyPem, s.chainPem), bundle: makeTrustBundle(ca.root.pem), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: policiesFromWire(compiled(POLICIES)) } });
    await drainer.start();
    const port = drainer.inbound[0]!.port;
    const c = await ca.issueLeaf(CLIENT);
    const session = h2Connect(`https://127.0.0.1:${port}`, { ca: ca.root.pem, key: c.key.keyPem, cert: c.chainPem, checkServerIdentity: () => undefined });
    session.on('error', () => undefined);
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    const get = (path: string): Promise<{ status: number; body: string }> => h2Get(session, path);
    expect(await get('/echo')).to.deep.include({ status: 200 });
    const inFlight = get('/slow');
    await waitFor('the slow request to reach the app', () => seen.some((x) => x.path === '/slow'));
    const stopped = drainer.stop(5_000);
    expect(await goaway, 'GOAWAY with NO_ERROR').to.equal(0);
    expect(await inFlight, 'the stream in flight when the drain began').to.deep.equal({ status: 200, body: 'slow done' });
    await stopped;
    // Gone: a new connection is refused.
    const again = h2Connect(`https://127.0.0.1:${port}`, { ca: ca.root.pem, key: c.key.keyPem, cert: c.chainPem, checkServerIdentity: () => undefined });
    const refused = await new Promise<string>((resolve) => {
      again.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      again.once('connect', () => resolve('connected'));
    });
    again.destroy();
    session.destroy();
    expect(refused).to.equal('ECONNREFUSED');
  });
});

/** An HTTP/1.1-only app that counts what its parser refused (an HTTP/2 preface, say), and what it served. */
async function h1OnlyApp(port = 0): Promise<{ server: H1Server; port: number; refused: string[]; served: string[] }> {
  const refused: string[] = [];
  const served: string[] = [];
  const server = createH1Server((req, res) => {
    served.push(req.url!);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`h1 ${req.url}`);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    refused.push(err.code ?? err.message);
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return { server, port: (server.address() as { port: number }).port, refused, served };
}

/** Stops an app as a process exit would: its port stops accepting and its connections close. */
async function stopApp(server: H1Server | Http2Server): Promise<void> {
  await new Promise<void>((r) => {
    server.close(() => r());
    (server as H1Server).closeAllConnections?.();
  });
}

for (const dataPath of nativeRelay() ? (['native', 'node'] as const) : (['node'] as const)) describe(`The app's protocol behind an /http inbound port, learned once per app process [${dataPath}]`, function () {
  this.timeout(30_000);
  let ca: TestCa;
  let sidecar: Sidecar;
  /** How far the sidecar's clock is ahead of the wall clock. */
  let ahead = 0;

  before(async () => {
    ca = await TestCa.create(TD);
  });

  after(async () => {
    await sidecar?.stop(0);
  });

  it('Should probe an HTTP/1.1-only app for h2c once, however much time passes, and again only after the app restarts', async () => {
    const first = await h1OnlyApp();
    const appPort = first.port;
    sidecar = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort, http: true }], outbound: [], dataPath, workload: { namespace: 'shop', labels: { app: 'server' } } },
      { logger: silentLogger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false, clock: () => new Date(Date.now() + ahead) },
    );
    const s = await ca.issueLeaf(SERVER);
    // PERMISSIVE: plaintext HTTP/1.1 from a local client reaches the app through the port's HTTP server.
    sidecar.state.update({ credentials: makeCredentials(s.key.keyPem, s.chainPem), bundle: makeTrustBundle(ca.root.pem), peerAuth: { mode: 'PERMISSIVE', portModes: {} }, authz: { policies: policiesFromWire(compiled([])) } });
    await sidecar.start();
    const port = sidecar.inbound[0]!.port;
    const get = async (path: string): Promise<string> => {
      const r = await h1Get(port, path);
      return `${r.status} ${r.body}`;
    };

    for (let i = 0; i < 3; i++) expect(await get(`/a${i}`)).to.equal(`200 h1 /a${i}`);
    expect(first.refused, 'one h2c probe, refused by the app\'s HTTP/1.1 parser').to.deep.equal(['HPE_PAUSED_H2_UPGRADE']);
    // The sidecar's clock runs past 60 s, the old re-probe interval, twice: the answer is kept.
    for (const step of [61_000, 61_000]) {
      ahead += step;
      for (let i = 0; i < 3; i++) expect(await get(`/b${i}`)).to.equal(`200 h1 /b${i}`);
    }
    expect(first.refused, 'no second probe of the same app process').to.deep.equal(['HPE_PAUSED_H2_UPGRADE']);

    // The app restarts: its port stops accepting (one request fails), then a new HTTP/1.1 process gets one probe.
    await stopApp(first.server);
    expect(await get('/down')).to.match(/^502 /);
    const second = await h1OnlyApp(appPort);
    try {
      for (let i = 0; i < 3; i++) expect(await get(`/c${i}`)).to.equal(`200 h1 /c${i}`);
      ahead += 61_000;
      expect(await get('/c-later')).to.equal('200 h1 /c-later');
      expect(second.refused, 'the restarted app is probed once').to.deep.equal(['HPE_PAUSED_H2_UPGRADE']);
    } finally {
      await stopApp(second.server);
    }

    // It comes back speaking h2c: the probe after the failure finds it, and requests reach it as HTTP/2.
    expect(await get('/down-again')).to.match(/^502 /);
    const h2 = createH2Server();
    const seenH2: string[] = [];
    h2.on('stream', (stream, headers: IncomingHttpHeaders) => {
      seenH2.push(String(headers[':path']));
      stream.respond({ ':status': 200 });
      stream.end(`h2 ${headers[':path']}`);
    });
    await new Promise<void>((r) => h2.listen(appPort, '127.0.0.1', () => r()));
    try {
      expect(await get('/d')).to.equal('200 h2 /d');
      expect(seenH2).to.deep.equal(['/d']);
    } finally {
      await sidecar.stop(0);
      await stopApp(h2);
    }
  });
});
