/**
 * The app side of an `/http` outbound listener: the app speaks HTTP/1.1 or
 * h2c with prior knowledge (told apart by the HTTP/2 preface), and every
 * request, whichever it spoke, becomes a stream on the pooled HTTP/2 mTLS
 * session to an endpoint (h2-session-pool.ts). HTTP/1.1 requests are
 * translated (`Host` → `:authority`, hop-by-hop headers dropped) and their
 * answers translated back. Client-sent XFCC is dropped here too (the
 * server's sidecar writes its own in any case).
 *
 * Fails closed: no session (no SVID, no endpoint, a server that is not who
 * the destination may be) answers 502 (gRPC: status 14) and counts the
 * refusal with the pool's reason.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '@trellis/shared';
import type { SidecarMetrics } from '../metrics/sidecar-metrics';
import { H2_SESSION_WINDOW, H2_SETTINGS } from '../http/app-h2c';
import { GRPC_UNAVAILABLE, h2Host, h2RequestHeaders, isGrpc, rawValue, takesTrailers } from '../http/h2-headers';
import { classifyHttpPreface } from '../http/h2-preface';
import { readFirstBytes } from '../proxy/first-bytes';
import { answer, endedWithHeaders, h1WithoutBody, relayH1ToH2, relayH2ToH2, type UpstreamFailure } from '../http/h2-relay';
import type { H2SessionPool, PooledSession } from './h2-session-pool';

/** Collaborators of an HttpOutbound. */
export interface HttpOutboundDeps {
  metrics: SidecarMetrics;
  logger: Logger;
  pool: H2SessionPool;
  /** The listener's bound port, for logs. */
  listenerPort(): number;
}

/** HTTP serving for one /http outbound listener: `serve()` each app connection. */
export class HttpOutbound {
  private readonly h1: HttpServer;
  private readonly h2: Http2Server;
  private readonly sessions = new Set<Http2Session>();

  constructor(private readonly deps: HttpOutboundDeps) {
    this.h1 = createHttpServer({ keepAliveTimeout: 60_000, noDelay: true }, (req, res) => this.onH1(req, res));
    this.h1.on('clientError', (_err, socket: Socket) => socket.destroy());
    this.h2 = createH2Server({ settings: H2_SETTINGS, maxSessionMemory: 64 });
    this.h2.on('session', (s: Http2Session) => {
      this.sessions.add(s);
      s.once('close', () => this.sessions.delete(s));
      s.on('error', () => s.destroy());
      s.once('connect', () => s.setLocalWindowSize(H2_SESSION_WINDOW));
    });
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]) => this.onH2(stream, headers, raw, endedWithHeaders(flags)));
  }

  /** Serves the app connection `app` (paused). */
  serve(app: Socket): void {
    readFirstBytes(app, classifyHttpPreface, (kind) => {
      if (kind === 'h2') {
        this.h2.emit('connection', app);
        return;
      }
      this.h1.emit('connection', app);
      app.resume();
    });
  }

  /** GOAWAY to the app's HTTP/2 connections; the pool is closed by its owner. */
  drain(): void {
    for (const s of this.sessions) s.close();
  }

  private refused(r: Extract<PooledSession, { ok: false }>): void {
    this.deps.metrics.refuse('outbound', r.reason, undefined, r.detail);
    this.deps.logger.info('outbound request refused', { port: this.deps.listenerPort(), reason: r.reason, detail: r.detail });
  }

  private onH2(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, raw: string[], bodyless: boolean): void {
    stream.on('error', () => undefined);
    const grpc = isGrpc(headers['content-type']);
    const failure: UpstreamFailure = {
      headers: grpc ? GRPC_UNAVAILABLE : { ':status': 502 },
      body: grpc ? '' : 'upstream connect error\n',
      onError: () => this.deps.metrics.refuse('outbound', 'upstream_reset'),
    };
    void this.deps.pool.get().then((p) => {
      if (stream.destroyed || stream.closed) return;
      if (!p.ok) {
        this.refused(p);
        answer(stream, failure.headers, failure.body);
        stream.resume();
        return;
      }
      let up;
      try {
        up = p.session.request(h2RequestHeaders(raw, rawValue(raw, ':method') ?? 'GET', rawValue(raw, ':path') ?? '/', h2Host(raw), undefined, 'https'), { endStream: bodyless });
      } catch {
        failure.onError();
        answer(stream, failure.headers, failure.body);
        return;
      }
      relayH2ToH2(stream, up, failure, takesTrailers(raw));
    });
  }

  private onH1(req: IncomingMessage, res: ServerResponse): void {
    const { path, authority } = originForm(req.url ?? '/', req.headers.host);
    void this.deps.pool.get().then((p) => {
      if (res.destroyed) return;
      if (!p.ok) {
        this.refused(p);
        const body = 'upstream connect error\n';
        res.writeHead(502, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        req.resume();
        return;
      }
      let up;
      try {
        up = p.session.request(h2RequestHeaders(req.rawHeaders, req.method ?? 'GET', path, authority, undefined, 'https'), { endStream: h1WithoutBody(req) });
      } catch {
        res.destroy();
        return;
      }
      relayH1ToH2(req, res, up, () => this.deps.metrics.refuse('outbound', 'upstream_reset'));
    });
  }
}

/** An HTTP/1.1 request-target as `:path` and `:authority` (absolute-form names its authority). Pure. */
function originForm(url: string, host: string | undefined): { path: string; authority: string | undefined } {
  if (url.startsWith('/') || url === '*') return { path: url, authority: host };
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)(.*)$/s.exec(url);
  if (!m) return { path: url, authority: host };
  const rest = m[2]!;
  return { path: rest.startsWith('/') ? rest : '/' + rest, authority: host ?? m[1] };
}
