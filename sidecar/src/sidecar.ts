/**
 * The sidecar assembled: state, listeners, admin, drain. The discovery
 * client and the IdentityManager feed the SidecarState from outside; this
 * class only reacts to it (new TLS contexts on credential or bundle change,
 * closing revoked connections) and serves traffic with it.
 */
import { constants as tlsConstants, randomBytes } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Server } from 'node:http';
import type { Logger } from '@trellis/shared';
import { startAdminServer } from './admin/admin-server';
import { InboundListener, type InboundSpec } from './inbound/inbound-listener';
import { OutboundListener, type OutboundSpec } from './outbound/outbound-listener';
import { SidecarMetrics } from './metrics/sidecar-metrics';
import { ConnectionTracker } from './proxy/connection-tracker';
import { readiness, SidecarState, type SidecarSnapshot } from './state/sidecar-state';
import { federationInForce } from './state/peer-trust';
import type { Authorizer, Workload } from './policy/authorizer';
import { SidecarError } from './errors';
import { PendingHandshakes } from './inbound/pending-handshakes';
import { nativeRelay, nativeRelayUnavailable, type NativeDataPath, type NativeRelay, type RelayContext } from './proxy/native-relay';

/** What a sidecar runs. */
export interface SidecarOptions {
  inbound: readonly InboundSpec[];
  outbound: readonly OutboundSpec[];
  /** Admin address; omit for none. */
  admin?: { host: string; port: number };
  workload: Workload;
  /** How long SIGTERM waits for open connections. Default 5000 ms. */
  drainMs?: number;
  /** PERMISSIVE detection timeout. Default 1000 ms. */
  detectTimeoutMs?: number;
  /**
   * Which data path carries STRICT TCP ports and outbound connections to IP
   * addresses: `native` (the @trellis/tls-relay engine; an error if it is not
   * built), `node` (node:tls), or `auto` (native when built). Default `auto`.
   */
  dataPath?: DataPath;
  /** The cap on inbound connections not yet judged, across all inbound listeners. Default DEFAULT_MAX_PENDING_HANDSHAKES (1024). */
  maxPendingHandshakes?: number;
  /** How long an inbound connection may take from accept to a judged handshake. Default 10 s. */
  handshakeTimeoutMs?: number;
}

/** See SidecarOptions.dataPath. */
export type DataPath = 'auto' | 'native' | 'node';

/** Collaborators of the Sidecar. */
export interface SidecarDeps {
  logger: Logger;
  authorize: Authorizer;
  clock?: () => Date;
  state?: SidecarState;
  /** Extra fields for /config_dump (e.g. discovery sync state). */
  extraDump?: () => Record<string, unknown>;
  /** Called when POST /quitquitquit arrives. */
  onQuit?: () => void;
  /** Read at scrape time for trellis_control_plane_connected (undefined: leave the gauge as set). */
  controlPlaneConnected?: () => boolean | undefined;
  /** Include Node process metrics in /stats. Default true. */
  processMetrics?: boolean;
}

/** A running sidecar. */
export class Sidecar {
  readonly state: SidecarState;
  readonly metrics: SidecarMetrics;
  readonly tracker: ConnectionTracker;
  /** Inbound connections accepted and not yet judged (the cap is shared by every inbound listener). */
  readonly pendingHandshakes: PendingHandshakes;
  readonly inbound: InboundListener[] = [];
  readonly outbound: OutboundListener[] = [];
  private adminServer: Server | undefined;
  private adminPort = 0;
  private serverCtx: SecureContext | undefined;
  private clientCtx: SecureContext | undefined;
  private ticketKeys = randomBytes(48);
  private readonly clock: () => Date;
  private readonly relay: NativeRelay | null;
  private nativeServerCtx: RelayContext | undefined;
  private nativeClientCtx: RelayContext | undefined;
  /** node:tls's contexts are behind the current credentials or bundle (native path: they are built on first use). */
  private nodeContextsStale = false;

