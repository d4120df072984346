/**
 * What one client can make a real `trellis control-plane` hold: streams per
 * identity, the size of a node, connections that never authenticate, and
 * connections in all. Real TCP, TLS and HTTP/2 clients (node:net, node:tls,
 * node:http2), the real DiscoveryClient, and the control plane's metrics.
 */
import { expect } from 'chai';
import { mkdirSync, readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { AUTHORIZATION_POLICIES_TYPE_URL, DISCOVERY_SERVICE } from '@trellis/shared';
import { makeTmpDir } from '@trellis/testkit';
import { FakeSidecar, initCa, joinToken, metricValue, rawStream, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

describe('control plane limits (real process, real TCP/TLS/HTTP/2 clients)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let policyDir: string;
  let cp: ControlPlaneProcess;
  const sidecars: FakeSidecar[] = [];
  const sockets: Array<{ destroy(): void }> = [];

  const hostPort = (c: ControlPlaneProcess): { host: string; port: number } => ({ host: '127.0.0.1', port: c.port });
  const rootPem = (): Buffer => readFileSync(join(caDir, 'root.pem'));
  const closed = (s: Socket | TLSSocket): Promise<void> => new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));

  /** An SVID for `id`, obtained with a join token over a stream that is then closed. */
  async function svidFor(id: string): Promise<NonNullable<FakeSidecar['creds']>> {
    const token = joinToken(caDir, id);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token }).start();
    await s.rotate();
    s.stop();
    return s.creds!;
  }

  before(async () => {
    tmp = makeTmpDir('trellis-cp-limits-');
    caDir = join(tmp.dir, 'ca');
    policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
    cp = await startControlPlaneProcess(caDir, policyDir, ['--auth-timeout', '1s']);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    for (const s of sockets) s.destroy();
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('Should refuse the fifth discovery stream of one identity with RESOURCE_EXHAUSTED and TRELLIS_CP_STREAM_LIMIT, and take it once one of the four closes', async () => {
    const id = `spiffe://${TD}/ns/flood/sa/one`;
    const creds = await svidFor(id);
    const before = await metricValue(cp, 'trellis_discovery_stream_errors_total', 'code="TRELLIS_CP_STREAM_LIMIT"');
    const streams = [0, 1, 2, 3, 4].map(() => {
      const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id });
      s.creds = creds;
      sidecars.push(s);
      return s;
    });
    for (const s of streams.slice(0, 4)) s.start();
    await waitFor(() => streams.slice(0, 4).every((s) => s.connects === 1), 'four streams to be served');
    const fifth = streams[4]!.start();
    await waitFor(() => fifth.ends.length > 0, 'the fifth stream to be refused');
    expect(fifth.ends[0]).to.include({ grpcCode: grpc.status.RESOURCE_EXHAUSTED, serverCode: 'TRELLIS_CP_STREAM_LIMIT' });
    expect(fifth.ends[0]!.retryAfterMs).to.be.greaterThan(0);
    expect(fifth.connects).to.equal(0);
    expect(await metricValue(cp, 'trellis_discovery_stream_errors_total', 'code="TRELLIS_CP_STREAM_LIMIT"')).to.be.greaterThan(before);
    // The audit line comes through the control plane's stderr pipe, read on its own schedule: wait for it, then check it.
    const auditLine = (): boolean => cp.logs.some((l) => l.includes('"event":"audit"') && l.includes('identity holds its maximum of streams') && l.includes(id));
    await waitFor(auditLine, 'the audit line');
    expect(auditLine()).to.equal(true);

    streams[0]!.stop();
    await waitFor(() => fifth.connects === 1, 'the fifth stream to be served once a slot is free', 20_000);
    for (const s of streams) s.stop();
  });

  const oversized: Array<[string, Record<string, unknown>]> = [
    ['65 labels', { labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }],
    ['a label key of 318 characters', { labels: { [`${'a'.repeat(253)}/${'b'.repeat(64)}`]: 'v' } }],
    ['a label value of 64 characters', { labels: { app: 'v'.repeat(64) } }],
    ['64 labels over 16 KiB in all', { labels: Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`${'p'.repeat(240)}/k${i}`, 'v'.repeat(20)])) }],
    ['a service name of 254 characters', { service: 's'.repeat(254) }],
    ['65 inbound ports', { inbound_ports: Array.from({ length: 65 }, (_, i) => 10000 + i) }],
  ];
  for (const [what, node] of oversized) {
    it(`Should refuse a node with ${what} with INVALID_ARGUMENT and TRELLIS_CP_NODE_TOO_LARGE`, async () => {
      const id = `spiffe://${TD}/vm/big-${Math.random().toString(36).slice(2, 8)}`;
      const raw = rawStream(cp.address, caDir, joinToken(caDir, id));
      raw.call.write({ node: { spiffe_id: id, ...node }, type_url: AUTHORIZATION_POLICIES_TYPE_URL });
      // A response means the node was taken: fail at once rather than wait for a status that never comes.
      const served = new Promise<{ code: string; serverCode: null; details: string }>((resolve) => raw.call.once('data', () => resolve({ code: 'served', serverCode: null, details: 'the node was served' })));
      const st = await Promise.race([raw.done, served]);
      raw.client.close();
      expect({ code: st.code, serverCode: st.serverCode }, st.details).to.deep.equal({ code: grpc.status.INVALID_ARGUMENT, serverCode: 'TRELLIS_CP_NODE_TOO_LARGE' });
    });
  }

  it('Should serve a node at the bounds: 64 attested labels with 63-character values', async () => {
    const id = `spiffe://${TD}/ns/big/sa/at-bounds`;
    const labels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`example.com/key-${i}`, `${i}`.padEnd(63, 'x')]));
    const token = joinToken(caDir, id, ['--labels', Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',')]);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, labels });
    sidecars.push(s);
    s.start();
    await s.rotate();
    await waitFor(() => s.last('authz') !== undefined, 'authz to arrive');
    expect(s.ends).to.deep.equal([]);
    s.stop();
  });

  describe('connections that do not authenticate (--auth-timeout 1s)', () => {
    it('Should close a TCP connection that never starts TLS', async () => {
      const before = await metricValue(cp, 'trellis_connections_refused_total', 'reason="auth_timeout"');
      const s = tcpConnect(hostPort(cp));
      sockets.push(s);
      s.on('error', () => undefined);
      await closed(s);
      expect(await metricValue(cp, 'trellis_connections_refused_total', 'reason="auth_timeout"')).to.be.greaterThan(before);
    });

    it('Should close a TLS connection that completes its handshake and then sends nothing', async () => {
      let handshake = false;
      const s = tlsConnect({ ...hostPort(cp), ca: rootPem(), servername: 'trellis-control-plane', checkServerIdentity: () => undefined, ALPNProtocols: ['h2'] }, () => (handshake = true));
      sockets.push(s);
      s.on('error', () => undefined);
      s.resume(); // read (and drop) the server's HTTP/2 preface, so its close is seen
      await closed(s);
      expect(handshake, 'the TLS handshake completed before the server closed it').to.equal(true);
    });

    it('Should close an HTTP/2 connection that never sends a request', async () => {
      const session = h2Session(cp, rootPem());
      let connected = false;
      session.once('connect', () => (connected = true));
      await new Promise<void>((resolve) => session.once('close', () => resolve()));
      expect(connected).to.equal(true);
    });

    it('Should refuse a stream without credentials and then close its HTTP/2 connection', async () => {
      const session = h2Session(cp, rootPem());
      const status = await new Promise<string | undefined>((resolve) => {
        const req = session.request({ ':method': 'POST', ':path': `/${DISCOVERY_SERVICE}/StreamResources`, 'content-type': 'application/grpc', te: 'trailers' });
        req.on('response', (h) => {
          if (h['grpc-status'] !== undefined) resolve(String(h['grpc-status']));
        });
        req.on('trailers', (t) => resolve(String(t['grpc-status'])));
        req.on('error', () => resolve(undefined));
        req.resume();
      });
      expect(status).to.equal(String(grpc.status.UNAUTHENTICATED));
      await new Promise<void>((resolve) => (session.closed ? resolve() : session.once('close', () => resolve())));
    });

    it('Should keep an authenticated sidecar\'s connection open past the deadline', async () => {
      const id = `spiffe://${TD}/ns/shop/sa/patient`;
      const token = joinToken(caDir, id);
      const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token });
      sidecars.push(s);
      s.start();
      await s.rotate();
      await new Promise((r) => setTimeout(r, 2500));
      expect(s.ends).to.deep.equal([]);
      expect(s.connects).to.equal(1);
      expect(await metricValue(cp, 'trellis_connections', 'state="authenticated"')).to.be.greaterThan(0);
      s.stop();
    });
  });

  it('Should close connections beyond --max-connections at once, and admit a new one when one closes', async () => {
    const small = await startControlPlaneProcess(caDir, policyDir, ['--max-connections', '3', '--auth-timeout', '30s']);
    const held: TLSSocket[] = [];
    try {
      const open = (): Promise<{ socket: TLSSocket; handshake: boolean }> =>
        new Promise((resolve) => {
          const s = tlsConnect({ ...hostPort(small), ca: rootPem(), servername: 'trellis-control-plane', checkServerIdentity: () => undefined, ALPNProtocols: ['h2'] });
          sockets.push(s);
          s.once('secureConnect', () => resolve({ socket: s, handshake: true }));
          s.once('error', () => resolve({ socket: s, handshake: false }));
          s.once('close', () => resolve({ socket: s, handshake: false }));
        });
      for (let i = 0; i < 3; i++) {
        const c = await open();
        expect(c.handshake, `connection ${i + 1}`).to.equal(true);
        held.push(c.socket);
      }
      const fourth = await open();
      expect(fourth.handshake, 'the fourth connection').to.equal(false);
      expect(await metricValue(small, 'trellis_connections_refused_total', 'reason="limit"')).to.equal(1);
      expect(await metricValue(small, 'trellis_connections', 'state="unauthenticated"')).to.equal(3);

      held[0]!.destroy();
      await waitFor(async () => (await metricValue(small, 'trellis_connections', 'state="unauthenticated"')) === 2, 'the server to see the close');
      expect((await open()).handshake, 'a connection once one closed').to.equal(true);
    } finally {
      for (const s of held) s.destroy();
      await small.stop();
    }
  });
});

function h2Session(cp: ControlPlaneProcess, ca: Buffer): http2.ClientHttp2Session {
  const session = http2.connect(`https://127.0.0.1:${cp.port}`, { ca, servername: 'trellis-control-plane', checkServerIdentity: () => undefined });
  session.on('error', () => undefined);
  return session;
}
