/**
 * The gRPC adapter: serves trellis.discovery.v1.Discovery over TLS with the
 * control plane's own SVID, asks for (but does not require) a client
 * certificate chained to the trust bundle, and hands each call to the
 * DiscoveryService. Messages over 64 KiB are refused by grpc-js itself with
 * RESOURCE_EXHAUSTED; transport-refusals.ts names and counts that refusal.
 *
 * The TCP listener is ours, not grpc-js's: each accepted socket passes the
 * ConnectionGuard (connection cap, authentication deadline) and is then
 * injected into grpc-js, which runs TLS and HTTP/2 on it, once its
 * ClientHello passed the key-exchange gate (which names the group and, under
 * `require`, refuses a classical-only client). At most
 * MAX_STREAMS_PER_CONNECTION streams may be open on one connection
 * (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): a sidecar uses one.
 */
import { createServer, type Server as NetServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DEFAULT_KEY_EXCHANGE, DISCOVERY_PROTO_FILE, parseHostPort, PROTO_ROOT, type KeyExchangePolicy } from '@trellis/shared';
import type { PeerCertificateView, StreamCredentials } from '../auth/authenticator';
import { toGrpcStatus } from '../errors/grpc-status';
import { ConnectionGuard, type ConnectionGuardDeps, type ConnectionGuardOptions } from './connection-guard';
import type { DiscoveryService } from './discovery-service';
import type { MutableCertificateProvider } from '../tls/mutable-certificate-provider';
import { gateClientHello } from '../tls/client-hello-gate';
import { transportRefusalInterceptor } from './transport-refusals';
import { PROTO_LOADER_OPTIONS, type WireRequest, type WireResponse } from './wire-types';

/**
 * Largest message accepted from a sidecar. A request holds at most a node
 * (16 KiB), a CSR (16 KiB) and the service names it subscribes to; grpc-js
 * refuses a bigger one from its length prefix, before buffering it. It was
 * 4 MiB: 600 streams each sending a 1 MiB node then held ~900 MB at once
 * while the nodes were read and refused (test/bench/discovery-flood.bench.ts).
 */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** The response header that tells a sidecar this control plane takes sidecar reports. */
export const REPORTS_HEADER = 'trellis-reports';
/** Concurrent streams one connection may open (a sidecar opens one). */
export const MAX_STREAMS_PER_CONNECTION = 16;

/** A started discovery server. */
export interface GrpcDiscoveryServer {
  readonly server: grpc.Server;
  readonly port: number;
  readonly guard: ConnectionGuard;
  /** Stops accepting, waits up to `graceMs` for calls to finish, then forces every connection closed. */
  stop(graceMs: number): Promise<void>;
}

