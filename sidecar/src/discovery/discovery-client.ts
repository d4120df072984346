/**
 * The sidecar's end of the discovery stream.
 *
 * Connects over TLS to one of the control-plane addresses, verifying the
 * server by its exact SPIFFE ID against the current trust bundle (never by
 * hostname). First contact authenticates with a bearer token (re-read through
 * `getToken()` at every connect); once the sidecar holds an unexpired SVID,
 * connections authenticate with it over mTLS instead. On any failure it
 * reconnects with jittered exponential backoff (cap 30 s, 5 s while it holds
 * no valid SVID and so serves nothing) across all addresses and
 * re-subscribes, telling the server the versions it holds so an unchanged
 * config is not re-sent.
 *
 * A stream is only as good as the credential that opened it: a join token
 * attests one issuance, and a stream opened with an SVID cannot renew once
 * that SVID expired. So each new SVID (`credentialsChanged()`) moves the
 * client to a stream authenticated with it, make-before-break: the new
 * stream opens, and only once the control plane accepted it does the old
 * one say goodbye (half-close), so the sidecar stays connected and its
 * endpoints stay published throughout. `stop()` says goodbye the same way,
 * which tells the control plane to withdraw our endpoints at once; a
 * stream that is merely lost keeps them for the control plane's grace period.
 *
 * When a join token is refused as spent or expired and no SVID is left to
 * open a stream with, nothing this process holds can ever authenticate
 * again: `onCredentialsExhausted` listeners are told (the runner exits so
 * its supervisor restarts it with a fresh token). A Kubernetes token is
 * rotated in place by kubelet, so its refusals are retried.
 *
 * Resources are handed to the handler registered for their type; a handler
 * that returns accepts them (ACK), one that throws rejects them (NACK with the
 * previously accepted version and the error). The private key is only ever
 * used here as the TLS client key, via `getCredentials()`.
 */
import {
  decodeDiscoveryResponse,
  encodeDiscoveryRequest,
  isJoinToken,
  SVID_TYPE_URL,
  type DiscoveryRequestInit,
  type DiscoveryResponseMessage,
  backoffDelayMs,
  DEFAULT_BACKOFF,
  type BackoffOptions,
  DEFAULT_KEY_EXCHANGE,
  groupName,
  type SvidResource,
  type TypeUrl,
} from '@trellis/shared';

import { DiscoveryError, DiscoveryErrorCode } from './discovery-error';
import type { GrpcBidiCall } from './grpc-bidi-call';
import { controlPlaneTls, openControlPlaneCall, REPORTS_HEADER } from './control-plane-call';
import type { CredentialsExhaustedInfo, DiscoveryClientOptions, StreamEndInfo } from './discovery-client-options';
import { GrpcStatus, grpcStatusName, type CallStatus } from './grpc-status';
import { identityMismatch } from './identity-mismatch';
import { ResourceSync, type ClientTypeState, type ResourceHandler } from './resource-sync';
import { credentialsExhausted, reconnectBackoff, shouldMoveStream, streamCredentials, type ClientCredentials, type StreamAuth } from './stream-credentials';

export type { DiscoveryNode, ReceivedResource, ResourceHandler, ClientTypeState } from './resource-sync';
export type { ClientCredentials } from './stream-credentials';
export type { CredentialsExhaustedInfo, DiscoveryClientOptions, StreamEndInfo } from './discovery-client-options';

interface PendingCsr {
  csr: Buffer;
  resolve(v: SvidResource): void;
  reject(e: unknown): void;
}

type WireResponse = DiscoveryResponseMessage;
type Call = GrpcBidiCall;

/** The longest `trellis-retry-after-ms` hint honoured (5 min). */
const MAX_RETRY_HINT_MS = 300_000;
/** How long a goodbye waits for the control plane to finish its half of the stream. */
const GOODBYE_TIMEOUT_MS = 1_000;

