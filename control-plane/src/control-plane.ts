/**
 * Wires a running control plane: its own SVID, the discovery service behind
 * gRPC/TLS, the admin server, and the watchers that keep the trust bundle,
 * revocations and the server certificate current. What it serves comes from
 * the CA dir, the policy dir and the state shared with the other replicas
 * (state/shared-state.ts: the CA dir's files, or the API server), so a
 * restarted replica or a second one serves the same versions, and replicas
 * tell each other their sidecars' endpoints (a mesh spread over them is one
 * mesh). Not ready, and saying why, while its state cannot be written.
 */
import { join } from 'node:path';
import type { Server as HttpsServer } from 'node:https';
import { controlPlaneSpiffeId, DEFAULT_KEY_EXCHANGE, defaultAdminSpiffeId, formatHostPort, parseHostPort, type KeyExchangePolicy, type Logger, type EffectiveMtlsMode, type TrustBundleResource } from '@trellis/shared';
import { startAdminServer } from './admin/admin-server';
import { meshView } from './admin/mesh-view';
import { observabilityRoutes } from './admin/observability-routes';
import { caStatusView } from './lifecycle/ca-status';
import { CA_FILES } from './ca/ca-dir';
import { AuditFeed, tapAuditLog } from './observability/audit-feed';
import { AuditTrailFollower } from './observability/audit-trail-follower';
import { reportRefusalEvents } from './observability/report-refusal-events';
import { lifecycleRoutes, type RootRotationAuth } from './admin/lifecycle-routes';
import { proxiesFromAdmin } from './lifecycle/root-rotation-driver';
import { loadRootRotationState } from './lifecycle/root-rotation-store';
import { auditLifecycle } from './lifecycle/lifecycle-audit';
import { JoinTokenStore } from './auth/join-token-store';
import { createKubernetesTokenVerifier, type KubernetesTokenSettings } from './auth/kubernetes-token';
import { DiscoveryService } from './discovery/discovery-service';
import { startGrpcDiscoveryServer, type GrpcDiscoveryServer } from './discovery/grpc-discovery-server';
import { DEFAULT_CONNECTION_LIMITS } from './discovery/connection-guard';
import type { PolicySource } from './discovery/policy-source';
import { SigningLimiter } from './issuance/signing-limiter';
import type { CaExpiry, SvidAuthority } from './issuance/svid-authority';
import { createControlPlaneMetrics, type ControlPlaneMetrics } from './observability/control-plane-metrics';
import { MutableCertificateProvider } from './tls/mutable-certificate-provider';
import { createKeyAndCsr, shouldRotate } from './tls/server-identity';
import { startRevocationFeed } from './lifecycle/revocation-feed';
import { withOrder } from './discovery/reissue-orders';
import { ControlPlaneError, ControlPlaneErrorCode } from './errors/control-plane-error';
import { fileSharedState, observedAttestations, observedDocument, observedTokenUses, type SharedState } from './state/shared-state';
import { observedAuthority, StorageHealth } from './state/storage-health';
import { ReplicaHeartbeat } from './state/replica-heartbeat';
import { remoteProxies as remoteProxiesOf, type ReplicaReport } from './state/replica-report';
import { FederationWatcher } from './lifecycle/federation-source';
import type { KubernetesRegistry } from './registry/kubernetes-registry';

