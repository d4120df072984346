/**
 * The discovery client against small real gRPC/TLS servers on loopback:
 * it authenticates the control plane by its exact SPIFFE ID (never sending
 * its token to anyone else) and ACKs or NACKs what its handlers accept.
 */
import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import { encodeResource, PEER_AUTHENTICATION_TYPE_URL, silentLogger, TRUST_BUNDLE_TYPE_URL } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { backoffDelayMs } from '@trellis/shared';
import { DiscoveryClient, type ClientCredentials, type DiscoveryClientOptions, type StreamEndInfo } from '../../src/discovery/discovery-client';
import { DiscoveryError } from '../../src/discovery/discovery-error';
import { discoveryServiceDefinition } from '../helpers/discovery-service';

const CP_ID = 'spiffe://example.org/ns/trellis-system/sa/trellis-control-plane';

type ServerCall = grpc.ServerDuplexStream<Record<string, unknown>, unknown>;

interface Seen {
  tokens: string[];
  requests: Array<Record<string, unknown>>;
  call?: ServerCall;
  peerUris: string[];
  cancelled: number;
}

/** A grpc-js Discovery server (as the control plane runs) with hooks for each call. */
async function fakeControlPlane(
  ca: TestCa,
  serverId: string,
  opts: { requireClientCert?: boolean; onCall?: (call: ServerCall) => void; rawResponses?: boolean } = {},
): Promise<{ server: grpc.Server; address: string; seen: Seen }> {
  const leaf = await ca.issueLeaf(serverId);
  const seen: Seen = { tokens: [], requests: [], peerUris: [], cancelled: 0 };
  const server = new grpc.Server();
  const def = discoveryServiceDefinition();
  // rawResponses: the server writes Buffers as the message bytes, to send what no protobuf encoder would.
  const method = def['StreamResources']!;
  const service = opts.rawResponses ? { StreamResources: { ...method, responseSerialize: (b: Buffer) => b } } : def;
  server.addService(service, {
    StreamResources: (call: ServerCall) => {
      seen.tokens.push(String(call.metadata.get('authorization')[0] ?? ''));
      const peer = call.getAuthContext()?.sslPeerCertificate;
      if (peer) seen.peerUris.push(String(peer.subjectaltname ?? ''));
      seen.call = call;
      call.on('data', (r: Record<string, unknown>) => seen.requests.push(r));
      call.on('cancelled', () => seen.cancelled++);
      call.on('error', () => undefined);
      opts.onCall?.(call);
    },
  });
  const roots = opts.requireClientCert ? Buffer.from(ca.root.pem) : null;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(roots, [{ cert_chain: Buffer.from(leaf.chainPem), private_key: Buffer.from(leaf.key.keyPem) }], opts.requireClientCert ?? false), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { server, address: `127.0.0.1:${port}`, seen };
}

