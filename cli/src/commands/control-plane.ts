/**
 * `trellis control-plane`: runs the control plane until SIGINT/SIGTERM.
 * Wiring only: config from file + flags, the CA from --ca-dir, policies from
 * --policy-dir (and the API server's policy objects when there is one), the
 * state replicas share (the API server's when there is one, else the CA
 * dir's), then @trellis/control-plane's startControlPlane, the controllers
 * that keep the trust-bundle ConfigMaps current, and the CA lifecycle,
 * driven by the one replica that holds the Lease.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { KubeClient, kubeConfigAvailable, startRegistryInformers, type RegistryInformers } from '@trellis/kubernetes';
import { resolve } from 'node:path';
import {
  CaSecretSync,
  ControlPlaneControllers,
  ControlPlaneError,
  ControlPlaneErrorCode,
  discoverOidcTokenKeys,
  KubernetesRegistry,
  loadCertificateAuthority,
  parseJwks,
  openReloadingAuthority,
  proxiesFromAdmin,
  registerKubernetesRegistryGauges,
  registerLifecycleGauges,
  remoteProxies,
  startLifecycleManager,
  PolicyStore,
  policySetSource,
  policyStoreSource,
  readConfigFile,
  resolveConfig,
  startControlPlane,
  startKubeSharedState,
  type ControlPlaneConfig,
  type ControlPlaneConfigInput,
  type KubernetesTokenSettings,
} from '@trellis/control-plane';
import { createLogger, groupsList, UsageError, type KeyExchangePolicy, type Logger, type EffectiveMtlsMode, type PathNormalization } from '@trellis/shared';
import type { Command, CommandContext } from '../command';
import { flag, optionalString, stringList } from '../flags';
import { runShutdownSteps } from '../shutdown-steps';

/** How long a stopping control plane may take in all: the 5 s drain and the API server calls around it. */
const SHUTDOWN_DEADLINE_MS = 15_000;