  constructor(
    private readonly options: SidecarOptions,
    private readonly deps: SidecarDeps,
  ) {
    this.clock = deps.clock ?? (() => new Date());
    this.state = deps.state ?? new SidecarState();
    this.pendingHandshakes = new PendingHandshakes(options.maxPendingHandshakes);
    this.metrics = new SidecarMetrics({
      pendingHandshakes: () => this.pendingHandshakes.size,
      certExpirySeconds: () => {
        const c = this.state.current().credentials;
        return c ? (c.notAfter.getTime() - this.clock().getTime()) / 1000 : undefined;
      },
      ready: () => this.readiness().ready,
      controlPlaneConnected: deps.controlPlaneConnected,
      processMetrics: deps.processMetrics,
    });
    this.tracker = new ConnectionTracker((direction, delta) => this.metrics.activeConnections.inc({ direction }, delta));
    this.relay = pickDataPath(options.dataPath ?? 'auto');
    this.rebuildContexts(this.state.current());
    this.state.onChange((snap, changed) => {
      if (changed.includes('bundle')) {
        // A resumed session skips chain verification; new ticket keys make
        // sure no session made under the old bundle (perhaps with a root
        // just removed) can be resumed.
        this.ticketKeys = randomBytes(48);
      }
      if (changed.includes('credentials') || changed.includes('bundle')) this.rebuildContexts(snap);
      if (changed.includes('revocations')) {
        const n = this.tracker.closeRevoked(snap.revocations);
        for (const direction of ['inbound', 'outbound'] as const) {
          if (n[direction] > 0) this.metrics.refusals.inc({ direction, reason: 'revoked' }, n[direction]);
        }
        if (n.inbound + n.outbound > 0) deps.logger.warn('closed connections of revoked identities', { inbound: n.inbound, outbound: n.outbound });
      }
    });
    const native: NativeDataPath | undefined = this.relay
      ? { relay: this.relay, serverContext: () => this.nativeServerCtx, clientContext: () => this.nativeClientCtx }
      : undefined;
    const common = { state: this.state, metrics: this.metrics, logger: deps.logger, clock: this.clock, tracker: this.tracker, native };
    for (const spec of options.inbound) {
      this.inbound.push(
        new InboundListener(spec, {
          ...common,
          authorize: deps.authorize,
          workload: options.workload,
          serverContext: () => this.nodeContext('server'),
          detectTimeoutMs: options.detectTimeoutMs,
          handshakeTimeoutMs: options.handshakeTimeoutMs,
          pending: this.pendingHandshakes,
        }),
      );
    }
    for (const spec of options.outbound) this.outbound.push(new OutboundListener(spec, { ...common, clientContext: () => this.nodeContext('client') }));
  }

  /** The data path carrying STRICT TCP ports and outbound connections to IP addresses. */
  get dataPath(): 'native' | 'node' {
    return this.relay ? 'native' : 'node';
  }

  /** Ready = a valid SVID, a bundle and a policy. */
  readiness(): { ready: boolean; reason: string } {
    return readiness(this.state.current(), this.clock());
  }

  /** The admin port actually bound (0 when none). */
  get adminBoundPort(): number {
    return this.adminPort;
  }

  /** Binds every listener and the admin server. */
  async start(): Promise<void> {
    try {
      for (const l of [...this.inbound, ...this.outbound]) await l.start();
    } catch (err) {
      await this.stop(0);
      throw new SidecarError('TRELLIS_SIDECAR_LISTEN_FAILED', `cannot listen: ${(err as Error).message}`, {}, { cause: err });
    }
    if (this.options.admin) {
      const a = await startAdminServer(this.options.admin.host, this.options.admin.port, {
        readiness: () => this.readiness(),
        metricsText: () => this.metrics.registry.metrics(),
        metricsContentType: this.metrics.registry.contentType,
        configDump: () => this.configDump(),
        quit: () => this.deps.onQuit?.(),
      });
      this.adminServer = a.server;
      this.adminPort = a.port;
    }
    this.deps.logger.info('sidecar listening', {
      inbound: this.inbound.map((l) => `${l.spec.host}:${l.port}=${l.spec.appPort}${l.spec.http ? '/http' : ''}`),
      outbound: this.outbound.map((l) => `${l.spec.host}:${l.port}`),
      admin: this.options.admin ? `${this.options.admin.host}:${this.adminPort}` : undefined,
    });
  }

  /** Stops accepting, waits up to `drainMs` for open connections, then closes the rest and the admin server. */
  async stop(drainMs = this.options.drainMs ?? 5000): Promise<void> {
    await Promise.all([...this.inbound, ...this.outbound].map((l) => l.stopAccepting().catch(() => undefined)));
    await this.tracker.drain(drainMs);
    if (this.adminServer) {
      this.adminServer.closeAllConnections();
      await new Promise<void>((r) => this.adminServer!.close(() => r()));
    }
  }

