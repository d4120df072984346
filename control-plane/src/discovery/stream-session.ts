/**
 * One sidecar's discovery stream: authenticate once, take one of the
 * identity's stream slots, judge the node against what is attested for the
 * identity (attestation/node-claims.ts; for a pod-attested stream, against
 * that pod on the API server, which it then follows; node-admission.ts), validate every request, sign CSRs
 * under the signing limiter (one per join-token stream; stream-issuance.ts), take the sidecar's
 * reports (received-report.ts), send the current state of each subscribed type, and track
 * ACK/NACK per type. Any protocol violation ends this stream alone with a precise status;
 * the server and other streams go on.
 */
import {
  AckTracker,
  ALL_TYPE_URLS,
  AUTHORIZATION_POLICIES_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  encodeResource,
  formatHostPort,
  isKnownTypeUrl,
  RENEWAL_TYPE_URL,
  SINGLETON_RESOURCE_NAME,
  SVID_TYPE_URL,
  contentVersion,
  ENDPOINTS_TYPE_URL,
  typeShortName,
  type Endpoint,
  type Logger,
  type RenewalResource,
  type SidecarReport,
  type TypeSyncSnapshot,
  type TypeUrl,
} from '@trellis/shared';
import type { AuthenticatedPeer } from '../auth/authenticated-peer';
import { authenticate, type AuthenticatorDeps, type StreamCredentials } from '../auth/authenticator';
import { podNode, type SessionNode } from '../attestation/node-claims';
import { sameLabels } from '../attestation/workload-metadata';
import type { PodDirectory } from '../registry/pod-facts';
import { ControlPlaneError, ControlPlaneErrorCode, errorCodeOf } from '../errors/control-plane-error';
import type { SigningLimiter } from '../issuance/signing-limiter';
import type { SvidAuthority } from '../issuance/svid-authority';
import type { ControlPlaneMetrics } from '../observability/control-plane-metrics';
import { admitNode } from './node-admission';
import { reportWaitMs, takeReport, type ReceivedReport } from './received-report';
import { renewalFor, type ReissueBook } from './reissue-orders';
import type { DiscoverySnapshot, ResourceBuilder } from './resource-builder';
import { issueOnStream } from './stream-issuance';
import type { StreamQuota } from './stream-quota';
import type { WireRequest, WireResponse } from './wire-types';

export type { SessionNode } from '../attestation/node-claims';

/** How a session talks back to its gRPC call. */
export interface StreamTransport {
  send(res: WireResponse): void;
  /** Ends the call with the status for `err` (null = OK). */
  end(err: unknown): void;
  /** Tells the sidecar the stream is authenticated and open (sends response headers). */
  accepted(): void;
  /** The peer's IP as the server saw it. */
  readonly peerHost: string;
  /** Tells the connection this stream authenticated (it is then no longer cut for not authenticating). */
  authenticated?(): void;
}

/** Collaborators shared by all sessions. */
export interface SessionDeps {
  auth: AuthenticatorDeps;
  authority: SvidAuthority;
  limiter: SigningLimiter;
  builder: ResourceBuilder;
  snapshot(): DiscoverySnapshot;
  metrics: ControlPlaneMetrics;
  logger: Logger;
  nowMs(): number;
  svidTtlSeconds: number;
  idleTimeoutMs: number;
  /** Called once the node is known (registers endpoints) and on close. */
  onNodeKnown(session: StreamSession): void;
  onClosed(session: StreamSession): void;
  /** True while endpoint lists are held back (a control plane that just started, see discovery-service.ts). */
  holdEndpoints?(): boolean;
  /** Live re-issue orders and what this control plane issued while they are live. */
  reissue: Pick<ReissueBook, 'live' | 'issuedAt' | 'noteIssued'>;
  /** [0, 1): each sidecar's place inside a re-issue window. */
  random(): number;
  /** Open streams per identity and their cap. */
  quota: StreamQuota;
  /** The API server's pods, when the control plane reads them: pod-attested streams are judged by and follow their pod. */
  pods?: PodDirectory;
  /** Called with each report a stream takes, and the one it replaces (null for the stream's first). */
  onReport?(session: StreamSession, previous: SidecarReport | null, report: SidecarReport): void;
}

