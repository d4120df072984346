/**
 * The `/http` inbound forwarder on real sockets: a node:http server in
 * front (as HttpInbound runs it), the forwarder, and an app that is either
 * a node:http server or a raw TCP server writing exact bytes. It checks the
 * HTTP/1.1 framing the forwarder owns since it reads the app's answers with
 * llhttp on its own pooled connections: bodies both ways (length, chunked,
 * to the end of the connection), HEAD, 204, 1xx, trailers, an early
 * answer, an app that resets or answers garbage, backpressure, and which
 * connections are reused.
 */
import { expect } from 'chai';
import { request as httpRequest, Agent, createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { connect as http2Connect, constants as http2Constants, type ClientHttp2Session } from 'node:http2';
import { TestCa, describeWith, optionalDependency } from '@trellis/testkit';
import { forwardHttpRequest, requestHead } from '../src/inbound/http-forwarder';
import { nativeRelay } from '../src/proxy/native-relay';
import { readFirstBytes } from '../src/proxy/first-bytes';
import { dataPaths } from './helpers/harness';
import { httpClientSidecar, httpServerSidecar } from './helpers/http-pair';

const TD = 'cluster.local';

interface Front {
  port: number;
  errors: number;
  close(): Promise<void>;
}

/** Listens on a loopback port; `close` cuts open connections first. */
async function listening(srv: HttpServer): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as { port: number }).port,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

/** A node:http server that forwards every request to the app on `appPort`, with `xfcc`; `errors` counts upstream failures. */
async function front(appPort: number): Promise<Front> {
  const forward = forwardHttpRequest({ appHost: '127.0.0.1', appPort });
  const state = { errors: 0 };
  const srv: HttpServer = createHttpServer((req, res) => forward(req, res, { target: req.url ?? '/', xfcc: 'By=spiffe://td/ns/a/sa/server;URI=spiffe://td/ns/b/sa/client' }, () => state.errors++));
  const l = await listening(srv);
  return {
    port: l.port,
    get errors() {
      return state.errors;
    },
    close: l.close,
  };
}

/** A node:http app counting its connections; `handler` answers. */
async function httpApp(handler: (req: IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<{ port: number; connections: number; close(): Promise<void> }> {
  const state = { connections: 0 };
  const srv = createHttpServer(handler);
  srv.on('connection', () => state.connections++);
  const l = await listening(srv);
  return {
    port: l.port,
    get connections() {
      return state.connections;
    },
    close: l.close,
  };
}

/** A raw TCP app: `onRequest` is called with the socket and the bytes read so far each time a request head is complete. */
async function rawApp(onHead: (s: Socket, head: string, n: number) => void): Promise<{ port: number; connections: number; close(): Promise<void> }> {
  const state = { connections: 0 };
  const sockets = new Set<Socket>();
  const srv: NetServer = createNetServer((s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    let n = 0;
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        onHead(s, head, n++);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as { port: number }).port,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  trailers: Record<string, string | undefined>;
  body: Buffer;
}

/** One request with node:http's client over `agent` (keep-alive), body optional. */
function send(port: number, agent: Agent, opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | Buffer[] } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, agent, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, trailers: res.trailers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const body = opts.body;
    if (Array.isArray(body)) for (const b of body) req.write(b);
    else if (body) req.write(body);
    req.end();
  });
}

