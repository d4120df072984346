/**
 * The native data path: `@trellis/tls-relay`, an N-API addon that runs the
 * TLS handshake, record encryption and byte relaying of established
 * connections on one thread of its own (epoll and the OpenSSL the node
 * binary exports). Node's per-event cost (a callback into JS, the stream
 * machinery and TLSWrap's deferred write completion for every read and
 * write) was about half of the sidecar's CPU per proxied request; the
 * native loop pays what a C proxy pays.
 *
 * Every decision stays here in TypeScript: the addon reports the peer's
 * chain and OpenSSL's verdict on it, then holds the connection (reading
 * neither side) until `allow` or `close`. So the checks are the same
 * functions the Node path runs, and a peer is refused for the same reasons.
 *
 * The addon is optional: without it (not built, or `TRELLIS_DATA_PATH=node`)
 * the listeners keep the Node path. With `TRELLIS_REQUIRE_NATIVE_RELAY=1`
 * (CI) a missing addon is an error instead of a silent fallback.
 */
import type { Socket } from 'node:net';
import { SidecarError } from '../errors';

import type { Relay as RelayAddon, RelayContext, RelayEvent } from '@trellis/tls-relay';

export type { RelayContext, RelayEvent };
type HandshakeEvent = Extract<RelayEvent, { kind: 'handshake' }>;
/** A connection's end: its byte counts and why (null: orderly). */
export type ClosedEvent = Extract<RelayEvent, { kind: 'closed' }>;

/** A TLS context's material; `resumption: false` makes every handshake a full one. */
export type ContextOptions = Parameters<RelayAddon['context']>[0];

/** What a listener wants to hear about one native connection. */
export interface RelayHandlers {
  onHandshake(ev: HandshakeEvent): void;
  onSession?(session: Buffer): void;
  onClosed(ev: ClosedEvent): void;
}

/** What the listeners are given: the engine and the contexts for the current credentials and bundle. */
export interface NativeDataPath {
  relay: NativeRelay;
  /** Server side (inbound); undefined while there are no credentials. */
  serverContext(): RelayContext | undefined;
  /** Client side (outbound). */
  clientContext(): RelayContext | undefined;
}

/** The process's native relay engine: one thread shared by every listener. */
export class NativeRelay {
  private readonly handlers = new Map<number, RelayHandlers>();
  private readonly engine: RelayAddon;

  constructor(ctor: new (onEvent: (ev: RelayEvent) => void) => RelayAddon) {
    this.engine = new ctor((ev) => this.dispatch(ev));
  }

  /** Builds a TLS context; throws the addon's error (which names the PEM field) on bad input. */
  context(opts: ContextOptions): RelayContext {
    return this.engine.context(opts);
  }

  /**
   * Hands an accepted socket to the engine, which starts the server
   * handshake on its own copy of the descriptor; the socket object is
   * destroyed (its copy closed). Returns undefined, leaving the socket as
   * it was, when no descriptor can be had from it.
   */
  acceptTls(socket: Socket, ctx: RelayContext, h: RelayHandlers): number | undefined {
    const fd = socketFd(socket);
    if (fd === undefined) return undefined;
    let id: number;
    try {
      id = this.engine.acceptTls(fd, ctx);
    } catch {
      // Out of descriptors (EMFILE on the dup) or the engine stopped: the
      // caller takes the Node path, which copes with those the way it always has.
      return undefined;
    }
    this.handlers.set(id, h);
    socket.destroy();
    return id;
  }

  /**
   * Opens mTLS to host:port for the application's socket `app`. The engine
   * works on its own copy of the descriptor; `app` stays open so that a
   * failed attempt can be retried elsewhere, and is to be destroyed by the
   * caller once it calls `allow` (or refuses). Bytes the app sent that were
   * already read off `app` (and put back) go first: the engine copies them
   * and leaves `app`'s buffer as it was, for a retry or the Node path.
   */
  connectTls(app: Socket, host: string, port: number, ctx: RelayContext, session: Buffer | null, h: RelayHandlers): number | undefined {
    const fd = socketFd(app);
    if (fd === undefined) return undefined;
    const first = bufferedBytes(app);
    let id: number;
    try {
      id = this.engine.connectTls(fd, host, port, ctx, session, first);
    } catch {
      // As in acceptTls (and an address form the engine does not take): the Node path.
      return undefined;
    }
    this.handlers.set(id, h);
    return id;
  }

  /** Lets a held connection through (inbound: to appHost:appPort). False, and the connection closed, if the engine refused the arguments. */
  allow(id: number, appHost?: string, appPort?: number): boolean {
    try {
      this.engine.allow(id, appHost, appPort);
      return true;
    } catch {
      this.engine.close(id);
      return false;
    }
  }

  /** Closes a connection; its `closed` event still follows. */
  close(id: number): void {
    this.engine.close(id);
  }

  /** Open native connections. */
  get size(): number {
    return this.engine.size;
  }