/** One proxy as /debug/proxies shows it. */
export interface ProxyStatus {
  id: number;
  spiffeId: string | null;
  authMethod: string | null;
  namespace: string | null;
  service: string | null;
  /** The attested labels (what its policies select on). */
  labels: Record<string, string>;
  address: string | null;
  /** `namespace/name` of the pod the stream is attested by (Kubernetes), else null. */
  pod: string | null;
  connectedAt: string;
  certificateExpiry: string | null;
  /** The serial (lower-case hex) of the certificate last issued on this stream, else of the one it authenticated with. */
  certificateSerial: string | null;
  types: Record<string, TypeSyncSnapshot>;
}

/** Requests a stream may have waiting; a sidecar needs a handful (one per type), so more is a flood. */
const MAX_PENDING_REQUESTS = 64;
let nextSessionId = 1;

/** The server side of one StreamResources call. */
export class StreamSession {
  readonly id = nextSessionId++;
  peer: AuthenticatedPeer | null = null;
  node: SessionNode | null = null;
  private readonly trackers = new Map<TypeUrl, AckTracker>();
  private readonly subscriptions = new Map<TypeUrl, readonly string[]>();
  private svidNotAfter: Date | null = null;
  private svidSerial: string | null = null;
  /** The sidecar's last report, replaced whole by each new one. */
  private lastReport: ReceivedReport | null = null;
  /** A report that came sooner than the interval allows, taken when `reportTimer` fires (received-report.ts). */
  private heldReport: Buffer | null = null;
  private reportTimer: NodeJS.Timeout | null = null;
  /** True while this stream holds one of its identity's slots in the quota. */
  private holdsSlot = false;
  /** When an SVID was last issued on this stream (our clock). */
  private svidIssuedAtMs: number | null = null;
  /** This sidecar's jitter draw per re-issue order, so a re-computation keeps its place in the window. */
  private readonly jitters = new Map<number, number>();
  private nonceCounter = 0;
  private pending = 0;
  private closed = false;
  /** How the stream ended: the sidecar said goodbye, it was lost, or we refused it (with our code). */
  private ending: { by: 'goodbye' | 'lost' } | { by: 'refused'; code: string } | null = null;
  private chain: Promise<void>;
  private idleTimer: NodeJS.Timeout | null;
  private readonly connectedAt: Date;

  constructor(private readonly deps: SessionDeps, private readonly transport: StreamTransport, creds: StreamCredentials) {
    this.connectedAt = new Date(deps.nowMs());
    this.idleTimer = setTimeout(() => {
      this.fail(new ControlPlaneError(ControlPlaneErrorCode.IDLE_STREAM, `no request within ${deps.idleTimeoutMs} ms of opening the stream`));
    }, deps.idleTimeoutMs);
    this.idleTimer.unref();
    this.chain = authenticate(deps.auth, creds, deps.nowMs()).then(
      (peer) => {
        if (this.closed) return;
        if (!deps.quota.acquire(peer.spiffeId)) {
          this.logWarn('stream refused: identity holds its maximum of streams', { event: 'audit', spiffeId: peer.spiffeId, authMethod: peer.method, max: deps.quota.maxPerIdentity, peer: transport.peerHost });
          this.fail(new ControlPlaneError(ControlPlaneErrorCode.STREAM_LIMIT, `${peer.spiffeId} already holds ${deps.quota.maxPerIdentity} discovery streams on this control plane`, { retryAfterMs: 5000 }));
          return;
        }
        this.holdsSlot = true;
        this.peer = peer;
        transport.authenticated?.();
        transport.accepted();
        this.logInfo('stream authenticated', { spiffeId: peer.spiffeId, authMethod: peer.method, ...peer.audit, event: 'audit' });
      },
      (err) => {
        this.deps.metrics.svidsRefused.inc({ reason: errorCodeOf(err) });
        this.logWarn('stream authentication refused', { error: err, peer: transport.peerHost, event: 'audit' });
        this.fail(err);
      },
    );
  }

  /** True once the stream has ended. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Whether this ended stream's endpoints should outlive it for a grace
   * period: yes when it was lost or reset, since its sidecar may still be
   * serving and about to reconnect; no when the sidecar said goodbye (it is
   * draining or gone) or its credential was refused (fail closed).
   */
  get lingers(): boolean {
    const e = this.ending;
    if (e === null) return false;
    if (e.by === 'refused') return e.code !== ControlPlaneErrorCode.CERT_REJECTED;
    return e.by === 'lost';
  }

