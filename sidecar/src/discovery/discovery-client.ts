/**
 * The sidecar's end of the discovery stream.
 *
 * Connects over TLS to one of the control-plane addresses, verifying the
 * server by its exact SPIFFE ID against the current trust bundle (never by
 * hostname). First contact authenticates with a bearer token (re-read through
 * `getToken()` at every connect); once the sidecar holds an unexpired SVID,
 * connections authenticate with it over mTLS instead. A join token attests
 * one issuance, so a CSR while the open stream was token-authenticated moves
 * to a new stream authenticated with the SVID first. On any failure it
 * reconnects with jittered exponential backoff (cap 30 s) across all
 * addresses and re-subscribes, telling the server the versions it holds so an
 * unchanged config is not re-sent.
 *
 * Resources are handed to the handler registered for their type; a handler
 * that returns accepts them (ACK), one that throws rejects them (NACK with the
 * previously accepted version and the error). The private key is only ever
 * used here as the TLS client key, via `getCredentials()`.
 */
import { X509Certificate } from 'node:crypto';
import {
  decodeDiscoveryResponse,
  decodeResource,
  DISCOVERY_SERVICE,
  encodeDiscoveryRequest,
  type DiscoveryRequestInit,
  type DiscoveryResponseMessage,
  isKnownTypeUrl,
  SVID_TYPE_URL,
  TRUST_BUNDLE_TYPE_URL,
  typeShortName,
  TrellisError,
  isSpiffeId,
  parseSpiffeId,
  DEFAULT_KEY_EXCHANGE,
  groupName,
  groupsList,
  type KeyExchangePolicy,
  type Logger,
  type ResourceBodies,
  type SvidResource,
  type TypeUrl,
} from '@trellis/shared';
import { backoffDelayMs, DEFAULT_BACKOFF, type BackoffOptions } from './backoff';
import { DiscoveryError, DiscoveryErrorCode } from './discovery-error';
import { GrpcBidiCall } from './grpc-bidi-call';
import { GrpcStatus, grpcStatusName, type CallStatus } from './grpc-status';

/** What the sidecar says about itself (identity is proven separately). */
export interface DiscoveryNode {
  spiffeId: string;
  namespace: string;
  labels: Record<string, string>;
  service: string;
  inboundPorts: number[];
  /** Address callers should use; empty = the address the control plane sees. */
  address?: string;
}

/** The sidecar's current SVID, for mTLS renewals. */
export interface ClientCredentials {
  keyPem: string;
  chainPem: string;
  notAfter: Date;
}

/** Options of a DiscoveryClient. */
export interface DiscoveryClientOptions {
  /** host:port of every control-plane replica; tried in turn. */
  addresses: string[];
  /** Roots to trust before the first bundle arrives (PEM). */
  bootstrapBundlePem: string;
  /** The bearer token for first contact, re-read at each use. */
  getToken(): Promise<string>;
  /** The current SVID and key, or null before the first one. */
  getCredentials?(): ClientCredentials | null;
  node: DiscoveryNode;
  /** `spiffe://<td>/ns/trellis-system/sa/trellis-control-plane`. */
  controlPlaneSpiffeId: string;
  logger: Logger;
  clock?: () => number;
  random?: () => number;
  backoff?: BackoffOptions;
  /** Endpoints wanted (service names); empty = all. */
  endpointNames?: string[];
  /** The key-exchange policy to connect with (the pushed one; prefer until there is one). */
  getKeyExchange?(): KeyExchangePolicy;
}

/** How a stream ended. */
export interface StreamEndInfo {
  grpcCode: number;
  serverCode: string | null;
  message: string;
  retryAfterMs: number;
}

/** A resource handed to a handler. */
export interface ReceivedResource<T extends TypeUrl> {
  name: string;
  body: ResourceBodies[T];
}

/** Accepts (returns) or rejects (throws) a new version of one type. */
export type ResourceHandler<T extends TypeUrl> = (resources: ReadonlyArray<ReceivedResource<T>>, version: string) => void | Promise<void>;