  private dispatch(ev: RelayEvent): void {
    const h = this.handlers.get(ev.id);
    if (!h) return;
    if (ev.kind === 'handshake') h.onHandshake(ev);
    else if (ev.kind === 'session') h.onSession?.(ev.session);
    else {
      this.handlers.delete(ev.id);
      h.onClosed(ev);
    }
  }
}

/** The descriptor behind a connected net.Socket, if there is one. */
function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

let shared: NativeRelay | null | undefined;
let whyNot: string | undefined;

/**
 * The process's engine, made on first use; null when the Node path is to
 * be used (and `nativeRelayUnavailable()` says why). Throws
 * TRELLIS_SIDECAR_NATIVE_RELAY_MISSING when the environment requires the
 * addon and it did not load.
 */
export function nativeRelay(env: NodeJS.ProcessEnv = process.env): NativeRelay | null {
  if (shared !== undefined) return shared;
  if (env.TRELLIS_DATA_PATH === 'node') {
    whyNot = 'TRELLIS_DATA_PATH=node';
    shared = null;
    return shared;
  }
  let mod: { Relay: (new (onEvent: (ev: RelayEvent) => void) => RelayAddon) | null; loadError: Error | null } | undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('@trellis/tls-relay') as typeof mod;
  } catch (err) {
    whyNot = `@trellis/tls-relay not installed: ${(err as Error).message}`;
  }
  if (mod && !mod.Relay) whyNot = `@trellis/tls-relay not built: ${mod.loadError?.message ?? 'unknown reason'}`;
  if (!mod?.Relay) {
    if (env.TRELLIS_REQUIRE_NATIVE_RELAY === '1') {
      throw new SidecarError('TRELLIS_SIDECAR_NATIVE_RELAY_MISSING', `the native relay is required (TRELLIS_REQUIRE_NATIVE_RELAY=1) but ${whyNot}`, {});
    }
    shared = null;
    return shared;
  }
  try {
    shared = new NativeRelay(mod.Relay);
  } catch (err) {
    // The kernel refused the engine its epoll set or its thread.
    whyNot = `@trellis/tls-relay could not start: ${(err as Error).message}`;
    if (env.TRELLIS_REQUIRE_NATIVE_RELAY === '1') throw new SidecarError('TRELLIS_SIDECAR_NATIVE_RELAY_MISSING', `the native relay is required (TRELLIS_REQUIRE_NATIVE_RELAY=1) but ${whyNot}`, {});
    shared = null;
  }
  return shared;
}

/** Why the Node path is in use (undefined: the native one is, or it was not asked for yet). */
export function nativeRelayUnavailable(): string | undefined {
  return whyNot;
}

/** OpenSSL's X509_V_ERR_* numbers as the codes Node reports for them (the ones a peer check can meet). */
const VERIFY_CODES: Readonly<Record<number, string>> = {
  2: 'UNABLE_TO_GET_ISSUER_CERT',
  4: 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  6: 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  7: 'CERT_SIGNATURE_FAILURE',
  9: 'CERT_NOT_YET_VALID',
  10: 'CERT_HAS_EXPIRED',
  13: 'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  14: 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  18: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  19: 'SELF_SIGNED_CERT_IN_CHAIN',
  20: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  21: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  22: 'CERT_CHAIN_TOO_LONG',
  23: 'CERT_REVOKED',
  24: 'INVALID_CA',
  25: 'PATH_LENGTH_EXCEEDED',
  26: 'INVALID_PURPOSE',
  27: 'CERT_UNTRUSTED',
  28: 'CERT_REJECTED',
};

/** The code for an X509_V_ERR_* number (undefined for X509_V_OK). Pure. */
export function verifyCode(n: number): string | undefined {
  if (n === 0) return undefined;
  return VERIFY_CODES[n] ?? `X509_V_ERR_${n}`;
}

/**
 * The code Node would give a handshake error the engine reports: an
 * OpenSSL reason (`SSL:tlsv1 alert unknown ca`) becomes Node's
 * `ERR_SSL_TLSV1_ALERT_UNKNOWN_CA`; errno names pass through. Pure.
 */
export function handshakeErrorCode(error: string): string {
  if (!error.startsWith('SSL:')) return error;
  return `ERR_SSL_${error.slice(4).trim().toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`;
}

/**
 * What `socket` holds read and not yet consumed (bytes put back with
 * unshift), left in place; null when nothing. A socket that was read from
 * (paused after its first bytes) is stopped reading first: pause() alone
 * leaves libuv reading until the buffer is full, and every byte it took
 * from the kernel would be a byte the engine's copy of the descriptor
 * never sees. The handle is marked as reading while the buffer is copied
 * (read() would otherwise start it again) and as stopped afterwards, so
 * that a later resume() (the Node path, after a failed dial) reads again.
 */
function bufferedBytes(socket: Socket): Buffer | null {
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle?.reading && handle.readStop) handle.readStop();
  if (socket.readableLength === 0) {
    if (handle) handle.reading = false;
    return null;
  }
  if (handle) handle.reading = true;
  const held = socket.read() as Buffer | null;
  if (held !== null) socket.unshift(held);
  if (handle) handle.reading = false;
  return held;
}
