/**
 * The HTTP side of an `/http` inbound port. Every request on a connection
 * that passed authentication is read as one view (request-target.ts: the
 * path normalized as the mesh says, the target in origin-form, the host
 * checked), authorized on that view and forwarded as that view, with the
 * XFCC we vouch for: policy and application judge the same request.
 *
 * Two readers share that gate and the app's connection pool. A connection
 * to an app that speaks HTTP/1.1 is read with llhttp by h1-connection.ts,
 * which writes the answers itself (node:http's per-request objects were the
 * largest cost left on this path); node:http's server reads connections to
 * an h2c app, and takes over a connection at the first request that reader
 * does not serve (an Upgrade, `Expect`, HTTP/1.0, pipelining, ...).
 *
 * Upgrade (RFC 9110 §7.8). Node hands a request carrying `Connection:
 * upgrade` over as a bare socket. It goes through the same checks, is
 * offered to the app, and only a `101 Switching Protocols` from the app
 * turns the connection into a byte stream, as in Envoy. Any other answer is
 * written as an ordinary response and the connection goes back to HTTP
 * parsing, so every later request on it is authorized and gets its XFCC
 * rewritten. Only `websocket` is offered: Istio configures Envoy for
 * websocket upgrades alone, and any other protocol is refused with 403
 * (reason `upgrade_refused`); an `h2c` offer is dropped and the request
 * served as HTTP/1.1, as Envoy does (an h2c switch would carry HTTP/2
 * requests no policy sees). An Upgrade request with a body is refused with
 * 400: Node passes such a body on as the connection's next bytes, where it
 * would be read as a request.
 *
 * Fails closed: an unknown connection, a request that cannot be read as one
 * view, or a DENY never reaches the app; each refusal is counted with its
 * reason (`bad_request`, `bad_path`, `bad_host`, `authz_denied`,
 * `upgrade_refused`) and every 400 closes the connection.
 *
 * Draining (as Envoy drains HTTP/1.1): nothing new is accepted (the
 * listener closed), every request in flight finishes, every response not
 * yet started says `connection: close`, and a request that arrives on an
 * open keep-alive connection during the drain is served and answered with
 * `connection: close`, so its client reconnects elsewhere instead of losing
 * a request to a connection closed under it. A connection that stays quiet
 * (no request, no byte) for DRAIN_QUIET_CLOSE_MS is closed then, so idle
 * clients do not hold the drain to its end. (HTTP/2 connections of the
 * same port drain with GOAWAY, in h2-inbound.ts.)
 */
import { createServer as createHttpServer, ServerResponse, STATUS_CODES, type IncomingMessage, type Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ambiguousRequestHeaders, exchangeHttp1, forwardHttpRequest, type Forward, type HttpForwarder } from './http-forwarder';
import { badRequest, gateRequest, type Gate, type GateDeps, type GateRefusal, type HttpPeer } from './request-gate';
import type { AppConnectionPool } from './app-connection-pool';
import { H1Connection, H1Sweeper, type H1ConnectionDeps } from './h1-connection';
import { splice, type ProxySocket } from '../proxy/splice';
import type { AppH2c, AppProtocol } from '../http/app-h2c';
import { h2RequestHeaders } from '../http/h2-headers';
import { h1WithoutBody, relayH1ToH2 } from '../http/h2-relay';

const H1: AppProtocol = Object.freeze({ kind: 'h1' });

/** Collaborators of an HttpInbound. */
export type HttpInboundDeps = GateDeps;
export type { HttpPeer };

/**
 * How long a keep-alive connection must have been quiet during a drain
 * before it is closed. Closing one at the instant a drain starts loses the
 * request its client was sending at that instant; a connection quiet this
 * long is most likely one its client is not using.
 */
export const DRAIN_QUIET_CLOSE_MS = 1000;

/** One served connection: its responses in flight, and the drain's timer for closing it when quiet. */
interface ConnState {
  readonly inFlight: Set<ServerResponse>;
  quietTimer: NodeJS.Timeout | undefined;
  /** Present while the connection is read by h1-connection.ts rather than node:http's server. */
  lean?: H1Connection;
  /** False while the connection waits for the app's protocol (not read yet). */
  started: boolean;
}

/** HTTP serving for one /http inbound port: `serve()` each authenticated connection. */
export class HttpInbound {
  private readonly server: HttpServer;
  private readonly forwarder: HttpForwarder;
  private readonly sweeper = new H1Sweeper();
  private readonly peers = new WeakMap<object, HttpPeer>();
  /** Open connections and their requests in flight, for the drain. */
  private readonly conns = new Map<Duplex, ConnState>();
  private draining = false;
  /** Sockets that already carry our error guard (an upgrade may be answered many times on one connection). */
  private readonly guarded = new WeakSet<Duplex>();