/** One long-lived, self-healing discovery stream. */
export class DiscoveryClient {
  private readonly sync: ResourceSync;
  private rootsPem: string;
  private pendingCsr: PendingCsr | null = null;
  private call: Call | null = null;
  /** How the open call authenticated. */
  private callAuth: StreamAuth | null = null;
  /** A stream opened with a newer SVID to take over from `call` once the control plane accepts it. */
  private successor: { call: Call; address: string; notAfterMs: number } | null = null;
  private rollTimer: NodeJS.Timeout | null = null;
  private rollAttempt = 0;
  private addressIndex = 0;
  private attempt = 0;
  private retryHintMs = 0;
  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private connectedAddress: string | null = null;
  /** The key-exchange group of the open stream's connection. */
  private connectedGroup: string | null = null;
  private lastStreamError: { grpcCode: number; serverCode: string | null; message: string } | null = null;
  /** True when the open stream's response headers said the control plane takes sidecar reports (`trellis-reports: 1`). */
  private reportsAccepted = false;
  /** The last report sent on the open stream: the stream that takes over from it carries it too. */
  private lastReport: Buffer | null = null;
  /** What the control plane presented when it was not the expected SPIFFE ID (set by the TLS check). */
  private serverMismatch: string | null = null;
  /** The identity mismatch last reported at error level; repeats go to debug until a stream works again. */
  private reportedMismatch: string | null = null;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly backoff: BackoffOptions;
  private readonly connectListeners = new Set<(connected: boolean) => void>();
  private readonly endListeners = new Set<(e: StreamEndInfo) => void>();
  private readonly exhaustedListeners = new Set<(e: CredentialsExhaustedInfo) => void>();

  constructor(private readonly opts: DiscoveryClientOptions) {
    if (opts.addresses.length === 0) throw new DiscoveryError(DiscoveryErrorCode.BAD_OPTIONS, 'addresses: at least one control-plane address is required');
    if (!opts.bootstrapBundlePem.includes('BEGIN CERTIFICATE')) throw new DiscoveryError(DiscoveryErrorCode.BAD_OPTIONS, 'bootstrapBundlePem: no PEM certificate');
    this.rootsPem = opts.bootstrapBundlePem;
    this.sync = new ResourceSync({ node: opts.node, endpointNames: opts.endpointNames, logger: opts.logger, now: () => this.now() });
    this.now = opts.clock ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
  }

  /** Registers the handler for one type (and subscribes to it); call before start(). */
  on<T extends TypeUrl>(typeUrl: T, handler: ResourceHandler<T>): this {
    if (typeUrl === SVID_TYPE_URL) throw new DiscoveryError(DiscoveryErrorCode.BAD_OPTIONS, 'SVIDs are obtained with requestSvid(), not a handler');
    this.sync.on(typeUrl, handler as unknown as ResourceHandler<TypeUrl>);
    return this;
  }

  /** Called with true on every (re)connect and false on every disconnect. */
  onConnectionChange(listener: (connected: boolean) => void): () => void {
    this.connectListeners.add(listener);
    return () => this.connectListeners.delete(listener);
  }

  /** Called each time a stream ends, with the status and the control plane's error code (for metrics and logs). */
  onStreamEnded(listener: (e: StreamEndInfo) => void): () => void {
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  /**
   * Called when the control plane refused our join token as spent or expired
   * and we hold no SVID that could open a stream instead: no credential is
   * left. The client keeps retrying (the token file may be replaced); the
   * listener decides whether to give up.
   */
  onCredentialsExhausted(listener: (e: CredentialsExhaustedInfo) => void): () => void {
    this.exhaustedListeners.add(listener);
    return () => this.exhaustedListeners.delete(listener);
  }

  /**
   * Tells the client a new SVID was installed: the open stream moves to one
   * authenticated with it (make-before-break), so the stream never outlives
   * the credential that opened it.
   */
  credentialsChanged(): void {
    this.rollAttempt = 0;
    this.roll();
  }

  /** Opens the stream (and keeps it open until stop()). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  /**
   * Closes the stream with a goodbye (half-close), so the control plane
   * withdraws our endpoints at once, and rejects a pending SVID request.
   * Resolves when the goodbye was answered (at most 1 s).
   */
  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const bye = this.teardown(true);
    if (this.pendingCsr) {
      this.pendingCsr.reject(new DiscoveryError(DiscoveryErrorCode.STOPPED, 'discovery client stopped'));
      this.pendingCsr = null;
    }
    return bye;
  }