/** The client's per-type view, for the sidecar's admin page and metrics. */
export interface ClientTypeState {
  state: 'NOT_RECEIVED' | 'ACKED' | 'NACKED';
  acceptedVersion: string | null;
  lastError: string | null;
  /** ISO-8601 time of the last accepted update. */
  updatedAt: string | null;
}

interface PendingCsr {
  csr: Buffer;
  resolve(v: SvidResource): void;
  reject(e: unknown): void;
}

type WireResponse = DiscoveryResponseMessage;
type Call = GrpcBidiCall;

/** Transport settings, as the grpc-js channel had them. */
const MAX_RECEIVE_MESSAGE_BYTES = 16 * 1024 * 1024;
const KEEPALIVE_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 20_000;
const CONNECT_TIMEOUT_MS = 20_000;
/** SNI sent to the control plane (it is verified by SPIFFE ID, not by name). */
const CONTROL_PLANE_SERVERNAME = 'trellis-control-plane';
const STREAM_PATH = `/${DISCOVERY_SERVICE}/StreamResources`;
/** The response header by which a control plane says it takes sidecar reports. */
const REPORTS_HEADER = 'trellis-reports';
/** The longest `trellis-retry-after-ms` hint honoured (5 min). */
const MAX_RETRY_HINT_MS = 300_000;

/** One long-lived, self-healing discovery stream. */
export class DiscoveryClient {
  private readonly handlers = new Map<TypeUrl, ResourceHandler<TypeUrl>>();
  private readonly accepted = new Map<TypeUrl, string>();
  private readonly states = new Map<TypeUrl, ClientTypeState>();
  private rootsPem: string;
  private pendingCsr: PendingCsr | null = null;
  private call: Call | null = null;
  /** How the open call authenticated. */
  private callAuth: 'token' | 'svid' | null = null;
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
  /** What the control plane presented when it was not the expected SPIFFE ID (set by the TLS check). */
  private serverMismatch: string | null = null;
  /** The identity mismatch last reported at error level; repeats go to debug until a stream works again. */
  private reportedMismatch: string | null = null;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly backoff: BackoffOptions;
  private readonly connectListeners = new Set<(connected: boolean) => void>();
  private readonly endListeners = new Set<(e: StreamEndInfo) => void>();

  constructor(private readonly opts: DiscoveryClientOptions) {
    if (opts.addresses.length === 0) throw new DiscoveryError(DiscoveryErrorCode.BAD_OPTIONS, 'addresses: at least one control-plane address is required');
    if (!opts.bootstrapBundlePem.includes('BEGIN CERTIFICATE')) throw new DiscoveryError(DiscoveryErrorCode.BAD_OPTIONS, 'bootstrapBundlePem: no PEM certificate');
    this.rootsPem = opts.bootstrapBundlePem;
    this.now = opts.clock ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
  }