  /** `pool`: the port's HTTP/1.1 connections to its app, shared by both readers here and by h2-inbound.ts. */
  constructor(
    private readonly deps: HttpInboundDeps,
    private readonly app: AppH2c,
    private readonly pool: AppConnectionPool,
  ) {
    this.forwarder = forwardHttpRequest({ appHost: deps.appHost, appPort: deps.appPort, pool: this.pool });
    this.server = createHttpServer({ keepAliveTimeout: 60_000, noDelay: true }, (req, res) => this.onRequest(req, res));
    this.server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => this.onClientError(err, socket));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    // A client that half-closes after its request still gets the response.
    (this.server as HttpServer & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  }

  /** Serves HTTP on `conn` (paused; resumed here), whose peer authentication established `peer` (undefined: plaintext). */
  serve(conn: Socket | TLSSocket, peer: HttpPeer | undefined): void {
    this.peers.set(conn, peer ?? {});
    const st: ConnState = { inFlight: new Set(), quietTimer: undefined, started: false };
    this.conns.set(conn, st);
    conn.once('close', () => {
      if (st.quietTimer) clearTimeout(st.quietTimer);
      this.conns.delete(conn);
    });
    if (this.draining) this.closeWhenQuiet(conn, st);
    // An app that speaks HTTP/1.1: requests are read with llhttp here, and only what that reader does
    // not serve goes to node:http's server (h1-connection.ts). While the app's protocol is being
    // probed the connection waits for the answer (it is not read meanwhile).
    const app = this.app.get();
    if (!(app instanceof Promise)) return this.start(conn, peer, st, app);
    void app.then((p) => {
      if (!conn.destroyed) this.start(conn, peer, st, p);
    });
  }

  private start(conn: Socket | TLSSocket, peer: HttpPeer | undefined, st: ConnState, app: AppProtocol): void {
    st.started = true;
    if (app.kind === 'h1') st.lean = new H1Connection(conn, this.leanDeps(conn, peer ?? {}, st), this.sweeper);
    else this.server.emit('connection', conn);
    conn.resume();
  }

  /** True when the app is known, now, to speak HTTP/1.1 (an h2c app, or one being probed, is served by node:http's server). */
  private appIsH1(): boolean {
    const p = this.app.get();
    return !(p instanceof Promise) && p.kind === 'h1';
  }

  /** What h1-connection.ts needs for `conn`: the same gate, exchange and counting as node:http's side. */
  private leanDeps(conn: Socket | TLSSocket, peer: HttpPeer, st: ConnState): H1ConnectionDeps {
    const defaultHost = `${this.deps.appHost}:${this.deps.appPort}`;
    return {
      servable: () => this.appIsH1(),
      gate: (r) => gateRequest(this.deps, { method: r.method, url: r.url, host: r.host, peer, sourceIp: conn.remoteAddress, ambiguous: ambiguousRequestHeaders(r.rawHeaders) }),
      forward: (r, g, body, sink) => exchangeHttp1(this.pool, defaultHost, r.method, r.rawHeaders, { target: g.view.target, xfcc: g.xfcc, host: g.view.addHost }, body, sink),
      upstreamFailed: () => {
        this.deps.metrics.refuse('inbound', 'app_unreachable');
        this.app.failed();
      },
      clientError: (status, code) => this.countClientError(status, code),
      handOver: (bytes) => {
        st.lean = undefined;
        conn.unshift(bytes);
        this.server.emit('connection', conn);
        conn.resume();
      },
      idleWhileDraining: () => this.closeWhenQuiet(conn, st),
      draining: () => this.draining,
    };
  }

  /**
   * HTTP clients learn to go elsewhere: every response not yet started, and
   * every one to a request that arrives from now on, says `connection:
   * close` and its connection is closed after it; a connection with nothing
   * in flight is closed once it has been quiet for DRAIN_QUIET_CLOSE_MS.
   * (The http.Server cannot do it: it never accepted these connections itself.)
   */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    for (const [conn, st] of this.conns) {
      if (st.lean) {
        st.lean.drain();
        continue;
      }
      for (const res of st.inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
      if (st.inFlight.size === 0) this.closeWhenQuiet(conn, st);
    }
  }

