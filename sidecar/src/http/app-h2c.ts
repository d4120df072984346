/**
 * The application side of HTTP/2 on an HTTP inbound port: one h2c (prior
 * knowledge) connection to the app, multiplexing every HTTP/2 request, as
 * Envoy does with an HTTP/2 upstream cluster.
 *
 * The inbound spec may declare what the app speaks (`/h2c` or `/grpc`: h2c,
 * `/http1`: HTTP/1.1; inbound-protocol.ts), as Istio reads it from a
 * Service port's name or `appProtocol` and Envoy from its upstream protocol
 * options: then nothing is probed, and a connection that fails is only a
 * failed connection. Under `/http` it is learned: a connection that closes
 * or fails before the app's SETTINGS frame, after it accepted the TCP
 * connection, is an HTTP/1.1-only app (its parser refused the preface), and
 * HTTP/2 requests are then translated to HTTP/1.1 for it.
 *
 * A learned answer belongs to the app process: it is kept until a
 * connection to the app fails (`failed()`: its port stopped accepting, or a
 * connection was reset, as when the app restarts), and the next request
 * probes again. Time alone never triggers a probe: the probe is an HTTP/2
 * preface, which an HTTP/1.1 app reads as a malformed request (and may log
 * as a 400), so repeating it on a timer would put one in the app's log
 * forever. An h2c app's answer lives as long as its session: a closed
 * session is reopened by the next request, which is the same preface,
 * welcome to that app.
 */
import { connect as h2Connect, constants, type ClientHttp2Session, type Http2Session, type Http2Stream, type SecureClientSessionOptions } from 'node:http2';
import type { Socket } from 'node:net';
import { formatHostPort } from '@trellis/shared';

/** How an HTTP port reaches its app: `probe` learns h2c or HTTP/1.1 (`/http`); `h2c` and `http1` are declared. */
export type AppHttpVersion = 'probe' | 'h2c' | 'http1';

/** What the app speaks, with the session to use when it is HTTP/2. */
export type AppProtocol = { readonly kind: 'h2'; readonly session: ClientHttp2Session } | { readonly kind: 'h1' } | { readonly kind: 'unreachable'; readonly detail: string };

/** Session settings for our hops: a larger window than the 64 KiB default, so one stream is not held to one window per round trip. */
export const H2_SETTINGS: SecureClientSessionOptions['settings'] = Object.freeze({ initialWindowSize: 1 << 20, enablePush: false });

/** How much a session window may grow to (all streams of one connection). */
export const H2_SESSION_WINDOW = 8 << 20;

/**
 * An HTTP/2 connection with no frames for this long gets GOAWAY (its open
 * streams may finish; a client opens a new connection for new ones), so
 * idle connections do not pile up. Envoy's default is an hour; ours is
 * shorter because a sidecar's memory is paid in every pod.
 */
export const H2_IDLE_MS = 5 * 60_000;

/** How long a session whose peer sent FIN may take to finish its open streams before it is destroyed. */
export const H2_PEER_GONE_GRACE_MS = 10_000;

/**
 * Hands `conn` to the HTTP/2 `server` (its 'session' event fires at once)
 * and ends the session when the peer half-closes the connection: our
 * sockets are half-open, and node:http2 does not watch for the peer's FIN,
 * so a client that sent FIN (HTTP/2 has no half-close of its own) would
 * keep its session, and its descriptor, until the idle timeout. The session
 * gets GOAWAY and closes once its open streams are answered, or after
 * H2_PEER_GONE_GRACE_MS; a stream whose request had not ended (its body
 * still coming) is reset at once, since no more of it can arrive. Returns
 * the session.
 */
