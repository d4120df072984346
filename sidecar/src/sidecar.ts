/**
 * The sidecar assembled: state, listeners, admin, drain. The discovery
 * client and the IdentityManager feed the SidecarState from outside; this
 * class only reacts to it (new TLS contexts on credential or bundle change,
 * closing revoked connections, closing every mTLS connection when our own
 * certificate expires with no replacement) and serves traffic with it.
 */
import type { Server } from 'node:http';
import { fitSidecarReport, SIDECAR_REPORT_LIMITS, type Logger, type ReportedCertificate, type SidecarReport } from '@trellis/shared';
import { startAdminServer } from './admin/admin-server';
import { InboundListener, type InboundSpec } from './inbound/inbound-listener';
import { inboundSuffix } from './inbound/inbound-protocol';
import { OutboundListener, type OutboundSpec } from './outbound/outbound-listener';
import { SidecarMetrics } from './metrics/sidecar-metrics';
import { ConnectionTracker } from './proxy/connection-tracker';
import { readiness, SidecarState } from './state/sidecar-state';
import { TlsMaterial, type TlsContextFactory } from './state/tls-material';
import type { Authorizer, Workload } from './policy/authorizer';
import { SidecarError } from './errors';
import { PendingHandshakes } from './inbound/pending-handshakes';
import { HeapShrinker } from './proxy/shrink-heap';
import { nativeRelay, nativeRelayUnavailable, type NativeDataPath, type NativeRelay } from './proxy/native-relay';
import type { Credentials } from './state/sidecar-state';

/** The longest delay setTimeout takes as given (longer ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

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
  /** How TLS contexts are built (tests substitute one that fails). Default: node:tls and the native relay. */
  tlsFactory?: TlsContextFactory;
}

/** A running sidecar. */
export class Sidecar {
  readonly state: SidecarState;
  readonly metrics: SidecarMetrics;
  readonly tracker: ConnectionTracker;
  /** Inbound connections accepted and not yet judged (the cap is shared by every inbound listener). */
  readonly pendingHandshakes: PendingHandshakes;
  private readonly shrinker: HeapShrinker;
  readonly inbound: InboundListener[] = [];
  readonly outbound: OutboundListener[] = [];
  private adminServer: Server | undefined;
  private adminPort = 0;
  private readonly clock: () => Date;
  private readonly relay: NativeRelay | null;
  /** The TLS contexts of both data paths for the current credentials and bundle. */
  private readonly tls: TlsMaterial;
  /** Fires when the current certificate expires. */
  private expiryTimer: NodeJS.Timeout | undefined;
  /** The certificates installed, newest first (at most SIDECAR_REPORT_LIMITS.maxRotations). */
  private installed: ReportedCertificate[] = [];

  constructor(
    private readonly options: SidecarOptions,
    private readonly deps: SidecarDeps,
  ) {
    this.clock = deps.clock ?? (() => new Date());
    this.state = deps.state ?? new SidecarState();
    this.shrinker = new HeapShrinker({ logger: deps.logger });
    // A flood that hit the cap leaves its memory in V8's heap: give it back once it is over.
    this.pendingHandshakes = new PendingHandshakes(options.maxPendingHandshakes, () => this.shrinker.request());
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
    this.tls = new TlsMaterial({ logger: deps.logger, relay: this.relay, factory: deps.tlsFactory });
    this.tls.update(this.state.current(), true);
    this.state.onChange((snap, changed) => {
      const creds = snap.credentials;
      if (changed.includes('credentials') && creds && creds.serialHex !== this.installed[0]?.serial) {
        const entry = { serial: creds.serialHex, notBefore: creds.notBefore.toISOString(), notAfter: creds.notAfter.toISOString(), installedAt: this.clock().toISOString() };
        this.installed = [entry, ...this.installed].slice(0, SIDECAR_REPORT_LIMITS.maxRotations);
      }
      if (changed.includes('credentials') || changed.includes('bundle') || (changed.includes('peerAuth') && this.tls.keyExchangeChanged(snap))) this.tls.update(snap, changed.includes('bundle'));
      if (changed.includes('credentials')) this.watchExpiry(snap.credentials);
      if (changed.includes('revocations')) {
        const n = this.tracker.closeRevoked(snap.revocations);
        for (const direction of ['inbound', 'outbound'] as const) {
          if (n[direction] > 0) this.metrics.refusals.inc({ direction, reason: 'revoked' }, n[direction]);
        }
        if (n.inbound + n.outbound > 0) deps.logger.warn('closed connections of revoked identities', { inbound: n.inbound, outbound: n.outbound });
      }
    });
    const native: NativeDataPath | undefined = this.relay
      ? { relay: this.relay, serverContext: () => this.tls.nativeServer(), clientContext: () => this.tls.nativeClient() }
      : undefined;
    const common = { state: this.state, metrics: this.metrics, logger: deps.logger, clock: this.clock, tracker: this.tracker, native };
    for (const spec of options.inbound) {
      this.inbound.push(
        new InboundListener(spec, {
          ...common,
          authorize: deps.authorize,
          workload: options.workload,
          serverContext: () => this.tls.nodeServer(),
          keyExchange: () => this.tls.keyExchange,
          detectTimeoutMs: options.detectTimeoutMs,
          handshakeTimeoutMs: options.handshakeTimeoutMs,
          pending: this.pendingHandshakes,
        }),
      );
    }
    for (const spec of options.outbound) this.outbound.push(new OutboundListener(spec, { ...common, clientContext: () => this.tls.nodeClient() }));
  }

