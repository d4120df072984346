/**
 * The HTTP/2 side of an `/http` inbound port: connections that negotiated
 * `h2` by ALPN (mTLS) or opened with the h2c preface (plaintext). Every
 * stream is one request and goes through the same gate as HTTP/1.1
 * (request-gate.ts: one view of the target, AuthorizationPolicy on it with
 * `:method`, `:path` — a gRPC call's `/package.Service/Method` — and
 * `:authority`, XFCC rewritten), then to the app over one h2c connection
 * (app-h2c.ts), or translated to HTTP/1.1 for an app that speaks no h2c.
 *
 * Refusals: a DENY is 403 `RBAC: access denied`, or for gRPC (content-type
 * `application/grpc*`) HTTP 200 with `grpc-status: 7` and `grpc-message:
 * RBAC: access denied` in one trailers-only HEADERS frame, as Envoy's RBAC
 * filter answers; a request that cannot be read as one view is 400 on that
 * stream only (HTTP/2 framing cannot be desynchronized by one request, so
 * the connection's other streams carry on). An unreachable app is 502, or
 * gRPC UNAVAILABLE (14). Fails closed as the gate does.
 */
import { createServer as createH2Server, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { gateRequest, type GateDeps, type HttpPeer } from './request-gate';
import type { AppConnectionPool } from './app-connection-pool';
import { exchangeWithApp } from './app-exchange';
import { requestHead } from './http-forwarder';
import { AppH2c, H2_SETTINGS, serveH2Connection, tuneSession } from '../http/app-h2c';
import { GRPC_DENIED, GRPC_UNAVAILABLE, ambiguousH2Headers, h1RequestHeaders, h2Host, h2RequestHeaders, h2ResponseFromH1, h2TrailersFromH1, isGrpc, rawValue, takesTrailers } from '../http/h2-headers';
import { answer, endedWithHeaders, failDown, relayH2ToH2, type UpstreamFailure } from '../http/h2-relay';

/** HTTP/2 serving for one /http inbound port: `serve()` each authenticated connection that speaks HTTP/2. */
export class H2Inbound {
  private readonly server: Http2Server;
  private readonly peers = new WeakMap<Http2Session, HttpPeer>();
  private readonly sessions = new Set<Http2Session>();
  private readonly app: AppH2c;
  /** The peer of the connection being handed to the server (its 'session' event fires synchronously). */
  private handing: HttpPeer | undefined;
  private draining = false;

  /** `pool`: the port's connections to an app that speaks HTTP/1.1 only (app-connection-pool.ts), shared with http-inbound.ts. */
  constructor(
    private readonly deps: GateDeps,
    app: AppH2c,
    private readonly pool: AppConnectionPool,
  ) {
    this.app = app;
    this.server = createH2Server({ settings: H2_SETTINGS, maxSessionMemory: 64 });
    this.server.on('session', (s: Http2Session) => this.onSession(s));
    this.server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]) => this.onStream(stream, headers, raw, endedWithHeaders(flags)));
  }

  /** Serves HTTP/2 on `conn` (ALPN `h2`, or the h2c preface seen and put back); `peer` as authentication established it. */
  serve(conn: Socket | TLSSocket, peer: HttpPeer | undefined): void {
    // node:http2 waits for 'secureConnect' on a TLSSocket still marked connecting; a server socket we
    // handshook ourselves never emits it (node:tls clears the mark itself only for its own servers).
    (conn as TLSSocket & { secureConnecting?: boolean }).secureConnecting = false;
    // node:http2 turns away a TLS connection whose ALPN chose nothing (an "unknown protocol"); one that
    // opened with the HTTP/2 preface is HTTP/2 by prior knowledge, so it is marked as ALPN would have.
    if ((conn as TLSSocket).alpnProtocol === false) (conn as TLSSocket & { alpnProtocol: string }).alpnProtocol = 'h2';
    this.handing = peer ?? {};
    try {
      serveH2Connection(this.server, conn);
    } finally {
      this.handing = undefined;
    }
  }

  /** Clients learn to go elsewhere: GOAWAY on every session; streams in flight finish. */
  drain(): void {
    this.draining = true;
    for (const s of this.sessions) s.close();
  }

  private onSession(session: Http2Session): void {
    this.peers.set(session, this.handing ?? {});
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    session.on('error', () => session.destroy());
    tuneSession(session);
    if (this.draining) session.close();
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, raw: string[], bodyless: boolean): void {
    stream.on('error', () => undefined);
    const method = rawValue(raw, ':method') ?? 'GET';
    const url = rawValue(raw, ':path') ?? '';
    const grpc = isGrpc(headers['content-type']);
    const host = h2Host(raw);
    const peer = this.peers.get(stream.session!);
    const g = gateRequest(this.deps, { method, url, host, peer, sourceIp: stream.session?.socket?.remoteAddress, ambiguous: ambiguousH2Headers(raw) });
    if (!g.ok) {
      if (g.denied && grpc) answer(stream, GRPC_DENIED);
      else answer(stream, { ':status': g.status }, g.body);
      // Unread request bodies are dropped, not buffered.
      stream.resume();
      return;
    }
    const failure: UpstreamFailure = {
      headers: grpc ? GRPC_UNAVAILABLE : { ':status': 502 },
      body: grpc ? '' : 'upstream connect error\n',
      // A failed connection may be an app that restarted: its protocol is learned again (app-h2c.ts).
      onError: () => {
        this.deps.metrics.refuse('inbound', 'app_unreachable');
        this.app.failed();
      },
    };
    const authority = g.view.addHost ?? host ?? `${this.deps.appHost}:${this.deps.appPort}`;
    const forward = (p: Awaited<ReturnType<AppH2c['get']>>): void => {
      if (stream.destroyed || stream.closed) return;
      if (p.kind === 'unreachable') {
        failure.onError();
        answer(stream, failure.headers, failure.body);
        stream.resume();
        return;
      }
      if (p.kind === 'h2') {
        let up;
        try {
          up = p.session.request(h2RequestHeaders(raw, method, g.view.target, authority, g.xfcc), { endStream: bodyless });
        } catch {
          failure.onError();
          answer(stream, failure.headers, failure.body);
          return;
        }
        relayH2ToH2(stream, up, failure, takesTrailers(raw));
        return;
      }
      this.toHttp1(stream, raw, method, g.view.target, h1RequestHeaders(raw, authority, g.xfcc), bodyless, failure);
    };
    const p = this.app.get();
    if (p instanceof Promise) void p.then(forward);
    else forward(p);
  }

  /**
   * The stream to an app that speaks HTTP/1.1 only, over the pooled
   * connections (app-exchange.ts). A body without `content-length` goes
   * chunked. The app's chunked trailers go back as HTTP/2 trailers when the
   * client takes them (its `te: trailers`), as in relayH2ToH2.
   */
  private toHttp1(stream: ServerHttp2Stream, raw: string[], method: string, target: string, headers: string[], bodyless: boolean, failure: UpstreamFailure): void {
    const length = rawValue(raw, 'content-length') !== undefined;
    const body = bodyless ? 'none' : length ? 'length' : 'chunked';
    const head = requestHead(method, target, body === 'chunked' ? [...headers, 'transfer-encoding', 'chunked'] : headers);
    if (head === undefined) {
      answer(stream, { ':status': 400 }, 'bad request\n');
      stream.resume();
      return;
    }
    const trailersWanted = takesTrailers(raw);
    const drop = exchangeWithApp(
      this.pool,
      { head, method, body, source: stream },
      {
        head: (status, _message, rawHeaders) => void stream.respond(h2ResponseFromH1(status, rawHeaders), { waitForTrailers: trailersWanted }),
        write: (chunk) => stream.write(chunk) || stream.destroyed,
        onDrain: (resume) => void stream.once('drain', resume),
        end: (trailers) => {
          // Asked for once the body has ended, when the trailers are in.
          if (trailersWanted) stream.once('wantTrailers', () => stream.sendTrailers(h2TrailersFromH1(trailers)));
          stream.end();
        },
        failed: () => failDown(stream, failure),
      },
    );
    // The client went away (or reset) before the answer was through: the app connection goes too. (A reset
    // stream's writableFinished is true, so it cannot tell; the exchange knows whether it is over.)
    stream.once('close', drop);
  }
}