  /** Queues one request; requests are handled strictly in order. */
  onRequest(req: WireRequest): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (++this.pending > MAX_PENDING_REQUESTS) {
      this.fail(new ControlPlaneError(ControlPlaneErrorCode.REQUEST_FLOOD, `more than ${MAX_PENDING_REQUESTS} requests waiting on one stream`));
      return;
    }
    this.chain = this.chain
      .then(() => (this.closed ? undefined : this.handle(req)))
      .catch((err) => this.fail(err))
      .finally(() => {
        this.pending--;
      });
  }

  /**
   * The sidecar is gone: `goodbye` when it half-closed the stream (it is
   * leaving: its endpoints go at once), `lost` when the stream was
   * cancelled or its connection dropped (they may linger).
   */
  onPeerGone(how: 'goodbye' | 'lost' = 'lost'): void {
    if (this.closed) return;
    this.closed = true;
    this.ending = { by: how };
    this.cleanup();
    this.transport.end(null);
  }

  /** Ends the stream with `err` (or OK when null), e.g. on shutdown. */
  fail(err: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.ending = { by: 'refused', code: err === null ? 'OK' : errorCodeOf(err) };
    if (err !== null) {
      this.deps.metrics.streamErrors.inc({ code: errorCodeOf(err) });
      this.logInfo('stream ended', { error: err, spiffeId: this.peer?.spiffeId });
    }
    this.cleanup();
    this.transport.end(err);
  }

  /** Re-computes the dirty types and pushes only what changed for this sidecar. */
  refresh(types: ReadonlySet<TypeUrl>): void {
    if (this.closed || !this.node) return;
    for (const t of types) if (this.subscriptions.has(t) && t !== SVID_TYPE_URL) this.push(t);
  }

  /**
   * The renewal this sidecar is asked for now: a live re-issue order that
   * postdates the certificate it holds (issued on this stream, or the one it
   * authenticated with), at its own jittered instant inside the window.
   */
  renewal(): RenewalResource {
    const peer = this.peer;
    if (!peer) return renewalFor([], { spiffeId: '', issuedAtMs: null }, () => 0, 0);
    const now = this.deps.nowMs();
    const serial = peer.method === 'svid' ? peer.audit['serialHex'] : undefined;
    const issuedAtMs = this.svidIssuedAtMs ?? (typeof serial === 'string' ? this.deps.reissue.issuedAt(serial) : null);
    const jitter = (id: number): number => {
      let j = this.jitters.get(id);
      if (j === undefined) {
        j = this.deps.random();
        this.jitters.set(id, j);
      }
      return j;
    };
    return renewalFor(this.deps.reissue.live(now), { spiffeId: peer.spiffeId, issuedAtMs }, jitter, now);
  }

  /**
   * The pod this stream is attested by changed on the API server: a pod that
   * is gone ends the stream (TOKEN_POD_GONE: its credential is refused from
   * now on); new labels are taken and the policies they select pushed.
   */
  podChanged(): void {
    const bound = this.peer?.attestation.pod;
    if (this.closed || !this.node || !bound || !this.deps.pods) return;
    const facts = this.deps.pods.lookup(bound, this.deps.nowMs());
    if (facts === 'unknown') return;
    if (facts === 'gone') {
      this.logInfo('pod gone: ending its stream', { event: 'audit', spiffeId: this.peer!.spiffeId, pod: `${bound.namespace}/${bound.name}` });
      this.fail(new ControlPlaneError(ControlPlaneErrorCode.TOKEN_POD_GONE, `pod ${bound.namespace}/${bound.name} no longer exists`));
      return;
    }
    const next = podNode(this.peer!.attestation, facts);
    if (sameLabels(next.labels, this.node.labels) && next.address === this.node.address) return;
    const relabelled = !sameLabels(next.labels, this.node.labels);
    this.node = next;
    if (relabelled) {
      this.logInfo('pod relabelled: policies follow its labels', { spiffeId: this.peer!.spiffeId, pod: `${bound.namespace}/${bound.name}`, labels: next.labels });
      this.refresh(new Set([PEER_AUTHENTICATION_TYPE_URL, AUTHORIZATION_POLICIES_TYPE_URL]));
    }
  }

  /** The endpoints this sidecar serves: its attested service, at the address its stream comes from, on the attested ports it announced. */
  servedEndpoints(): Endpoint[] {
    if (!this.node || !this.peer || this.node.service === '') return [];
    const host = this.node.address;
    return this.node.inboundPorts.map((p) => ({ address: formatHostPort(host, p), spiffeId: this.peer!.spiffeId }));
  }

  /** The sidecar's last report (attributed to this stream's authenticated identity), or null. */
  report(): ReceivedReport | null {
    return this.lastReport;
  }

  /** The per-type state, for /debug/proxies. */
  status(): ProxyStatus {
    const types: Record<string, TypeSyncSnapshot> = {};
    for (const t of ALL_TYPE_URLS) types[typeShortName(t)] = this.tracker(t).snapshot();
    const certExpiry = this.svidNotAfter ?? (this.peer?.method === 'svid' ? new Date(this.peer.expiresAtMs) : null);
    return {
      id: this.id,
      spiffeId: this.peer?.spiffeId ?? null,
      authMethod: this.peer?.method ?? null,
      namespace: this.node?.namespace ?? null,
      service: this.node?.service || null,
      labels: { ...(this.node?.labels ?? {}) },
      address: this.node ? this.node.address : null,
      pod: this.peer?.attestation.pod ? `${this.peer.attestation.pod.namespace}/${this.peer.attestation.pod.name}` : null,
      connectedAt: this.connectedAt.toISOString(),
      certificateExpiry: certExpiry ? certExpiry.toISOString() : null,
      certificateSerial: this.svidSerial ?? (this.peer?.method === 'svid' && typeof this.peer.audit['serialHex'] === 'string' ? (this.peer.audit['serialHex'] as string) : null),
      types,
    };
  }

  // Log lines carry the stream id. No child logger per stream: at 10,000 streams its
  // closures were ~0.4 KB of heap each, kept for the life of the stream to log a few lines.
  private logInfo(msg: string, fields: Record<string, unknown>): void {
    this.deps.logger.info(msg, { stream: this.id, ...fields });
  }

  private logWarn(msg: string, fields: Record<string, unknown>): void {
    this.deps.logger.warn(msg, { stream: this.id, ...fields });
  }

  private cleanup(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.reportTimer) clearTimeout(this.reportTimer);
    this.reportTimer = null;
    this.heldReport = null;
    if (this.holdsSlot && this.peer) this.deps.quota.release(this.peer.spiffeId);
    this.holdsSlot = false;
    this.deps.onClosed(this);
  }

  private tracker(t: TypeUrl): AckTracker {
    let tr = this.trackers.get(t);
    if (!tr) {
      tr = new AckTracker();
      this.trackers.set(t, tr);
    }
    return tr;
  }

  private async handle(req: WireRequest): Promise<void> {
    const C = ControlPlaneErrorCode;
    const peer = this.peer;
    if (!peer) return; // authentication failed; the stream is ending
    if (!this.node) {
      this.node = admitNode(this.deps, { id: this.id, peerHost: this.transport.peerHost }, req.node, peer);
      this.deps.onNodeKnown(this);
    }
    if (req.report && req.report.length > 0) return this.receiveReport(req.report);
    const typeUrl = req.type_url;
    if (!isKnownTypeUrl(typeUrl)) throw new ControlPlaneError(C.UNKNOWN_TYPE, `unknown type_url "${String(typeUrl).slice(0, 200)}"`, { typeUrl: String(typeUrl).slice(0, 200) });

    if (typeUrl === SVID_TYPE_URL && req.csr && req.csr.length > 0) {
      this.subscriptions.set(typeUrl, []);
      await this.issueSvid(req.csr, peer);
      return;
    }

    const now = this.deps.nowMs();
    const verdict = this.tracker(typeUrl).onRequest(
      { versionInfo: req.version_info ?? '', responseNonce: req.response_nonce ?? '', errorDetail: req.error_detail?.message || (req.error_detail ? 'rejected' : null) },
      now,
      this.isKnownNonce(req.response_nonce ?? ''),
    );
    const short = typeShortName(typeUrl);
    switch (verdict.kind) {
      case 'unknown-nonce':
        throw new ControlPlaneError(C.UNKNOWN_NONCE, `response_nonce "${String(req.response_nonce).slice(0, 64)}" was never sent on this stream`, { typeUrl });
      case 'nack':
        this.deps.metrics.rejections.inc({ type: short });
        this.logWarn('sidecar rejected resources', { spiffeId: peer.spiffeId, type: short, version: verdict.rejectedVersion, detail: verdict.detail.slice(0, 1000) });
        break;
      case 'ack':
        this.deps.metrics.pushToAck.observe({ type: short }, verdict.latencyMs / 1000);
        break;
      case 'stale':
      case 'subscribe':
        break;
    }
    const names = typeUrl === SVID_TYPE_URL ? [] : [...(req.resource_names ?? [])].sort();
    const before = this.subscriptions.get(typeUrl);
    this.subscriptions.set(typeUrl, names);
    if (typeUrl === SVID_TYPE_URL) return;
    if (verdict.kind === 'subscribe' || !before || before.join(',') !== names.join(',')) this.push(typeUrl);
  }

  /**
   * Takes a sidecar report (received-report.ts) as this stream's last one,
   * or holds it until the stream's report interval is over (a newer one
   * replaces it meanwhile): the last report a sidecar sends always lands.
   */
  private receiveReport(body: Buffer): void {
    if (this.reportTimer) {
      if (this.heldReport) this.deps.metrics.reports.inc({ result: 'dropped' });
      this.heldReport = body;
      return;
    }
    const wait = reportWaitMs(this.lastReport, this.deps.nowMs());
    if (wait === 0) return this.applyReport(body);
    this.heldReport = body;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = null;
      const held = this.heldReport;
      this.heldReport = null;
      if (!held || this.closed) return;
      // At once, not behind the request chain: every request still queued there came after this report.
      try {
        this.applyReport(held);
      } catch (err) {
        this.fail(err);
      }
    }, wait);
    this.reportTimer.unref();
  }

  private applyReport(body: Buffer): void {
    const previous = this.lastReport?.report ?? null;
    this.lastReport = takeReport(body, this.deps.nowMs(), this.deps.metrics);
    this.deps.onReport?.(this, previous, this.lastReport.report);
  }

  /** Issues an SVID for `csr` (stream-issuance.ts) and sends it, then the renewal it answers. */
  private async issueSvid(csr: Buffer, peer: AuthenticatedPeer): Promise<void> {
    const stream = { id: this.id, isClosed: () => this.closed, alreadyIssued: this.svidIssuedAtMs !== null };
    const issued = await issueOnStream(this.deps, stream, csr, peer);
    if (!issued) return;
    const body = issued.svid;
    this.svidNotAfter = new Date(body.notAfter);
    this.svidSerial = body.serialHex;
    this.svidIssuedAtMs = issued.issuedAtMs;
    const resources = [{ name: SINGLETON_RESOURCE_NAME, body }];
    this.send(SVID_TYPE_URL, contentVersion(resources), [{ name: SINGLETON_RESOURCE_NAME, body: encodeResource(body) }]);
    // A fresh key answers any pending re-issue order: say so after the SVID.
    if (this.subscriptions.has(RENEWAL_TYPE_URL)) this.push(RENEWAL_TYPE_URL);
  }

  private push(t: TypeUrl): void {
    if (t === RENEWAL_TYPE_URL) {
      const body = this.renewal();
      const version = contentVersion([{ name: SINGLETON_RESOURCE_NAME, body }]);
      if (this.tracker(t).shouldSend(version)) this.send(t, version, [{ name: SINGLETON_RESOURCE_NAME, body: encodeResource(body) }]);
      return;
    }
    // Held back while a just-started control plane waits for the sidecars it expects: a partial list would withdraw the rest.
    if (t === ENDPOINTS_TYPE_URL && this.deps.holdEndpoints?.()) return;
    const node = this.node!;
    const built = this.deps.builder.build(t, node, this.subscriptions.get(t) ?? [], this.deps.snapshot());
    if (built && this.tracker(t).shouldSend(built.version)) this.send(t, built.version, built.wire);
  }

  private send(t: TypeUrl, version: string, resources: ReadonlyArray<{ name: string; body: Buffer }>): void {
    if (this.closed) return;
    const nonce = (++this.nonceCounter).toString(36);
    this.tracker(t).recordSent(version, nonce, this.deps.nowMs());
    this.deps.metrics.pushes.inc({ type: typeShortName(t) });
    this.transport.send({ type_url: t, version_info: version, nonce, resources: [...resources] });
  }

  private isKnownNonce(n: string): boolean {
    if (!/^[0-9a-z]{1,10}$/.test(n)) return false;
    const v = parseInt(n, 36);
    return v >= 1 && v <= this.nonceCounter;
  }
}