  /** The JSON served on /config_dump. Never includes a private key. */
  configDump(): Record<string, unknown> {
    const s = this.state.current();
    const c = s.credentials;
    return {
      ready: this.readiness(),
      identity: c ? { spiffeId: c.spiffeId, serial: c.serialHex, notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString() } : null,
      bundle: s.bundle ? { fingerprints: s.bundle.fingerprints } : null,
      peerAuthentication: s.peerAuth ?? null,
      authorizationPolicies: s.authz?.policies ?? null,
      revocations: { serials: [...s.revocations.serials], spiffeIds: [...s.revocations.spiffeIds] },
      endpoints: s.endpoints,
      dataPath: this.dataPath,
      listeners: {
        inbound: this.inbound.map((l) => ({ address: `${l.spec.host}:${l.port}`, appPort: l.spec.appPort, http: l.spec.http })),
        outbound: this.outbound.map((l) => ({ address: `${l.spec.host}:${l.port}`, target: l.spec.target })),
      },
      workload: this.options.workload,
      openConnections: this.tracker.size,
      ...(this.deps.extraDump?.() ?? {}),
    };
  }

  /**
   * New TLS contexts for new credentials or a new bundle. With the native
   * relay its contexts are built at once (which also proves OpenSSL takes
   * the new key and chain) and node:tls's on first use: each costs ~0.6 MB,
   * and a sidecar whose ports are all STRICT TCP never needs them.
   */
  private rebuildContexts(snap: SidecarSnapshot): void {
    if (!snap.credentials || !snap.bundle) return;
    if (!this.relay) {
      this.buildNodeContexts(snap);
      return;
    }
    this.nodeContextsStale = true;
    const c = snap.credentials;
    try {
      // Fresh contexts also mean fresh ticket keys: no session made under an
      // older bundle or identity resumes on the native path.
      const pems = { chainPem: c.chainPem, keyPem: c.keyPem, caPem: snap.bundle.rootsPem.join('\n') };
      // A resumed session shows the server only the client's leaf, and
      // federation needs the intermediates presented with it to insist on a
      // root of the peer's own trust domain: no resumption while it is in force.
      const server = this.relay.context({ server: true, ...pems, resumption: !federationInForce(snap) });
      const client = this.relay.context({ server: false, ...pems });
      this.nativeServerCtx?.release();
      this.nativeClientCtx?.release();
      this.nativeServerCtx = server;
      this.nativeClientCtx = client;
    } catch (err) {
      // Keeping the previous contexts would keep trusting the previous bundle:
      // drop them, and the listeners take the Node path (whose contexts are
      // built from the same snapshot, or refuse).
      this.nativeServerCtx?.release();
      this.nativeClientCtx?.release();
      this.nativeServerCtx = undefined;
      this.nativeClientCtx = undefined;
      this.deps.logger.error('cannot build native TLS contexts; using the Node data path', { error: err, serial: c.serialHex });
    }
  }

  /** node:tls's context of `kind` for the current credentials and bundle (built now if they changed since). */
  private nodeContext(kind: 'server' | 'client'): SecureContext | undefined {
    if (this.nodeContextsStale) {
      this.nodeContextsStale = false;
      this.buildNodeContexts(this.state.current());
    }
    return kind === 'server' ? this.serverCtx : this.clientCtx;
  }

  private buildNodeContexts(snap: SidecarSnapshot): void {
    const c = snap.credentials;
    const b = snap.bundle;
    if (!c || !b) return;
    try {
      const base = { key: c.keyPem, cert: c.chainPem, ca: [...b.rootsPem], minVersion: 'TLSv1.2' as const };
      // A session ID context is required for resumption when client certificates are requested.
      // No tickets while federation is in force: a resumed session shows only the client's leaf,
      // and federation needs the intermediates presented with it (see rebuildContexts).
      const noTickets = federationInForce(snap) ? { secureOptions: tlsConstants.SSL_OP_NO_TICKET } : {};
      this.serverCtx = createSecureContext({ ...base, ...noTickets, ticketKeys: this.ticketKeys, sessionIdContext: 'trellis-inbound' });
      this.clientCtx = createSecureContext(base);
    } catch (err) {
      // The state validated the parts; should OpenSSL still refuse them, keep the last good contexts.
      this.deps.logger.error('cannot build TLS contexts; keeping the previous ones', { error: err, serial: c.serialHex });
    }
  }
}

/** The native relay for `choice`, or null for the Node path. Throws when `native` is asked for and cannot be had. */
function pickDataPath(choice: DataPath): NativeRelay | null {
  if (choice === 'node') return null;
  const relay = nativeRelay();
  if (!relay && choice === 'native') {
    throw new SidecarError('TRELLIS_SIDECAR_NATIVE_RELAY_MISSING', `--data-path native: ${nativeRelayUnavailable() ?? 'the native relay did not load'}`, {});
  }
  return relay;
}