describe('The /http inbound forwarder (real sockets, llhttp on pooled app connections)', () => {
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  it('Should reuse one app connection for sequential requests, send our XFCC only, and drop hop-by-hop headers both ways', async () => {
    const seen: IncomingMessage['headers'][] = [];
    const app = await httpApp((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'content-type': 'text/plain', 'x-app': 'yes', connection: 'x-resp-hop', 'x-resp-hop': 'drop-me' });
      res.end(`hello ${req.url}`);
    });
    const f = await front(app.port);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(app.close, f.close, () => agent.destroy());
    for (let i = 0; i < 5; i++) {
      const r = await send(f.port, agent, { path: `/p${i}?q=${i}`, headers: { 'x-forwarded-client-cert': 'By=forged', 'x-hop': 'drop-me', connection: 'x-hop' } });
      expect(r.status).to.equal(200);
      expect(r.body.toString()).to.equal(`hello /p${i}?q=${i}`);
      expect(r.headers['x-app']).to.equal('yes');
      expect(r.headers['x-resp-hop']).to.equal(undefined);
    }
    expect(app.connections).to.equal(1);
    for (const h of seen) {
      expect(h['x-forwarded-client-cert']).to.equal('By=spiffe://td/ns/a/sa/server;URI=spiffe://td/ns/b/sa/client');
      expect(h['x-hop']).to.equal(undefined);
    }
  });

  it('Should carry a chunked request body and a 4 MiB Content-Length body byte-exactly, each framed as sent', async () => {
    const got: Array<{ te?: string; cl?: string; body: Buffer }> = [];
    const app = await httpApp((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got.push({ te: req.headers['transfer-encoding'], cl: req.headers['content-length'], body: Buffer.concat(chunks) });
        res.end('ok');
      });
    });
    const f = await front(app.port);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(app.close, f.close, () => agent.destroy());
    const parts = [Buffer.from('first,'), Buffer.alloc(70000, 0x61), Buffer.from(',last')];
    expect((await send(f.port, agent, { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: parts })).status).to.equal(200);
    const big = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    expect((await send(f.port, agent, { method: 'PUT', headers: { 'content-length': String(big.length) }, body: big })).status).to.equal(200);
    expect(got[0]!.te).to.equal('chunked');
    expect(got[0]!.body.equals(Buffer.concat(parts))).to.equal(true);
    expect(got[1]!.cl).to.equal(String(big.length));
    expect(got[1]!.body.equals(big)).to.equal(true);
    expect(app.connections).to.equal(1);
  });

  it('Should answer HEAD and 204 without a body and keep using the connection after them', async () => {
    const app = await httpApp((req, res) => {
      if (req.url === '/none') {
        res.writeHead(204);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-length': '11' });
      res.end(req.method === 'HEAD' ? undefined : 'hello world');
    });
    const f = await front(app.port);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(app.close, f.close, () => agent.destroy());
    const head = await send(f.port, agent, { method: 'HEAD' });
    expect(head.status).to.equal(200);
    expect(head.headers['content-length']).to.equal('11');
    expect(head.body.length).to.equal(0);
    expect((await send(f.port, agent, { path: '/none' })).status).to.equal(204);
    const get = await send(f.port, agent);
    expect(get.body.toString()).to.equal('hello world');
    expect(app.connections).to.equal(1);
  });

  it('Should drop the app\'s 1xx answers, pass its trailers to a client that takes them only, and read a body that runs to the connection\'s end', async () => {
    const app = await rawApp((s, head) => {
      const path = head.split(' ')[1];
      if (path === '/continue') {
        s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n');
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone');
      } else if (path === '/trailers') {
        s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n');
      } else {
        s.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end');
      }
    });
    const f = await front(app.port);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(app.close, f.close, () => agent.destroy());
    const c = await send(f.port, agent, { path: '/continue' });
    expect([c.status, c.body.toString()]).to.deep.equal([200, 'done']);
    const t = await send(f.port, agent, { path: '/trailers', headers: { te: 'trailers' } });
    expect([t.status, t.body.toString(), t.trailers['x-sum']]).to.deep.equal([200, 'abc', '42']);
    const noTe = await send(f.port, agent, { path: '/trailers' });
    expect([noTe.body.toString(), noTe.trailers['x-sum']]).to.deep.equal(['abc', undefined]);
    const eof = await send(f.port, agent, { path: '/eof' });
    expect([eof.status, eof.body.toString()]).to.deep.equal([200, 'until the end']);
    // The three framed answers shared one connection; the one read to its end closed it, and the next request opens another.
    expect(app.connections).to.equal(1);
    expect((await send(f.port, agent, { path: '/continue' })).body.toString()).to.equal('done');
    expect(app.connections).to.equal(2);
    expect(f.errors).to.equal(0);
  });

  it('Should answer 502 to garbage, a reset or a 101 before the answer, cut the client off after a reset mid-answer, and serve the next request', async () => {
    const app = await rawApp((s, head) => {
      const path = head.split(' ')[1];
      if (path === '/garbage') s.write('SSH-2.0-OpenSSH_9.2\r\n\r\n');
      else if (path === '/switch') s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n');
      else if (path === '/reset') s.resetAndDestroy();
      else if (path === '/cut') {
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part');
        setTimeout(() => s.resetAndDestroy(), 50);
      } else s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    const f = await front(app.port);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(app.close, f.close, () => agent.destroy());
    const g = await send(f.port, agent, { path: '/garbage' });
    expect([g.status, g.body.toString()]).to.deep.equal([502, 'upstream connect error\n']);
    expect((await send(f.port, agent, { path: '/reset' })).status).to.equal(502);
    expect((await send(f.port, agent, { path: '/switch' })).status, 'a 101 to a request that offered no upgrade').to.equal(502);
    const cut = await send(f.port, agent, { path: '/cut' }).then(
      () => 'completed',
      (err: Error & { code?: string }) => err.code ?? err.message,
    );
    expect(cut).to.not.equal('completed');
    expect((await send(f.port, agent, { path: '/fine' })).body.toString()).to.equal('ok');
    expect(f.errors).to.equal(3, 'the garbage, the reset and the 101 before an answer are counted; the cut answer is not');
  });

  it('Should pass an early answer on, keep the client\'s connection usable, and not reuse the app connection that still had body to read', async () => {
    const app = await httpApp((req, res) => {
      if (req.url === '/upload') {
        res.writeHead(413, { 'content-length': '8' });
        res.end('too big\n');
        return;
      }
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const f = await front(app.port);
    closers.push(app.close, f.close);
    // The rest of the body is sent only once the answer is in: the app connection is then mid-request.
    const client = netConnect(f.port, '127.0.0.1');
    closers.push(() => void client.destroy());
    let got = '';
    const until = (text: string): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (got.includes(text)) {
            client.off('data', onData);
            resolve();
          }
        };
        const onData = (d: Buffer): void => {
          got += d.toString('latin1');
          check();
        };
        client.on('data', onData);
        check();
      });
    client.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc');
    await until('too big\n');
    expect(got).to.match(/^HTTP\/1\.1 413 /);
    client.write('defghijGET /next HTTP/1.1\r\nhost: x\r\n\r\n');
    await until('\r\n\r\nok');
    expect(got.slice(got.indexOf('too big\n'))).to.match(/^too big\nHTTP\/1\.1 200 /);
    expect(app.connections).to.equal(2);
    expect(f.errors).to.equal(0);
  });

  it('Should hold the app back while the client does not read (no unbounded buffering), and deliver every byte once it does', async () => {
    const total = 64 * 1024 * 1024;
    let appWritten = 0;
    const app = await httpApp((_req, res) => {
      res.writeHead(200, { 'content-length': String(total) });
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      const pump = (): void => {
        while (appWritten < total) {
          appWritten += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const f = await front(app.port);
    closers.push(app.close, f.close);
    const client = netConnect(f.port, '127.0.0.1');
    closers.push(() => void client.destroy());
    client.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n');
    let received = 0;
    client.once('data', (d: Buffer) => {
      received += d.length;
      client.pause();
    });
    await new Promise((r) => setTimeout(r, 1500));
    // Socket buffers on three hops hold a few MiB at most; without backpressure the whole 64 MiB is read from the app.
    expect(appWritten).to.be.below(24 * 1024 * 1024);
    client.on('data', (d: Buffer) => (received += d.length));
    client.resume();
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (received >= total) {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
    expect(appWritten).to.equal(total);
  });

  it('Should open a new app connection when an idle one was closed by the app, instead of failing the request', async () => {
    const app = await rawApp((s) => {
      s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    const f = await front(app.port);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(app.close, f.close, () => agent.destroy());
    expect((await send(f.port, agent)).body.toString()).to.equal('ok');
    await new Promise((r) => setTimeout(r, 100));
    expect((await send(f.port, agent)).body.toString()).to.equal('ok');
    expect(app.connections).to.equal(2);
    expect(f.errors).to.equal(0);
  });
});

describe('requestHead (pure)', () => {
  it('Should write one request line and the headers as given, in latin1 form', () => {
    expect(requestHead('GET', '/a?b=%20', ['host', 'x', 'x-v', 'caf\u00e9'])).to.equal('GET /a?b=%20 HTTP/1.1\r\nhost: x\r\nx-v: caf\u00e9\r\n\r\n');
  });
  it('Should refuse a target or a value that would not stay one line', () => {
    expect(requestHead('GET', '/a b', [])).to.equal(undefined);
    expect(requestHead('GET', '/a\r\nx: y', [])).to.equal(undefined);
    expect(requestHead('GET', '/a', ['host', 'x\r\nx-evil: 1'])).to.equal(undefined);
    expect(requestHead('GET', '/a', ['host', 'x\u0000'])).to.equal(undefined);
  });
});

for (const dataPath of dataPaths()) describe(`An HTTP/1.1 app connection through an /http sidecar pair [${dataPath}]`, function () {
  this.timeout(30_000);
  const closers: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  it('Should carry bytes that arrive in pieces, the first ones read to tell the protocol, whole and in order (native: over the engine)', async () => {
    const ca = await TestCa.create(TD);
    const app = await httpApp((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()} xfcc=${req.headers['x-forwarded-client-cert'] ? 'yes' : 'no'}`));
    });
    closers.push(app.close);
    const server = await httpServerSidecar(ca, app.port, dataPath);
    closers.push(() => server.stop(0));
    const client = await httpClientSidecar(ca, server, dataPath);
    closers.push(() => client.stop(0));

    const engineBefore = nativeRelay()?.size ?? 0;
    const s = netConnect(client.outbound[0]!.port, '127.0.0.1');
    closers.push(() => void s.destroy());
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const pause = (): Promise<void> => new Promise((r) => setTimeout(r, 40));
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write('P');
    await pause();
    s.write('OST /a HTTP/1.1\r\nhost: cart\r\ncontent-length: 5\r\n\r\nhe');
    await pause();
    s.write('llo');
    s.write('GET /b HTTP/1.1\r\nhost: cart\r\n\r\n');
    for (let i = 0; i < 200 && !got.includes('GET /b'); i++) await pause();
    const bodies = got.split(/HTTP\/1\.1 200 OK\r\n[\s\S]*?\r\n\r\n/).filter((b) => b !== '');
    expect(bodies).to.deep.equal(['POST /a hello xfcc=yes', 'GET /b  xfcc=yes']);
    if (dataPath === 'native') expect(nativeRelay()!.size, 'the outbound connection is held by the engine').to.be.greaterThan(engineBefore);
  });
});

/** The native relay engine; CI requires it (TRELLIS_REQUIRE_NATIVE_RELAY=1). */
const NATIVE_RELAY = optionalDependency({
  name: 'the native relay engine',
  requireEnv: 'TRELLIS_REQUIRE_NATIVE_RELAY',
  probe: () => (nativeRelay() !== null ? undefined : 'the native relay did not load (npm ci builds it when g++, make and python3 are installed)'),
});

describeWith(NATIVE_RELAY, 'Handing an app connection that was read from to the native relay', function () {
  const relay = nativeRelay();

  it('Should stop Node reading the socket, so that bytes the app sends during the handshake wait for the engine, after the bytes already read', async () => {
    const ca = await TestCa.create(TD);
    const leaf = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    const ctx = relay!.context({ server: false, chainPem: leaf.chainPem, keyPem: leaf.key.keyPem, caPem: ca.root.pem });
    // An upstream that takes the TCP connection and never answers the ClientHello: the handshake stays pending.
    const upstream = createNetServer((s) => s.on('error', () => undefined));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    const front = createNetServer({ pauseOnConnect: true, allowHalfOpen: true });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
    const accepted = new Promise<Socket>((r) => front.once('connection', r));
    const client = netConnect((front.address() as { port: number }).port, '127.0.0.1');
    const app = await accepted;
    let id: number | undefined;
    try {
      // As an /http listener does: read until the bytes tell, then pause with them put back.
      const told = new Promise<void>((r) => readFirstBytes(app, (seen) => (seen.length >= 4 ? 'h1' : 'need-more'), () => r()));
      client.write('GET / HTTP/1.1\r\n');
      await told;
      id = relay!.connectTls(app, '127.0.0.1', (upstream.address() as { port: number }).port, ctx, null, { onHandshake: () => undefined, onClosed: () => undefined });
      expect(id).to.be.a('number');
      const held = app.readableLength;
      client.write('host: cart\r\n\r\n');
      await new Promise((r) => setTimeout(r, 200));
      expect(app.readableLength, 'the later bytes stay in the kernel for the engine').to.equal(held);
    } finally {
      if (id !== undefined) relay!.close(id);
      client.destroy();
      app.destroy();
      front.close();
      upstream.close();
    }
  });
});

for (const dataPath of dataPaths()) describe(`HTTP/2 clients of an /http port whose app speaks HTTP/1.1 only (pooled connections) [${dataPath}]`, function () {
  this.timeout(30_000);
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  /** A sidecar whose PERMISSIVE /http port serves h2c clients in front of `appPort`. */
  async function sidecarFor(appPort: number): Promise<number> {
    const server = await httpServerSidecar(await TestCa.create(TD), appPort, dataPath, { mode: 'PERMISSIVE' });
    closers.push(() => server.stop(0));
    return server.inbound[0]!.port;
  }

  /** One h2c request; resolves with status, body, trailers, or the stream's error code. */
  function h2(session: ClientHttp2Session, headers: Record<string, string>, body?: Buffer[], opts: { cutAfterBody?: boolean } = {}): Promise<{ status?: number; body: string; trailers: Record<string, unknown>; error?: string }> {
    return new Promise((resolve) => {
      const s = session.request(headers, { endStream: body === undefined });
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let trailers: Record<string, unknown> = {};
      s.on('response', (h) => (status = Number(h[':status'])));
      s.on('trailers', (t) => (trailers = t));
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString(), trailers }));
      s.on('error', (err: Error & { code?: string }) => resolve({ status, body: Buffer.concat(chunks).toString(), trailers, error: err.code ?? err.message }));
      if (body) {
        for (const b of body) s.write(b);
        if (!opts.cutAfterBody) s.end();
      }
    });
  }

  it('Should carry bodies with and without a length, answers with trailers to a client that takes them, and reuse the app connection', async () => {
    const seen: Array<{ method: string; te?: string; cl?: string; body: string }> = [];
    const app = await httpApp((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method!, te: req.headers['transfer-encoding'], cl: req.headers['content-length'], body: Buffer.concat(chunks).toString() });
        if (req.url === '/trailers') {
          res.writeHead(200, { trailer: 'x-sum' });
          res.write('abc');
          res.addTrailers({ 'x-sum': '42' });
          res.end();
          return;
        }
        res.end(`got ${Buffer.concat(chunks).length}`);
      });
    });
    closers.push(app.close);
    const port = await sidecarFor(app.port);
    const session = http2Connect(`http://127.0.0.1:${port}`);
    closers.push(() => void session.destroy());
    expect((await h2(session, { ':method': 'GET', ':path': '/' })).body).to.equal('got 0');
    expect((await h2(session, { ':method': 'POST', ':path': '/', 'content-length': '11' }, [Buffer.from('hello'), Buffer.from(' world')])).body).to.equal('got 11');
    expect((await h2(session, { ':method': 'POST', ':path': '/' }, [Buffer.from('no'), Buffer.from(' length')])).body).to.equal('got 9');
    const t = await h2(session, { ':method': 'GET', ':path': '/trailers', te: 'trailers' });
    expect([t.status, t.body, t.trailers['x-sum']]).to.deep.equal([200, 'abc', '42']);
    expect(seen.map((x) => [x.method, x.te, x.cl, x.body])).to.deep.equal([
      ['GET', undefined, undefined, ''],
      ['POST', undefined, '11', 'hello world'],
      ['POST', 'chunked', undefined, 'no length'],
      ['GET', undefined, undefined, ''],
    ]);
    // The sidecar's one h2c probe (it learns that the app speaks HTTP/1.1), then one pooled connection for every request.
    expect(app.connections).to.equal(2);
  });

  it('Should never pass a request body cut by a lost client connection or a reset on as a whole one', async () => {
    const outcomes: string[] = [];
    const app = await httpApp((req) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => outcomes.push(`end after ${n}`));
      req.on('close', () => outcomes.push(req.complete ? 'complete' : 'cut'));
    });
    closers.push(app.close);
    const port = await sidecarFor(app.port);
    // A reset is tried with a length only: node's client ends its side (END_STREAM) before it resets, which
    // completes a body that has no length, as far as HTTP/2 can tell; with one, nghttp2 sees it short.
    const cases = [
      { how: 'connection lost', headers: { ':method': 'POST', ':path': '/', 'content-length': '100' } },
      { how: 'connection lost', headers: { ':method': 'POST', ':path': '/' } },
      { how: 'stream reset', headers: { ':method': 'POST', ':path': '/', 'content-length': '100' } },
    ];
    for (const c of cases) {
      const session = http2Connect(`http://127.0.0.1:${port}`);
      session.on('error', () => undefined);
      const s = session.request(c.headers);
      s.on('error', () => undefined);
      s.write('part of the body');
      await new Promise((r) => setTimeout(r, 200));
      if (c.how === 'stream reset') s.close(http2Constants.NGHTTP2_CANCEL);
      else session.destroy();
      for (let i = 0; i < 100 && outcomes.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      session.destroy();
      expect(outcomes, `${c.how}, ${JSON.stringify(c.headers)}`).to.deep.equal(['cut']);
      outcomes.length = 0;
    }
  });

  it('Should let a client finish sending a large body the app answered early without reading', async () => {
    // An app that reads nothing, so that the body backs up to the client, and answers after a while.
    const sockets = new Set<Socket>();
    const app = createNetServer({ pauseOnConnect: true }, (sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
      setTimeout(() => sock.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big\n'), 300);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    closers.push(() => {
      for (const sock of sockets) sock.destroy();
      app.close();
    });
    const port = await sidecarFor((app.address() as { port: number }).port);
    const session = http2Connect(`http://127.0.0.1:${port}`);
    closers.push(() => void session.destroy());
    const s = session.request({ ':method': 'POST', ':path': '/upload', 'content-length': String(8 * 1024 * 1024) });
    s.on('error', () => undefined);
    const answered = new Promise<number>((r) => s.once('response', (h) => r(Number(h[':status']))));
    const closed = new Promise<boolean>((r) => {
      s.once('close', () => r(true));
      setTimeout(() => r(false), 10_000);
    });
    s.end(Buffer.alloc(8 * 1024 * 1024, 1));
    s.resume();
    expect(await answered).to.equal(413);
    expect(await closed, 'the request stream completes: its body is read and dropped').to.equal(true);
  });

  it('Should answer 502 when the app fails before answering, and reset the stream when it fails part-way', async () => {
    const app = await rawApp((s, head) => {
      const path = head.split(' ')[1];
      if (path === '/reset') s.resetAndDestroy();
      else {
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part');
        setTimeout(() => s.resetAndDestroy(), 50);
      }
    });
    closers.push(app.close);
    const port = await sidecarFor(app.port);
    const session = http2Connect(`http://127.0.0.1:${port}`);
    closers.push(() => void session.destroy());
    const before = await h2(session, { ':method': 'GET', ':path': '/reset' });
    expect([before.status, before.body]).to.deep.equal([502, 'upstream connect error\n']);
    const cut = await h2(session, { ':method': 'GET', ':path': '/cut' });
    expect(cut.status).to.equal(200);
    expect(cut.error, 'a cut answer is a reset stream, never a whole one').to.be.a('string');
  });
});
