/**
 * The discovery client against small real gRPC/TLS servers on loopback:
 * it authenticates the control plane by its exact SPIFFE ID (never sending
 * its token to anyone else) and ACKs or NACKs what its handlers accept.
 */
import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import { encodeResource, PEER_AUTHENTICATION_TYPE_URL, silentLogger, TRUST_BUNDLE_TYPE_URL } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { backoffDelayMs } from '../../src/discovery/backoff';
import { DiscoveryClient } from '../../src/discovery/discovery-client';
import { discoveryClientConstructor } from '../../src/discovery/discovery-proto';

const CP_ID = 'spiffe://example.org/ns/trellis-system/sa/trellis-control-plane';

interface Seen {
  tokens: string[];
  requests: Array<Record<string, unknown>>;
  call?: grpc.ServerDuplexStream<Record<string, unknown>, unknown>;
}

async function fakeControlPlane(ca: TestCa, serverId: string): Promise<{ server: grpc.Server; address: string; seen: Seen }> {
  const leaf = await ca.issueLeaf(serverId);
  const seen: Seen = { tokens: [], requests: [] };
  const server = new grpc.Server();
  server.addService(discoveryClientConstructor().service, {
    StreamResources: (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
      seen.tokens.push(String(call.metadata.get('authorization')[0] ?? ''));
      seen.call = call;
      call.on('data', (r: Record<string, unknown>) => seen.requests.push(r));
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(leaf.chainPem), private_key: Buffer.from(leaf.key.keyPem) }], false), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { server, address: `127.0.0.1:${port}`, seen };
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('DiscoveryClient', function () {
  this.timeout(20_000);
  let ca: TestCa;
  const cleanups: Array<() => void> = [];

  before(async () => {
    ca = await TestCa.create('example.org');
  });
  afterEach(() => {
    while (cleanups.length) cleanups.pop()!();
  });

  function client(address: string, rootPem: string): DiscoveryClient {
    const c = new DiscoveryClient({
      addresses: [address],
      bootstrapBundlePem: rootPem,
      getToken: async () => 'secret-token',
      node: { spiffeId: 'spiffe://example.org/ns/shop/sa/web', namespace: 'shop', labels: { app: 'web' }, service: 'web', inboundPorts: [8080] },
      controlPlaneSpiffeId: CP_ID,
      logger: silentLogger,
      backoff: { initialMs: 20, maxMs: 100 },
    });
    cleanups.push(() => c.stop());
    return c;
  }

  it('never sends its token to a server presenting another SPIFFE ID, even one chained to the trusted root', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, 'spiffe://example.org/ns/evil/sa/mitm');
    cleanups.push(() => server.forceShutdown());
    const ends: number[] = [];
    const c = client(address, ca.root.pem);
    c.onStreamEnded((e) => ends.push(e.grpcCode));
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => ends.length >= 2, 'two failed attempts');
    expect(seen.tokens).to.deep.equal([]);
    expect(ends[0]).to.equal(grpc.status.UNAVAILABLE);
  });

  it('never sends its token to a server whose certificate does not chain to the bundle', async () => {
    const other = await TestCa.create('example.org');
    const { server, address, seen } = await fakeControlPlane(other, CP_ID);
    cleanups.push(() => server.forceShutdown());
    const ends: number[] = [];
    const c = client(address, ca.root.pem);
    c.onStreamEnded((e) => ends.push(e.grpcCode));
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => ends.length >= 2, 'two failed attempts');
    expect(seen.tokens).to.deep.equal([]);
  });

  it('subscribes with its node and token, NACKs a resource its handler throws on and ACKs one it accepts', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID);
    cleanups.push(() => server.forceShutdown());
    const c = client(address, ca.root.pem);
    c.on(PEER_AUTHENTICATION_TYPE_URL, (resources) => {
      if (resources[0]!.body.mode === 'DISABLE') throw new Error('DISABLE is not allowed here');
    }).start();
    await waitFor(() => seen.requests.length >= 2, 'the subscriptions');
    expect(seen.tokens).to.deep.equal(['Bearer secret-token']);
    expect(seen.requests[0]).to.nested.include({ type_url: PEER_AUTHENTICATION_TYPE_URL, 'node.spiffe_id': 'spiffe://example.org/ns/shop/sa/web', 'node.namespace': 'shop' });

    seen.call!.write({ type_url: PEER_AUTHENTICATION_TYPE_URL, version_info: 'v1', nonce: 'a', resources: [{ name: 'default', body: encodeResource({ mode: 'STRICT', portModes: {} }) }] });
    await waitFor(() => seen.requests.some((r) => r['response_nonce'] === 'a'), 'the ACK');
    expect(seen.requests.find((r) => r['response_nonce'] === 'a')).to.include({ version_info: 'v1', error_detail: null });

    seen.call!.write({ type_url: PEER_AUTHENTICATION_TYPE_URL, version_info: 'v2', nonce: 'b', resources: [{ name: 'default', body: encodeResource({ mode: 'DISABLE', portModes: {} }) }] });
    await waitFor(() => seen.requests.some((r) => r['response_nonce'] === 'b'), 'the NACK');
    const nack = seen.requests.find((r) => r['response_nonce'] === 'b')!;
    expect(nack).to.include({ version_info: 'v1' });
    expect((nack['error_detail'] as { message: string }).message).to.include('DISABLE is not allowed here');

    seen.call!.write({ type_url: PEER_AUTHENTICATION_TYPE_URL, version_info: 'v3', nonce: 'c', resources: [{ name: 'default', body: encodeResource({ mode: 'SOMETIMES' }) }] });
    await waitFor(() => seen.requests.some((r) => r['response_nonce'] === 'c'), 'the NACK of a malformed body');
    expect((seen.requests.find((r) => r['response_nonce'] === 'c')!['error_detail'] as { message: string }).message).to.include('TRELLIS_PROTOCOL_BAD_RESOURCE');
    expect(c.syncState()['peer_authn']).to.include({ state: 'NACKED', acceptedVersion: 'v1' });
  });

  it('backs off exponentially with jitter up to the cap', () => {
    const o = { initialMs: 250, maxMs: 30_000 };
    expect(backoffDelayMs(0, o, 0)).to.equal(125);
    expect(backoffDelayMs(0, o, 0.999)).to.be.within(249, 250);
    expect(backoffDelayMs(3, o, 0.5)).to.equal(1500);
    expect(backoffDelayMs(50, o, 1)).to.equal(30_000);
    expect(backoffDelayMs(50, o, 0)).to.equal(15_000);
  });
});
