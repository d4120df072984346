/**
 * The TLS material holder: the contexts both data paths handshake with,
 * built from one snapshot's credentials, trust bundle and key-exchange policy
 * (the groups both paths offer and accept) and replaced as a unit (ghostunnel's certloader, one pair of certificate and trust store for
 * client and server alike).
 *
 * One rule for a rebuild that fails, on both paths: the previous contexts
 * are dropped anyway and every connection is refused (`no_tls_context`)
 * until an update builds. Unlike a certificate reload that may keep the old
 * pair, a bundle update is how a root stops being trusted; keeping the old
 * contexts would keep trusting a root that was just removed. Fails closed.
 *
 * With the native relay its contexts are built at once (which also proves
 * OpenSSL takes the new key and chain) and node:tls's on first use: each
 * costs ~0.6 MB, and a sidecar whose ports are all STRICT TCP never needs
 * them. A lazy build that fails fails the whole generation, native contexts
 * included: one verdict per (credentials, bundle) pair.
 */
import { constants as tlsConstants, randomBytes } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { DEFAULT_KEY_EXCHANGE, groupsList, withoutCertificateCompression, type KeyExchangePolicy, type Logger } from '@trellis/shared';
import type { ContextOptions, NativeRelay, RelayContext } from '../proxy/native-relay';
import { federationInForce } from './peer-trust';
import type { SidecarSnapshot } from './sidecar-state';

/** How contexts are made: node:tls and the native relay, unless a test substitutes a failing one. */
export interface TlsContextFactory {
  node(opts: SecureContextOptions): SecureContext;
  native(relay: NativeRelay, opts: ContextOptions): RelayContext;
}

/** The real factory. */
export const DEFAULT_TLS_CONTEXT_FACTORY: TlsContextFactory = {
  node: (opts) => createSecureContext(opts),
  native: (relay, opts) => relay.context(opts),
};

/** Collaborators of TlsMaterial. */
export interface TlsMaterialDeps {
  logger: Logger;
  /** The native engine, or null on the Node path. */
  relay: NativeRelay | null;
  factory?: TlsContextFactory;
}

/** The contexts of one (credentials, bundle, key-exchange policy) triple. */
interface Generation {
  readonly snap: SidecarSnapshot;
  readonly keyExchange: KeyExchangePolicy;
  nativeServer?: RelayContext;
  nativeClient?: RelayContext;
  nodeServer?: SecureContext;
  nodeClient?: SecureContext;
  /** Why this generation has no contexts; set once, never cleared. */
  failed?: string;
}

/** The holder; one per sidecar. */
export class TlsMaterial {
  private gen: Generation | undefined;
  private ticketKeys = randomBytes(48);
  private readonly factory: TlsContextFactory;

  constructor(private readonly deps: TlsMaterialDeps) {
    this.factory = deps.factory ?? DEFAULT_TLS_CONTEXT_FACTORY;
  }

  /**
   * Replaces the material with `snap`'s credentials and bundle (a snapshot
   * without both leaves nothing to build from: every context is absent).
   * The previous contexts are dropped whatever happens; a build that fails
   * is logged once at error level and leaves no context at all.
   */
  update(snap: SidecarSnapshot, bundleChanged: boolean): void {
    if (bundleChanged) {
      // A resumed session skips chain verification; new ticket keys make sure
      // no session made under the old bundle (perhaps with a root just
      // removed) can be resumed.
      this.ticketKeys = randomBytes(48);
    }
    this.drop();
    if (!snap.credentials || !snap.bundle) return;
    const gen: Generation = { snap, keyExchange: keyExchangeOf(snap) };
    this.gen = gen;
    if (this.deps.relay) this.buildNative(gen, this.deps.relay);
    else this.buildNode(gen);
  }

  /** The native server context, or undefined (no credentials yet, or the build failed). */
  nativeServer(): RelayContext | undefined {
    return this.gen?.failed === undefined ? this.gen?.nativeServer : undefined;
  }

  /** The native client context, or undefined. */
  nativeClient(): RelayContext | undefined {
    return this.gen?.failed === undefined ? this.gen?.nativeClient : undefined;
  }