export function serveH2Connection(server: { emit(event: 'connection', conn: Socket): boolean; once(event: 'session', l: (s: Http2Session) => void): unknown; off(event: 'session', l: (s: Http2Session) => void): unknown }, conn: Socket): Http2Session | undefined {
  let session: Http2Session | undefined;
  const grab = (s: Http2Session): void => {
    session = s;
  };
  server.once('session', grab);
  try {
    server.emit('connection', conn);
  } finally {
    server.off('session', grab);
  }
  const s = session;
  if (s) {
    // Streams still open towards us: after the peer's FIN nothing more can arrive on them.
    const open = new Set<Http2Stream>();
    s.on('stream', (st: Http2Stream) => {
      open.add(st);
      st.once('close', () => open.delete(st));
    });
    conn.once('end', () => {
      if (s.destroyed) return;
      // Closed already: a client that sends GOAWAY before its FIN (node's session.destroy() does) has node close the session.
      if (!s.closed) s.close();
      // A request whose body had not ended can never end now: it is reset at once, so its app
      // connection is let go instead of waiting out the grace with a body that stops short.
      for (const st of open) if (!st.destroyed && !st.closed && !st.state.remoteClose) st.close(constants.NGHTTP2_CANCEL);
      setTimeout(() => s.destroy(), H2_PEER_GONE_GRACE_MS).unref();
    });
  }
  return s;
}

/** Gives `session` the idle rule (see H2_IDLE_MS) and the larger session window once it is up. */
export function tuneSession(session: Http2Session): void {
  session.setTimeout(H2_IDLE_MS, () => session.close());
  if (session.connecting === false && !session.destroyed) session.setLocalWindowSize(H2_SESSION_WINDOW);
  else session.once('connect', () => session.setLocalWindowSize(H2_SESSION_WINDOW));
}

const H1: AppProtocol = Object.freeze({ kind: 'h1' });

/** One h2c session to the app, reopened when it closes; or the answer that the app speaks HTTP/1.1. */
export class AppH2c {
  private current: { session: ClientHttp2Session; ready: Promise<AppProtocol> } | undefined;
  /** The app speaks HTTP/1.1 only: declared (`http1`), or its process answered the probe so. */
  private h1: boolean;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly version: AppHttpVersion = 'probe',
  ) {
    this.h1 = version === 'http1';
  }

  /** The app's protocol (and session), probing it when unknown; an app declared HTTP/1.1 is never sent a preface. */
  get(): Promise<AppProtocol> | AppProtocol {
    if (this.h1) return H1;
    const c = this.current;
    if (c && !c.session.closed && !c.session.destroyed) return c.ready;
    this.current = this.open();
    return this.current.ready;
  }

  /**
   * A connection to the app failed (refused, reset, closed mid-exchange):
   * the app may have restarted, maybe speaking another protocol, so the
   * next request probes it again.
   */
  failed(): void {
    // A declared protocol is not a guess: it stays.
    if (this.version === 'probe') this.h1 = false;
  }

  /** Closes the session (streams in flight finish). */
  close(): void {
    this.current?.session.close();
    this.current = undefined;
  }

  private open(): { session: ClientHttp2Session; ready: Promise<AppProtocol> } {
    const session = h2Connect(`http://${formatHostPort(this.host, this.port)}`, { settings: H2_SETTINGS, maxSessionMemory: 64 });
    let connected = false;
    const ready = new Promise<AppProtocol>((resolve) => {
      session.once('connect', () => {
        connected = true;
      });
      tuneSession(session);
      session.once('remoteSettings', () => resolve({ kind: 'h2', session }));
      const notH2 = (err?: Error & { code?: string }): void => {
        // Only a probe concludes HTTP/1.1; an app declared h2c that closes before SETTINGS failed this connection.
        if (connected && this.version === 'probe') {
          this.h1 = true;
          resolve(H1);
        } else {
          resolve({ kind: 'unreachable', detail: err?.code ?? err?.message ?? (connected ? 'closed before its SETTINGS frame' : 'closed') });
        }
      };
      session.once('error', notH2);
      session.once('close', () => notH2());
    });
    session.on('error', () => undefined);
    // The app's idle connection does not keep the process alive.
    session.unref();
    return { session, ready };
  }
}
