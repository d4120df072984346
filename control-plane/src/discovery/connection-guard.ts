/**
 * Admits discovery connections before grpc-js sees them. grpc-js has no
 * connection limit and no deadline for a connection to authenticate (Node's
 * TLS handshake timeout is 120 s, and an HTTP/2 session that opens no stream,
 * or only refused ones, is held for as long as keepalive PINGs are answered).
 * So the control plane owns the TCP listener and hands each admitted socket
 * to grpc-js through its connection injector (`Server.createConnectionInjector`,
 * public API since grpc-js 1.10), and:
 *
 * - refuses a connection at once (closes it) when `maxConnections` are open;
 * - closes a connection none of whose streams has authenticated within
 *   `authTimeoutMs` of the TCP accept: a client that never finishes TLS, an
 *   HTTP/2 client that never sends a request, one whose streams carry no or
 *   bad credentials. Once one stream on it authenticates, it is a sidecar's
 *   connection and stays.
 *
 * Streams find their connection by the peer address grpc-js reports
 * (`remoteAddress:remotePort`, unique per open TCP connection). Fails closed:
 * a stream whose connection is not found marks nothing authenticated.
 */
import type { Socket } from 'node:net';

/**
 * The defaults: 10,000 connections (about 90 KB each, so they fit the shipped
 * 1Gi memory limit) and 10 s to authenticate one stream.
 */
export const DEFAULT_CONNECTION_LIMITS = Object.freeze({ maxConnections: 10_000, authTimeoutMs: 10_000 });

/** Limits of the guard. */
export interface ConnectionGuardOptions {
  maxConnections: number;
  authTimeoutMs: number;
}

/** What the guard reports. */
export interface ConnectionGuardDeps {
  /** A connection was closed by the guard: over the limit, or not authenticated in time. */
  onRefused(reason: 'limit' | 'auth_timeout'): void;
  /** The open connections changed. */
  onCount?(authenticated: number, unauthenticated: number): void;
}

interface Tracked {
  socket: Socket;
  /** Runs until a stream authenticates; null afterwards. */
  timer: NodeJS.Timeout | null;
  authenticated: boolean;
}

/** Counts, times out and caps the control plane's connections. */
export class ConnectionGuard {
  private readonly open = new Map<string, Tracked>();
  private authenticatedCount = 0;

  constructor(
    private readonly opts: ConnectionGuardOptions,
    private readonly deps: ConnectionGuardDeps,
    /** Hands an admitted socket to grpc-js. */
    private readonly inject: (socket: Socket) => void,
  ) {}

  /** Admits or refuses a freshly accepted socket. */
  admit(socket: Socket): void {
    const key = keyOf(socket.remoteAddress, socket.remotePort);
    if (this.open.size >= this.opts.maxConnections || key === null) {
      socket.destroy();
      this.deps.onRefused('limit');
      return;
    }
    socket.on('error', () => undefined);
    const t: Tracked = { socket, timer: null, authenticated: false };
    t.timer = setTimeout(() => {
      t.timer = null;
      socket.destroy();
      this.deps.onRefused('auth_timeout');
    }, this.opts.authTimeoutMs);
    t.timer.unref();
    this.open.set(key, t);
    socket.once('close', () => {
      if (this.open.get(key) !== t) return;
      this.open.delete(key);
      if (t.timer) clearTimeout(t.timer);
      if (t.authenticated) this.authenticatedCount--;
      this.report();
    });
    this.report();
    this.inject(socket);
  }

  /** A stream on the connection `peer` (grpc-js `call.getPeer()`) authenticated: stop its clock. True the first time for that connection. */
  authenticated(peer: string): boolean {
    const t = this.open.get(peer);
    if (!t || t.authenticated) return false;
    if (t.timer) clearTimeout(t.timer);
    t.timer = null;
    t.authenticated = true;
    this.authenticatedCount++;
    this.report();
    return true;
  }

  /** Open connections. */
  get size(): number {
    return this.open.size;
  }

  /** Resolves once every connection has closed, or after `timeoutMs`, whichever comes first. */
  whenClosed(timeoutMs: number): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      let left = this.open.size;
      const timer = setTimeout(resolve, timeoutMs);
      for (const t of this.open.values()) {
        t.socket.once('close', () => {
          if (--left === 0) {
            clearTimeout(timer);
            resolve();
          }
        });
      }
    });
  }

  /** Closes every connection (shutdown). */
  closeAll(): void {
    for (const t of this.open.values()) t.socket.destroy();
  }

  private report(): void {
    this.deps.onCount?.(this.authenticatedCount, this.open.size - this.authenticatedCount);
  }
}

/** The key grpc-js's `getPeer()` yields for this socket. */
function keyOf(address: string | undefined, port: number | undefined): string | null {
  if (!address || !port) return null;
  return `${address}:${port}`;
}