/** Loads the Discovery service definition from shared/proto. */
export function loadDiscoveryService(): grpc.ServiceDefinition {
  const def = protoLoader.loadSync(DISCOVERY_PROTO_FILE, { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { trellis: { discovery: { v1: { Discovery: grpc.ServiceClientConstructor } } } };
  return pkg.trellis.discovery.v1.Discovery.service;
}

/** How the discovery listener gates key exchange (see tls/client-hello-gate.ts). */
export interface DiscoveryKeyExchange {
  readonly policy: KeyExchangePolicy;
  /** A connection's first stream authenticated, after a handshake in `group`. */
  onHandshake(group: string): void;
  /** A connection refused at its ClientHello (`kex_not_hybrid`, `bad_client_hello`). */
  onRefused(reason: string): void;
}

/** Starts the gRPC server on `listen` (host:port) behind the connection guard; resolves once listening. */
export async function startGrpcDiscoveryServer(
  service: DiscoveryService,
  tls: MutableCertificateProvider,
  listen: string,
  onStreamError: (code: string) => void,
  limits: ConnectionGuardOptions & ConnectionGuardDeps,
  kex: DiscoveryKeyExchange = { policy: DEFAULT_KEY_EXCHANGE, onHandshake: () => undefined, onRefused: () => undefined },
): Promise<GrpcDiscoveryServer> {
  const server = new grpc.Server({
    // First, so it sees the statuses grpc-js sends on its own (see transport-refusals.ts).
    interceptors: [transportRefusalInterceptor(onStreamError)],
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_permit_without_calls': 1,
    // channelz bookkeeping showed up at ~4% of the server's CPU per connection in the scale bench; nothing reads it.
    'grpc.enable_channelz': 0,
    'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION,
  });
  const creds = grpc.experimental.createCertificateProviderServerCredentials(tls, tls, false);
  const injector = server.createConnectionInjector(creds);
  // The group each open connection's handshake used, by grpc-js's peer string.
  const groups = new Map<string, string>();
  const guard = new ConnectionGuard(limits, limits, (socket) => {
    gateClientHello(socket, kex.policy, limits.authTimeoutMs, (v) => {
      if (!v.ok) {
        if (v.reason === 'kex_not_hybrid' || v.reason === 'bad_client_hello') kex.onRefused(v.reason);
        socket.destroy();
        return;
      }
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      groups.set(peer, v.group);
      socket.once('close', () => groups.delete(peer));
      injector.injectConnection(socket);
    });
  });
  server.addService(loadDiscoveryService(), {
    StreamResources: (call: grpc.ServerDuplexStream<WireRequest, WireResponse>) => {
      const peer = call.getPeer();
      const peerHost = hostOf(peer);
      let ended = false;
      const transport = {
        peerHost,
        authenticated: () => {
          if (guard.authenticated(peer)) kex.onHandshake(groups.get(peer) ?? 'unknown');
        },
        accepted: () => {
          if (ended) return;
          // Says this control plane takes sidecar reports (DiscoveryRequest.report): a sidecar sends none otherwise.
          const md = new grpc.Metadata();
          md.set(REPORTS_HEADER, '1');
          call.sendMetadata(md);
        },
        send: (res: WireResponse) => {
          if (!ended) call.write(res);
        },
        end: (err: unknown) => {
          if (ended) return;
          ended = true;
          if (err === null) call.end();
          else call.emit('error', toGrpcStatus(err));
        },
      };
      const auth = call.getAuthContext();
      const creds: StreamCredentials = {
        bearerToken: bearer(call.metadata),
        peerCertificate: auth?.sslPeerCertificate ? (auth.sslPeerCertificate as unknown as PeerCertificateView) : undefined,
      };
      const session = service.openStream(transport, creds);
      if (!session) return;
      call.on('data', (req: WireRequest) => session.onRequest(req));
      // A half-close is the sidecar's goodbye (it is leaving); a cancel or a dropped connection is a loss.
      // node:http2 also ends the request half of a stream whose connection dropped, and grpc-js reports
      // that close as 'cancelled' a tick later: an 'end' is a goodbye only if the call is still open then.
      call.on('end', () => setImmediate(() => session.onPeerGone(call.cancelled ? 'lost' : 'goodbye')));
      call.on('cancelled', () => session.onPeerGone('lost'));
      call.on('error', () => {
        // Our own refusals come back here as well (transport.end emits them); either way the session is over.
        ended = true;
        session.onPeerGone('lost');
      });
    },
  });
  const listener: NetServer = createServer({ noDelay: true }, (socket) => guard.admit(socket));
  const { host, port: wanted } = splitListen(listen);
  const port = await new Promise<number>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen({ host, port: wanted }, () => {
      listener.off('error', reject);
      resolve((listener.address() as { port: number }).port);
    });
  });
  return {
    server,
    port,
    guard,
    async stop(graceMs) {
      listener.close();
      const deadline = Date.now() + graceMs;
      await stopGrpcServer(server, graceMs);
      // tryShutdown can call back before the injected sessions have closed (closing the injector's
      // never-listening http2 server calls back at once, and its count reaches zero), and destroying
      // the sockets then resets streams whose final status is still being written. Wait for the
      // connections themselves: each session closes once its streams have ended.
      await guard.whenClosed(Math.max(0, deadline - Date.now()));
      injector.destroy();
      guard.closeAll();
    },
  };
}

/** Stops the server, waiting up to `graceMs` for calls to finish, then forcing. */
async function stopGrpcServer(server: grpc.Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

function bearer(md: grpc.Metadata): string | undefined {
  const v = md.get('authorization')[0];
  if (typeof v !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(v.trim());
  return m ? m[1] : undefined;
}

/** `host:port` or `[v6]:port` as net.listen wants it (the shared parser). */
function splitListen(listen: string): { host: string; port: number } {
  const hp = parseHostPort(listen);
  if (typeof hp === 'string') throw new Error(`listen address "${listen}" is not HOST:PORT: ${hp}`);
  return hp;
}

function hostOf(peer: string): string {
  // "ipv4:127.0.0.1:1234", "ipv6:[::1]:1234" or "127.0.0.1:1234"
  const p = peer.replace(/^ipv[46]:/, '');
  const hp = parseHostPort(p);
  return typeof hp === 'string' ? p : hp.host;
}
