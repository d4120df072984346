/**
 * One `--inbound [HOST:]PORT=APP_PORT[/PROTOCOL]` listener (PROTOCOL:
 * inbound-protocol.ts; any of them makes an HTTP port).
 *
 * Per connection it reads the snapshot once and enforces the effective
 * PeerAuthentication mode for the application port: STRICT terminates mTLS,
 * DISABLE passes plaintext, PERMISSIVE sniffs the first bytes (a TLS
 * handshake record) and otherwise passes plaintext, falling back to
 * plaintext after a detection timeout for server-first protocols. A TLS
 * peer must chain to the bundle (checked by OpenSSL during the handshake)
 * and pass `verifyPeer` (with federation: its trust domain is ours or a
 * federated one, and its chain reaches a root of that same trust domain); then AuthorizationPolicy decides, per connection on
 * TCP ports and per request on `/http` ports (http-inbound.ts). Everything fails closed: no
 * policy yet, no valid SVID of our own, a bad peer or a DENY closes the
 * connection (403 on `/http` ports) and counts a refusal with its reason.
 */
import { createServer as createNetServer, connect as netConnect, isIP, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { groupName, type EffectiveMtlsMode, type KeyExchangePolicy, type Logger } from '@trellis/shared';
import { readClientHelloFirst } from './client-hello-gate';
import { classifyFirstBytes } from './tls-detect';
import { CLIENT_CLOSED, handshakeRefusal, judgeClient, verifyError } from './client-verdict';
import { HTTP_ALPN, HttpPort } from './http-port';
import { appHttpVersion, type DeclaredAppProtocol } from './inbound-protocol';
import type { PeerRefusal } from '../identity/peer-verifier';
import { decide, type Authorizer, type Workload } from '../policy/authorizer';
import { splice } from '../proxy/splice';
import { adoptDirectRead, directRead } from '../proxy/direct-read';
import { readFirstBytes } from '../proxy/first-bytes';
import type { SidecarSnapshot, SidecarState } from '../state/sidecar-state';
import { peerCertificates } from '../state/peer-trust';
import type { SidecarMetrics } from '../metrics/sidecar-metrics';
import type { ConnectionTracker, TrackedConnection } from '../proxy/connection-tracker';
import { handshakeErrorCode, verifyCode, type NativeDataPath, type RelayContext } from '../proxy/native-relay';
import { bindServer } from '../proxy/bind-server';
import { isSlot, type HandshakeSlot, type PendingHandshakes } from './pending-handshakes';

/** Where an inbound listener listens and where it forwards. */
export interface InboundSpec {
  readonly host: string;
  readonly port: number;
  readonly appPort: number;
  /** An HTTP port (any suffix): per-request authorization and XFCC, HTTP/1.1 and HTTP/2 from clients. */
  readonly http: boolean;
  /**
   * On an HTTP port, the protocol declared for the app (`/h2c`, `/grpc`:
   * h2c with prior knowledge; `/http1`: HTTP/1.1); absent (`/http`): learned
   * by an h2c probe (inbound-protocol.ts). Ignored on a TCP port.
   */
  readonly appProtocol?: DeclaredAppProtocol;
}

/** Collaborators of an InboundListener. */
export interface InboundDeps {
  state: SidecarState;
  metrics: SidecarMetrics;
  logger: Logger;
  clock: () => Date;
  authorize: Authorizer;
  workload: Workload;
  tracker: ConnectionTracker;
  /** The TLS server context for the current snapshot (undefined: none yet). */
  serverContext(): SecureContext | undefined;
  /** The key-exchange policy the current contexts use (the Node path names the group from it). */
  keyExchange?(): KeyExchangePolicy;
  /** The native data path, when loaded: STRICT TCP ports use it. */
  native?: NativeDataPath;
  /** Our SPIFFE ID for XFCC `By=`. */
  appHost?: string;
  /** PERMISSIVE: how long to wait for a client's first bytes. Default 1000 ms. */
  detectTimeoutMs?: number;
  /** How long a TLS handshake may take, counted from the accept. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** The process-wide cap on connections not yet judged (see pending-handshakes.ts). */
  pending: PendingHandshakes;
}

/** What we know about the downstream of a connection. */
interface PeerInfo {
  principal?: string;
  serialHex?: string;
  certSha256?: string;
  /** The key-exchange group of its handshake. */
  group?: string;
  tracked: TrackedConnection;
}

/** An inbound listener; `start()` binds it. */
export class InboundListener {
  private readonly server: Server;
  /** Present on `/http` ports: per-request authorization and forwarding. */
  private readonly http?: HttpPort;
  private boundPort = 0;

  constructor(
    readonly spec: InboundSpec,
    private readonly deps: InboundDeps,
  ) {
    this.server = createNetServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.onConnection(s));
    if (spec.http) {
      const { state, metrics, logger, authorize, workload } = deps;
      this.http = new HttpPort({ state, metrics, logger, authorize, workload, appHost: deps.appHost ?? '127.0.0.1', appPort: spec.appPort, listenerPort: () => this.boundPort }, appHttpVersion(spec.appProtocol));
    }
  }

  /** The port actually bound (useful with port 0). */
  get port(): number {
    return this.boundPort;
  }

  /** Binds the listener. */
  async start(): Promise<void> {
    this.boundPort = await bindServer(this.server, this.spec.port, this.spec.host, (err) => {
      this.deps.metrics.refuse('inbound', 'accept_failed');
      this.deps.logger.warn('inbound listener cannot accept a connection', { port: this.boundPort, error: err.message });
    });
  }

  /** Stops accepting new connections; open ones carry on. */
  stopAccepting(): Promise<void> {
    // close() stops listening at once; its callback would also wait for every
    // open connection, which is the drain's job, not this one's.
    if (this.server.listening) this.server.close();
    this.http?.drain();
    return Promise.resolve();
  }

  /**
   * Counts and logs a refusal, then destroys `socket`: the outermost stream
   * (the TLSSocket once one wraps the TCP socket, since the TLS layer owns the
   * TCP handle from then on).
   */
  private refuse(socket: Socket | TLSSocket, reason: PeerRefusal | string, detail?: string, peer?: string): void {
    this.deps.metrics.refuse('inbound', reason, peer, detail);
    this.deps.logger.debug('inbound connection refused', { port: this.boundPort, reason, detail, remote: socket.remoteAddress });
    socket.destroy();
  }

  private onConnection(socket: Socket): void {
    const { metrics } = this.deps;
    metrics.connections.inc({ direction: 'inbound' });
    socket.on('error', () => socket.destroy());
    const snap = this.deps.state.current();
    if (!snap.peerAuth || !snap.authz) return this.refuse(socket, 'not_ready', 'no policy received yet');
    const mode: EffectiveMtlsMode = snap.peerAuth.portModes[this.spec.appPort] ?? snap.peerAuth.mode;
    if (mode === 'DISABLE') return this.accepted(socket, snap, undefined, undefined);
    // Everything that may become a handshake holds a slot until it is judged;
    // past the cap the connection is closed before any TLS work.
    const slot = this.deps.pending.take();
    if (!isSlot(slot)) {
      if (slot.firstOfBurst) {
        this.deps.logger.warn('inbound connections refused: too many handshakes pending', { port: this.boundPort, limit: this.deps.pending.limit });
      }
      return this.refuse(socket, 'handshake_limit');
    }
    const deadline = Date.now() + (this.deps.handshakeTimeoutMs ?? 10_000);
    if (mode === 'STRICT') return this.handshake(socket, snap, slot, deadline);
    this.sniff(socket, snap, slot, deadline);
  }

  /**
   * PERMISSIVE: the first bytes tell TLS (handshake) from plaintext (passed
   * on); bytes that cannot tell by the detection timeout (nothing yet, or a
   * lone 0x16) are plaintext, put back whole. A client that sends FIN before
   * they tell is closed at once (first-bytes.ts: the sockets are half-open).
   */
  private sniff(socket: Socket, snap: SidecarSnapshot, slot: HandshakeSlot, deadline: number): void {
    const onClose = (): void => {
      stop();
      slot.release();
    };
    const stop = readFirstBytes(
      socket,
      classifyFirstBytes,
      (kind) => {
        socket.off('close', onClose);
        if (kind === 'tls') return this.handshake(socket, snap, slot, deadline, true);
        slot.release();
        this.accepted(socket, snap, undefined, undefined);
      },
      {
        timeoutMs: this.deps.detectTimeoutMs ?? 1000,
        fallback: 'plaintext',
        onEnd: (seen) => {
          socket.off('close', onClose);
          slot.release();
          this.refuse(socket, 'client_closed', seen.length === 0 ? 'the client closed without sending a byte' : 'the client closed before its first bytes could be classified');
        },
      },
    );
    socket.once('close', onClose);
  }

  /** Node path: the ClientHello read first (client-hello-gate.ts); a refusal there is counted here. */
  private clientHello(socket: Socket, slot: HandshakeSlot, deadline: number, then: (group: string) => void): void {
    const failed = (reason: string, detail?: string): void => {
      slot.release();
      this.deps.metrics.handshakes.inc({ direction: 'inbound', result: 'error', group: 'unknown' });
      if (detail === undefined) {
        this.deps.metrics.refuse('inbound', reason);
        return;
      }
      this.refuse(socket, reason, detail);
    };
    readClientHelloFirst(socket, deadline, this.deps.keyExchange?.() ?? 'prefer', { then, failed });
  }

  private handshake(socket: Socket, snap: SidecarSnapshot, slot: HandshakeSlot, deadline: number, sniffed = false): void {
    const { clock } = this.deps;
    const creds = snap.credentials;
    if (!creds || !snap.bundle || clock().getTime() >= creds.notAfter.getTime()) {
      slot.release();
      return this.refuse(socket, 'no_valid_svid', 'we hold no valid SVID: failing closed');
    }
    // The engine connects to the app by address, so a named app host stays on the Node path.
    const native = this.spec.http || isIP(this.deps.appHost ?? '127.0.0.1') === 0 ? undefined : this.deps.native;
    const nctx = native?.serverContext();
    if (native && nctx && !sniffed && this.handshakeNative(socket, native, nctx, slot, deadline)) return;
    if (!this.deps.serverContext()) return this.refuseNoContext(socket, slot);
    // A sniffed connection's bytes were put back: the ClientHello is read again from its start.
    this.clientHello(socket, slot, deadline, (group) => this.handshakeNode(socket, slot, deadline, group));
  }

  /** No TLS context for the current credentials and bundle (a rebuild failed): refused on either path. */
  private refuseNoContext(socket: Socket, slot: HandshakeSlot): void {
    slot.release();
    this.refuse(socket, 'no_tls_context', 'no TLS context for the current credentials and trust bundle: failing closed');
  }

  /** The Node path's handshake (node:tls), the client's ClientHello already read and put back; `group` is the one it will use. */
  private handshakeNode(socket: Socket, slot: HandshakeSlot, deadline: number, group: string): void {
    const { metrics } = this.deps;
    const ctx = this.deps.serverContext();
    if (!ctx) return this.refuseNoContext(socket, slot);
    // rejectUnauthorized stays off so that every refusal is ours, with its
    // reason; nothing reaches the application before the checks below pass.
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext: ctx,
      requestCert: true,
      rejectUnauthorized: false,
      // `/http` ports offer HTTP/2 first (http-port.ts); TCP ports take no part in the app's protocol choice.
      ...(this.spec.http ? { ALPNProtocols: [...HTTP_ALPN] } : {}),
    });
    let failure: string | undefined;
    let settled = false;
    const fail = (reason: string, detail?: string, peer?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      slot.release();
      metrics.handshakes.inc({ direction: 'inbound', result: 'error', group: 'unknown' });
      this.refuse(tls, reason, detail, peer);
    };
    const timer = setTimeout(() => fail('handshake_timeout'), Math.max(0, deadline - Date.now()));
    // TLSSocket reports server-side handshake failures on '_tlsError' (an
    // 'error' is only emitted once control is released to the caller).
    tls.on('_tlsError', (err: Error & { code?: string }) => {
      failure = err.code ?? err.message;
    });
    tls.on('error', (err: Error & { code?: string }) => {
      failure ??= err.code ?? err.message;
      if (!settled) fail(handshakeRefusal(failure), failure);
      else tls.destroy();
    });
    tls.once('close', (hadError: boolean) => fail(handshakeRefusal(failure ?? (hadError ? undefined : CLIENT_CLOSED)), failure ?? 'closed during the handshake'));
    // A client that closes its side before we have finished the handshake (one that closes the moment its
    // own side is done, without close_notify) gets only an 'end' here: node:tls emits no 'secure', 'error' or
    // 'close', so without this the connection held its pending slot until the deadline (and 1,024 such
    // clients within it closed the port to everyone). Nothing more can come over it: refuse it now.
    tls.once('end', () => fail(handshakeRefusal(failure ?? CLIENT_CLOSED), failure ?? 'the client closed its side during the handshake'));
    tls.once('secure', () => {
      if (settled) return;
      const { presented, leafDer } = peerCertificates(tls, this.deps.state.current());
      const judged = judgeClient(this.deps, leafDer, verifyError(tls), () => presented);
      if (!judged.ok) return fail(judged.reason, judged.detail, judged.peer);
      settled = true;
      clearTimeout(timer);
      slot.release();
      metrics.handshakes.inc({ direction: 'inbound', result: 'ok', group });
      this.accepted(tls, judged.snap, { ...judged.peer, group }, socket);
    });
  }

  /**
   * STRICT on a TCP port through the native relay: the engine does the
   * handshake and holds the connection; the same checks as the Node path
   * and then AuthorizationPolicy decide whether it is let through to the
   * app. Returns false (the socket untouched) when the socket cannot be
   * handed over; the caller then takes the Node path.
   */
  private handshakeNative(socket: Socket, native: NativeDataPath, ctx: RelayContext, slot: HandshakeSlot, deadline: number): boolean {
    const { metrics, logger } = this.deps;
    const relay = native.relay;
    const sourceIp = socket.remoteAddress;
    let settled = false;
    let tracked: TrackedConnection | undefined;
    let timer: NodeJS.Timeout | undefined;
    let id = 0;
    const fail = (reason: string, detail?: string, peer?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      slot.release();
      metrics.handshakes.inc({ direction: 'inbound', result: 'error', group: 'unknown' });
      metrics.refuse('inbound', reason, peer, detail);
      logger.debug('inbound connection refused', { port: this.boundPort, reason, detail, remote: sourceIp });
      relay.close(id);
    };
    const handedOver = relay.acceptTls(socket, ctx, {
      onHandshake: (ev) => {
        if (settled) return;
        if (!ev.ok) {
          const code = verifyCode(ev.verifyError) ?? handshakeErrorCode(ev.error);
          return fail(handshakeRefusal(code, this.deps.keyExchange?.() ?? 'prefer'), ev.error);
        }
        const presented = ev.chain.slice(1);
        const judged = judgeClient(this.deps, ev.chain[0], verifyCode(ev.verifyError), () => presented);
        if (!judged.ok) return fail(judged.reason, judged.detail, judged.peer);
        settled = true;
        clearTimeout(timer);
        slot.release();
        const group = groupName(ev.group);
        metrics.handshakes.inc({ direction: 'inbound', result: 'ok', group });
        const d = decide(this.deps.authorize, judged.snap.authz?.policies ?? [], this.deps.workload, {
          principal: judged.peer.principal,
          sourceIp,
          port: this.spec.appPort,
        });
        if (d.decision !== 'ALLOW') {
          logger.info('inbound connection denied by policy', { port: this.boundPort, principal: judged.peer.principal, reason: d.reason, policy: d.policy });
          metrics.refuse('inbound', 'authz_denied', judged.peer.principal, d.reason);
          relay.close(id);
          return;
        }
        metrics.allow('inbound', judged.peer.principal);
        tracked = this.deps.tracker.add({
          direction: 'inbound',
          spiffeId: judged.peer.principal,
          serialHex: judged.peer.serialHex,
          group,
          sockets: [{ destroy: () => relay.close(id) }],
        });
        if (!relay.allow(id, this.deps.appHost ?? '127.0.0.1', this.spec.appPort)) metrics.refuse('inbound', 'app_unreachable');
      },
      onClosed: (ev) => {
        fail(ev.error === CLIENT_CLOSED ? 'client_closed' : 'handshake_failed', ev.error ?? 'closed during the handshake');
        if (!tracked) return;
        this.deps.tracker.remove(tracked);
        metrics.bytes.inc({ direction: 'inbound', flow: 'rx' }, ev.tlsIn);
        metrics.bytes.inc({ direction: 'inbound', flow: 'tx' }, ev.tlsOut);
        if (ev.error?.startsWith('app_connect:')) metrics.refuse('inbound', 'app_unreachable');
      },
    });
    if (handedOver === undefined) return false;
    id = handedOver;
    timer = setTimeout(() => fail('handshake_timeout'), Math.max(0, deadline - Date.now()));
    return true;
  }

  /** The peer passed authentication (or is plaintext); now authorization and forwarding. */
  private accepted(conn: Socket | TLSSocket, snap: SidecarSnapshot, peer: Omit<PeerInfo, 'tracked'> | undefined, raw: Socket | undefined): void {
    const tracked = this.deps.tracker.add({ direction: 'inbound', spiffeId: peer?.principal, serialHex: peer?.serialHex, group: peer?.group, sockets: raw ? [conn, raw] : [conn] });
    conn.once('close', () => {
      this.deps.tracker.remove(tracked);
      const rx = (raw ?? conn).bytesRead;
      const tx = (raw ?? conn).bytesWritten;
      this.deps.metrics.bytes.inc({ direction: 'inbound', flow: 'rx' }, rx);
      this.deps.metrics.bytes.inc({ direction: 'inbound', flow: 'tx' }, tx);
    });
    if (this.http) {
      this.http.serve(conn, peer && { principal: peer.principal, certSha256: peer.certSha256 });
      return;
    }
    const d = decide(this.deps.authorize, snap.authz?.policies ?? [], this.deps.workload, {
      principal: peer?.principal,
      sourceIp: conn.remoteAddress,
      port: this.spec.appPort,
    });
    if (d.decision !== 'ALLOW') {
      this.deps.logger.info('inbound connection denied by policy', { port: this.boundPort, principal: peer?.principal, reason: d.reason, policy: d.policy });
      this.refuse(conn, 'authz_denied', d.reason, peer?.principal);
      return;
    }
    this.deps.metrics.allow('inbound', peer?.principal);
    const direct = directRead();
    const app = netConnect({ host: this.deps.appHost ?? '127.0.0.1', port: this.spec.appPort, allowHalfOpen: true, noDelay: true, onread: direct.onread });
    tracked.sockets.push(app);
    app.once('error', () => {
      this.deps.metrics.refuse('inbound', 'app_unreachable');
    });
    const connDirect = adoptDirectRead(conn);
    conn.resume();
    splice(conn, app, undefined, { aDirect: connDirect, bDirect: direct });
  }
}
