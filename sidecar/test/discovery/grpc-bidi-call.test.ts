/**
 * The sidecar's gRPC call on node:http2 against a grpc-js server, for what
 * the DiscoveryClient tests cannot reach through its fixed settings: a
 * control plane that stops answering keepalive pings, and one that never
 * completes the TLS handshake.
 */
import { expect } from 'chai';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { TestCa } from '@trellis/testkit';
import { GrpcBidiCall, type BidiCallOptions } from '../../src/discovery/grpc-bidi-call';
import { GrpcStatus, type CallStatus } from '../../src/discovery/grpc-status';
import { discoveryServiceDefinition } from '../helpers/discovery-service';

/** A TCP relay that can stop forwarding (a silent network partition) without closing either side. */
async function pausableRelay(target: number): Promise<{ port: number; pause(): void; close(): void }> {
  let paused = false;
  const sockets: net.Socket[] = [];
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    sockets.push(down, up);
    down.on('data', (d) => {
      if (!paused) up.write(d);
    });
    up.on('data', (d) => {
      if (!paused) down.write(d);
    });
    down.on('error', () => undefined);
    up.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    pause: () => {
      paused = true;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('GrpcBidiCall', function () {
  this.timeout(20_000);
  let ca: TestCa;
  const cleanups: Array<() => void> = [];
  before(async () => {
    ca = await TestCa.create('example.org');
  });
  afterEach(() => {
    while (cleanups.length) cleanups.pop()!();
  });

  function options(port: number, extra: Partial<BidiCallOptions> = {}): BidiCallOptions {
    return {
      address: `127.0.0.1:${port}`,
      path: '/trellis.discovery.v1.Discovery/StreamResources',
      tls: { caPem: ca.root.pem, servername: 'trellis-control-plane', checkServerIdentity: () => undefined },
      metadata: {},
      maxReceiveMessageBytes: 1024 * 1024,
      keepaliveMs: 0,
      keepaliveTimeoutMs: 0,
      connectTimeoutMs: 20_000,
      ...extra,
    };
  }

  function open(opts: BidiCallOptions): { statuses: CallStatus[]; metadata: number; call: GrpcBidiCall } {
    const seen = { statuses: [] as CallStatus[], metadata: 0, call: undefined as unknown as GrpcBidiCall };
    seen.call = new GrpcBidiCall(opts, { onMetadata: () => seen.metadata++, onMessage: () => undefined, onStatus: (s) => seen.statuses.push(s) });
    cleanups.push(() => seen.call.cancel());
    return seen;
  }

  async function until(cond: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 500; i++) {
      if (cond()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it('ends the call UNAVAILABLE, once, when the server stops answering keepalive pings', async () => {
    const leaf = await ca.issueLeaf('spiffe://example.org/ns/trellis-system/sa/trellis-control-plane');
    const server = new grpc.Server();
    server.addService(discoveryServiceDefinition(), { StreamResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.sendMetadata(new grpc.Metadata()) });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(leaf.chainPem), private_key: Buffer.from(leaf.key.keyPem) }], false), (e, p) => (e ? reject(e) : resolve(p))),
    );
    cleanups.push(() => server.forceShutdown());
    const relay = await pausableRelay(port);
    cleanups.push(() => relay.close());
    const seen = open(options(relay.port, { keepaliveMs: 50, keepaliveTimeoutMs: 200 }));
    await until(() => seen.metadata === 1, 'the response headers');
    expect(seen.statuses).to.deep.equal([]);
    relay.pause();
    await until(() => seen.statuses.length === 1, 'the keepalive failure');
    expect(seen.statuses[0]).to.deep.include({ code: GrpcStatus.UNAVAILABLE });
    expect(seen.statuses[0]!.details).to.include('keepalive');
  });

  it('ends the call UNAVAILABLE when the TLS handshake never completes within the connect timeout', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const held: net.Socket[] = [];
    silent.on('connection', (s) => held.push(s));
    cleanups.push(() => {
      for (const s of held) s.destroy();
      silent.close();
    });
    const seen = open(options((silent.address() as net.AddressInfo).port, { connectTimeoutMs: 200 }));
    await until(() => seen.statuses.length === 1, 'the connect timeout');
    expect(seen.statuses[0]).to.deep.include({ code: GrpcStatus.UNAVAILABLE });
    expect(seen.statuses[0]!.details).to.include('timed out');
    expect(seen.metadata).to.equal(0);
  });
});