/** A refusal as the control plane sends it (control-plane/src/errors/grpc-status.ts). */
function refusal(code: grpc.status, details: string, serverCode: string, retryAfterMs?: number): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set('trellis-error-code', serverCode);
  if (retryAfterMs !== undefined) metadata.set('trellis-retry-after-ms', String(retryAfterMs));
  return { code, details, metadata };
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

  function client(address: string, rootPem: string, extra: Partial<DiscoveryClientOptions> = {}): DiscoveryClient {
    const c = new DiscoveryClient({
      addresses: [address],
      bootstrapBundlePem: rootPem,
      getToken: async () => 'secret-token',
      node: { spiffeId: 'spiffe://example.org/ns/shop/sa/web', namespace: 'shop', labels: { app: 'web' }, service: 'web', inboundPorts: [8080] },
      controlPlaneSpiffeId: CP_ID,
      logger: silentLogger,
      backoff: { initialMs: 20, maxMs: 100 },
      ...extra,
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

  it('reports a trailers-only refusal with its status, decoded message, Trellis code and retry hint, without ever counting as connected', async () => {
    const { server, address } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => call.emit('error', refusal(grpc.status.RESOURCE_EXHAUSTED, 'signing queue full: 100% busy, retry [TRELLIS_CP_OVERLOADED]', 'TRELLIS_CP_OVERLOADED', 60)),
    });
    cleanups.push(() => server.forceShutdown());
    const ends: StreamEndInfo[] = [];
    const connected: boolean[] = [];
    const c = client(address, ca.root.pem);
    c.onStreamEnded((e) => ends.push(e));
    c.onConnectionChange((up) => connected.push(up));
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => ends.length >= 1, 'the refusal');
    expect(ends[0]).to.deep.equal({ grpcCode: grpc.status.RESOURCE_EXHAUSTED, serverCode: 'TRELLIS_CP_OVERLOADED', message: 'signing queue full: 100% busy, retry [TRELLIS_CP_OVERLOADED]', retryAfterMs: 60 });
    expect(connected).to.deep.equal([]);
    expect(c.connection().lastError).to.deep.include({ serverCode: 'TRELLIS_CP_OVERLOADED' });
  });

  it('rejects a pending CSR with TRELLIS_DISCOVERY_REFUSED when the stream ends PERMISSION_DENIED after its headers', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => {
        call.sendMetadata(new grpc.Metadata());
        call.on('data', (r: Record<string, unknown>) => {
          if ((r['csr'] as Buffer).length > 0) call.emit('error', refusal(grpc.status.PERMISSION_DENIED, 'CSR names another workload [TRELLIS_CA_CSR_IDENTITY_MISMATCH]', 'TRELLIS_CA_CSR_IDENTITY_MISMATCH'));
        });
      },
    });
    cleanups.push(() => server.forceShutdown());
    const connected: boolean[] = [];
    const c = client(address, ca.root.pem);
    c.onConnectionChange((up) => connected.push(up));
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    const err = await c.requestSvid(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(DiscoveryError);
    expect((err as DiscoveryError).code).to.equal('TRELLIS_DISCOVERY_REFUSED');
    expect((err as DiscoveryError).details).to.deep.equal({ grpcCode: grpc.status.PERMISSION_DENIED, serverCode: 'TRELLIS_CA_CSR_IDENTITY_MISMATCH' });
    expect(seen.requests.find((r) => (r['csr'] as Buffer).length > 0)!['csr']).to.deep.equal(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]));
    await waitFor(() => connected.length >= 2, 'connect then disconnect');
    expect(connected.slice(0, 2)).to.deep.equal([true, false]);
  });

  it('authenticates with its SVID over mTLS, sending no token, once it holds an unexpired certificate', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID, { requireClientCert: true });
    cleanups.push(() => server.forceShutdown());
    const svid = await ca.issueLeaf('spiffe://example.org/ns/shop/sa/web');
    const c = client(address, ca.root.pem, { getCredentials: () => ({ keyPem: svid.key.keyPem, chainPem: svid.chainPem, notAfter: new Date(Date.now() + 3_600_000) }) });
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => seen.requests.length >= 1, 'the subscription');
    expect(seen.tokens).to.deep.equal(['']);
    expect(seen.peerUris).to.deep.equal(['URI:spiffe://example.org/ns/shop/sa/web']);
  });

  it('ends its stream on stop() with a goodbye (half-close), so the server sees the call end rather than a lost connection', async () => {
    // grpc-js reports 'cancelled' whenever a stream closes; a goodbye is an 'end' before it.
    const events: string[] = [];
    const { server, address } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => {
        call.sendMetadata(new grpc.Metadata());
        call.on('end', () => {
          events.push('end');
          call.end();
        });
        call.on('cancelled', () => events.push('closed'));
      },
    });
    cleanups.push(() => server.forceShutdown());
    const c = client(address, ca.root.pem);
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => c.connection().connected, 'the connection');
    await c.stop();
    await waitFor(() => events.includes('closed'), 'the server to see the call closed');
    expect(events, 'the server saw the client end its half first').to.deep.equal(['end', 'closed']);
    expect(c.connection().connected).to.equal(false);
  });

  it('still closes the connection on stop() when the server never answers the goodbye', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID, { onCall: (call) => call.sendMetadata(new grpc.Metadata()) });
    cleanups.push(() => server.forceShutdown());
    const c = client(address, ca.root.pem);
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => c.connection().connected, 'the connection');
    await c.stop();
    await waitFor(() => seen.cancelled === 1, 'the server to see the call closed');
  });

  it('moves to a stream authenticated by each new certificate before it says goodbye on the old one, staying connected throughout', async () => {
    const order: string[] = [];
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => {
        const i = order.filter((e) => e.startsWith('open')).length;
        order.push(`open ${i}`);
        call.sendMetadata(new grpc.Metadata());
        let said = false;
        call.on('end', () => {
          said = true;
          order.push(`end ${i}`);
          call.end();
        });
        // grpc-js reports 'cancelled' whenever a stream closes: only one without a goodbye first is a loss.
        call.on('cancelled', () => {
          if (!said) order.push(`lost ${i}`);
        });
      },
    });
    cleanups.push(() => server.forceShutdown());
    let creds: ClientCredentials | null = null;
    const connected: boolean[] = [];
    const c = client(address, ca.root.pem, { getCredentials: () => creds });
    c.onConnectionChange((up) => connected.push(up));
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => c.connection().connected, 'the token-authenticated stream');
    const first = await ca.issueLeaf('spiffe://example.org/ns/shop/sa/web');
    creds = { keyPem: first.key.keyPem, chainPem: first.chainPem, notAfter: new Date(Date.now() + 3_600_000) };
    c.credentialsChanged();
    await waitFor(() => order.includes('end 0'), 'the goodbye on the token-authenticated stream');
    // A credential that is not newer than the stream's own changes nothing.
    c.credentialsChanged();
    const second = await ca.issueLeaf('spiffe://example.org/ns/shop/sa/web');
    creds = { keyPem: second.key.keyPem, chainPem: second.chainPem, notAfter: new Date(Date.now() + 7_200_000) };
    c.credentialsChanged();
    await waitFor(() => order.includes('end 1'), 'the goodbye on the first mTLS stream');
    expect(order).to.deep.equal(['open 0', 'open 1', 'end 0', 'open 2', 'end 1']);
    expect(seen.tokens, 'the new streams authenticate with the certificate, not the token').to.deep.equal(['Bearer secret-token', '', '']);
    expect(connected, 'never disconnected').to.deep.equal([true]);
    expect(c.connection().connected).to.equal(true);
  });

  it('re-sends a CSR pending on the old stream on the stream that takes over', async () => {
    const csrsPerCall: number[] = [];
    const { server, address } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => {
        const i = csrsPerCall.push(0) - 1;
        call.sendMetadata(new grpc.Metadata());
        call.on('data', (r: Record<string, unknown>) => {
          if ((r['csr'] as Buffer | undefined)?.length) csrsPerCall[i]!++;
        });
        call.on('end', () => call.end());
      },
    });
    cleanups.push(() => server.forceShutdown());
    let creds: ClientCredentials | null = null;
    const c = client(address, ca.root.pem, { getCredentials: () => creds });
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => c.connection().connected, 'the token-authenticated stream');
    void c.requestSvid(Buffer.from([0x30, 0x00])).catch(() => undefined);
    await waitFor(() => csrsPerCall[0] === 1, 'the CSR on the first stream');
    const leaf = await ca.issueLeaf('spiffe://example.org/ns/shop/sa/web');
    creds = { keyPem: leaf.key.keyPem, chainPem: leaf.chainPem, notAfter: new Date(Date.now() + 3_600_000) };
    c.credentialsChanged();
    await waitFor(() => csrsPerCall[1] === 1, 'the CSR again on the new stream');
  });

  it('reports that no credential is left when a join token is refused as spent and no certificate can open a stream', async () => {
    const { server, address } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => call.emit('error', refusal(grpc.status.UNAUTHENTICATED, 'join token already used 1/1 times [TRELLIS_CP_TOKEN_SPENT]', 'TRELLIS_CP_TOKEN_SPENT')),
    });
    cleanups.push(() => server.forceShutdown());
    const exhausted: string[] = [];
    const c = client(address, ca.root.pem, { getToken: async () => 'tj1.aaa.bbb.ccc' });
    c.onCredentialsExhausted((e) => exhausted.push(e.serverCode));
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => exhausted.length >= 1, 'the report');
    expect(exhausted[0]).to.equal('TRELLIS_CP_TOKEN_SPENT');
  });

  it('does not report credentials exhausted for a refused Kubernetes token (kubelet rotates it) or while its certificate is still valid', async () => {
    const { server, address } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => call.emit('error', refusal(grpc.status.UNAUTHENTICATED, 'token expired [TRELLIS_CP_TOKEN_EXPIRED]', 'TRELLIS_CP_TOKEN_EXPIRED')),
    });
    cleanups.push(() => server.forceShutdown());
    const exhausted: string[] = [];
    const ends: string[] = [];
    const k8s = client(address, ca.root.pem, { getToken: async () => 'eyJhbGciOiJSUzI1NiJ9.e30.sig' });
    k8s.onCredentialsExhausted((e) => exhausted.push(e.serverCode));
    k8s.onStreamEnded((e) => ends.push(e.serverCode ?? ''));
    k8s.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => ends.length >= 3, 'three refusals');
    expect(exhausted).to.deep.equal([]);
  });

  it('reconnects and re-subscribes with the version it accepted after the server ends the stream', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID, { onCall: (call) => call.sendMetadata(new grpc.Metadata()) });
    cleanups.push(() => server.forceShutdown());
    const c = client(address, ca.root.pem);
    c.on(PEER_AUTHENTICATION_TYPE_URL, () => undefined).start();
    await waitFor(() => seen.requests.length >= 2, 'the subscriptions');
    seen.call!.write({ type_url: PEER_AUTHENTICATION_TYPE_URL, version_info: 'v7', nonce: 'n', resources: [{ name: 'default', body: encodeResource({ mode: 'STRICT', portModes: {} }) }] });
    await waitFor(() => seen.requests.some((r) => r['response_nonce'] === 'n'), 'the ACK');
    const first = seen.call!;
    first.end();
    await waitFor(() => seen.call !== first && seen.requests.filter((r) => r['type_url'] === PEER_AUTHENTICATION_TYPE_URL).length >= 3, 'the re-subscription');
    const resub = seen.requests.filter((r) => r['type_url'] === PEER_AUTHENTICATION_TYPE_URL)[2]!;
    expect(resub).to.include({ version_info: 'v7', response_nonce: '' });
    expect(resub['node']).to.deep.include({ spiffe_id: 'spiffe://example.org/ns/shop/sa/web', labels: { app: 'web' }, inbound_ports: [8080] });
  });

  it('ends the stream INTERNAL on a malformed DiscoveryResponse, and reconnects', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID, {
      rawResponses: true,
      onCall: (call) => {
        call.sendMetadata(new grpc.Metadata());
        // field 1 (type_url), length 9, but only 2 bytes follow.
        call.write(Buffer.from([0x0a, 0x09, 0x61, 0x62]));
      },
    });
    cleanups.push(() => server.forceShutdown());
    const ends: StreamEndInfo[] = [];
    const c = client(address, ca.root.pem);
    c.onStreamEnded((e) => ends.push(e));
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => ends.length >= 1 && seen.tokens.length >= 2, 'the failed stream and a reconnect');
    expect(ends[0]!.grpcCode).to.equal(grpc.status.INTERNAL);
    expect(ends[0]!.message).to.include('DiscoveryResponse.type_url');
  });

  it('refuses a response over 16 MiB with RESOURCE_EXHAUSTED before buffering it', async () => {
    const { server, address } = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => {
        call.sendMetadata(new grpc.Metadata());
        call.write({ type_url: TRUST_BUNDLE_TYPE_URL, version_info: 'big', nonce: 'x', resources: [{ name: 'default', body: Buffer.alloc(16 * 1024 * 1024 + 1, 0x20) }] });
      },
    });
    cleanups.push(() => server.forceShutdown());
    const ends: StreamEndInfo[] = [];
    let handled = 0;
    const c = client(address, ca.root.pem);
    c.onStreamEnded((e) => ends.push(e));
    c.on(TRUST_BUNDLE_TYPE_URL, () => {
      handled++;
    }).start();
    await waitFor(() => ends.length >= 1, 'the refusal');
    expect(ends[0]!.grpcCode).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(handled).to.equal(0);
  });

  it('sends nothing when the token cannot be a header value, logs the key but not the token, and keeps retrying', async () => {
    const { server, address, seen } = await fakeControlPlane(ca, CP_ID);
    cleanups.push(() => server.forceShutdown());
    const warnings: Array<{ msg: string; fields: string }> = [];
    const logger = { ...silentLogger, warn: (msg: string, fields?: Record<string, unknown>) => warnings.push({ msg, fields: JSON.stringify(fields, (_k, v: unknown) => (v instanceof Error ? { code: (v as DiscoveryError).code, message: v.message } : v)) }) };
    const c = client(address, ca.root.pem, { getToken: async () => 'line1\nline2', logger });
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => warnings.filter((w) => w.msg === 'discovery connect failed').length >= 2, 'two abandoned attempts');
    const failed = warnings.find((w) => w.msg === 'discovery connect failed')!;
    expect(failed.fields).to.include('TRELLIS_DISCOVERY_BAD_METADATA').and.include('authorization').and.not.include('line1');
    expect(seen.tokens).to.deep.equal([]);
  });

  it('sends a sidecar report only on a stream whose control plane said it takes them (trellis-reports: 1)', async () => {
    const withReports = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => {
        const md = new grpc.Metadata();
        md.set('trellis-reports', '1');
        call.sendMetadata(md);
      },
    });
    const older = await fakeControlPlane(ca, CP_ID, { onCall: (call) => call.sendMetadata(new grpc.Metadata()) });
    cleanups.push(() => withReports.server.forceShutdown(), () => older.server.forceShutdown());
    const body = Buffer.from('{"windowSeconds":300}');
    for (const [cp, takes] of [[withReports, true], [older, false]] as const) {
      const c = client(cp.address, ca.root.pem);
      let connected = false;
      c.onConnectionChange((up) => (connected = up));
      c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
      await waitFor(() => connected, 'the stream to open');
      expect(c.sendReport(body)).to.equal(takes);
      if (takes) await waitFor(() => cp.seen.requests.some((r) => Buffer.isBuffer(r['report']) && (r['report'] as Buffer).equals(body)), 'the report');
      else expect(cp.seen.requests.filter((r) => (r['report'] as Buffer).length > 0)).to.deep.equal([]);
      c.stop();
    }
  });

  it('carries the last report to the stream that takes over with a new certificate, so the control plane never loses the sidecar\'s report', async () => {
    const reportsPerCall: Buffer[][] = [];
    const cp = await fakeControlPlane(ca, CP_ID, {
      onCall: (call) => {
        const mine: Buffer[] = [];
        reportsPerCall.push(mine);
        const md = new grpc.Metadata();
        md.set('trellis-reports', '1');
        call.sendMetadata(md);
        call.on('data', (r: Record<string, unknown>) => {
          if (Buffer.isBuffer(r['report']) && (r['report'] as Buffer).length > 0) mine.push(r['report'] as Buffer);
        });
        call.on('end', () => call.end());
      },
    });
    cleanups.push(() => cp.server.forceShutdown());
    let creds: ClientCredentials | null = null;
    const c = client(cp.address, ca.root.pem, { getCredentials: () => creds });
    c.on(TRUST_BUNDLE_TYPE_URL, () => undefined).start();
    await waitFor(() => c.connection().connected, 'the token-authenticated stream');
    const body = Buffer.from('{"windowSeconds":300}');
    expect(c.sendReport(body)).to.equal(true);
    await waitFor(() => reportsPerCall[0]?.length === 1, 'the report on the first stream');
    const leaf = await ca.issueLeaf('spiffe://example.org/ns/shop/sa/web');
    creds = { keyPem: leaf.key.keyPem, chainPem: leaf.chainPem, notAfter: new Date(Date.now() + 3_600_000) };
    c.credentialsChanged();
    await waitFor(() => reportsPerCall[1]?.length === 1, 'the report on the stream that took over');
    expect(reportsPerCall[1]![0]!.equals(body)).to.equal(true);
    expect(reportsPerCall[0], 'sent once on the old stream').to.have.length(1);
    await c.stop();
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