  /**
   * Sends a CSR and resolves with the signed chain. Survives reconnects (the
   * CSR is re-sent on the new stream); rejects with TRELLIS_DISCOVERY_REFUSED
   * when the control plane refuses it (PERMISSION_DENIED, INVALID_ARGUMENT),
   * with `details.serverCode` saying why.
   */
  requestSvid(csrDer: Buffer): Promise<SvidResource> {
    if (this.pendingCsr) this.pendingCsr.reject(new DiscoveryError(DiscoveryErrorCode.STOPPED, 'superseded by a newer CSR'));
    return new Promise<SvidResource>((resolve, reject) => {
      this.pendingCsr = { csr: csrDer, resolve, reject };
      if (!this.call) return;
      if (this.callAuth?.kind === 'token' && this.usableCredentials() !== null) {
        // The control plane refuses a second CSR on a join-token stream (TRELLIS_CP_TOKEN_STREAM_SPENT):
        // renew on a new stream proven by the SVID; it sends the pending CSR when it takes over.
        this.opts.logger.info('renewing over mTLS: moving off the token-authenticated stream', {});
        this.roll();
        return;
      }
      this.write(this.call, this.sync.svidRequest(csrDer));
    });
  }

  /** The SVID to authenticate a new stream with, when it has more than 5 s left. */
  private usableCredentials(): ClientCredentials | null {
    return streamCredentials(this.opts.getCredentials?.() ?? null, this.now());
  }

  /** Per-type sync state, keyed by short type name. */
  syncState(): Record<string, ClientTypeState> {
    return this.sync.syncState();
  }

  /** Whether a stream is open, to which address, and the last failure. */
  connection(): { connected: boolean; address: string | null; group: string | null; lastError: { grpcCode: number; serverCode: string | null; message: string } | null } {
    const connected = this.call !== null && this.connectedAddress !== null;
    return { connected, address: this.connectedAddress, group: connected ? this.connectedGroup : null, lastError: this.lastStreamError };
  }

  /**
   * Sends a sidecar report (shared/src/protocol/sidecar-report.ts) on the open
   * stream; false when there is none or its control plane did not say it
   * takes reports (one that predates them would end the stream).
   */
  sendReport(body: Buffer): boolean {
    if (!this.call || this.connectedAddress === null || !this.reportsAccepted) return false;
    this.write(this.call, { report: body });
    this.lastReport = body;
    return true;
  }

  /** The roots currently trusted for the control plane (bootstrap, then the latest accepted bundle). */
  trustedRootsPem(): string {
    return this.rootsPem;
  }

  private connect(): void {
    if (this.stopped) return;
    const address = this.nextAddress();
    const creds = this.usableCredentials();
    this.openCall(address, creds, false).catch((err) => {
      this.opts.logger.warn('discovery connect failed', { address, error: err });
      this.scheduleReconnect();
    });
  }

  private nextAddress(): string {
    const address = this.opts.addresses[this.addressIndex % this.opts.addresses.length]!;
    this.addressIndex++;
    return address;
  }

  /**
   * Moves to a stream authenticated with the newest SVID when the open one
   * was opened with a token or an older SVID: the new stream is opened
   * beside the old, which says goodbye once the new one is accepted.
   */
  private roll(): void {
    if (this.stopped || !this.call || !this.callAuth || this.successor || this.rollTimer) return;
    const creds = this.usableCredentials();
    if (!creds || !shouldMoveStream(this.callAuth, creds)) return;
    const address = this.connectedAddress ?? this.nextAddress();
    this.openCall(address, creds, true).catch((err) => {
      this.opts.logger.warn('discovery stream with the new certificate failed to open; keeping the current one', { address, error: err });
      this.retryRoll();
    });
  }

  /** Tries the roll again after a backoff (the current stream carries on meanwhile). */
  private retryRoll(): void {
    if (this.stopped || this.rollTimer) return;
    const delay = backoffDelayMs(this.rollAttempt++, this.backoff, this.random());
    this.rollTimer = setTimeout(() => {
      this.rollTimer = null;
      this.roll();
    }, delay);
    this.rollTimer.unref();
  }

