/**
 * An HTTP inbound port's protocol choice (any suffix, inbound-protocol.ts):
 * after authentication, a connection is HTTP/2 when TLS negotiated `h2` by
 * ALPN (we offer `h2`, `http/1.1`, in that order, as Envoy does) or, in
 * plaintext or TLS without ALPN (what a byte-forwarding outbound carrying an
 * app's h2c sends), when it opens with the HTTP/2 preface (prior knowledge);
 * anything else is HTTP/1.1. Both protocols are served by their own server (h2-inbound.ts,
 * http-inbound.ts) through the one request gate, and reach the app in the
 * protocol it speaks, probed or declared (app-h2c.ts): an h2c app gets every
 * request as HTTP/2 (but WebSocket upgrades), an HTTP/1.1 app every request
 * as HTTP/1.1.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { HttpInbound } from './http-inbound';
import { H2Inbound } from './h2-inbound';
import { AppConnectionPool } from './app-connection-pool';
import type { GateDeps, HttpPeer } from './request-gate';
import { AppH2c, type AppHttpVersion } from '../http/app-h2c';
import { classifyHttpPreface, PREFACE_WAIT_MS } from '../http/h2-preface';
import { readFirstBytes } from '../proxy/first-bytes';

/** The ALPN protocols an `/http` inbound port offers, most preferred first. */
export const HTTP_ALPN: readonly string[] = Object.freeze(['h2', 'http/1.1']);

/** HTTP serving for one /http inbound port, HTTP/1.1 and HTTP/2. */
export class HttpPort {
  private readonly h1: HttpInbound;
  private readonly h2: H2Inbound;
  /** The app's protocol, learned once for both servers. */
  private readonly app: AppH2c;

  /** `version`: how the app is reached, probed (`/http`) or declared (inbound-protocol.ts). */
  constructor(deps: GateDeps, version: AppHttpVersion = 'probe') {
    this.app = new AppH2c(deps.appHost, deps.appPort, version);
    // One pool of HTTP/1.1 connections to the app for both protocols' requests.
    const pool = new AppConnectionPool(deps.appHost, deps.appPort);
    this.h1 = new HttpInbound(deps, this.app, pool);
    this.h2 = new H2Inbound(deps, this.app, pool);
  }

  /** Serves `conn` (paused), whose authentication established `peer` (undefined: plaintext). */
  serve(conn: Socket | TLSSocket, peer: HttpPeer | undefined): void {
    const alpn = (conn as TLSSocket).alpnProtocol;
    if (alpn === 'h2') return this.h2.serve(conn, peer);
    if (alpn === 'http/1.1') return this.h1.serve(conn, peer);
    // Plaintext, or TLS without ALPN (a byte-forwarding outbound carrying an app's h2c): the preface decides.
    // A client that stops part-way through what could be the preface goes to HTTP/1.1, whose parser and timeouts take it from there.
    readFirstBytes(conn, classifyHttpPreface, (kind) => (kind === 'h2' ? this.h2.serve(conn, peer) : this.h1.serve(conn, peer)), { timeoutMs: PREFACE_WAIT_MS, fallback: 'http/1.1' });
  }

  /** HTTP clients learn to go elsewhere (see HttpInbound.drain and H2Inbound.drain). */
  drain(): void {
    this.h1.drain();
    this.h2.drain();
    this.app.close();
  }
}