  /** node:tls's server context (built now on the native path's first use), or undefined. */
  nodeServer(): SecureContext | undefined {
    return this.node()?.nodeServer;
  }

  /** node:tls's client context, or undefined. */
  nodeClient(): SecureContext | undefined {
    return this.node()?.nodeClient;
  }

  /** The key-exchange policy the current contexts were built with (prefer before any). */
  get keyExchange(): KeyExchangePolicy {
    return this.gen?.keyExchange ?? DEFAULT_KEY_EXCHANGE;
  }

  /** True when `snap`'s key-exchange policy is not the one the current contexts use: they must be rebuilt. */
  keyExchangeChanged(snap: SidecarSnapshot): boolean {
    return this.gen !== undefined && keyExchangeOf(snap) !== this.gen.keyExchange;
  }

  /** Why there is no context for the current material (undefined when it built, or before any credentials). */
  get failure(): string | undefined {
    return this.gen?.failed;
  }

  private node(): Generation | undefined {
    const gen = this.gen;
    if (!gen || gen.failed !== undefined) return undefined;
    if (!gen.nodeServer) this.buildNode(gen);
    return gen.failed === undefined ? gen : undefined;
  }

  private buildNative(gen: Generation, relay: NativeRelay): void {
    const c = gen.snap.credentials!;
    try {
      const pems = { chainPem: c.chainPem, keyPem: c.keyPem, caPem: gen.snap.bundle!.rootsPem.join('\n'), groups: groupsList(gen.keyExchange) };
      // Fresh contexts also mean fresh ticket keys: no session made under an
      // older bundle or identity resumes on the native path. A resumed
      // session shows the server only the client's leaf, and federation needs
      // the intermediates presented with it to insist on a root of the peer's
      // own trust domain: no resumption while it is in force.
      gen.nativeServer = this.factory.native(relay, { server: true, ...pems, resumption: !federationInForce(gen.snap) });
      gen.nativeClient = this.factory.native(relay, { server: false, ...pems });
    } catch (err) {
      this.fail(gen, err);
    }
  }

  private buildNode(gen: Generation): void {
    const c = gen.snap.credentials!;
    try {
      // No certificate compression (certificate-compression.ts in @trellis/shared), as on the native path.
      const base = { key: c.keyPem, cert: c.chainPem, ca: [...gen.snap.bundle!.rootsPem], minVersion: 'TLSv1.2' as const, ecdhCurve: groupsList(gen.keyExchange), secureOptions: withoutCertificateCompression() };
      // A session ID context is required for resumption when client certificates are requested.
      // No tickets while federation is in force (see buildNative).
      const noTickets = federationInForce(gen.snap) ? { secureOptions: withoutCertificateCompression(tlsConstants.SSL_OP_NO_TICKET) } : {};
      const server = this.factory.node({ ...base, ...noTickets, ticketKeys: this.ticketKeys, sessionIdContext: 'trellis-inbound' });
      const client = this.factory.node(base);
      gen.nodeServer = server;
      gen.nodeClient = client;
    } catch (err) {
      this.fail(gen, err);
    }
  }

  private fail(gen: Generation, err: unknown): void {
    gen.failed = (err as Error).message ?? String(err);
    this.releaseNative(gen);
    gen.nodeServer = undefined;
    gen.nodeClient = undefined;
    this.deps.logger.error('cannot build TLS contexts for the new credentials or trust bundle: the previous ones are dropped and every connection is refused until an update builds', {
      error: gen.failed,
      serial: gen.snap.credentials?.serialHex,
      roots: gen.snap.bundle?.fingerprints,
    });
  }

  private drop(): void {
    if (this.gen) this.releaseNative(this.gen);
    this.gen = undefined;
  }

  private releaseNative(gen: Generation): void {
    // Connections already using a context hold their own reference.
    gen.nativeServer?.release();
    gen.nativeClient?.release();
    gen.nativeServer = undefined;
    gen.nativeClient = undefined;
  }
}

/** The key-exchange policy a snapshot asks for: the pushed one, prefer until there is one. */
function keyExchangeOf(snap: SidecarSnapshot): KeyExchangePolicy {
  return snap.peerAuth?.keyExchange ?? DEFAULT_KEY_EXCHANGE;
}
