/**
 * The transport-free core of the discovery server: the current snapshot
 * (bundle, policy, revocations, endpoints), the connected sessions and the
 * debounced pushes. A change marks its type dirty; after the debounce window
 * every session recomputes that type and sends only if its version changed.
 *
 * Endpoints come from one registry source: the Kubernetes API server when
 * one is given, else the connected sessions. With the API server, the pods
 * behind pod-attested streams are followed too: a relabelled pod gets the
 * policies its new labels select, a deleted pod's streams end.
 *
 * Endpoints do not flicker: a lost stream's endpoints stay listed for
 * `endpointGraceMs` (proxy-registry.ts), and a control plane that has just
 * started holds endpoint lists back until every sidecar it expects has a
 * stream again, or `endpointsSettleMs` passed. The sidecars it expects are
 * those holding an unexpired SVID issued under a recorded attestation
 * (`expectedSidecars`, read from the CA dir at start); with none expected it
 * holds nothing back. Without the hold, the first sidecar to reconnect would
 * be pushed a list without the services that had not yet, and would
 * withdraw them.
 */
import {
  normaliseSerial,
  AUTHORIZATION_POLICIES_TYPE_URL,
  canonicalJson,
  ENDPOINTS_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  RENEWAL_TYPE_URL,
  REVOCATIONS_TYPE_URL,
  TRUST_BUNDLE_TYPE_URL,
  type RevocationsResource,
  type TrustBundleResource,
  type TypeUrl,
} from '@trellis/shared';
import type { StreamCredentials } from '../auth/authenticator';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { RegistrySource } from '../registry/registry-source';
import { SessionRegistrySource } from '../registry/session-registry-source';
import { boundPodKey } from '../registry/pod-facts';
import type { PolicySource } from './policy-source';
import { ProxyRegistry } from './proxy-registry';
import { PushDebouncer } from './push-debouncer';
import { ReissueBook, type ReissueOrder } from './reissue-orders';
import type { ReplicaReport } from '../state/replica-report';
import { ResourceBuilder, type DiscoverySnapshot } from './resource-builder';
import { DEFAULT_MAX_STREAMS_PER_IDENTITY, StreamQuota } from './stream-quota';
import { StreamSession, type SessionDeps, type StreamTransport } from './stream-session';

/** Sessions refreshed per event-loop turn during a push. */
const FLUSH_BATCH = 250;
/** How long a lost stream's endpoints stay listed by default (see docs/cli/control-plane.md). */
export const DEFAULT_ENDPOINT_GRACE_MS = 30_000;
/** The longest a just-started control plane holds endpoint lists back by default. */
export const DEFAULT_ENDPOINTS_SETTLE_MS = 10_000;

/** Settings and collaborators of the discovery service. */
export interface DiscoveryServiceDeps extends Omit<SessionDeps, 'builder' | 'snapshot' | 'onNodeKnown' | 'onClosed' | 'reissue' | 'random' | 'quota'> {
  /** Discovery streams one identity may hold open at once (default 4). */
  maxStreamsPerIdentity?: number;
  /** [0, 1) for re-issue jitter; default Math.random. */
  random?: () => number;
  policy: PolicySource;
  initialBundle: TrustBundleResource;
  debounceMs: number;
  /** Where endpoints come from (the Kubernetes API server); absent: the connected sessions. */
  registrySource?: RegistrySource;
  /** Told when a session that serves endpoints joins or leaves (the replica report is republished). */
  onSessionsChanged?(): void;
  /** How long a lost stream's endpoints stay listed (default DEFAULT_ENDPOINT_GRACE_MS; 0: withdrawn at once). */
  endpointGraceMs?: number;
  /** The longest endpoint lists are held back after start (default DEFAULT_ENDPOINTS_SETTLE_MS; 0: never). */
  endpointsSettleMs?: number;
  /** The SPIFFE IDs of the sidecars expected back after a restart; the hold ends once each has a stream. */
  expectedSidecars?: ReadonlySet<string>;
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
  private readonly graceMs: number;
  private lingerTimer: NodeJS.Timeout | null = null;
  /** Identities still awaited while endpoint lists are held back; null once the hold ended. */
  private awaited: Set<string> | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private readonly source: RegistrySource;
  private readonly sessionSource: SessionRegistrySource | null;
  private readonly unsubscribeSource: () => void;
  private readonly unsubscribePods: () => void;
  /** Pod-attested sessions by `namespace/name` of their pod. */
  private readonly byPod = new Map<string, Set<StreamSession>>();

