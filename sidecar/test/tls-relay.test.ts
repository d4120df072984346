import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import * as tls from 'node:tls';
import { TestCa, describeWith, freePort, makeTmpDir, OPENSSL, optionalDependency, skipUnless } from '@trellis/testkit';
import * as native from '@trellis/tls-relay';
import type { RelayContext, RelayEvent } from '@trellis/tls-relay';

const TD = 'cluster.local';
const MB = 1024 * 1024;
const RelayClass = native.Relay as unknown as (typeof native.Relay) | null;

type HandshakeOk = Extract<RelayEvent, { kind: 'handshake'; ok: true }>;
type HandshakeFailed = Extract<RelayEvent, { kind: 'handshake'; ok: false }>;

/** A relay plus the events it reported, by id, with waiters. */
class RelayHarness {
  readonly relay: native.Relay;
  readonly events = new Map<number, RelayEvent[]>();
  private readonly waiters: Array<() => void> = [];

  constructor() {
    this.relay = new RelayClass!((ev) => {
      const list = this.events.get(ev.id) ?? [];
      list.push(ev);
      this.events.set(ev.id, list);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  of(id: number): RelayEvent[] {
    return this.events.get(id) ?? [];
  }

  async next<K extends RelayEvent['kind']>(id: number, kind: K, ms = 20_000): Promise<Extract<RelayEvent, { kind: K }>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.of(id).find((e) => e.kind === kind);
      if (found) return found as Extract<RelayEvent, { kind: K }>;
      if (Date.now() > deadline) throw new Error(`no '${kind}' event for id ${id} within ${ms} ms (got ${JSON.stringify(this.of(id).map((e) => e.kind))})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  handshakeOk(id: number): Promise<HandshakeOk> {
    return this.next(id, 'handshake').then((ev) => {
      if (!ev.ok) throw new Error(`handshake failed: ${ev.error}`);
      return ev as HandshakeOk;
    });
  }
}

/** A TCP listener whose accepted sockets are handed to acceptTls (the caller's copy is destroyed). */
async function inboundListener(h: RelayHarness, ctx: RelayContext): Promise<{ server: Server; port: number; ids: number[]; nextId: () => Promise<number> }> {
  const ids: number[] = [];
  const waiting: Array<(id: number) => void> = [];
  const server = createServer({ pauseOnConnect: true }, (sock) => {
    const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
    const id = h.relay.acceptTls(fd, ctx);
    sock.destroy();
    const w = waiting.shift();
    if (w) w(id);
    else ids.push(id);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const nextId = (): Promise<number> => {
    const id = ids.shift();
    return id !== undefined ? Promise.resolve(id) : new Promise((r) => waiting.push(r));
  };
  return { server, port, ids, nextId };
}

/** A plain TCP app: echoes, or runs `handler`. */
async function plainApp(handler?: (s: Socket) => void): Promise<{ server: Server; port: number; connections: () => number }> {
  let count = 0;
  const server = createServer({ allowHalfOpen: true }, (s) => {
    count++;
    s.on('error', () => undefined);
    if (handler) handler(s);
    else s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, connections: () => count };
}

/** node:tls over an explicit TCP socket so the raw byte counts are known. */
function tlsClient(port: number, opts: tls.ConnectionOptions, allowHalfOpen = false): Promise<{ tlsSock: tls.TLSSocket; raw: Socket }> {
  return new Promise((resolve, reject) => {
    // The TLS socket takes its half-open behaviour from the TCP socket under it.
    const raw = netConnect({ port, host: '127.0.0.1', allowHalfOpen });
    raw.on('error', reject);
    const tlsSock = tls.connect({ socket: raw, servername: undefined, ...opts });
    tlsSock.on('error', reject);
    tlsSock.once('secureConnect', () => resolve({ tlsSock, raw }));
  });
}

function readAll(s: Socket | tls.TLSSocket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

function closeServer(s: Server): Promise<void> {
  return new Promise((r) => s.close(() => r()));
}

function derOf(pem: string): Buffer {
  return new X509Certificate(pem).raw;
}

/** The native relay engine; CI requires it (TRELLIS_REQUIRE_NATIVE_RELAY=1). */
const NATIVE_RELAY = optionalDependency({
  name: 'the native relay engine',
  requireEnv: 'TRELLIS_REQUIRE_NATIVE_RELAY',
  probe: () => (RelayClass !== null ? undefined : `@trellis/tls-relay did not load (${String(native.loadError)}; npm ci builds it when g++, make and python3 are installed)`),
});

describeWith(NATIVE_RELAY, 'Native TLS relay engine (@trellis/tls-relay)', function () {
  this.timeout(60_000);

  let ca: TestCa;
  let otherCa: TestCa;
  let serverLeaf: Awaited<ReturnType<TestCa['issueLeaf']>>;
  let clientLeaf: Awaited<ReturnType<TestCa['issueLeaf']>>;
  let strangerLeaf: Awaited<ReturnType<TestCa['issueLeaf']>>;
  let h: RelayHarness;
  let serverCtx: RelayContext;
  let clientCtx: RelayContext;
  const cleanups: Array<() => unknown> = [];

  before(async function () {
    ca = await TestCa.create(TD);
    otherCa = await TestCa.create('elsewhere.example');
    serverLeaf = await ca.issueLeaf(`spiffe://${TD}/ns/default/sa/server`);
    clientLeaf = await ca.issueLeaf(`spiffe://${TD}/ns/default/sa/client`);
    strangerLeaf = await otherCa.issueLeaf(`spiffe://elsewhere.example/ns/x/sa/y`);
    h = new RelayHarness();
    serverCtx = h.relay.context({ server: true, chainPem: serverLeaf.chainPem, keyPem: serverLeaf.key.keyPem, caPem: ca.root.pem });
    clientCtx = h.relay.context({ server: false, chainPem: clientLeaf.chainPem, keyPem: clientLeaf.key.keyPem, caPem: ca.root.pem });
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  after(() => {
    if (!h) return;
    serverCtx.release();
    clientCtx.release();
    h.relay.stop();
  });

  const clientOpts = (): tls.ConnectionOptions => ({
    cert: clientLeaf.chainPem,
    key: clientLeaf.key.keyPem,
    ca: ca.root.pem,
    checkServerIdentity: () => undefined,
  });

  it('Should relay an inbound mTLS connection to the app after allow() and count the bytes exactly', async () => {
    const app = await plainApp();
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));

    const { tlsSock, raw } = await tlsClient(lis.port, clientOpts());
    // Listened for from the start: the socket may close while the test awaits the 'closed' event.
    const rawClosed = new Promise((r) => raw.once('close', r));
    const id = await lis.nextId();
    const hs = await h.handshakeOk(id);
    expect(hs.verifyError).to.equal(0);
    expect(hs.chain[0]!.equals(derOf(clientLeaf.pem))).to.equal(true);
    expect(hs.chain[1]!.equals(derOf(ca.intermediate.pem))).to.equal(true);
    expect(hs.resumed).to.equal(false);
    expect(hs.protocol).to.equal('TLSv1.3');
    expect(h.relay.size).to.be.greaterThan(0);

    h.relay.allow(id, '127.0.0.1', app.port);
    const received = readAll(tlsSock);
    tlsSock.write('hello through the relay');
    await new Promise((r) => setTimeout(r, 50));
    tlsSock.end();
    expect((await received).toString()).to.equal('hello through the relay');
    const closed = await h.next(id, 'closed');
    await rawClosed;
    expect(closed.error).to.equal(null);
    expect(closed.plainIn).to.equal(23);
    expect(closed.plainOut).to.equal(23);
    expect(closed.tlsIn).to.equal(raw.bytesWritten);
    expect(closed.tlsOut).to.equal(raw.bytesRead);
    expect(h.of(id).at(-1)!.kind).to.equal('closed');
  });

  it('Should report a chain from another CA with a verify error, and let close() refuse it before the app sees anything', async () => {
    const app = await plainApp();
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const client = tls.connect({ port: lis.port, host: '127.0.0.1', cert: strangerLeaf.chainPem, key: strangerLeaf.key.keyPem, ca: ca.root.pem, checkServerIdentity: () => undefined });
    client.on('error', () => undefined);
    const clientClosed = new Promise((r) => client.once('close', r));
    const id = await lis.nextId();
    const hs = await h.handshakeOk(id);
    expect(hs.verifyError).to.be.oneOf([19, 20, 21]);
    expect(hs.chain[0]!.equals(derOf(strangerLeaf.pem))).to.equal(true);
    h.relay.close(id);
    const closed = await h.next(id, 'closed');
    expect(closed.error).to.equal('closed');
    expect(closed.plainIn).to.equal(0);
    expect(closed.plainOut).to.equal(0);
    await clientClosed;
    expect(app.connections()).to.equal(0);
  });

  it('Should report a client without a certificate as ok with an empty chain', async () => {
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(lis.server));
    const client = tls.connect({ port: lis.port, host: '127.0.0.1', ca: ca.root.pem, checkServerIdentity: () => undefined });
    client.on('error', () => undefined);
    const id = await lis.nextId();
    const hs = await h.handshakeOk(id);
    expect(hs.chain).to.deep.equal([]);
    expect(hs.verifyError).to.equal(0);
    h.relay.close(id);
    expect((await h.next(id, 'closed')).error).to.equal('closed');
    client.destroy();
  });

  /** A node:tls server requiring our client certificate; replies 'pong:' + what it got, at end. */
  async function tlsUpstream(): Promise<{ server: tls.Server; port: number; peers: Buffer[] }> {
    const peers: Buffer[] = [];
    const server = tls.createServer(
      { cert: serverLeaf.chainPem, key: serverLeaf.key.keyPem, ca: ca.root.pem, requestCert: true, rejectUnauthorized: true, allowHalfOpen: true },
      (s) => {
        s.on('error', () => undefined);
        const peer = s.getPeerCertificate(true);
        if (peer && peer.raw) peers.push(peer.raw);
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => s.end(Buffer.concat([Buffer.from('pong:'), ...chunks])));
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { server, port: (server.address() as AddressInfo).port, peers };
  }

  /** The app-facing side of an outbound relay: a plaintext client whose accepted socket goes to connectTls. */
  async function outbound(upstreamPort: number, session: Buffer | null, firstBytes?: Buffer): Promise<{ id: number; client: Socket; done: () => void; server: Server }> {
    let accepted: Socket | undefined;
    let id = 0;
    const server = createServer({ pauseOnConnect: true }, (sock) => {
      accepted = sock;
      const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
      id = h.relay.connectTls(fd, '127.0.0.1', upstreamPort, clientCtx, session, firstBytes);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = netConnect((server.address() as AddressInfo).port, '127.0.0.1');
    client.on('error', () => undefined);
    while (id === 0) await new Promise((r) => setTimeout(r, 5));
    return { id, client, server, done: () => accepted?.destroy() };
  }

  it('Should connect out with our chain, relay, half-close, and resume with the session it reported', async () => {
    const up = await tlsUpstream();
    cleanups.push(() => closeServer(up.server));

    const first = await outbound(up.port, null);
    cleanups.push(() => closeServer(first.server));
    const hs = await h.handshakeOk(first.id);
    expect(hs.chain[0]!.equals(derOf(serverLeaf.pem))).to.equal(true);
    expect(hs.verifyError).to.equal(0);
    expect(hs.resumed).to.equal(false);
    h.relay.allow(first.id);
    first.done();
    const reply = readAll(first.client);
    first.client.end('ping');
    expect((await reply).toString()).to.equal('pong:ping');
    expect(up.peers[0]!.equals(derOf(clientLeaf.pem))).to.equal(true);
    const session = await h.next(first.id, 'session');
    expect(session.session.length).to.be.greaterThan(0);
    expect((await h.next(first.id, 'closed')).error).to.equal(null);

    const second = await outbound(up.port, session.session);
    cleanups.push(() => closeServer(second.server));
    const hs2 = await h.handshakeOk(second.id);
    expect(hs2.resumed).to.equal(true);
    h.relay.allow(second.id);
    second.done();
    const reply2 = readAll(second.client);
    second.client.end('again');
    expect((await reply2).toString()).to.equal('pong:again');
    expect((await h.next(second.id, 'closed')).error).to.equal(null);
  });

  it('Should send the first bytes it was given before what it reads from the app, and count them in plainIn', async () => {
    const up = await tlsUpstream();
    cleanups.push(() => closeServer(up.server));
    const o = await outbound(up.port, null, Buffer.from('pi'));
    cleanups.push(() => closeServer(o.server));
    await h.handshakeOk(o.id);
    h.relay.allow(o.id);
    o.done();
    const reply = readAll(o.client);
    o.client.end('ng');
    expect((await reply).toString()).to.equal('pong:ping');
    expect((await h.next(o.id, 'closed')).plainIn).to.equal(4);
  });

  it('Should pass an inbound half-close through: the TLS client ends its writes and still gets the reply', async () => {
    const app = await plainApp((s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => s.end(Buffer.concat([Buffer.from('reply:'), ...chunks])));
    });
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const { tlsSock } = await tlsClient(lis.port, clientOpts(), true);
    const id = await lis.nextId();
    await h.handshakeOk(id);
    h.relay.allow(id, '127.0.0.1', app.port);
    const reply = readAll(tlsSock);
    tlsSock.end('question');
    expect((await reply).toString()).to.equal('reply:question');
    expect((await h.next(id, 'closed')).error).to.equal(null);
  });

  it('Should move 64 MiB each way through slow readers byte-exactly (backpressure)', async () => {
    const total = 64 * MB;
    const block = randomBytes(MB + 7);
    const sendPattern = (s: Socket | tls.TLSSocket, done: () => void): void => {
      let sent = 0;
      let i = 0;
      const pump = (): void => {
        while (sent < total) {
          const n = Math.min(256 * 1024, total - sent);
          const off = (i++ * 4099) % (block.length - n);
          sent += n;
          if (!s.write(block.subarray(off, off + n))) return void s.once('drain', pump);
        }
        done();
      };
      pump();
    };
    const expected = createHash('sha256');
    {
      let sent = 0;
      let i = 0;
      while (sent < total) {
        const n = Math.min(256 * 1024, total - sent);
        const off = (i++ * 4099) % (block.length - n);
        expected.update(block.subarray(off, off + n));
        sent += n;
      }
    }
    const want = expected.digest('hex');
    // A reader that stops for a while every 8 MiB.
    const slowHash = (s: Socket | tls.TLSSocket): Promise<string> =>
      new Promise((resolve, reject) => {
        const hash = createHash('sha256');
        let got = 0;
        let nextPause = 8 * MB;
        s.on('data', (c: Buffer) => {
          hash.update(c);
          got += c.length;
          if (got >= nextPause) {
            nextPause += 8 * MB;
            s.pause();
            setTimeout(() => s.resume(), 150);
          }
        });
        s.once('end', () => resolve(hash.digest('hex')));
        s.once('error', reject);
      });

    let appHash: Promise<string> | undefined;
    const app = await plainApp((s) => {
      appHash = slowHash(s);
      sendPattern(s, () => s.end());
    });
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const { tlsSock } = await tlsClient(lis.port, clientOpts(), true);
    const id = await lis.nextId();
    await h.handshakeOk(id);
    h.relay.allow(id, '127.0.0.1', app.port);
    const clientHash = slowHash(tlsSock);
    sendPattern(tlsSock, () => tlsSock.end());
    expect(await clientHash).to.equal(want);
    while (!appHash) await new Promise((r) => setTimeout(r, 10));
    expect(await appHash).to.equal(want);
    const closed = await h.next(id, 'closed');
    expect(closed.error).to.equal(null);
    expect(closed.plainIn).to.equal(total);
    expect(closed.plainOut).to.equal(total);
  });

  it('Should resume inbound sessions of node:tls clients and report the stored peer leaf', async () => {
    const app = await plainApp();
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const roundTrip = async (session?: Buffer): Promise<{ hs: HandshakeOk; session: Buffer | undefined }> => {
      const { tlsSock } = await tlsClient(lis.port, { ...clientOpts(), ...(session ? { session } : {}) }, true);
      let ticket: Buffer | undefined;
      tlsSock.on('session', (t: Buffer) => (ticket = t));
      const id = await lis.nextId();
      const hs = await h.handshakeOk(id);
      h.relay.allow(id, '127.0.0.1', app.port);
      const echoed = readAll(tlsSock);
      tlsSock.end('resume me');
      expect((await echoed).toString()).to.equal('resume me');
      await h.next(id, 'closed');
      return { hs, session: ticket };
    };
    const first = await roundTrip();
    expect(first.hs.resumed).to.equal(false);
    expect(first.session).to.not.equal(undefined);
    const second = await roundTrip(first.session);
    expect(second.hs.resumed).to.equal(true);
    expect(second.hs.verifyError).to.equal(0);
    expect(second.hs.chain[0]!.equals(derOf(clientLeaf.pem))).to.equal(true);
  });

  it('Should relay between two engines (outbound into inbound) and resume on both sides', async () => {
    const app = await plainApp();
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const once = async (session: Buffer | null): Promise<{ out: HandshakeOk; inb: HandshakeOk; session: Buffer }> => {
      const o = await outbound(lis.port, session);
      cleanups.push(() => closeServer(o.server));
      const inId = await lis.nextId();
      const inb = await h.handshakeOk(inId);
      h.relay.allow(inId, '127.0.0.1', app.port);
      const out = await h.handshakeOk(o.id);
      h.relay.allow(o.id);
      o.done();
      const echoed = readAll(o.client);
      o.client.end('engine to engine');
      expect((await echoed).toString()).to.equal('engine to engine');
      const ticket = await h.next(o.id, 'session');
      expect((await h.next(o.id, 'closed')).error).to.equal(null);
      expect((await h.next(inId, 'closed')).error).to.equal(null);
      return { out, inb, session: ticket.session };
    };
    const first = await once(null);
    expect(first.inb.chain[0]!.equals(derOf(clientLeaf.pem))).to.equal(true);
    expect(first.out.chain[0]!.equals(derOf(serverLeaf.pem))).to.equal(true);
    const second = await once(first.session);
    expect(second.out.resumed).to.equal(true);
    expect(second.inb.resumed).to.equal(true);
    expect(second.inb.chain[0]!.equals(derOf(clientLeaf.pem))).to.equal(true);
  });

  it('Should close with ECONNRESET when the TLS peer resets mid-relay', async () => {
    let appSide: Socket | undefined;
    const app = await plainApp((s) => {
      appSide = s;
      s.pipe(s);
    });
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const { tlsSock, raw } = await tlsClient(lis.port, clientOpts());
    tlsSock.on('error', () => undefined);
    const id = await lis.nextId();
    await h.handshakeOk(id);
    h.relay.allow(id, '127.0.0.1', app.port);
    tlsSock.write('ping');
    await new Promise((r) => tlsSock.once('data', r));
    const appClosed = new Promise((r) => appSide!.once('close', r));
    raw.resetAndDestroy();
    const closed = await h.next(id, 'closed');
    expect(closed.error).to.equal('ECONNRESET');
    await appClosed;
  });

  it('Should fail the handshake of a peer that sends garbage instead of a ClientHello, and keep running', async () => {
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(lis.server));
    const raw = netConnect(lis.port, '127.0.0.1');
    raw.on('error', () => undefined);
    raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n' + 'x'.repeat(5000));
    const id = await lis.nextId();
    const hs = (await h.next(id, 'handshake')) as HandshakeFailed;
    expect(hs.ok).to.equal(false);
    expect(hs.error).to.match(/^SSL:/);
    const closed = await h.next(id, 'closed');
    expect(closed.error).to.match(/^SSL:/);
    raw.destroy();
  });

  it('Should relay for openssl s_client (an independent TLS client) presenting a certificate', async function () {
    skipUnless(this, OPENSSL);
    const app = await plainApp((s) => s.end('hello from the app\n'));
    const lis = await inboundListener(h, serverCtx);
    const tmp = makeTmpDir('trellis-relay-');
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server), () => tmp.cleanup());
    writeFileSync(join(tmp.dir, 'leaf.pem'), clientLeaf.pem);
    writeFileSync(join(tmp.dir, 'chain.pem'), ca.intermediate.pem);
    writeFileSync(join(tmp.dir, 'key.pem'), clientLeaf.key.keyPem, { mode: 0o600 });
    writeFileSync(join(tmp.dir, 'ca.pem'), ca.root.pem);
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${lis.port}`, '-cert', join(tmp.dir, 'leaf.pem'), '-cert_chain', join(tmp.dir, 'chain.pem'), '-key', join(tmp.dir, 'key.pem'), '-CAfile', join(tmp.dir, 'ca.pem'), '-quiet', '-verify_return_error'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    // 'close', not 'exit': 'exit' can come before the last of stdout (the app's answer checked below) has been read.
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    cleanups.push(() => child.kill());
    const id = await lis.nextId();
    cleanups.push(() => h.relay.close(id));
    const hs = await h.handshakeOk(id);
    expect(hs.chain[0]!.equals(derOf(clientLeaf.pem))).to.equal(true);
    expect(hs.verifyError).to.equal(0);
    h.relay.allow(id, '127.0.0.1', app.port);
    const closed = await h.next(id, 'closed');
    child.stdin.end();
    await exited;
    expect(out).to.contain('hello from the app');
    expect(closed.plainIn).to.equal('hello from the app\n'.length);
  });

  it('Should close both sides of an established relay on close(id)', async () => {
    let appSide: Socket | undefined;
    const app = await plainApp((s) => {
      appSide = s;
      s.pipe(s);
    });
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const { tlsSock } = await tlsClient(lis.port, clientOpts());
    tlsSock.on('error', () => undefined);
    const id = await lis.nextId();
    await h.handshakeOk(id);
    h.relay.allow(id, '127.0.0.1', app.port);
    tlsSock.write('ping');
    await new Promise((r) => tlsSock.once('data', r));
    const clientClosed = new Promise((r) => tlsSock.once('close', r));
    const appClosed = new Promise((r) => appSide!.once('close', r));
    h.relay.close(id);
    const closed = await h.next(id, 'closed');
    expect(closed.error).to.equal('closed');
    await clientClosed;
    await appClosed;
    h.relay.close(id); // already gone: ignored
    h.relay.close(987654321); // unknown: ignored
  });

  describe('context()', () => {
    const table: Array<{ name: string; opts: () => { chainPem: string; keyPem: string; caPem: string }; message: RegExp }> = [
      { name: 'no certificate in chainPem', opts: () => ({ chainPem: 'nothing', keyPem: clientLeaf.key.keyPem, caPem: ca.root.pem }), message: /^chainPem: / },
      { name: 'a corrupt certificate in chainPem', opts: () => ({ chainPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', keyPem: clientLeaf.key.keyPem, caPem: ca.root.pem }), message: /^chainPem: / },
      { name: 'no key in keyPem', opts: () => ({ chainPem: clientLeaf.chainPem, keyPem: 'nope', caPem: ca.root.pem }), message: /^keyPem: / },
      { name: 'no root in caPem', opts: () => ({ chainPem: clientLeaf.chainPem, keyPem: clientLeaf.key.keyPem, caPem: '' }), message: /^caPem: / },
      { name: 'a key of another certificate', opts: () => ({ chainPem: clientLeaf.chainPem, keyPem: serverLeaf.key.keyPem, caPem: ca.root.pem }), message: /^keyPem does not match the certificate$/ },
    ];
    for (const row of table) {
      it(`Should refuse ${row.name} with an error naming the field`, () => {
        let err: unknown;
        try {
          h.relay.context({ server: true, ...row.opts() });
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(Error);
        expect((err as Error).message).to.match(row.message);
        expect((err as Error).message).to.not.contain('PRIVATE KEY');
      });
    }

    it('Should throw TypeError for bad arguments and a released context', () => {
      const ctx = h.relay.context({ server: true, chainPem: serverLeaf.chainPem, keyPem: serverLeaf.key.keyPem, caPem: ca.root.pem });
      ctx.release();
      expect(() => h.relay.acceptTls(0, ctx)).to.throw(TypeError);
      expect(() => h.relay.acceptTls(1.5, serverCtx)).to.throw(TypeError);
      expect(() => h.relay.connectTls(0, 'localhost', 443, clientCtx, null)).to.throw(TypeError);
      expect(() => h.relay.connectTls(0, '127.0.0.1', 0, clientCtx, null)).to.throw(TypeError);
      expect(() => h.relay.connectTls(0, '127.0.0.1', 443, clientCtx, null, 'GET ' as unknown as Buffer)).to.throw(TypeError, /firstBytes/);
      expect(() => h.relay.connectTls(0, '127.0.0.1', 443, clientCtx, null, Buffer.alloc(2 * MB))).to.throw(TypeError, /firstBytes/);
      expect(() => h.relay.allow(1, 'example.com', 80)).to.throw(TypeError);
    });
  });

  it('Should close with app_connect:<errno> when the app refuses the connection after allow()', async () => {
    const deadPort = await freePort();
    const lis = await inboundListener(h, serverCtx);
    cleanups.push(() => closeServer(lis.server));
    const { tlsSock } = await tlsClient(lis.port, clientOpts());
    tlsSock.on('error', () => undefined);
    const id = await lis.nextId();
    await h.handshakeOk(id);
    h.relay.allow(id, '127.0.0.1', deadPort);
    const closed = await h.next(id, 'closed');
    expect(closed.error).to.equal('app_connect:ECONNREFUSED');
    tlsSock.destroy();
  });

  it('Should open and close 2000 connections leaving size at 0 and RSS roughly flat', async function () {
    this.timeout(120_000);
    // In a fresh process: RSS inside mocha carries every earlier test's heap and malloc arenas.
    const script = `
      const tls = require('node:tls'); const net = require('node:net');
      const { Relay } = require(${JSON.stringify(require.resolve('@trellis/tls-relay'))});
      const [chainPem, keyPem, caPem] = JSON.parse(process.argv[1]);
      const waiters = new Map();
      const relay = new Relay((ev) => {
        if (ev.kind === 'handshake' && ev.ok) relay.allow(ev.id, '127.0.0.1', app.address().port);
        if (ev.kind === 'closed') { const w = waiters.get(ev.id); waiters.delete(ev.id); if (w) w(); }
      });
      const ctx = relay.context({ server: true, chainPem, keyPem, caPem });
      const app = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(0, '127.0.0.1');
      const closed = [];
      const lis = net.createServer({ pauseOnConnect: true }, (s) => {
        const id = relay.acceptTls(s._handle.fd, ctx); s.destroy();
        closed.push(new Promise((r) => waiters.set(id, r)));
      }).listen(0, '127.0.0.1', async () => {
        const one = () => new Promise((resolve, reject) => {
          const raw = net.connect({ port: lis.address().port, host: '127.0.0.1', allowHalfOpen: true });
          const c = tls.connect({ socket: raw, cert: chainPem, key: keyPem, ca: caPem, checkServerIdentity: () => undefined });
          c.on('error', reject); c.on('data', () => {}); c.on('end', resolve); c.end('x');
        });
        const batch = async (n) => { for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, one)); };
        await batch(500); await Promise.all(closed.splice(0)); global.gc(); const rss0 = process.memoryUsage().rss;
        await batch(1500); await Promise.all(closed.splice(0)); global.gc(); const rss1 = process.memoryUsage().rss;
        console.log(JSON.stringify({ size: relay.size, rss0, rss1 }));
        relay.stop(); process.exit(0);
      });`;
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', script, JSON.stringify([serverLeaf.chainPem, serverLeaf.key.keyPem, ca.root.pem])], { timeout: 100_000, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    const { size, rss0, rss1 } = JSON.parse(r.stdout.trim()) as { size: number; rss0: number; rss1: number };
    expect(size).to.equal(0);
    // Loose on purpose: RSS moves in steps of several MB (malloc arenas, the
    // server session cache filling to 1024, the clients' own TLS state); a
    // leaked 32 KiB relay buffer per connection would still fail this.
    // Not in the AddressSanitizer run (npm run sanitize): ASan keeps freed
    // memory in its quarantine (256 MB by default) to catch use after free,
    // so 1,500 freed relay buffers there look exactly like 1,500 leaked ones
    // (CI saw +64 MB). The plain run of this same test in the suite checks it.
    if (process.env.TRELLIS_NATIVE_BUILD !== 'sanitize') expect(rss1 - rss0).to.be.lessThan(48 * MB);
  });

  it('Should close every connection on stop() and refuse new ones', async () => {
    const h2 = new RelayHarness();
    const ctx = h2.relay.context({ server: true, chainPem: serverLeaf.chainPem, keyPem: serverLeaf.key.keyPem, caPem: ca.root.pem });
    const app = await plainApp();
    const lis = await inboundListener(h2, ctx);
    cleanups.push(() => closeServer(app.server), () => closeServer(lis.server));
    const { tlsSock } = await tlsClient(lis.port, clientOpts());
    tlsSock.on('error', () => undefined);
    const id = await lis.nextId();
    await h2.handshakeOk(id);
    h2.relay.allow(id, '127.0.0.1', app.port);
    const pending = tls.connect({ port: lis.port, host: '127.0.0.1', ca: ca.root.pem, checkServerIdentity: () => undefined });
    pending.on('error', () => undefined);
    const id2 = await lis.nextId();
    await h2.handshakeOk(id2);
    const clientClosed = new Promise((r) => tlsSock.once('close', r));
    h2.relay.stop();
    expect(h2.relay.size).to.equal(0);
    expect((await h2.next(id, 'closed')).error).to.equal('closed');
    expect((await h2.next(id2, 'closed')).error).to.equal('closed');
    await clientClosed;
    expect(() => h2.relay.acceptTls(0, ctx)).to.throw(Error, /stopped/);
    h2.relay.stop(); // idempotent
    ctx.release();
    pending.destroy();
  });

  it('Should let a process with open relayed connections exit cleanly without stop()', async () => {
    const script = `
      const tls = require('node:tls'); const net = require('node:net');
      const { Relay } = require(${JSON.stringify(require.resolve('@trellis/tls-relay'))});
      const [chainPem, keyPem, caPem] = JSON.parse(process.argv[1]);
      const relay = new Relay((ev) => { if (ev.kind === 'handshake' && ev.ok) { relay.allow(ev.id, '127.0.0.1', app.address().port); } });
      const ctx = relay.context({ server: true, chainPem, keyPem, caPem });
      const app = net.createServer((s) => { s.unref(); s.pipe(s); }).listen(0, '127.0.0.1');
      const lis = net.createServer({ pauseOnConnect: true }, (s) => { relay.acceptTls(s._handle.fd, ctx); s.destroy(); }).listen(0, '127.0.0.1', () => {
        const c = tls.connect({ port: lis.address().port, host: '127.0.0.1', cert: chainPem, key: keyPem, ca: caPem, checkServerIdentity: () => undefined }, () => {
          c.write('x'); c.once('data', () => { app.close(); lis.close(); c.unref(); });
        });
      });`;
    const r = spawnSync(process.execPath, ['-e', script, JSON.stringify([serverLeaf.chainPem, serverLeaf.key.keyPem, ca.root.pem])], { timeout: 20_000, encoding: 'utf8' });
    expect(r.error).to.equal(undefined);
    expect(r.signal).to.equal(null);
    expect(r.status, r.stderr).to.equal(0);
  });
});