  /** Closes `conn` after DRAIN_QUIET_CLOSE_MS with no request and no byte from its client; a request in between cancels it. */
  private closeWhenQuiet(conn: Duplex, st: ConnState): void {
    if (st.quietTimer) clearTimeout(st.quietTimer);
    const seen = bytesReadOf(conn);
    st.quietTimer = setTimeout(() => {
      st.quietTimer = undefined;
      if (st.inFlight.size > 0 || st.lean?.busy || conn.destroyed) return;
      // Not read yet (the app's protocol is being learned): a request may be waiting in it.
      if (!st.started) return this.closeWhenQuiet(conn, st);
      // Bytes arrived that are not a request yet (one on its way): wait for it, it will be answered.
      if (bytesReadOf(conn) !== seen) return this.closeWhenQuiet(conn, st);
      conn.end();
    }, DRAIN_QUIET_CLOSE_MS);
    st.quietTimer.unref();
  }

  /** The shared checks (request-gate.ts) on an HTTP/1.1 request. */
  private gate(req: IncomingMessage): Gate {
    const peer = this.peers.get(req.socket) ?? this.peers.get((req.socket as unknown as { _parent?: object })._parent ?? {});
    return gateRequest(this.deps, { method: req.method ?? 'GET', url: req.url ?? '/', host: req.headers.host, peer, sourceIp: req.socket.remoteAddress, ambiguous: ambiguousRequestHeaders(req.rawHeaders) });
  }

