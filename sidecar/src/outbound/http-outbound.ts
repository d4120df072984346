/**
 * The app side of an `/http` outbound listener: the app speaks h2c with
 * prior knowledge or HTTP/1.1, told apart by the HTTP/2 preface. Every h2c
 * stream becomes a stream on the pooled HTTP/2 mTLS session to an endpoint
 * (h2-session-pool.ts); client-sent XFCC is dropped here too (the server's
 * sidecar writes its own in any case). An HTTP/1.1 connection is passed on
 * as bytes over its own mTLS connection (the listener's byte path), to the
 * server's `/http` port, which authorizes each request: measured with wrk,
 * translating HTTP/1.1 into streams of the pooled session cost 1.7 times
 * the CPU per request and halved requests/s against passing the bytes
 * (node:http2 costs more per request than Node's HTTP/1.1 parser), and the
 * bytes path keeps WebSocket upgrades working.
 *
 * Fails closed: no session (no SVID, no endpoint, a server that is not who
 * the destination may be) answers 502 (gRPC: status 14) and counts the
 * refusal with the pool's reason.
 */
import { createServer as createH2Server, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '@trellis/shared';
import type { SidecarMetrics } from '../metrics/sidecar-metrics';
import { H2_SETTINGS, serveH2Connection, tuneSession } from '../http/app-h2c';
import { GRPC_UNAVAILABLE, h2Host, h2RequestHeaders, isGrpc, rawValue, takesTrailers } from '../http/h2-headers';
import { classifyHttpPreface, PREFACE_WAIT_MS } from '../http/h2-preface';
import { readFirstBytes } from '../proxy/first-bytes';
import { answer, endedWithHeaders, relayH2ToH2, type UpstreamFailure } from '../http/h2-relay';
import type { H2SessionPool, PooledSession } from './h2-session-pool';

/** Collaborators of an HttpOutbound. */
export interface HttpOutboundDeps {
  metrics: SidecarMetrics;
  logger: Logger;
  pool: H2SessionPool;
  /** The listener's bound port, for logs. */
  listenerPort(): number;
  /** Takes an HTTP/1.1 app connection (its first bytes put back) and forwards its bytes over mTLS. */
  passThrough(app: Socket): void;
}

/** HTTP serving for one /http outbound listener: `serve()` each app connection. */
export class HttpOutbound {
  private readonly h2: Http2Server;
  private readonly sessions = new Set<Http2Session>();

  constructor(private readonly deps: HttpOutboundDeps) {
    this.h2 = createH2Server({ settings: H2_SETTINGS, maxSessionMemory: 64 });
    this.h2.on('session', (s: Http2Session) => {
      this.sessions.add(s);
      s.once('close', () => this.sessions.delete(s));
      s.on('error', () => s.destroy());
      tuneSession(s);
    });
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]) => this.onH2(stream, headers, raw, endedWithHeaders(flags)));
  }

  /** Serves the app connection `app` (paused). */
  serve(app: Socket): void {
    // An app that stops part-way through what could be the preface is passed through as bytes.
    readFirstBytes(
      app,
      classifyHttpPreface,
      (kind) => {
        if (kind === 'h2') {
          serveH2Connection(this.h2, app);
          return;
        }
        this.deps.passThrough(app);
      },
      { timeoutMs: PREFACE_WAIT_MS, fallback: 'http/1.1' },
    );
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
}