/** Resolved settings (after config file and flags are merged and validated). */
export interface ControlPlaneOptions {
  caDir: string;
  listen: string;
  /** The admin HTTPS endpoint (mTLS with an admin identity, see admin/admin-access.ts). */
  admin: string;
  /** SPIFFE IDs allowed on the admin API; default the trust domain's trellis-admin identity. */
  adminAllow?: readonly string[];
  /** Extra HOST[:PORT] values the admin API's Host header may carry. */
  adminHosts?: readonly string[];
  /** Who may start a root rotation over the admin API (default `root-key`). */
  rootRotationAuth?: RootRotationAuth;
  svidTtlSeconds: number;
  defaultMtlsMode: EffectiveMtlsMode;
  kubernetes?: KubernetesTokenSettings;
  signing: { concurrency: number; maxQueue: number };
  idleStreamTimeoutMs: number;
  debounceMs: number;
  /** Discovery streams one identity may hold open (default 4). */
  maxStreamsPerIdentity?: number;
  /** Open discovery connections, authenticated or not (default 10,000). */
  maxConnections?: number;
  /** A connection none of whose streams authenticated within this is closed (default 10 s). */
  authTimeoutMs?: number;
  /** How long a lost discovery stream's endpoints stay listed (default 30 s). */
  endpointGraceMs?: number;
  /** The longest endpoint lists are held back after start for the sidecars expected back (default 10 s). */
  endpointsSettleMs?: number;
  /** Revocation list to watch and push; default `<caDir>/revocations.json` (as written by `trellis revoke`). */
  revocationsFile?: string;
  /** The federatesWith config whose bundles are pushed to sidecars (watched); none: no federation. */
  federationFile?: string;
  /** How often the trust bundle, revocations and own certificate are re-checked. */
  refreshMs: number;
  /**
   * The window over which sidecars renew when a root rotation switches to
   * the new root; default a quarter of the SVID TTL, at most 60 s.
   */
  rootSwitchRenewWindowMs?: number;
  /**
   * The key-exchange policy of the discovery and admin listeners (default
   * prefer). Under `require` a classical-only client is refused at its
   * ClientHello. The TLS groups themselves come from the process's default
   * (`tls.DEFAULT_ECDH_CURVE`, which `trellis control-plane` sets from the
   * same policy) on the discovery port, grpc-js taking no groups option, and
   * from this policy on the admin port.
   */
  keyExchange?: KeyExchangePolicy;
}

/** Collaborators. */
export interface ControlPlaneDeps {
  authority: SvidAuthority;
  policy: PolicySource;
  logger: Logger;
  nowMs?: () => number;
  caExpiry?: () => CaExpiry;
  /**
   * The state shared with the other replicas (revocations, join-token uses,
   * re-issue orders, replica reports); default the CA dir's files
   * (fileSharedState). Closed with the control plane.
   */
  shared?: SharedState;
  /** Runs a lifecycle step from the admin API and commits it to the shared CA state (kubernetes/ca-secret-sync.ts); default: runs it. */
  runStep?<T>(step: () => Promise<T>): Promise<T>;
  /**
   * The registry from the Kubernetes API server (`--k8s-registry`): endpoints
   * from EndpointSlices, Kubernetes workloads attested by their pod. Absent:
   * the connected sessions are the registry (local mode). Not ready until it
   * has synced.
   */
  kubernetesRegistry?: KubernetesRegistry;
}