function intFlag(ctx: CommandContext, name: string): number | undefined {
  const v = optionalString(ctx, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a non-negative integer, got "${v}"`, { flag: name });
  return Number(v);
}

function listFlag(ctx: CommandContext, name: string): string[] | undefined {
  const v = stringList(ctx, name);
  return v.length > 0 ? v : undefined;
}

function pathFlag(ctx: CommandContext, name: string): string | undefined {
  const v = optionalString(ctx, name);
  return v === undefined ? undefined : resolve(ctx.cwd, v);
}

/**
 * The token verifier's settings: keys from the JWKS file, or the issuer and
 * keys from the API server's OIDC discovery (refetched on an unknown kid).
 */
async function kubernetesTokenSettings(cfg: ControlPlaneConfig, logger: Logger, kube: () => Promise<KubeClient>): Promise<KubernetesTokenSettings> {
  const k = cfg.kubernetes!;
  if (k.jwksFile !== null) {
    let jwks: unknown;
    try {
      jwks = JSON.parse(readFileSync(k.jwksFile, 'utf8'));
    } catch (err) {
      throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `${k.jwksFile}: not a readable JWKS JSON file: ${(err as Error).message}`);
    }
    return { issuer: k.issuer!, audience: k.audience, jwks: parseJwks(jwks, k.jwksFile) };
  }
  const client = await kube();
  const keys = await discoverOidcTokenKeys({ fetchJson: (path) => client.request('GET', path, { accept: 'application/json, application/jwk-set+json' }), logger: logger.child({ component: 'k8s-token-keys' }), minRefreshIntervalMs: k.jwksMinRefreshMs });
  if (k.issuer !== null && k.issuer !== keys.issuer) {
    throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `--k8s-issuer ${k.issuer} is not the issuer the API server names (${keys.issuer}); its tokens would never verify`);
  }
  return { issuer: keys.issuer, audience: k.audience, keys };
}

export const commands: Command[] = [
  {
    name: 'control-plane',
    summary: 'Run the control plane: workload authentication, SVID issuance, discovery stream',
    usage: 'trellis control-plane --ca-dir DIR --policy-dir DIR [--listen 127.0.0.1:15012] [--admin 127.0.0.1:15014] [--config FILE] [flags]',
    description: `Flags (each can also be set in the YAML --config file; flags win):
  --admin HOST:PORT          the admin HTTPS endpoint (default 127.0.0.1:15014). /healthz, /readyz and
                             /metrics answer anyone; everything else needs mTLS with an admin identity
  --admin-allow ID           a SPIFFE ID allowed on the admin API (repeatable; config adminAllow);
                             default spiffe://TD/ns/trellis-system/sa/trellis-admin
  --admin-host HOST[:PORT]   another Host the admin API answers to besides its own address and
                             loopback names, e.g. the pod IP (repeatable; config adminHosts)
  --root-rotation-auth MODE  root-key (default): starting a root rotation over the admin API needs
                             material signed by a current root key; admin-identity: the admin
                             certificate alone (see docs/ca-lifecycle.md)
  --trust-domain TD          must match the CA's trust domain
  --svid-ttl 1h              lifetime of issued SVIDs (1m..24h)
  --default-mtls-mode MODE   STRICT (default), PERMISSIVE or DISABLE when no policy decides
  --path-normalization MODE  how sidecars normalize HTTP paths before AuthorizationPolicy (and forward them):
                             BASE (default), MERGE_SLASHES, DECODE_AND_MERGE_SLASHES or NONE, as Istio's meshConfig
  --key-exchange POLICY      mTLS key exchange on every hop: prefer (default; X25519MLKEM768 first, then
                             X25519 and P-256), require (hybrid only; classical handshakes refused and counted)
                             or off (classical only); pushed to every sidecar
  --k8s-issuer URL           accept Kubernetes ServiceAccount tokens from this issuer
  --k8s-audience trellis     audience those tokens must carry
  --k8s-jwks FILE            the issuer's public keys (JWKS JSON), read once (offline)
  --k8s-jwks-from-api        instead, read the issuer and its keys from the API server's OIDC discovery
                             with our own credentials, and refetch them (at most every 30 s) when a
                             token names an unknown key: key rotations need no restart
  --k8s-jwks-min-refresh 30s least time between two such refetches
  --k8s-registry             the registry from the API server: endpoints from EndpointSlices (the pods'
                             sidecar listeners, their ServiceAccounts' SPIFFE IDs), and each sidecar served by
                             the pod its token is bound to (its labels select policies; what it announces is
                             ignored when it disagrees); a deleted pod's stream ends and its token is refused.
                             Watches Pods, Services, EndpointSlices (list/watch RBAC); not ready until listed
  --kubeconfig FILE          how to reach the API server (default: the pod's in-cluster config)
  --signing-concurrency 4    CSRs signed at once
  --signing-queue 20000      CSRs allowed to wait; beyond, RESOURCE_EXHAUSTED with a retry hint
  --revocations FILE         default DIR/revocations.json (trellis revoke); or YAML/JSON {serials, spiffeIds}; watched
  --federation FILE          federatesWith config (trust domain + SPIFFE bundle document or PEM per entry);
                             those roots are pushed to sidecars; watched, a bad edit keeps the last good set
  --root-dir DIR             the root (root.pem + root.key) when it is online: the next intermediate is signed
                             and activated automatically; without it (and without root.key in the CA dir) it is
                             prepared at half life and waits for "trellis ca sign-intermediate" (trellis check warns)
  --idle-timeout 10s         end streams that send nothing
  --max-streams-per-identity 4   discovery streams one SPIFFE ID may hold open (the next: RESOURCE_EXHAUSTED);
                             replicas sharing a ServiceAccount share its identity: raise it to cover them
  --max-connections 10000    open discovery connections; beyond, new ones are closed at once
  --auth-timeout 10s         close a connection none of whose streams authenticated within this
  --allow-invalid-policies   serve the valid policies even if some fail validation at start
                             (default: not ready and no policy served until every file and object validates)
  --no-policy-crds           do not read PeerAuthentication/AuthorizationPolicy objects from the API server
                             (security.trellis.dev/v1, and security.istio.io v1/v1beta1 when installed); by
                             default they are read, beside --policy-dir, whenever --kubeconfig is given or the
                             control plane runs in a pod (config policyCrds; true makes the API server required)
  --no-root-cert-configmaps  do not keep ConfigMap trellis-ca-root-cert (the roots) current in every namespace;
                             same default (config rootCertConfigMaps). The Lease trellis-control-plane in
                             $POD_NAMESPACE (default trellis-system) picks the one replica that writes
  --no-shared-state          keep the state replicas share in the CA dir instead of on the API server: the
                             revocation list, join-token uses, re-issue orders, the replicas' reports and the
                             CA's rotation state (Secret trellis-ca). Same default (config sharedState). Without
                             an API server, replicas on one CA dir share it through files there
  --leader-lease 15s         the Lease's duration: a dead leader's singleton work (CA rotation steps, status and
                             ConfigMap writes) moves to another replica within it (config leaderLease)
  --endpoint-grace 30s       keep a lost discovery stream's endpoints listed this long (its sidecar may be
                             reconnecting); a sidecar that says goodbye is withdrawn at once; 0s: never keep
  --endpoints-settle 10s     after a start, hold endpoint lists back until every sidecar with a live
                             certificate has reconnected, at most this long (0s: never hold)
  --log-level info
Logs JSON lines to stderr; prints {"msg":"control plane ready",...} when serving.
SIGTERM drains: streams end with UNAVAILABLE so sidecars fail over, then it exits.`,
    options: {
      'ca-dir': { type: 'string' },
      'policy-dir': { type: 'string' },
      listen: { type: 'string' },
      admin: { type: 'string' },
      'admin-allow': { type: 'string', multiple: true },
      'admin-host': { type: 'string', multiple: true },
      'root-rotation-auth': { type: 'string' },
      config: { type: 'string' },
      'trust-domain': { type: 'string' },
      'svid-ttl': { type: 'string' },
      'default-mtls-mode': { type: 'string' },
      'path-normalization': { type: 'string' },
      'key-exchange': { type: 'string' },
      'k8s-issuer': { type: 'string' },
      'k8s-audience': { type: 'string' },
      'k8s-jwks': { type: 'string' },
      'k8s-jwks-from-api': { type: 'boolean' },
      'k8s-jwks-min-refresh': { type: 'string' },
      'k8s-registry': { type: 'boolean' },
      kubeconfig: { type: 'string' },
      'signing-concurrency': { type: 'string' },
      'signing-queue': { type: 'string' },
      revocations: { type: 'string' },
      federation: { type: 'string' },
      'root-dir': { type: 'string' },
      'idle-timeout': { type: 'string' },
      'max-streams-per-identity': { type: 'string' },
      'max-connections': { type: 'string' },
      'auth-timeout': { type: 'string' },
      'allow-invalid-policies': { type: 'boolean' },
      'endpoint-grace': { type: 'string' },
      'endpoints-settle': { type: 'string' },
      'no-policy-crds': { type: 'boolean' },
      'no-root-cert-configmaps': { type: 'boolean' },
      'no-shared-state': { type: 'boolean' },
      'leader-lease': { type: 'string' },
      'log-level': { type: 'string' },
    },
    async run(ctx) {
      const configFile = pathFlag(ctx, 'config');
      const fromFile: ControlPlaneConfigInput = configFile ? readConfigFile(configFile) : {};
      const k8sIssuer = optionalString(ctx, 'k8s-issuer');
      const k8sJwks = pathFlag(ctx, 'k8s-jwks');
      const k8sAudience = optionalString(ctx, 'k8s-audience');
      const k8sFromApi = flag(ctx, 'k8s-jwks-from-api') || undefined;
      const k8sMinRefresh = optionalString(ctx, 'k8s-jwks-min-refresh');
      const k8sRegistry = flag(ctx, 'k8s-registry') || undefined;
      const concurrency = intFlag(ctx, 'signing-concurrency');
      const maxQueue = intFlag(ctx, 'signing-queue');
      const cfg = resolveConfig(fromFile, {
        caDir: pathFlag(ctx, 'ca-dir'),
        policyDir: pathFlag(ctx, 'policy-dir'),
        listen: optionalString(ctx, 'listen'),
        admin: optionalString(ctx, 'admin'),
        adminAllow: listFlag(ctx, 'admin-allow'),
        adminHosts: listFlag(ctx, 'admin-host'),
        rootRotationAuth: optionalString(ctx, 'root-rotation-auth') as ControlPlaneConfigInput['rootRotationAuth'],
        trustDomain: optionalString(ctx, 'trust-domain'),
        svidTtl: optionalString(ctx, 'svid-ttl'),
        defaultMtlsMode: optionalString(ctx, 'default-mtls-mode') as EffectiveMtlsMode | undefined,
        pathNormalization: optionalString(ctx, 'path-normalization') as PathNormalization | undefined,
        keyExchange: optionalString(ctx, 'key-exchange') as KeyExchangePolicy | undefined,
        kubernetes: k8sIssuer || k8sJwks || k8sAudience || k8sFromApi || k8sMinRefresh || k8sRegistry ? { issuer: k8sIssuer, jwksFile: k8sJwks, audience: k8sAudience, jwksFromApiServer: k8sFromApi, jwksMinRefresh: k8sMinRefresh, registry: k8sRegistry } : undefined,
        kubeconfig: pathFlag(ctx, 'kubeconfig'),
        signing: concurrency !== undefined || maxQueue !== undefined ? { concurrency, maxQueue } : undefined,
        revocationsFile: pathFlag(ctx, 'revocations'),
        federation: pathFlag(ctx, 'federation'),
        idleStreamTimeout: optionalString(ctx, 'idle-timeout'),
        logLevel: optionalString(ctx, 'log-level') as ControlPlaneConfigInput['logLevel'],
        maxStreamsPerIdentity: intFlag(ctx, 'max-streams-per-identity'),
        maxConnections: intFlag(ctx, 'max-connections'),
        authTimeout: optionalString(ctx, 'auth-timeout'),
        allowInvalidPolicies: flag(ctx, 'allow-invalid-policies') ? true : undefined,
        endpointGrace: optionalString(ctx, 'endpoint-grace'),
        endpointsSettle: optionalString(ctx, 'endpoints-settle'),
        policyCrds: flag(ctx, 'no-policy-crds') ? false : undefined,
        rootCertConfigMaps: flag(ctx, 'no-root-cert-configmaps') ? false : undefined,
        sharedState: flag(ctx, 'no-shared-state') ? false : undefined,
        leaderLease: optionalString(ctx, 'leader-lease'),
      });
      const logger = createLogger({ component: 'control-plane', sink: ctx.stderr, level: cfg.logLevel });
      const caLogger = logger.child({ component: 'ca' });
      // The API server's policies, trust-bundle ConfigMaps and shared state: on whenever there is an API server to reach, unless turned off.
      const onApiServer = (v: boolean | null): boolean => v ?? kubeConfigAvailable({ kubeconfig: cfg.kubeconfig ?? undefined, env: ctx.env });
      const namespace = ctx.env.POD_NAMESPACE ?? 'trellis-system';
      let connecting: Promise<KubeClient> | undefined;
      const kube = (): Promise<KubeClient> => (connecting ??= KubeClient.connect(cfg.kubeconfig !== null ? { kubeconfig: cfg.kubeconfig } : {}));
      const client = onApiServer(cfg.policyCrds) || onApiServer(cfg.rootCertConfigMaps) || onApiServer(cfg.sharedState) ? await kube() : null;
      // One Lease elects the replica that does singleton work: status and ConfigMap writes, CA rotation steps.
      const controllers = client
        ? new ControlPlaneControllers(
            { leaseNamespace: namespace, identity: `${ctx.env.POD_NAME ?? hostname()}-${randomBytes(3).toString('hex')}`, rootNamespace: cfg.rootNamespace, allowInvalidPolicies: cfg.allowInvalidPolicies, leaseDurationMs: cfg.leaderLeaseMs },
            { client, logger: logger.child({ component: 'kubernetes' }) },
          )
        : null;
      const sharedOnApi = client !== null && onApiServer(cfg.sharedState);
      const shared = sharedOnApi ? await startKubeSharedState({ namespace, caDir: cfg.caDir }, { client: client!, logger: logger.child({ component: 'kubernetes' }), clock: () => new Date(), isLeader: () => controllers!.isLeader() }) : undefined;
      // The CA dir follows Secret trellis-ca before the CA is loaded from it; lifecycle steps are committed there.
      const caSync = sharedOnApi ? new CaSecretSync({ namespace, caDir: cfg.caDir }, { client: client!, logger: logger.child({ component: 'ca-sync' }) }) : null;
      await caSync?.start();
      logger.info('shared state', { backend: shared ? 'api-server' : 'ca-dir', namespace: shared ? namespace : undefined, caSecret: caSync?.isActive() ?? false });
      // Follows the CA dir: an activated intermediate or a rotated root is picked up (and pushed) without a restart.
      const ca = await openReloadingAuthority(cfg.caDir, { load: (dir) => loadCertificateAuthority(dir, { logger: caLogger }), logger: caLogger, revocations: shared ? () => shared.revocations.current() : undefined });
      if (cfg.trustDomain && cfg.trustDomain !== ca.trustDomain) {
        throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `trust domain ${cfg.trustDomain} does not match the CA in ${cfg.caDir} (${ca.trustDomain})`);
      }
      const kubernetes = cfg.kubernetes ? await kubernetesTokenSettings(cfg, logger, kube) : undefined;
      // The registry from the API server: its watches start now and retry on their own while it is unreachable.
      let informers: RegistryInformers | undefined;
      let kubernetesRegistry: KubernetesRegistry | undefined;
      if (kubernetes && cfg.kubernetes?.registry) {
        const registryLogger = logger.child({ component: 'k8s-registry' });
        informers = startRegistryInformers(await kube(), { logger: registryLogger });
        kubernetesRegistry = new KubernetesRegistry({ pods: informers.pods, services: informers.services, endpointSlices: informers.endpointSlices, trustDomain: ca.trustDomain, logger: registryLogger });
        kubernetes.pods = kubernetesRegistry;
      }
      const store = new PolicyStore(
        { dir: cfg.policyDir, rootNamespace: cfg.rootNamespace, allowInvalidAtStart: cfg.allowInvalidPolicies },
        { logger: logger.child({ component: 'policy' }), now: () => new Date() },
      );
      if (cfg.allowInvalidPolicies) logger.warn('--allow-invalid-policies: policy files that fail validation at start are skipped and the rest served; a workload whose only ALLOW policy is in such a file is allowed everything', {});
      await store.start();
      const crds = controllers && onApiServer(cfg.policyCrds) ? controllers.startPolicies() : null;
      // Usually the first list takes a moment: wait a little so the control plane starts ready. The timer
      // keeps the process alive: with the API server unreachable nothing else does yet (the watches'
      // retry timers are unref'd), and the process would exit 0 before it ever listens.
      if (crds) await Promise.race([crds.synced(), new Promise((r) => setTimeout(r, 5000))]);
      const viewOptions = { rootNamespace: cfg.rootNamespace, defaultMode: cfg.defaultMtlsMode, pathNormalization: cfg.pathNormalization, keyExchange: cfg.keyExchange };
      const policy = crds
        ? policySetSource([{ name: 'dir', provider: store }, { name: 'kubernetes', provider: crds }], viewOptions, { logger: logger.child({ component: 'policy' }) })
        : policyStoreSource(store, viewOptions);
      // grpc-js takes no groups option, so the discovery port's groups are this process's default. Under
      // `require` the default stays the prefer list (the process's own clients, such as the Kubernetes API
      // client, still reach classical servers); the listeners' ClientHello gate refuses classical clients.
      setDefaultEcdhCurve(groupsList(cfg.keyExchange === 'off' ? 'off' : 'prefer'));
      const running = await startControlPlane(
        {
          caDir: cfg.caDir,
          listen: cfg.listen,
          admin: cfg.admin,
          adminAllow: cfg.adminAllow ?? undefined,
          adminHosts: cfg.adminHosts,
          rootRotationAuth: cfg.rootRotationAuth,
          svidTtlSeconds: cfg.svidTtlSeconds,
          defaultMtlsMode: cfg.defaultMtlsMode,
          kubernetes,
          signing: cfg.signing,
          idleStreamTimeoutMs: cfg.idleStreamTimeoutMs,
          debounceMs: cfg.debounceMs,
          maxStreamsPerIdentity: cfg.maxStreamsPerIdentity,
          maxConnections: cfg.maxConnections,
          authTimeoutMs: cfg.authTimeoutMs,
          endpointGraceMs: cfg.endpointGraceMs,
          endpointsSettleMs: cfg.endpointsSettleMs,
          revocationsFile: cfg.revocationsFile ?? undefined,
          federationFile: cfg.federationFile ?? undefined,
          refreshMs: 1000,
          keyExchange: cfg.keyExchange,
        },
        {
          authority: ca,
          policy,
          logger,
          caExpiry: () => ca.expiry(),
          shared,
          runStep: caSync ? (step) => caSync.step(step) : undefined,
          kubernetesRegistry,
        },
      );
      if (kubernetesRegistry) registerKubernetesRegistryGauges(running.metrics.registry, kubernetesRegistry, () => informers!.listCounts());
      if (controllers && onApiServer(cfg.rootCertConfigMaps)) {
        controllers.startRootCerts(() => running.service.currentBundle().rootsPem);
        running.onTrustBundleChange(() => controllers.rootsChanged());
      }
      controllers?.elect();
      // CA lifecycle: intermediate rotation when due, a started root rotation advanced on observed ACKs, trellis_lifecycle_* gauges.
      registerLifecycleGauges(running.metrics.registry, cfg.caDir, () => new Date(), shared ? () => shared.revocations.current() : undefined);
      const lifecycle = startLifecycleManager(
        { caDir: cfg.caDir, rootDir: pathFlag(ctx, 'root-dir') },
        // Every replica's sidecars: a rotation step waits for the ACKs of those connected to the others too.
        {
          authority: ca,
          logger: logger.child({ component: 'lifecycle' }),
          proxies: () => [...(proxiesFromAdmin({ proxies: running.service.registry.statuses() }) ?? []), ...remoteProxies(running.replicas())],
          // On Kubernetes only the Lease holder steps, and each step is committed to Secret trellis-ca.
          isLeader: controllers && shared ? () => controllers.isLeader() : undefined,
          runStep: caSync ? (step) => caSync.step(step) : undefined,
        },
      );
      await new Promise<void>((r) => {
        if (ctx.stopSignal.aborted) r();
        else ctx.stopSignal.addEventListener('abort', () => r(), { once: true });
      });
      logger.info('control plane draining', { signal: String(ctx.stopSignal.reason ?? '') });
      // The drain takes up to 5 s; the API server calls around it (lease release, report withdrawal) are
      // bounded by the client's request timeout, and the whole is bounded by the deadline.
      const outcome = await runShutdownSteps(
        [
          { name: 'lifecycle', run: () => lifecycle.stop() },
          { name: 'controllers (lease release)', run: () => controllers?.stop() },
          { name: 'drain (streams, replica report, admin API)', run: () => running.stop(5000) },
          { name: 'CA Secret sync', run: () => caSync?.stop() },
          { name: 'registry informers', run: () => informers?.stop() },
          { name: 'CA', run: () => ca.close() },
        ],
        SHUTDOWN_DEADLINE_MS,
        logger,
      );
      logger.info('control plane exiting', { clean: outcome.done });
      return outcome.done ? 0 : 1;
    },
  },
];

/**
 * Sets node:tls's process-wide default groups (`tls.DEFAULT_ECDH_CURVE`,
 * used by every context made without `ecdhCurve`). Through require(): a
 * TypeScript namespace import is a copy, and assigning to it would change
 * nothing.
 */
function setDefaultEcdhCurve(groups: string): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require('node:tls') as { DEFAULT_ECDH_CURVE: string }).DEFAULT_ECDH_CURVE = groups;
}