  /** Writes a refusal: byte-correct (content-length), `connection: close` when it closes. */
  private refuse(res: ServerResponse, g: GateRefusal): void {
    if (g.close || this.draining) res.shouldKeepAlive = false;
    res.writeHead(g.status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(g.body), ...(g.close ? { connection: 'close' } : {}) });
    res.end(g.body);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const g = this.gate(req);
    if (!g.ok) {
      this.refuse(res, g);
      req.resume();
      return;
    }
    this.forward(req, res, { target: g.view.target, xfcc: g.xfcc, host: g.view.addHost });
  }

  private forward(req: IncomingMessage, res: ServerResponse, fwd: Forward): void {
    const st = this.conns.get(req.socket);
    if (st) {
      st.inFlight.add(res);
      if (st.quietTimer) clearTimeout(st.quietTimer);
      st.quietTimer = undefined;
      res.once('close', () => {
        st.inFlight.delete(res);
        // A response sent with `connection: close` closes its connection itself. One whose headers went
        // out before the drain promised keep-alive: its client may reuse the connection at once, so it
        // is closed only once quiet, and the request it may still carry is answered with `connection: close`.
        if (this.draining && st.inFlight.size === 0) this.closeWhenQuiet(req.socket, st);
      });
    }
    if (this.draining) res.shouldKeepAlive = false;
    // A failed connection may be an app that restarted: its protocol is learned again (app-h2c.ts).
    const unreachable = (): void => {
      this.deps.metrics.refuse('inbound', 'app_unreachable');
      this.app.failed();
    };
    // An app that speaks h2c (app-h2c.ts) gets HTTP/1.1 requests as HTTP/2 streams, since an h2c-only
    // app (a gRPC server) would refuse HTTP/1.1; an Upgrade stays HTTP/1.1 (it has no HTTP/2 form here).
    const go = (p: AppProtocol): void => {
      if (p.kind !== 'h2' || fwd.upgrade) return this.forwarder(req, res, fwd, unreachable);
      let up;
      try {
        const authority = req.headers.host ?? fwd.host ?? `${this.deps.appHost}:${this.deps.appPort}`;
        up = p.session.request(h2RequestHeaders(req.rawHeaders, req.method ?? 'GET', fwd.target, authority, fwd.xfcc), { endStream: h1WithoutBody(req) });
      } catch {
        return this.forwarder(req, res, fwd, unreachable);
      }
      relayH1ToH2(req, res, up, unreachable);
    };
    if (fwd.upgrade) return go(H1);
    const p = this.app.get();
    if (p instanceof Promise) void p.then(go);
    else go(p);
  }

  /**
   * A request Node's parser refused (a raw space or control byte in the
   * target, a malformed header, ...): a byte-correct 400 (431 for headers
   * too large) with `connection: close`, unless a response is already on
   * its way, when the connection can only be dropped.
   */
  private onClientError(err: Error & { code?: string }, socket: Duplex): void {
    const busy = (socket as Duplex & { _httpMessage?: unknown })._httpMessage;
    if (err.code === 'ECONNRESET' || busy || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    this.countClientError(status, err.code ?? err.message);
    const body = `${STATUS_CODES[status]!.toLowerCase()}: ${err.code ?? 'malformed HTTP'}\n`;
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    socket.once('finish', () => socket.destroy());
  }

  /** Counts and logs a request that could not be read (status 400 or 431) or timed out (408). */
  private countClientError(status: number, detail: string): void {
    const reason = status === 408 ? 'request_timeout' : 'bad_request';
    this.deps.metrics.refuse('inbound', reason);
    this.deps.logger.info('inbound request refused', { port: this.deps.listenerPort(), reason, detail });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (!this.guarded.has(socket)) {
      this.guarded.add(socket);
      socket.on('error', () => socket.destroy());
    }
    // A response to a request pipelined before this one still holds the socket (Node lets go of it in
    // its own 'finish' listener, and hands it to the next queued response): ours goes after them all.
    const previous = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (previous) {
      previous.once('finish', () => setImmediate(() => this.onUpgrade(req, socket, head)));
      return;
    }
    if (socket.destroyed || !socket.writable) return;
    // Node's server wrote nothing for this request and no longer reads the socket: answer it with a
    // ServerResponse of our own (its framing is Node's), then hand the socket back or switch it.
    const res = new ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = keepsAlive(req) && !this.draining;
    let switched = false;
    res.once('finish', () => {
      if (switched) return;
      res.detachSocket(socket as Socket);
      // As Node's server does after a response: 'close' tells the drain and the forwarder this exchange is over.
      process.nextTick(() => res.emit('close'));
      if (!res.shouldKeepAlive || (res as ServerResponse & { _last?: boolean })._last || !socket.writable) {
        const s = socket as Duplex & { destroySoon?: () => void };
        if (s.destroySoon) s.destroySoon();
        else socket.end();
        return;
      }
      // Back to HTTP: the bytes that came after this request are the next request, and meet the same checks.
      if (head.length > 0) socket.unshift(head);
      this.server.emit('connection', socket);
    });
    if (hasBody(req)) {
      this.refuse(res, badRequest(this.deps, { method: req.method ?? 'GET', url: req.url ?? '/' }, 'bad_request', 'an Upgrade request with a body'));
      return;
    }
    const offer = upgradeOffer(req.headers.upgrade);
    if (offer.kind === 'refused') {
      this.deps.metrics.refuse('inbound', 'upgrade_refused');
      this.deps.logger.info('inbound upgrade refused', { port: this.deps.listenerPort(), upgrade: req.headers.upgrade });
      this.refuse(res, { ok: false, status: 403, body: `upgrade refused: only websocket is carried\n`, close: false, denied: false });
      return;
    }
    const g = this.gate(req);
    if (!g.ok) {
      this.refuse(res, g);
      return;
    }
    const fwd: Forward = { target: g.view.target, xfcc: g.xfcc, host: g.view.addHost };
    if (offer.kind === 'none') {
      this.forward(req, res, fwd);
      return;
    }
    this.forward(req, res, {
      ...fwd,
      upgrade: {
        protocol: offer.protocol,
        onSwitch: (upRes, app, appHead) => {
          switched = true;
          res.detachSocket(socket as Socket);
          (socket as Socket).setTimeout?.(0);
          const lines = [`HTTP/1.1 101 ${upRes.statusMessage || 'Switching Protocols'}`];
          for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`);
          socket.write(lines.join('\r\n') + '\r\n\r\n');
          if (appHead.length > 0) socket.write(appHead);
          if (head.length > 0) app.write(head);
          app.on('error', () => socket.destroy());
          splice(socket as ProxySocket, app);
        },
      },
    });
  }
}

/** Bytes read so far on `conn` (a socket, plain or TLS). */
function bytesReadOf(conn: Duplex): number {
  return (conn as Partial<Socket>).bytesRead ?? 0;
}

/** Whether the client wants the connection kept after this response (RFC 9112 §9.3). */
function keepsAlive(req: IncomingMessage): boolean {
  const tokens = String(req.headers.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());
  if (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) return !tokens.includes('close');
  return tokens.includes('keep-alive');
}

/** True when the request announces a body (Node counts `Content-Length: 0` as none, and so do we). */
function hasBody(req: IncomingMessage): boolean {
  const te = req.headers['transfer-encoding'];
  const cl = req.headers['content-length'];
  return te !== undefined || (cl !== undefined && cl.trim() !== '0');
}

/** What to do with an `Upgrade` header. */
type UpgradeOffer = { readonly kind: 'none' } | { readonly kind: 'refused' } | { readonly kind: 'websocket'; readonly protocol: string };

/**
 * `none` when only `h2c` was offered (dropped, as Envoy), `websocket` (with
 * the client's tokens) when every protocol offered is WebSocket, else
 * `refused`. Pure.
 */
function upgradeOffer(value: string | undefined): UpgradeOffer {
  const tokens = String(value ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && t.toLowerCase() !== 'h2c');
  if (tokens.length === 0) return { kind: 'none' };
  if (tokens.every((t) => t.split('/')[0]!.toLowerCase() === 'websocket')) return { kind: 'websocket', protocol: tokens.join(', ') };
  return { kind: 'refused' };
}
