/**
 * One `--outbound [HOST:]LOCAL_PORT=SERVICE[:PORT][/http]` (or `=ADDR[/http]#SPIFFE_ID`)
 * listener: plaintext from the application on localhost, mTLS to the
 * destination with our SVID. The server is authenticated by its SPIFFE ID
 * against the identities the control plane lists for the service (or the
 * explicit one), never by hostname; a server of a federated trust domain is
 * accepted when the endpoint or `ADDR#SPIFFE_ID` names it and its chain
 * reaches a root of that trust domain. TLS 1.2 minimum (1.3 preferred by
 * OpenSSL's negotiation); sessions are cached per destination for
 * resumption and dropped when our credentials or the bundle change.
 */
import { createServer as createNetServer, isIP, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import { groupName, parseHostPort, type Logger } from '@trellis/shared';
import { splice } from '../proxy/splice';
import { adoptDirectRead, directRead } from '../proxy/direct-read';
import type { SidecarSnapshot, SidecarState } from '../state/sidecar-state';
export { resolveTarget } from './server-verdict';
import { peerCertificates } from '../state/peer-trust';
import { judgeServer, resolveTarget, UNREACHABLE, type VerifiedServer } from './server-verdict';
import type { SidecarMetrics } from '../metrics/sidecar-metrics';
import type { ConnectionTracker, TrackedConnection } from '../proxy/connection-tracker';
import { bindServer } from '../proxy/bind-server';
import { verifyCode, type NativeDataPath, type RelayContext } from '../proxy/native-relay';
import { H2SessionPool } from './h2-session-pool';
import { HttpOutbound } from './http-outbound';

/** The destination of an outbound listener. */
export type OutboundTarget =
  | { readonly kind: 'service'; readonly service: string; readonly port?: number }
  | { readonly kind: 'explicit'; readonly address: string; readonly spiffeId: string };

/** Where an outbound listener listens and where it goes. */
export interface OutboundSpec {
  readonly host: string;
  readonly port: number;
  readonly target: OutboundTarget;
  /** `/http`: requests (HTTP/1.1 or h2c) go over one multiplexed HTTP/2 mTLS connection per endpoint (http-outbound.ts). */
  readonly http?: boolean;
}

/** Collaborators of an OutboundListener. */
export interface OutboundDeps {
  state: SidecarState;
  metrics: SidecarMetrics;
  logger: Logger;
  clock: () => Date;
  tracker: ConnectionTracker;
  /** The client TLS context for the current snapshot. */
  clientContext(): SecureContext | undefined;
  /** The native data path, when loaded: destinations given as IP addresses use it. */
  native?: NativeDataPath;
  connectTimeoutMs?: number;
}

/** An outbound listener; `start()` binds it. */
export class OutboundListener {
  private readonly server: Server;
  /**
   * Resumable sessions per destination, with the identity verified on the
   * full handshake (a resumed TLS 1.3 session shows no peer certificate on
   * the client side, so the verified identity travels with the ticket).
   */
  private readonly sessions = new Map<string, { ticket: Buffer; peer: VerifiedServer }>();
  private sessionEpoch: object | undefined;
  private rr = 0;
  private boundPort = 0;
  /** App connections whose first bytes were read (an `/http` listener's HTTP/1.1 ones): Node path, no ticket. */
  private readonly sniffed = new WeakSet<Socket>();
  /** Present on `/http` listeners: requests over pooled HTTP/2 sessions. */
  private readonly http?: { readonly pool: H2SessionPool; readonly app: HttpOutbound };

  constructor(
    readonly spec: OutboundSpec,
    private readonly deps: OutboundDeps,
  ) {
    this.server = createNetServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.onConnection(s));
    if (spec.http) {
      const pool = new H2SessionPool(spec.target, deps);
      this.http = { pool, app: new HttpOutbound({ metrics: deps.metrics, logger: deps.logger, pool, listenerPort: () => this.boundPort, passThrough: (app) => this.connect(app, true) }) };
    }
  }

  /** The port actually bound. */
  get port(): number {
    return this.boundPort;
  }

  /** Binds the listener. */
  async start(): Promise<void> {
    this.boundPort = await bindServer(this.server, this.spec.port, this.spec.host, (err) => {
      this.deps.metrics.refuse('outbound', 'accept_failed');
      this.deps.logger.warn('outbound listener cannot accept a connection', { port: this.boundPort, error: err.message });
    });
  }

  /** Stops accepting new connections. */
  stopAccepting(): Promise<void> {
    // close() stops listening at once; its callback would also wait for every
    // open connection, which is the drain's job, not this one's.
    if (this.server.listening) this.server.close();
    this.http?.app.drain();
    this.http?.pool.close();
    return Promise.resolve();
  }

  /** Counts and logs a refusal (against `peer`, the identity we meant to reach, when known) and closes the app's connection. */
  private refuse(app: Socket, reason: string, detail?: string, peer?: string): void {
    this.deps.metrics.refuse('outbound', reason, peer, detail);
    this.deps.logger.info('outbound connection refused', { port: this.boundPort, reason, detail });
    app.destroy();
  }

  private onConnection(app: Socket): void {
    const { metrics } = this.deps;
    metrics.connections.inc({ direction: 'outbound' });
    app.on('error', () => app.destroy());
    if (this.http) return this.http.app.serve(app);
    this.connect(app);
  }

  /**
   * Byte forwarding over one mTLS connection for `app`. An `/http` listener
   * hands its HTTP/1.1 connections here (`sniffed`: their first bytes were
   * read and put back; the native relay is given a copy of them to send
   * first, the Node path reads them from the socket).
   */
  private connect(app: Socket, sniffed = false): void {
    if (sniffed) this.sniffed.add(app);
    const clock = this.deps.clock;
    const snap = this.deps.state.current();
    // The context of the path in use marks the credentials' generation: the
    // session cache is only good within one (node:tls's is built on first use).
    const epoch = this.deps.native?.clientContext() ?? this.deps.clientContext();
    if (!snap.credentials || !snap.bundle || clock().getTime() >= snap.credentials.notAfter.getTime()) {
      return this.refuse(app, 'no_valid_svid', 'we hold no valid SVID: failing closed');
    }
    if (!epoch) return this.refuse(app, 'no_tls_context', 'no TLS context for the current credentials and trust bundle: failing closed');
    if (epoch !== this.sessionEpoch) {
      this.sessions.clear();
      this.sessionEpoch = epoch;
    }
    const pick = this.rr++;
    const candidates = this.spec.target.kind === 'service' ? Math.max(1, this.endpointCount(snap)) : 1;
    this.dial(app, snap, epoch, pick, candidates);
  }

  private endpointCount(snap: SidecarSnapshot): number {
    const t = this.spec.target;
    if (t.kind !== 'service') return 1;
    const e = (t.port !== undefined ? snap.endpoints[`${t.service}:${t.port}`] : undefined) ?? snap.endpoints[t.service];
    return e?.addresses.length ?? 0;
  }

  /**
   * Opens mTLS to the `pick`-th endpoint. A connection that fails before the
   * handshake completes (refused, reset) moves on to the next endpoint, up to
   * `attemptsLeft` in all, since no application byte has been sent yet.
   */
  private dial(app: Socket, snap: SidecarSnapshot, epoch: object, pick: number, attemptsLeft: number): void {
    const { metrics, clock } = this.deps;
    if (app.destroyed) return;
    const dest = resolveTarget(this.spec.target, snap, pick);
    if ('error' in dest) return this.refuse(app, 'no_endpoint', dest.error);
    // The shared parser; addresses were checked when the snapshot was taken, so a failure here still fails closed.
    const hp = parseHostPort(dest.address);
    if (typeof hp === 'string') return this.refuse(app, 'no_endpoint', `"${dest.address}": ${hp}`);
    const { host, port } = hp;
    // Offer a ticket only while the server certificate it was verified with is
    // still valid (with a second to spare): resuming past that would have to be
    // refused as expired, failing a request a full handshake would carry.
    // A retry after new credentials or a new bundle (another epoch) offers no ticket from the cache.
    const cachedSession = epoch === this.sessionEpoch ? this.sessions.get(dest.address) : undefined;
    const ticketUsable = cachedSession !== undefined && cachedSession.peer.notAfter.getTime() > clock().getTime() + 1000;
    if (cachedSession && !ticketUsable) this.sessions.delete(dest.address);
    // The session offered, if any: a resumed handshake is judged by the identity stored with that very ticket.
    // The tickets held are the native relay's (the epoch is its context): node:tls is offered none for a sniffed connection.
    const offered = ticketUsable ? cachedSession : undefined;
    const native = this.deps.native;
    const nctx = native?.clientContext();
    // Literal addresses only (the engine does not resolve names), and no IPv6 zone ids.
    if (native && nctx && isIP(host) !== 0 && !host.includes('%')) {
      if (this.dialNative(app, snap, epoch, pick, attemptsLeft, { native, nctx, host, port, dest, offered })) return;
    }
    const nodeOffered = this.sniffed.has(app) ? undefined : offered;
    const ctx = this.deps.clientContext();
    if (!ctx) return this.refuse(app, 'no_tls_context', 'no TLS context for the current credentials and trust bundle: failing closed');
    const direct = directRead();
    // `onread` is honoured by tls.connect (it builds the socket) though the typings omit it.
    const tls: TLSSocket = tlsConnect({
      host,
      port,
      onread: direct.onread,
      secureContext: ctx,
      minVersion: 'TLSv1.2',
      session: nodeOffered?.ticket,
      // The server is checked by SPIFFE ID after the handshake, never by hostname.
      checkServerIdentity: () => undefined,
    } as ConnectionOptions);
    let verified: VerifiedServer | undefined;
    let ticket: Buffer | undefined;
    const remember = (): void => {
      if (verified && ticket && epoch === this.sessionEpoch) this.sessions.set(dest.address, { ticket, peer: verified });
    };
    tls.on('session', (s: Buffer) => {
      ticket = s;
      remember();
    });
    const timer = setTimeout(() => {
      this.refuse(app, 'connect_timeout', dest.address);
      tls.destroy();
    }, this.deps.connectTimeoutMs ?? 10_000);
    let secured = false;
    tls.once('error', (err: Error & { code?: string }) => {
      clearTimeout(timer);
      if (secured) return;
      metrics.handshakes.inc({ direction: 'outbound', result: 'error', group: 'unknown' });
      this.sessions.delete(dest.address);
      const unreachable = UNREACHABLE.has(err.code ?? '');
      if (unreachable && attemptsLeft > 1) {
        this.deps.logger.debug('outbound endpoint unreachable; trying the next one', { address: dest.address, code: err.code });
        return this.dial(app, snap, epoch, pick + 1, attemptsLeft - 1);
      }
      this.refuse(app, unreachable ? 'upstream_unreachable' : 'handshake_failed', err.code ?? err.message);
    });
    tls.once('secureConnect', () => {
      clearTimeout(timer);
      secured = true;
      const now = this.deps.state.current();
      const { presented, leafDer } = peerCertificates(tls, now);
      const resumed = tls.isSessionReused() && !leafDer && nodeOffered !== undefined;
      const judged = judgeServer({
        leafDer,
        chainError: tls.authorized ? undefined : String(tls.authorizationError),
        presented,
        resumedPeer: resumed ? nodeOffered.peer : undefined,
        snap: now,
        trustDomain: snap.credentials!.trustDomain,
        now: clock(),
        allowed: dest.spiffeIds,
      });
      const verdict = judged.verdict;
      verified = judged.verified;
      if (!verdict.ok) {
        metrics.handshakes.inc({ direction: 'outbound', result: 'error', group: 'unknown' });
        this.sessions.delete(dest.address);
        this.refuse(app, verdict.reason, verdict.detail, intended(dest.spiffeIds));
        tls.destroy();
        return;
      }
      metrics.allow('outbound', verdict.spiffeId);
      // node:tls names the group on the client side (a resumed TLS 1.3 session does a fresh key exchange too).
      const group = groupName((tls.getEphemeralKeyInfo() as { name?: string } | null)?.name);
      metrics.handshakes.inc({ direction: 'outbound', result: tls.isSessionReused() ? 'resumed' : 'ok', group });
      remember();
      tls.on('error', () => tls.destroy());
      const tracked = this.deps.tracker.add({ direction: 'outbound', spiffeId: verdict.spiffeId, serialHex: verdict.serialHex, group, sockets: [app, tls] });
      app.once('close', () => {
        this.deps.tracker.remove(tracked);
        metrics.bytes.inc({ direction: 'outbound', flow: 'rx' }, app.bytesRead);
        metrics.bytes.inc({ direction: 'outbound', flow: 'tx' }, app.bytesWritten);
      });
      const appDirect = adoptDirectRead(app);
      app.resume();
      splice(app, tls, undefined, { aDirect: appDirect, bDirect: direct });
    });
  }

  /**
   * The native relay's dial: the engine connects, handshakes and holds the
   * connection; the checks are judgeServer's, as on the Node path. The app's
   * socket stays open (the engine works on its own copy of the descriptor)
   * until the verdict, so a refused or reset endpoint can be retried.
   * Returns false when the socket cannot be handed over.
   */
  private dialNative(
    app: Socket,
    snap: SidecarSnapshot,
    epoch: object,
    pick: number,
    attemptsLeft: number,
    d: {
      native: NativeDataPath;
      nctx: RelayContext;
      host: string;
      port: number;
      dest: { address: string; spiffeIds: readonly string[] };
      offered: { ticket: Buffer; peer: VerifiedServer } | undefined;
    },
  ): boolean {
    const { metrics, clock } = this.deps;
    const relay = d.native.relay;
    const address = d.dest.address;
    let settled = false;
    let verified: VerifiedServer | undefined;
    let ticket: Buffer | undefined;
    let tracked: TrackedConnection | undefined;
    let timer: NodeJS.Timeout | undefined;
    let id = 0;
    const remember = (): void => {
      if (verified && ticket && epoch === this.sessionEpoch) this.sessions.set(address, { ticket, peer: verified });
    };
    const handedOver = relay.connectTls(app, d.host, d.port, d.nctx, d.offered?.ticket ?? null, {
      onSession: (s) => {
        ticket = s;
        remember();
      },
      onHandshake: (ev) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!ev.ok) {
          metrics.handshakes.inc({ direction: 'outbound', result: 'error', group: 'unknown' });
          this.sessions.delete(address);
          const unreachable = UNREACHABLE.has(ev.error);
          if (unreachable && attemptsLeft > 1) {
            this.deps.logger.debug('outbound endpoint unreachable; trying the next one', { address, code: ev.error });
            this.dial(app, snap, epoch, pick + 1, attemptsLeft - 1);
            return;
          }
          return this.refuse(app, unreachable ? 'upstream_unreachable' : 'handshake_failed', ev.error);
        }
        const now = this.deps.state.current();
        const judged = judgeServer({
          leafDer: ev.chain[0],
          chainError: verifyCode(ev.verifyError),
          presented: ev.chain.slice(1),
          resumedPeer: ev.resumed && ev.chain.length === 0 && d.offered !== undefined ? d.offered.peer : undefined,
          snap: now,
          trustDomain: snap.credentials!.trustDomain,
          now: clock(),
          allowed: d.dest.spiffeIds,
        });
        const verdict = judged.verdict;
        if (!verdict.ok) {
          metrics.handshakes.inc({ direction: 'outbound', result: 'error', group: 'unknown' });
          this.sessions.delete(address);
          relay.close(id);
          return this.refuse(app, verdict.reason, verdict.detail, intended(d.dest.spiffeIds));
        }
        metrics.allow('outbound', verdict.spiffeId);
        verified = judged.verified;
        const group = groupName(ev.group);
        metrics.handshakes.inc({ direction: 'outbound', result: ev.resumed ? 'resumed' : 'ok', group });
        remember();
        tracked = this.deps.tracker.add({ direction: 'outbound', spiffeId: verdict.spiffeId, serialHex: verdict.serialHex, group, sockets: [{ destroy: () => relay.close(id) }] });
        relay.allow(id);
        // The engine relays on its own copy of the descriptor; ours goes.
        app.destroy();
      },
      onClosed: (ev) => {
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          metrics.handshakes.inc({ direction: 'outbound', result: 'error', group: 'unknown' });
          this.refuse(app, 'handshake_failed', ev.error ?? 'closed during the handshake');
        }
        if (!tracked) return;
        this.deps.tracker.remove(tracked);
        metrics.bytes.inc({ direction: 'outbound', flow: 'rx' }, ev.plainIn);
        metrics.bytes.inc({ direction: 'outbound', flow: 'tx' }, ev.plainOut);
      },
    });
    if (handedOver === undefined) return false;
    id = handedOver;
    timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      this.refuse(app, 'connect_timeout', address);
      relay.close(id);
    }, this.deps.connectTimeoutMs ?? 10_000);
    // An app that leaves before the verdict is not noticed here (its socket is
    // not read, so Node sees no 'close'): the relay starts and ends at once.
    return true;
  }
}

/** The identity a refused outbound call was meant for: the destination's one identity, else unknown (''). */
function intended(spiffeIds: readonly string[]): string | undefined {
  return spiffeIds.length === 1 ? spiffeIds[0] : undefined;
}
