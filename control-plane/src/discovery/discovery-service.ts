/**
 * The transport-free core of the discovery server: the current snapshot
 * (bundle, policy, revocations, endpoints), the connected sessions and the
 * debounced pushes. A change marks its type dirty; after the debounce window
 * every session recomputes that type and sends only if its version changed.
 */
import {
  AUTHORIZATION_POLICIES_TYPE_URL,
  canonicalJson,
  ENDPOINTS_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  RENEWAL_TYPE_URL,
  REVOCATIONS_TYPE_URL,
  TRUST_BUNDLE_TYPE_URL,
  type EndpointsResource,
  type RevocationsResource,
  type TrustBundleResource,
  type TypeUrl,
} from '@trellis/shared';
import type { StreamCredentials } from '../auth/authenticator';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { PolicySource } from './policy-source';
import { ProxyRegistry } from './proxy-registry';
import { PushDebouncer } from './push-debouncer';
import { ReissueBook, type ReissueOrder } from './reissue-orders';
import { mergedEndpoints, type ReplicaReport } from '../state/replica-report';
import { ResourceBuilder, type DiscoverySnapshot } from './resource-builder';
import { DEFAULT_MAX_STREAMS_PER_IDENTITY, StreamQuota } from './stream-quota';
import { StreamSession, type SessionDeps, type StreamTransport } from './stream-session';

/** Sessions refreshed per event-loop turn during a push. */
const FLUSH_BATCH = 250;

/** Settings and collaborators of the discovery service. */
export interface DiscoveryServiceDeps extends Omit<SessionDeps, 'builder' | 'snapshot' | 'onNodeKnown' | 'onClosed' | 'reissue' | 'random' | 'quota'> {
  /** Discovery streams one identity may hold open at once (default 4). */
  maxStreamsPerIdentity?: number;
  /** [0, 1) for re-issue jitter; default Math.random. */
  random?: () => number;
  policy: PolicySource;
  initialBundle: TrustBundleResource;
  debounceMs: number;
  /** Told when a session that serves endpoints joins or leaves (the replica report is republished). */
  onSessionsChanged?(): void;
}

/** Sessions, snapshot and pushes, independent of gRPC. */
export class DiscoveryService {
  readonly registry = new ProxyRegistry();
  private readonly builder = new ResourceBuilder();
  private readonly debouncer: PushDebouncer;
  private bundle: TrustBundleResource;
  private revocations: RevocationsResource = Object.freeze({ serials: [], spiffeIds: [] });
  private revokedSerials = new Set<string>();
  private revokedIds = new Set<string>();
  private snap: DiscoverySnapshot | null = null;
  private readonly unsubscribePolicy: () => void;
  private draining = false;
  private readonly sessionDeps: SessionDeps;
  private readonly reissueBook: ReissueBook;
  /** The other replicas' reports (their sidecars' endpoints), merged into ours. */
  private peers: readonly ReplicaReport[] = [];
  private merged: { local: ReadonlyMap<string, EndpointsResource>; peers: readonly ReplicaReport[]; map: ReadonlyMap<string, EndpointsResource> } | null = null;

  constructor(private readonly deps: DiscoveryServiceDeps) {
    this.bundle = deps.initialBundle;
    this.reissueBook = new ReissueBook(deps.svidTtlSeconds * 1000);
    this.debouncer = new PushDebouncer(deps.debounceMs, (types) => this.flush(types));
    this.unsubscribePolicy = deps.policy.subscribe(() => {
      this.snap = null;
      this.debouncer.mark(PEER_AUTHENTICATION_TYPE_URL, AUTHORIZATION_POLICIES_TYPE_URL);
    });
    this.sessionDeps = {
      ...deps,
      auth: { ...deps.auth, isRevoked: (serial, id) => this.isRevoked(serial, id) || deps.auth.isRevoked(serial, id) },
      builder: this.builder,
      snapshot: () => this.snapshot(),
      reissue: this.reissueBook,
      random: deps.random ?? Math.random,
      quota: new StreamQuota(deps.maxStreamsPerIdentity ?? DEFAULT_MAX_STREAMS_PER_IDENTITY),
      onNodeKnown: (s) => {
        if (this.registry.add(s)) this.endpointsChanged();
        deps.metrics.connectedSidecars.set(this.registry.size);
        deps.onSessionsChanged?.();
      },
      onClosed: (s) => {
        if (this.registry.remove(s)) this.endpointsChanged();
        deps.metrics.connectedSidecars.set(this.registry.size);
        deps.onSessionsChanged?.();
      },
    };
  }

  /** Starts a session for a new stream; refused with UNAVAILABLE while draining. */
  openStream(transport: StreamTransport, creds: StreamCredentials): StreamSession | null {
    if (this.draining) {
      transport.end(new ControlPlaneError(ControlPlaneErrorCode.SHUTTING_DOWN, 'control plane is shutting down; use another replica'));
      return null;
    }
    return new StreamSession(this.sessionDeps, transport, creds);
  }

  /** The current snapshot (rebuilt lazily after a change). */
  snapshot(): DiscoverySnapshot {
    if (!this.snap) {
      this.snap = Object.freeze({
        bundle: this.bundle,
        policy: this.deps.policy.current(),
        revocations: this.revocations,
        endpoints: this.endpoints(),
      });
    }
    return this.snap;
  }