  /** Registers the handler for one type (and subscribes to it); call before start(). */
  on<T extends TypeUrl>(typeUrl: T, handler: ResourceHandler<T>): this {
    if (typeUrl === SVID_TYPE_URL) throw new DiscoveryError(DiscoveryErrorCode.BAD_OPTIONS, 'SVIDs are obtained with requestSvid(), not a handler');
    this.handlers.set(typeUrl, handler as unknown as ResourceHandler<TypeUrl>);
    this.states.set(typeUrl, { state: 'NOT_RECEIVED', acceptedVersion: null, lastError: null, updatedAt: null });
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

  /** Opens the stream (and keeps it open until stop()). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  /** Closes the stream and rejects a pending SVID request. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.teardown();
    if (this.pendingCsr) {
      this.pendingCsr.reject(new DiscoveryError(DiscoveryErrorCode.STOPPED, 'discovery client stopped'));
      this.pendingCsr = null;
    }
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
      if (this.callAuth === 'token' && this.usableCredentials() !== null) {
        // The control plane refuses a second CSR on a join-token stream (TRELLIS_CP_TOKEN_STREAM_SPENT):
        // renew on a new stream proven by the SVID; connect() sends the pending CSR there.
        this.opts.logger.info('renewing over mTLS: moving off the token-authenticated stream', {});
        this.teardown();
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.connect();
        return;
      }
      this.write({ type_url: SVID_TYPE_URL, version_info: this.accepted.get(SVID_TYPE_URL) ?? '', response_nonce: '', csr: csrDer });
    });
  }

  /** The SVID to authenticate a new stream with, when it has more than 5 s left. */
  private usableCredentials(): ClientCredentials | null {
    const creds = this.opts.getCredentials?.() ?? null;
    return creds !== null && creds.notAfter.getTime() > this.now() + 5_000 ? creds : null;
  }

  /** Per-type sync state, keyed by short type name. */
  syncState(): Record<string, ClientTypeState> {
    const out: Record<string, ClientTypeState> = {};
    for (const [t, s] of this.states) out[typeShortName(t)] = { ...s };
    return out;
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
    this.write({ report: body });
    return true;
  }

  /** The roots currently trusted for the control plane (bootstrap, then the latest accepted bundle). */
  trustedRootsPem(): string {
    return this.rootsPem;
  }

  private connect(): void {
    if (this.stopped) return;
    const address = this.opts.addresses[this.addressIndex % this.opts.addresses.length]!;
    this.addressIndex++;
    const creds = this.usableCredentials();
    const useMtls = creds !== null;
    const start = async (): Promise<void> => {
      const metadata: Record<string, string> = {};
      if (!useMtls) metadata['authorization'] = `Bearer ${await this.opts.getToken()}`;
      if (this.stopped) return;
      const expected = this.opts.controlPlaneSpiffeId;
      let first = true;
      const call: Call = new GrpcBidiCall(
        {
          address,
          path: STREAM_PATH,
          tls: {
            caPem: this.rootsPem,
            ...(useMtls ? { keyPem: creds!.keyPem, certPem: creds!.chainPem } : {}),
            servername: CONTROL_PLANE_SERVERNAME,
            ecdhCurve: groupsList(this.opts.getKeyExchange?.() ?? DEFAULT_KEY_EXCHANGE),
            // Replaces hostname checks: the control plane is known by its SPIFFE ID alone.
            checkServerIdentity: (_host, cert) => {
              const uris = (cert.subjectaltname ?? '').split(/,\s*/).filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
              if (uris.length === 1 && uris[0] === expected) return undefined;
              this.serverMismatch = uris.join(',') || 'no SPIFFE ID';
              return new DiscoveryError(DiscoveryErrorCode.SERVER_IDENTITY, `control plane presented ${uris.join(',') || 'no SPIFFE ID'}, expected ${expected}`);
            },
          },
          metadata,
          maxReceiveMessageBytes: MAX_RECEIVE_MESSAGE_BYTES,
          keepaliveMs: KEEPALIVE_MS,
          keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
          connectTimeoutMs: CONNECT_TIMEOUT_MS,
        },
        {
          onMetadata: (headers) => {
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
      this.call = call;
      this.callAuth = useMtls ? 'svid' : 'token';
      // Subscribe: node in the first request, the version we hold for each type.
      for (const t of this.handlers.keys()) {
        const req: DiscoveryRequestInit = {
          type_url: t,
          version_info: this.accepted.get(t) ?? '',
          response_nonce: '',
          resource_names: t === 'type.trellis.dev/trellis.v1.Endpoints' ? this.opts.endpointNames ?? [] : [],
        };
        if (first) req.node = this.wireNode();
        first = false;
        this.write(req);
      }
      const svidReq: DiscoveryRequestInit = { type_url: SVID_TYPE_URL, version_info: this.accepted.get(SVID_TYPE_URL) ?? '', response_nonce: '' };
      if (first) svidReq.node = this.wireNode();
      if (this.pendingCsr) svidReq.csr = this.pendingCsr.csr;
      this.write(svidReq);
      this.opts.logger.info('discovery stream opened', { address, auth: useMtls ? 'svid' : 'token' });
    };
    start().catch((err) => {
      this.opts.logger.warn('discovery connect failed', { address, error: err });
      this.scheduleReconnect();
    });
  }

  private wireNode(): NonNullable<DiscoveryRequestInit['node']> {
    const n = this.opts.node;
    return { spiffe_id: n.spiffeId, namespace: n.namespace, labels: n.labels, service: n.service, inbound_ports: n.inboundPorts, address: n.address ?? '' };
  }

  private write(req: DiscoveryRequestInit): void {
    try {
      this.call?.write(encodeDiscoveryRequest(req));
    } catch (err) {
      this.opts.logger.warn('discovery write failed', { error: err });
    }
  }

  private async onResponse(call: Call, res: WireResponse): Promise<void> {
    if (this.call !== call) return;
    const t = res.type_url;
    if (!isKnownTypeUrl(t)) {
      this.nack(t, res, `unknown type_url ${t}`);
      return;
    }
    if (t === SVID_TYPE_URL) {
      let svid: SvidResource;
      try {
        if (res.resources.length !== 1) throw new Error(`expected 1 SVID, got ${res.resources.length}`);
        svid = decodeResource(SVID_TYPE_URL, res.resources[0]!.body);
        if (svid.spiffeId !== this.opts.node.spiffeId) throw new Error(`SVID is for ${svid.spiffeId}, expected ${this.opts.node.spiffeId}`);
      } catch (err) {
        this.nack(t, res, (err as Error).message);
        return;
      }
      this.ack(t, res);
      const p = this.pendingCsr;
      this.pendingCsr = null;
      p?.resolve(svid);
      return;
    }
    const handler = this.handlers.get(t);
    if (!handler) {
      this.nack(t, res, `not subscribed to ${t}`);
      return;
    }
    try {
      const decoded = res.resources.map((r) => ({ name: r.name, body: decodeResource(t, r.body) }));
      if (t === TRUST_BUNDLE_TYPE_URL) checkBundle(decoded as ReadonlyArray<ReceivedResource<typeof TRUST_BUNDLE_TYPE_URL>>);
      await handler(decoded, res.version_info);
      if (t === TRUST_BUNDLE_TYPE_URL) {
        this.rootsPem = (decoded[0]!.body as ResourceBodies[typeof TRUST_BUNDLE_TYPE_URL]).rootsPem.join('\n');
      }
    } catch (err) {
      this.nack(t, res, err instanceof TrellisError ? `${err.message} [${err.code}]` : (err as Error).message);
      return;
    }
    this.ack(t, res);
  }

  private ack(t: TypeUrl, res: WireResponse): void {
    this.accepted.set(t, res.version_info);
    if (this.states.has(t)) this.states.set(t, { state: 'ACKED', acceptedVersion: res.version_info, lastError: null, updatedAt: new Date(this.now()).toISOString() });
    this.write({ type_url: t, version_info: res.version_info, response_nonce: res.nonce, resource_names: this.namesFor(t) });
  }

  private nack(t: string, res: WireResponse, message: string): void {
    this.opts.logger.warn('discovery update rejected', { type: typeShortName(t), version: res.version_info, error: message });
    if (isKnownTypeUrl(t)) {
      const prev = this.states.get(t);
      if (prev) this.states.set(t, { ...prev, state: 'NACKED', lastError: message });
    }
    this.write({
      type_url: t,
      version_info: isKnownTypeUrl(t) ? this.accepted.get(t) ?? '' : '',
      response_nonce: res.nonce,
      resource_names: isKnownTypeUrl(t) ? this.namesFor(t) : [],
      error_detail: { code: GrpcStatus.INVALID_ARGUMENT, message: message.slice(0, 4000) },
    });
  }

  private namesFor(t: TypeUrl): string[] {
    return t === 'type.trellis.dev/trellis.v1.Endpoints' ? this.opts.endpointNames ?? [] : [];
  }

  /** `status` null: the server ended the stream with OK, which this long-lived stream treats as UNAVAILABLE. */
  private onStreamEnd(call: Call, status: CallStatus | null): void {
    if (this.call !== call) return;
    const err = status === null || status.code === GrpcStatus.OK ? null : status;
    const code = err?.code ?? GrpcStatus.UNAVAILABLE;
    const serverCode = err?.metadata['trellis-error-code'] ?? null;
    const retry = Number(err?.metadata['trellis-retry-after-ms'] ?? 0);
    this.lastStreamError = { grpcCode: code, serverCode, message: err?.details ?? 'stream ended by the server' };
    // Bounded: an absurd hint would park the sidecar for days, and past 2^31 ms setTimeout fires at once (a reconnect storm).
    this.retryHintMs = Number.isFinite(retry) && retry > 0 ? Math.min(retry, MAX_RETRY_HINT_MS) : 0;
    for (const l of this.endListeners) l({ ...this.lastStreamError, retryAfterMs: this.retryHintMs });
    const mismatch = this.identityMismatch(serverCode, err?.details ?? '');
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
    this.teardown();
    this.scheduleReconnect();
  }

  /**
   * A failure that means our identity settings contradict the control plane or our token, with the
   * fix; null for any other failure. The control plane is expected by its SPIFFE ID, and issues only
   * the identity the token authenticates, so retrying cannot fix either.
   */
  private identityMismatch(serverCode: string | null, details: string): { code: string; message: string; fix: string } | null {
    const expected = this.opts.controlPlaneSpiffeId;
    if (this.serverMismatch !== null) {
      const presented = this.serverMismatch;
      const theirs = isSpiffeId(presented) ? parseSpiffeId(presented).trustDomain : null;
      const ours = isSpiffeId(expected) ? parseSpiffeId(expected).trustDomain : null;
      const fix = theirs !== null && theirs !== ours
        ? `the control plane serves trust domain ${theirs}: start the sidecar with --trust-domain ${theirs}, or without --trust-domain and --spiffe-id when its token is a join token (the token names the identity)`
        : `start the sidecar with --control-plane-id ${presented} if that is the control plane you mean to trust`;
      return { code: DiscoveryErrorCode.SERVER_IDENTITY, message: `the control plane presented ${presented}, but this sidecar expects ${expected} (from --trust-domain or --control-plane-id)`, fix };
    }
    if (serverCode === 'TRELLIS_CP_IDENTITY_MISMATCH') {
      return {
        code: serverCode,
        message: `the control plane refused our identity settings: ${details} (this sidecar announced ${this.opts.node.spiffeId}, namespace ${this.opts.node.namespace})`,
        fix: 'the token decides the identity: drop --spiffe-id, --trust-domain, --namespace and --service-account so the sidecar takes them from its join token, or give it a token for the identity you meant',
      };
    }
    return null;
  }

  private teardown(): void {
    const call = this.call;
    const wasConnected = this.connectedAddress !== null;
    this.call = null;
    this.callAuth = null;
    this.connectedAddress = null;
    this.reportsAccepted = false;
    call?.cancel();
    if (wasConnected) for (const l of this.connectListeners) l(false);
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.timer) return;
    const delay = Math.max(this.retryHintMs, backoffDelayMs(this.attempt, this.backoff, this.random()));
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }
}

/** Every root in a bundle must parse as a CA certificate; else the update is rejected and the old bundle kept. */
function checkBundle(resources: ReadonlyArray<ReceivedResource<typeof TRUST_BUNDLE_TYPE_URL>>): void {
  if (resources.length !== 1) throw new Error(`expected one trust bundle, got ${resources.length}`);
  resources[0]!.body.rootsPem.forEach((pem, i) => {
    let c: X509Certificate;
    try {
      c = new X509Certificate(pem);
    } catch (err) {
      throw new Error(`rootsPem[${i}]: not a certificate: ${(err as Error).message}`);
    }
    if (!c.ca) throw new Error(`rootsPem[${i}]: not a CA certificate`);
  });
}