/** A started control plane. */
export interface RunningControlPlane {
  readonly spiffeId: string;
  readonly discoveryPort: number;
  readonly adminPort: number;
  readonly metrics: ControlPlaneMetrics;
  readonly service: DiscoveryService;
  /** Where the state shared with other replicas lives, and whether it can be written. */
  readonly storage: StorageHealth;
  /** The other live replicas as they last reported (their sidecars, the bundle versions they ACKed). */
  replicas(): readonly ReplicaReport[];
  /** The recent audit events (GET /debug/events). */
  readonly events: AuditFeed;
  /** Calls `listener` with each new trust bundle the refresh loop serves (a root rotation step); returns an unsubscribe function. */
  onTrustBundleChange(listener: (bundle: TrustBundleResource) => void): () => void;
  /** Ends streams with UNAVAILABLE, stops servers (waiting up to `graceMs`), releases watchers. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts the control plane; the returned promise resolves once it is ready. */
export async function startControlPlane(opts: ControlPlaneOptions, deps: ControlPlaneDeps): Promise<RunningControlPlane> {
  const nowMs = deps.nowMs ?? Date.now;
  // The audit feed: the refusals this process logs as audit lines, the CA's audit trail, and the refusals sidecars report.
  const events = new AuditFeed();
  const log = tapAuditLog(deps.logger, events, () => new Date(nowMs()));
  const trail = new AuditTrailFollower(join(opts.caDir, CA_FILES.auditLog), events, log);
  const td = deps.authority.trustDomain;
  const spiffeId = controlPlaneSpiffeId(td);
  const keyExchange = opts.keyExchange ?? DEFAULT_KEY_EXCHANGE;
  const limiter = new SigningLimiter(opts.signing, nowMs);
  const metrics = createControlPlaneMetrics({ collectExpiry: deps.caExpiry, signingDepth: () => limiter.depth, nowMs });
  const joinTokens = new JoinTokenStore(opts.caDir);
  const shared = deps.shared ?? fileSharedState(opts.caDir, { clock: () => new Date(nowMs()), logger: log, onError: (what, err) => log.error(`${what} not reloaded; keeping the last good`, { error: err }) });
  const storage = new StorageHealth(opts.caDir, {
    registry: metrics.registry,
    nowMs,
    sharedBackend: shared.backend,
    probes: shared.tokenUses.probe ? { 'join-token-uses': () => shared.tokenUses.probe!() } : {},
    onChange: (failing) => {
      if (failing.length > 0) log.error('control plane NOT ready: its state cannot be written (issuance and state changes fail until it can)', { failing });
      else log.info('state writable again: ready', {});
    },
  });
  const authority = observedAuthority(deps.authority, storage);
  const revocationState = observedDocument(shared.revocations, 'revocations', storage);
  const reissueOrders = observedDocument(shared.reissueOrders, 'reissue-orders', storage);
  const kubernetes = opts.kubernetes ? createKubernetesTokenVerifier(opts.kubernetes, td) : undefined;

  // Federated roots travel in the bundle resource for sidecars only; our own
  // gRPC server keeps trusting our roots alone.
  const federation = opts.federationFile ? new FederationWatcher(opts.federationFile, td) : undefined;
  const federatedCount = (): number => Object.keys(federation?.current ?? {}).length;
  if (federation) federation.load();
  const bundle = (): TrustBundleResource => {
    const fed = federation?.current ?? {};
    const base = { trustDomain: td, rootsPem: [...deps.authority.trustBundle().rootsPem] };
    return Object.keys(fed).length === 0 ? base : { ...base, federatedRootsPem: Object.fromEntries(Object.entries(fed).map(([k, v]) => [k, [...v]])) };
  };
  const tls = new MutableCertificateProvider();
  let initial = bundle();
  tls.setCa(initial.rootsPem.join('\n'));

  let ownNotBefore = new Date(0);
  let ownInstalledAt = 0;
  let ownNotAfter = new Date(0);
  const renewOwn = async (): Promise<void> => {
    const { keyPem, csrDer } = await createKeyAndCsr(spiffeId);
    const issued = await authority.issue({ csr: csrDer, spiffeId, ttlSeconds: opts.svidTtlSeconds, requester: 'control-plane' });
    tls.setIdentity(issued.chainPem, keyPem);
    ownNotBefore = new Date(issued.notBefore);
    ownInstalledAt = nowMs();
    ownNotAfter = new Date(issued.notAfter);
    log.info('control plane certificate issued', { spiffeId, serial: issued.serialHex, notAfter: ownNotAfter.toISOString() });
  };
  await renewOwn();

  const attestations = observedAttestations(shared.attestations, storage);
  const service = new DiscoveryService({
    auth: { trustDomain: td, kubernetes, joinTokens, tokenUses: observedTokenUses(shared.tokenUses, storage), isRevoked: () => false, attestations, pods: deps.kubernetesRegistry },
    registrySource: deps.kubernetesRegistry,
    pods: deps.kubernetesRegistry,
    endpointGraceMs: opts.endpointGraceMs,
    endpointsSettleMs: opts.endpointsSettleMs,
    // Sidecars holding a live SVID issued under a recorded attestation: after a restart, they are the ones coming back.
    expectedSidecars: attestations.liveIdentities(nowMs()),
    maxStreamsPerIdentity: opts.maxStreamsPerIdentity,
    authority,
    limiter,
    metrics,
    logger: log,
    nowMs,
    svidTtlSeconds: opts.svidTtlSeconds,
    idleTimeoutMs: opts.idleStreamTimeoutMs,
    policy: deps.policy,
    initialBundle: Object.freeze(initial),
    debounceMs: opts.debounceMs,
    onSessionsChanged: () => heartbeat.changed(),
    onReport: (s, previous, report) => {
      for (const e of reportRefusalEvents(s.peer?.spiffeId ?? '', previous, report, new Date(nowMs()))) events.record(e);
    },
  });

  // Revocations (lifecycle/revocation-feed.ts): a watched file, or the list shared by the replicas.
  const revocations = startRevocationFeed({
    file: opts.revocationsFile,
    shared: revocationState,
    backend: shared.backend,
    target: { current: () => service.snapshot().revocations, set: (r) => service.setRevocations(r) },
    nowMs,
    logger: log,
  });

  // Re-issue orders made through another replica reach the sidecars connected here.
  const unsubscribeOrders = reissueOrders.subscribe((orders) => service.adoptReissueOrders(orders));
  service.adoptReissueOrders(reissueOrders.current());

  // Every replica reports its sidecars' endpoints and bundle ACKs, and serves the others' endpoints beside its own.
  const heartbeat = new ReplicaHeartbeat(shared.heartbeat, {
    doc: shared.replicas,
    local: () => ({ endpoints: service.registry.endpoints(), proxies: proxiesFromAdmin({ proxies: service.registry.statuses() }) ?? [] }),
    onOthers: (others) => {
      service.setPeers(others);
      log.info('other replicas', { replicas: others.map((r) => ({ replica: r.replica, sidecars: r.sidecars, services: r.endpoints.length })) });
    },
    logger: log.child({ component: 'replicas' }),
    health: storage,
    nowMs,
  });
  heartbeat.start();

  // A listener that cannot bind (its port taken) fails the start; what was started before it stops, so
  // nothing is left running in a process whose start failed (it stayed up, deaf to SIGTERM).
  const listenFailed = (flag: 'listen' | 'admin', what: string, address: string) => (err: unknown): ControlPlaneError => {
    const e = err as NodeJS.ErrnoException;
    return new ControlPlaneError(ControlPlaneErrorCode.LISTEN_FAILED, `cannot listen on ${address} (--${flag}, ${what}): ${e.code ?? e.message}`, { flag, address, reason: e.code ?? null }, { cause: err });
  };
  const undoStart = async (err: unknown): Promise<never> => {
    revocations.close();
    unsubscribeOrders();
    await heartbeat.stop();
    service.close();
    shared.close();
    throw err;
  };
  const grpcServer: GrpcDiscoveryServer = await startGrpcDiscoveryServer(service, tls, opts.listen, (code) => metrics.streamErrors.inc({ code }), {
    maxConnections: opts.maxConnections ?? DEFAULT_CONNECTION_LIMITS.maxConnections,
    authTimeoutMs: opts.authTimeoutMs ?? DEFAULT_CONNECTION_LIMITS.authTimeoutMs,
    onRefused: (reason) => metrics.connectionsRefused.inc({ reason }),
    onCount: (authenticated, unauthenticated) => {
      metrics.connections.set({ state: 'authenticated' }, authenticated);
      metrics.connections.set({ state: 'unauthenticated' }, unauthenticated);
    },
  }, {
    policy: keyExchange,
    onHandshake: (group) => metrics.handshakes.inc({ listener: 'discovery', group, result: 'ok' }),
    onRefused: (reason) => {
      metrics.connectionsRefused.inc({ reason });
      metrics.handshakes.inc({ listener: 'discovery', group: 'unknown', result: reason });
    },
  }).catch((err: unknown) => undoStart(listenFailed('listen', 'the discovery port', opts.listen)(err)));
  let ready = true;
  // Not ready while no policy may be served (a policy file failed validation at first load): fail closed.
  const policyReady = (): boolean => deps.policy.current() !== null;
  // Nor before the Kubernetes registry has listed the cluster once (its sidecars are told to retry meanwhile).
  const registryReady = (): boolean => deps.kubernetesRegistry?.hasSynced() ?? true;
  const admin: { server: HttpsServer; port: number } = await startAdminServer(opts.admin, {
    ready: () => ready && policyReady() && registryReady() && storage.current().length === 0,
    notReadyReasons: () => [
      ...(policyReady() ? [] : ['no policy is served until every policy validates (see /debug/policies)']),
      ...(registryReady() ? [] : ['the Kubernetes registry has not listed the cluster yet']),
      ...storage.reasons(),
    ],
    metrics: metrics.registry,
    proxies: () => service.registry.statuses(),
    policies: () => deps.policy.status(),
    tls,
    keyExchange: { policy: keyExchange, onHandshake: (group, result) => metrics.handshakes.inc({ listener: 'admin', group, result }) },
    access: {
      trustDomain: td,
      allow: opts.adminAllow ?? [defaultAdminSpiffeId(td)],
      hosts: opts.adminHosts,
      isRevoked: (serial, id) => service.isRevoked(serial, id),
      now: () => new Date(nowMs()),
    },
    logger: log.child({ component: 'admin' }),
    routes: [...observabilityRoutes({
      feed: events,
      mesh: () => {
        const now = new Date(nowMs());
        let ca: ReturnType<typeof caStatusView> | { error: string };
        try {
          ca = caStatusView(opts.caDir, proxiesFromAdmin({ proxies: service.registry.statuses() }) ?? [], now);
        } catch (err) {
          ca = { error: (err as Error).message };
        }
        const proxies = service.registry.all().map((s) => ({ status: s.status(), report: s.report() })).sort((a, b) => (a.status.spiffeId ?? '').localeCompare(b.status.spiffeId ?? '') || a.status.id - b.status.id);
        return meshView({ now, trustDomain: td, proxies, policies: deps.policy.status(), ca, revocations: service.snapshot().revocations, latestEvent: events.latest });
      },
    }), ...lifecycleRoutes({
      caDir: opts.caDir,
      clock: () => new Date(nowMs()),
      rootRotationAuth: opts.rootRotationAuth,
      runStep: deps.runStep ? (step) => deps.runStep!(step) : undefined,
      proxies: () => [...(proxiesFromAdmin({ proxies: service.registry.statuses() }) ?? []), ...remoteProxiesOf(heartbeat.liveOthers())],
      revocations: revocationState,
      revocationsChanged: revocations.apply,
      reissue: async (target, windowMs) => {
        const { order, ...r } = service.reissue(target, windowMs);
        const who = 'spiffeId' in target ? target.spiffeId : 'all';
        log.info('forced re-issue ordered', { event: 'audit', target: who, windowMs, sidecars: r.sidecars });
        auditLifecycle(opts.caDir, 'reissue.ordered', new Date(nowMs()), { reason: 'reissue', target: who, windowMs, sidecars: r.sidecars });
        // Every other replica's sidecars too: the order is shared (a failed write is reported; this replica's sidecars are already asked).
        await reissueOrders.update((orders) => withOrder(orders, order, nowMs()));
        return r;
      },
    })],
  }).catch(async (err: unknown) => {
    await grpcServer.stop(0);
    return undoStart(listenFailed('admin', 'the admin API', opts.admin)(err));
  });

  // A root rotation's switch (phase 2), by whoever made it (the lifecycle timer, the admin API, a
  // CLI on the CA dir), asks every sidecar to renew onto the new root, spread over a window.
  // One already switched when we started is left to the sidecars' own schedules (no storm on restart).
  const rotationSwitchedAt = (): string | null => {
    try {
      return loadRootRotationState(opts.caDir)?.switchedAt ?? null;
    } catch {
      return null;
    }
  };
  let seenSwitch = rotationSwitchedAt();
  const checkRootSwitch = (): void => {
    const sw = rotationSwitchedAt();
    if (sw === null || sw === seenSwitch) return;
    seenSwitch = sw;
    const windowMs = opts.rootSwitchRenewWindowMs ?? Math.min(60_000, Math.floor((opts.svidTtlSeconds * 1000) / 4));
    const r = service.reissue({ all: true }, windowMs, 'root-rotation');
    log.info('root rotation switched: sidecars asked to renew onto the new root', { event: 'audit', switchedAt: sw, windowMs, sidecars: r.sidecars });
    auditLifecycle(opts.caDir, 'reissue.ordered', new Date(nowMs()), { reason: 'root-rotation', target: 'all', windowMs, sidecars: r.sidecars });
  };

  const bundleListeners = new Set<(b: TrustBundleResource) => void>();
  let refreshing = false;
  const refresh = setInterval(() => {
    if (refreshing) return;
    refreshing = true;
    (async () => {
      try {
        if (federation) {
          const r = federation.check();
          // A bad federation file keeps the last good set (fail closed: nothing new is trusted).
          if ('error' in r) log.error('federation not reloaded; keeping the last good bundles', { file: federation.file, error: r.error });
          else if (r.changed) log.info('federated bundles loaded', { file: federation.file, trustDomains: Object.keys(r.roots) });
        }
        const b = bundle();
        if (JSON.stringify(b) !== JSON.stringify(initial)) {
          if (b.rootsPem.join('\n') !== initial.rootsPem.join('\n')) tls.setCa(b.rootsPem.join('\n'));
          initial = b;
          service.setBundle(b);
          log.info('trust bundle changed', { roots: b.rootsPem.length, federatedTrustDomains: federatedCount() });
          for (const l of bundleListeners) l(b);
        }
        if (deps.authority.refresh) await deps.authority.refresh();
        checkRootSwitch();
        revocations.refresh();
        void reissueOrders.refresh().catch(() => undefined);
        storage.probe();
        if (shouldRotate(nowMs(), ownNotBefore, ownNotAfter, ownInstalledAt)) await renewOwn();
      } catch (err) {
        log.error('refresh failed; serving the previous state', { error: err });
      } finally {
        refreshing = false;
      }
    })();
  }, opts.refreshMs);
  refresh.unref();

  const where = { listen: `${hostPart(opts.listen)}:${grpcServer.port}`, admin: `${hostPart(opts.admin)}:${admin.port}`, adminAllow: opts.adminAllow ?? [defaultAdminSpiffeId(td)], spiffeId, trustDomain: td, federatedTrustDomains: Object.keys(federation?.current ?? {}) };
  const unsubscribes: Array<() => void> = [];
  const unsubscribeReady = (): void => {
    for (const u of unsubscribes.splice(0)) u();
  };
  if (policyReady() && registryReady()) log.info('control plane ready', where);
  else {
    if (!policyReady()) log.error('control plane started but NOT ready: no policy is served until every policy (file, or object on the API server) has been read and validates (see /debug/policies)', { ...where, policies: deps.policy.status() });
    else log.warn('control plane started but NOT ready: waiting for the first list of Pods, Services and EndpointSlices from the Kubernetes API server', where);
    const announce = (): void => {
      if (!policyReady() || !registryReady() || unsubscribes.length === 0) return;
      unsubscribeReady();
      log.info('control plane ready', where);
    };
    unsubscribes.push(deps.policy.subscribe(announce));
    if (deps.kubernetesRegistry) unsubscribes.push(deps.kubernetesRegistry.subscribe(announce));
  }

  trail.start();
  let stopped: Promise<void> | null = null;
  return {
    spiffeId,
    discoveryPort: grpcServer.port,
    adminPort: admin.port,
    metrics,
    service,
    storage,
    replicas: () => heartbeat.liveOthers(),
    events,
    onTrustBundleChange(listener) {
      bundleListeners.add(listener);
      return () => bundleListeners.delete(listener);
    },
    stop(graceMs = 5000) {
      if (stopped) return stopped;
      stopped = (async () => {
        ready = false;
        clearInterval(refresh);
        trail.stop();
        unsubscribeReady();
        revocations.close();
        unsubscribeOrders();
        // Withdraw our report first: the other replicas stop serving our sidecars' endpoints as they leave.
        await heartbeat.stop();
        service.close();
        await grpcServer.stop(graceMs);
        await new Promise<void>((r) => {
          admin.server.close(() => r());
          admin.server.closeAllConnections();
        });
        deps.policy.close();
        shared.close();
        log.info('control plane stopped', {});
      })();
      return stopped;
    },
  };
}

/** The host of a listen address as written (brackets kept for IPv6), for printing beside the bound port. */
function hostPart(address: string): string {
  const hp = parseHostPort(address);
  return typeof hp === 'string' ? address : formatHostPort(hp.host, 0).replace(/:0$/, '');
}