  /**
   * Orders every matching sidecar (all, or one SPIFFE ID) to renew with a
   * fresh key at its own jittered instant within `windowMs`; connected ones
   * are told after the debounce, later ones when they subscribe. Returns how
   * many connected sidecars were asked and the spread of their deadlines.
   */
  reissue(target: { all: true } | { spiffeId: string }, windowMs: number, reason: 'reissue' | 'root-rotation' = 'reissue'): { sidecars: number; renewBy: { earliest: string | null; latest: string | null }; order: ReissueOrder } {
    const order = this.reissueBook.order({ nowMs: this.deps.nowMs(), windowMs, spiffeId: 'spiffeId' in target ? target.spiffeId : null, reason });
    const deadlines: string[] = [];
    for (const s of this.registry.all()) {
      const r = s.renewal();
      if (r.renewBy !== null && r.orderedAt === new Date(order.orderedAtMs).toISOString()) deadlines.push(r.renewBy);
    }
    deadlines.sort();
    this.debouncer.mark(RENEWAL_TYPE_URL);
    return { sidecars: deadlines.length, renewBy: { earliest: deadlines[0] ?? null, latest: deadlines[deadlines.length - 1] ?? null }, order };
  }

  /** Our sessions' endpoints merged with the other replicas', rebuilt only when either changed. */
  private endpoints(): ReadonlyMap<string, EndpointsResource> {
    const local = this.registry.endpoints();
    if (this.merged?.local !== local || this.merged.peers !== this.peers) this.merged = { local, peers: this.peers, map: mergedEndpoints(local, this.peers) };
    return this.merged.map;
  }

  /** Takes over re-issue orders made through another replica; their sidecars here are told. */
  adoptReissueOrders(orders: readonly ReissueOrder[]): void {
    if (this.reissueBook.adopt(orders, this.deps.nowMs()) > 0) this.debouncer.mark(RENEWAL_TYPE_URL);
  }

  /** The other replicas' reports: their sidecars' endpoints are served beside ours. */
  setPeers(peers: readonly ReplicaReport[]): void {
    this.peers = peers;
    this.endpointsChanged();
  }

  /** Replaces the trust bundle; pushes only when its content changed. */
  setBundle(b: TrustBundleResource): void {
    if (canonicalJson(b) === canonicalJson(this.bundle)) return;
    this.bundle = Object.freeze({
      trustDomain: b.trustDomain,
      rootsPem: [...b.rootsPem],
      ...(b.federatedRootsPem && Object.keys(b.federatedRootsPem).length > 0 ? { federatedRootsPem: { ...b.federatedRootsPem } } : {}),
    });
    this.snap = null;
    this.debouncer.mark(TRUST_BUNDLE_TYPE_URL);
  }

  /** The bundle being served. */
  currentBundle(): TrustBundleResource {
    return this.bundle;
  }

  /**
   * Replaces the revocation list. Streams authenticated by a now-revoked
   * certificate or identity are ended at once (fail closed).
   */
  setRevocations(r: RevocationsResource): void {
    const next = Object.freeze({ serials: [...new Set(r.serials.map((s) => s.toLowerCase()))].sort(), spiffeIds: [...new Set(r.spiffeIds)].sort() });
    if (canonicalJson(next) === canonicalJson(this.revocations)) return;
    this.revocations = next;
    this.revokedSerials = new Set(next.serials);
    this.revokedIds = new Set(next.spiffeIds);
    this.snap = null;
    this.debouncer.mark(REVOCATIONS_TYPE_URL);
    for (const s of this.registry.all()) {
      const p = s.peer;
      if (!p) continue;
      const serial = typeof p.audit['serialHex'] === 'string' ? (p.audit['serialHex'] as string) : '';
      if (this.isRevoked(serial, p.spiffeId)) s.fail(new ControlPlaneError(ControlPlaneErrorCode.CERT_REJECTED, `${p.spiffeId} was revoked`));
    }
  }

  /** True when the serial or SPIFFE ID is on the revocation list. */
  isRevoked(serialHex: string, spiffeId: string): boolean {
    return (serialHex !== '' && this.revokedSerials.has(serialHex.toLowerCase())) || this.revokedIds.has(spiffeId);
  }

  /** Stops accepting streams and ends every open one with UNAVAILABLE so sidecars fail over. */
  drain(): void {
    this.draining = true;
    this.debouncer.stop();
    for (const s of this.registry.all()) s.fail(new ControlPlaneError(ControlPlaneErrorCode.SHUTTING_DOWN, 'control plane is shutting down; use another replica'));
  }

  /** Releases subscriptions and timers. */
  close(): void {
    this.drain();
    this.unsubscribePolicy();
  }

  private endpointsChanged(): void {
    this.snap = null;
    this.debouncer.mark(ENDPOINTS_TYPE_URL);
  }

  /**
   * Refreshes every session in batches, yielding between them so the first
   * sidecars' pushes reach the wire (and their ACKs come back) while later
   * batches are still being computed, instead of after the whole fleet.
   */
  private flush(types: ReadonlySet<TypeUrl>): void {
    this.snap = null;
    const sessions = this.registry.all();
    const step = (from: number): void => {
      const end = Math.min(sessions.length, from + FLUSH_BATCH);
      for (let i = from; i < end; i++) sessions[i]!.refresh(types);
      if (end < sessions.length && !this.draining) setImmediate(() => step(end));
    };
    step(0);
  }
}