  /**
   * Opens a stream to `address`, authenticated by `creds` (mTLS) or else the
   * token. A successor stream (make-before-break) becomes the open one only
   * when the control plane accepts it; until then the open stream carries on.
   */
  private async openCall(address: string, creds: ClientCredentials | null, successor: boolean): Promise<void> {
    const useMtls = creds !== null;
    const metadata: Record<string, string> = {};
    let joinToken = false;
    if (!useMtls) {
      const token = await this.opts.getToken();
      joinToken = isJoinToken(token);
      metadata['authorization'] = `Bearer ${token}`;
    }
    if (this.stopped) return;
    const expected = this.opts.controlPlaneSpiffeId;
    const call: Call = openControlPlaneCall(
      address,
      controlPlaneTls({
        rootsPem: this.rootsPem,
        credentials: useMtls ? creds : null,
        expectedSpiffeId: expected,
        keyExchange: this.opts.getKeyExchange?.() ?? DEFAULT_KEY_EXCHANGE,
        now: () => new Date(this.now()),
        onWrongIdentity: (presented) => (this.serverMismatch = presented),
      }),
      metadata,
      {
        onMetadata: (headers) => {
          if (this.successor?.call === call) return this.takeOver(this.successor, headers[REPORTS_HEADER] === '1');
          if (this.call !== call) return;
          this.reportsAccepted = headers[REPORTS_HEADER] === '1';
          this.connectedAddress = address;
          this.connectedGroup = groupName(call.group);
          for (const l of this.connectListeners) l(true);
        },
        onMessage: (buf) => {
          if (this.call !== call) return;
          let res: WireResponse;
          try {
            res = decodeDiscoveryResponse(buf);
          } catch (err) {
            // A message we cannot parse: end this stream as grpc-js did (INTERNAL) and reconnect.
            call.cancel();
            this.onStreamEnd(call, { code: GrpcStatus.INTERNAL, details: `failed to parse a DiscoveryResponse: ${(err as Error).message}`, metadata: {} });
            return;
          }
          this.attempt = 0;
          this.retryHintMs = 0;
          this.reportedMismatch = null;
          this.chain = this.chain.then(() => this.onResponse(call, res)).catch((err) => this.opts.logger.error('discovery response handling failed', { error: err }));
        },
        onStatus: (status) => this.onStreamEnd(call, status),
      },
    );
    if (successor) {
      this.successor = { call, address, notAfterMs: creds!.notAfter.getTime() };
    } else {
      this.call = call;
      this.callAuth = useMtls ? { kind: 'svid', notAfterMs: creds.notAfter.getTime() } : { kind: 'token', joinToken };
    }
    // Subscribe with the versions we hold. A successor gets the pending CSR when it takes over (takeOver), not twice while both are open.
    for (const req of this.sync.subscriptions(this.pendingCsr && !successor ? this.pendingCsr.csr : undefined)) this.write(call, req);
    this.opts.logger.info(successor ? 'discovery stream opening with the new certificate' : 'discovery stream opened', { address, auth: useMtls ? 'svid' : 'token' });
  }

  /**
   * The successor was accepted: it becomes the open stream and the old one
   * says goodbye, so the control plane never sees this sidecar gone. A CSR
   * still pending on the old stream is sent again here (its answer there
   * would never be read), and so is the last report (the control plane
   * keeps one per stream; the report loop sends only changes).
   */
  private takeOver(next: { call: Call; address: string; notAfterMs: number }, takesReports: boolean): void {
    const old = this.call;
    const wasConnected = this.connectedAddress !== null;
    this.successor = null;
    this.call = next.call;
    this.callAuth = { kind: 'svid', notAfterMs: next.notAfterMs };
    this.connectedAddress = next.address;
    this.connectedGroup = groupName(next.call.group);
    this.reportsAccepted = takesReports;
    this.rollAttempt = 0;
    void old?.close(GOODBYE_TIMEOUT_MS);
    if (!wasConnected) for (const l of this.connectListeners) l(true);
    if (this.pendingCsr) this.write(next.call, this.sync.svidRequest(this.pendingCsr.csr));
    if (this.lastReport && takesReports) this.write(next.call, { report: this.lastReport });
    else this.lastReport = null;
    this.opts.logger.info('discovery stream renewed with the new certificate', { address: next.address, notAfter: new Date(next.notAfterMs).toISOString() });
    // A certificate newer still may have arrived meanwhile.
    this.roll();
  }

  /** Writes on `call`: the stream a reply belongs to, never whichever stream is open by the time it is sent. */
  private write(call: Call | null, req: DiscoveryRequestInit): void {
    try {
      call?.write(encodeDiscoveryRequest(req));
    } catch (err) {
      this.opts.logger.warn('discovery write failed', { error: err });
    }
  }

  private async onResponse(call: Call, res: WireResponse): Promise<void> {
    if (this.call !== call) return;
    const accepted = await this.sync.handle(res, (reply) => this.write(call, reply));
    if (accepted.bundleRootsPem !== undefined) this.rootsPem = accepted.bundleRootsPem;
    if (accepted.svid) {
      const p = this.pendingCsr;
      this.pendingCsr = null;
      p?.resolve(accepted.svid);
    }
  }