  /** The data path carrying STRICT TCP ports and outbound connections to IP addresses. */
  get dataPath(): 'native' | 'node' {
    return this.relay ? 'native' : 'node';
  }

  /** Ready = a valid SVID, a bundle and a policy, and TLS contexts built from them. */
  readiness(): { ready: boolean; reason: string } {
    const r = readiness(this.state.current(), this.clock());
    const failure = this.tls.failure;
    if (r.ready && failure !== undefined) return { ready: false, reason: `no TLS context for the current credentials and trust bundle: ${failure}` };
    return r;
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
      const { host, port } = this.options.admin;
      const a = await startAdminServer(host, port, {
        readiness: () => this.readiness(),
        metricsText: () => this.metrics.registry.metrics(),
        metricsContentType: this.metrics.registry.contentType,
        configDump: () => this.configDump(),
        quit: () => this.deps.onQuit?.(),
      }).catch(async (err: unknown) => {
        // The listeners are bound already: close them, or the process stays up serving without an admin port.
        await this.stop(0);
        throw new SidecarError('TRELLIS_SIDECAR_LISTEN_FAILED', `cannot listen on the admin port ${host}:${port} (--admin): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { address: `${host}:${port}` }, { cause: err });
      });
      this.adminServer = a.server;
      this.adminPort = a.port;
    }
    this.deps.logger.info('sidecar listening', {
      inbound: this.inbound.map((l) => `${l.spec.host}:${l.port}=${l.spec.appPort}${inboundSuffix(l.spec)}`),
      outbound: this.outbound.map((l) => `${l.spec.host}:${l.port}`),
      admin: this.options.admin ? `${this.options.admin.host}:${this.adminPort}` : undefined,
    });
  }

  /**
   * Stops accepting, waits up to `drainMs` for the connections accepted
   * before that to finish their handshakes and then for every open
   * connection, then closes the rest and the admin server.
   */
  async stop(drainMs = this.options.drainMs ?? 5000): Promise<void> {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const deadline = Date.now() + drainMs;
    await Promise.all([...this.inbound, ...this.outbound].map((l) => l.stopAccepting().catch(() => undefined)));
    await this.pendingHandshakes.whenNone(drainMs);
    await this.tracker.drain(Math.max(0, deadline - Date.now()));
    this.shrinker.stop();
    if (this.adminServer) {
      this.adminServer.closeAllConnections();
      await new Promise<void>((r) => this.adminServer!.close(() => r()));
    }
  }

  /** Arms the expiry check for `creds` (the current certificate), replacing the previous one's. */
  private watchExpiry(creds: Credentials | undefined): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (!creds) return;
    const left = creds.notAfter.getTime() - this.clock().getTime();
    this.expiryTimer = setTimeout(() => this.ownCertificateExpired(creds), Math.min(MAX_TIMER_MS, Math.max(0, left) + 1));
    this.expiryTimer.unref();
  }

  /**
   * Our certificate expired and nothing replaced it: new connections are
   * already refused (the listeners check the expiry), and the open ones it
   * secured are closed now, as a revocation closes a revoked peer's. Fails
   * closed: an expired identity carries no more traffic.
   */
  private ownCertificateExpired(creds: Credentials): void {
    if (this.state.current().credentials !== creds) return;
    if (this.clock().getTime() < creds.notAfter.getTime()) return this.watchExpiry(creds);
    const n = this.tracker.closeMutualTls();
    for (const direction of ['inbound', 'outbound'] as const) {
      if (n[direction] > 0) this.metrics.refusals.inc({ direction, reason: 'no_valid_svid' }, n[direction]);
    }
    this.deps.logger.error('our certificate expired with no replacement: closed every open mTLS connection, failing closed', {
      serial: creds.serialHex,
      notAfter: creds.notAfter.toISOString(),
      inbound: n.inbound,
      outbound: n.outbound,
    });
  }

  /**
   * The sidecar report (shared/src/protocol/sidecar-report.ts) at this
   * moment: the call ledger's window totals, readiness, data path, the
   * certificates installed and `renewAt`, the identity manager's next
   * renewal; fitted to the report's size bound.
   */
  report(renewAt: Date | null): SidecarReport {
    const r = this.readiness();
    return fitSidecarReport({
      windowSeconds: this.metrics.calls.windowSeconds,
      calls: this.metrics.calls.snapshot(this.clock().getTime()),
      workload: {
        ready: r.ready,
        readyReason: r.reason.slice(0, SIDECAR_REPORT_LIMITS.maxDetail),
        dataPath: this.dataPath,
        renewAt: renewAt ? renewAt.toISOString() : null,
        rotations: [...this.installed],
      },
    });
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
      pathNormalization: s.authz?.pathNormalization ?? null,
      revocations: { serials: [...s.revocations.serials], spiffeIds: [...s.revocations.spiffeIds] },
      endpoints: s.endpoints,
      dataPath: this.dataPath,
      listeners: {
        inbound: this.inbound.map((l) => ({ address: `${l.spec.host}:${l.port}`, appPort: l.spec.appPort, http: l.spec.http, ...(l.spec.http ? { protocol: l.spec.appProtocol ?? 'http' } : {}) })),
        outbound: this.outbound.map((l) => ({ address: `${l.spec.host}:${l.port}`, target: l.spec.target })),
      },
      workload: this.options.workload,
      openConnections: this.tracker.size,
      keyExchange: { policy: this.tls.keyExchange, ...this.tracker.view(100) },
      ...(this.deps.extraDump?.() ?? {}),
    };
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