  constructor(private readonly deps: DiscoveryServiceDeps) {
    this.bundle = deps.initialBundle;
    this.graceMs = deps.endpointGraceMs ?? DEFAULT_ENDPOINT_GRACE_MS;
    this.sessionSource = deps.registrySource ? null : new SessionRegistrySource(this.registry);
    this.source = deps.registrySource ?? this.sessionSource!;
    this.unsubscribeSource = this.source.subscribe(() => this.endpointsChanged());
    this.unsubscribePods = deps.pods?.subscribePods((key) => this.podChanged(key)) ?? ((): void => undefined);
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
        if (this.registry.add(s)) this.sessionSource?.changed();
        const pod = s.peer?.attestation.pod;
        if (pod) {
          const key = boundPodKey(pod);
          let set = this.byPod.get(key);
          if (!set) this.byPod.set(key, (set = new Set()));
          set.add(s);
        }
        deps.metrics.connectedSidecars.set(this.registry.size);
        if (this.awaited && s.peer) {
          this.awaited.delete(s.peer.spiffeId);
          if (this.awaited.size === 0) this.endHold('every expected sidecar has a stream');
        }
        deps.onSessionsChanged?.();
      },
      onClosed: (s) => {
        const lingerUntil = this.graceMs > 0 && s.lingers && !this.draining ? deps.nowMs() + this.graceMs : undefined;
        if (this.registry.remove(s, lingerUntil)) this.sessionSource?.changed();
        if (lingerUntil !== undefined) this.armLingerTimer();
        const pod = s.peer?.attestation.pod;
        if (pod) {
          const key = boundPodKey(pod);
          const set = this.byPod.get(key);
          set?.delete(s);
          if (set && set.size === 0) this.byPod.delete(key);
        }
        deps.metrics.connectedSidecars.set(this.registry.size);
        deps.onSessionsChanged?.();
      },
      holdEndpoints: () => this.awaited !== null,
    };
    // With the Kubernetes registry the API server lists every pod whether or not its sidecar is back, and the
    // control plane is not ready before that registry has synced: no partial list to hold back.
    const settleMs = deps.registrySource ? 0 : (deps.endpointsSettleMs ?? DEFAULT_ENDPOINTS_SETTLE_MS);
    if (settleMs > 0 && deps.expectedSidecars && deps.expectedSidecars.size > 0) {
      this.awaited = new Set(deps.expectedSidecars);
      this.settleTimer = setTimeout(() => this.endHold(`${settleMs} ms passed`), settleMs);
      this.settleTimer.unref();
      deps.logger.info('holding endpoint lists back until the sidecars with live certificates reconnect', { expected: this.awaited.size, atMostMs: settleMs });
    }
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
        endpoints: this.source.view(),
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

  /** Takes over re-issue orders made through another replica; their sidecars here are told. */
  adoptReissueOrders(orders: readonly ReissueOrder[]): void {
    if (this.reissueBook.adopt(orders, this.deps.nowMs()) > 0) this.debouncer.mark(RENEWAL_TYPE_URL);
  }

  /**
   * The other replicas' reports: in local mode (the sessions are the
   * registry) their sidecars' endpoints are served beside ours. With the
   * Kubernetes registry the API server already lists every replica's pods.
   */
  setPeers(peers: readonly ReplicaReport[]): void {
    this.sessionSource?.setPeers(peers);
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
    const next = Object.freeze({ serials: [...new Set(r.serials.map(serialKey))].sort(), spiffeIds: [...new Set(r.spiffeIds)].sort() });
    if (canonicalJson(next) === canonicalJson(this.revocations)) return;
    this.revocations = next;
    this.revokedSerials = new Set(next.serials);
    this.revokedIds = new Set(next.spiffeIds);
    this.snap = null;
    this.debouncer.mark(REVOCATIONS_TYPE_URL);
    // A revoked identity's endpoints do not linger either (fail closed).
    if (this.registry.dropRevoked((serial, id) => this.isRevoked(serial, id))) this.sessionsEndpointsChanged();
    for (const s of this.registry.all()) {
      const p = s.peer;
      if (!p) continue;
      const serial = typeof p.audit['serialHex'] === 'string' ? (p.audit['serialHex'] as string) : '';
      if (this.isRevoked(serial, p.spiffeId)) s.fail(new ControlPlaneError(ControlPlaneErrorCode.CERT_REJECTED, `${p.spiffeId} was revoked`));
    }
  }

  /** True when the serial or SPIFFE ID is on the revocation list. */
  isRevoked(serialHex: string, spiffeId: string): boolean {
    return (serialHex !== '' && this.revokedSerials.has(serialKey(serialHex))) || this.revokedIds.has(spiffeId);
  }

  /** Stops accepting streams and ends every open one with UNAVAILABLE so sidecars fail over. */
  drain(): void {
    this.draining = true;
    this.debouncer.stop();
    for (const t of [this.lingerTimer, this.settleTimer]) if (t) clearTimeout(t);
    this.lingerTimer = this.settleTimer = null;
    for (const s of this.registry.all()) s.fail(new ControlPlaneError(ControlPlaneErrorCode.SHUTTING_DOWN, 'control plane is shutting down; use another replica'));
  }

  /** Releases subscriptions and timers. */
  close(): void {
    this.drain();
    this.unsubscribePolicy();
    this.unsubscribeSource();
    this.unsubscribePods();
  }

  /** A pod changed on the API server: its sessions follow it (new labels, or the end when it is gone). */
  private podChanged(key: string): void {
    const sessions = this.byPod.get(key);
    if (!sessions) return;
    for (const s of [...sessions]) s.podChanged();
  }

  private endpointsChanged(): void {
    this.snap = null;
    this.debouncer.mark(ENDPOINTS_TYPE_URL);
  }

  /** The sessions' endpoints changed without a session joining or leaving (a grace period ended, a revocation). */
  private sessionsEndpointsChanged(): void {
    this.sessionSource?.changed();
    this.deps.onSessionsChanged?.();
  }

  /** Ends the start-up hold: every session gets the endpoints it does not hold yet. */
  private endHold(why: string): void {
    if (this.awaited === null) return;
    const missing = [...this.awaited].sort();
    this.awaited = null;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = null;
    this.deps.logger.info('pushing endpoint lists', { why, ...(missing.length > 0 ? { notBack: missing.slice(0, 20), notBackCount: missing.length } : {}) });
    this.endpointsChanged();
  }

  /** Sets the timer for the next end of a grace period. */
  private armLingerTimer(): void {
    if (this.draining) return;
    const next = this.registry.nextLingerExpiryMs();
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
    if (next === null) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      if (this.registry.expireLingering(this.deps.nowMs())) this.sessionsEndpointsChanged();
      this.armLingerTimer();
    }, Math.max(0, next - this.deps.nowMs()) + 1);
    this.lingerTimer.unref();
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

/** A serial in the one serial form (shared x509/serial.ts); text that is no serial is kept as is and so matches none. */
function serialKey(hex: string): string {
  try {
    return normaliseSerial(hex);
  } catch {
    return hex;
  }
}