  /** `status` null: the server ended the stream with OK, which this long-lived stream treats as UNAVAILABLE. */
  private onStreamEnd(call: Call, status: CallStatus | null): void {
    if (this.successor?.call === call) {
      // The new stream was refused or failed: the open one carries on, and the move is tried again.
      this.successor = null;
      this.serverMismatch = null;
      this.opts.logger.warn('discovery stream with the new certificate ended before it was accepted; keeping the current one', {
        grpcCode: grpcStatusName(status?.code ?? GrpcStatus.UNAVAILABLE),
        serverCode: status?.metadata['trellis-error-code'] ?? null,
        message: status?.details,
      });
      this.retryRoll();
      return;
    }
    if (this.call !== call) return;
    const err = status === null || status.code === GrpcStatus.OK ? null : status;
    const code = err?.code ?? GrpcStatus.UNAVAILABLE;
    const serverCode = err?.metadata['trellis-error-code'] ?? null;
    const retry = Number(err?.metadata['trellis-retry-after-ms'] ?? 0);
    this.lastStreamError = { grpcCode: code, serverCode, message: err?.details ?? 'stream ended by the server' };
    // Bounded: an absurd hint would park the sidecar for days, and past 2^31 ms setTimeout fires at once (a reconnect storm).
    this.retryHintMs = Number.isFinite(retry) && retry > 0 ? Math.min(retry, MAX_RETRY_HINT_MS) : 0;
    for (const l of this.endListeners) l({ ...this.lastStreamError, retryAfterMs: this.retryHintMs });
    const mismatch = identityMismatch(this.opts.controlPlaneSpiffeId, this.opts.node, this.serverMismatch, serverCode, err?.details ?? '');
    this.serverMismatch = null;
    if (this.stopped) {
      // nothing to report
    } else if (mismatch && this.reportedMismatch !== mismatch.message) {
      // A contradiction in our own settings does not heal by retrying: say it once, loudly, with the
      // fix, and keep retrying on the capped backoff (the token file or the control plane may change).
      this.reportedMismatch = mismatch.message;
      this.opts.logger.error(mismatch.message, { code: mismatch.code, fix: mismatch.fix, retrying: 'with backoff, up to every 30 s' });
    } else if (mismatch) {
      this.opts.logger.debug('discovery stream ended', { code: mismatch.code, message: err?.details });
    } else {
      this.opts.logger.warn('discovery stream ended', { grpcCode: grpcStatusName(code), serverCode, message: err?.details });
    }
    // An identity mismatch refuses the stream, not the CSR: keep it pending for the stream that works.
    if (this.pendingCsr && !mismatch && (code === GrpcStatus.PERMISSION_DENIED || code === GrpcStatus.INVALID_ARGUMENT)) {
      const p = this.pendingCsr;
      this.pendingCsr = null;
      p.reject(new DiscoveryError(DiscoveryErrorCode.REFUSED, `control plane refused the CSR: ${err?.details ?? grpcStatusName(code)}`, { grpcCode: code, serverCode }));
    }
    const ended = this.callAuth;
    this.teardown();
    this.scheduleReconnect();
    if (ended && !this.stopped && credentialsExhausted(ended, serverCode, this.usableCredentials())) {
      for (const l of this.exhaustedListeners) l({ serverCode: serverCode!, message: err?.details ?? '' });
    }
  }

  /** Drops the open stream (and a successor): cancelled, or with `goodbye` closed with a half-close (resolves when answered). */
  private teardown(goodbye = false): Promise<void> {
    const call = this.call;
    const wasConnected = this.connectedAddress !== null;
    this.call = null;
    this.callAuth = null;
    this.connectedAddress = null;
    this.reportsAccepted = false;
    this.lastReport = null;
    this.successor?.call.cancel();
    this.successor = null;
    if (this.rollTimer) clearTimeout(this.rollTimer);
    this.rollTimer = null;
    let closed: Promise<void> = Promise.resolve();
    if (goodbye && call) closed = call.close(GOODBYE_TIMEOUT_MS);
    else call?.cancel();
    if (wasConnected) for (const l of this.connectListeners) l(false);
    return closed;
  }

  /** True while we hold an SVID that has not expired (the sidecar can serve). */
  private serving(): boolean {
    const creds = this.opts.getCredentials?.() ?? null;
    return creds !== null && creds.notAfter.getTime() > this.now();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.timer) return;
    const delay = Math.max(this.retryHintMs, backoffDelayMs(this.attempt, reconnectBackoff(this.backoff, this.serving()), this.random()));
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }
}
