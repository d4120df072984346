/**
 * The control plane's configuration: a YAML file (validated with ajv, every
 * problem reported with its path) merged with command-line flags, flags
 * winning. Parsed once at the edge into a frozen, fully-resolved object.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import Ajv from 'ajv';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_KEY_EXCHANGE, DEFAULT_PATH_NORMALIZATION, isSpiffeId, KEY_EXCHANGE_POLICIES, type KeyExchangePolicy, parseDuration, PATH_NORMALIZATIONS, type EffectiveMtlsMode, MTLS_MODES, type LogLevel, type PathNormalization } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { DEFAULT_CONNECTION_LIMITS } from '../discovery/connection-guard';
import { DEFAULT_MAX_STREAMS_PER_IDENTITY } from '../discovery/stream-quota';
import { DEFAULT_ENDPOINT_GRACE_MS, DEFAULT_ENDPOINTS_SETTLE_MS } from '../discovery/discovery-service';

/** Settings as they may appear in the file or flags (all optional here). */
export interface ControlPlaneConfigInput {
  trustDomain?: string;
  caDir?: string;
  policyDir?: string;
  listen?: string;
  admin?: string;
  /** SPIFFE IDs allowed to use the admin API (default spiffe://<td>/ns/trellis-system/sa/trellis-admin). */
  adminAllow?: string[];
  /** Extra HOST[:PORT] values the admin API's Host header may carry (e.g. the pod IP). */
  adminHosts?: string[];
  /** Who may start a root rotation over the admin API: `root-key` (default) or `admin-identity`. */
  rootRotationAuth?: 'root-key' | 'admin-identity';
  svidTtl?: string;
  defaultMtlsMode?: EffectiveMtlsMode;
  /** Istio's meshConfig.pathNormalization.normalization, pushed to every sidecar. */
  pathNormalization?: PathNormalization;
  /** The key-exchange policy of every mTLS hop (prefer, require, off), pushed to every sidecar. */
  keyExchange?: KeyExchangePolicy;
  rootNamespace?: string;
  /**
   * Kubernetes ServiceAccount tokens: the issuer's keys from `jwksFile`
   * (offline; `issuer` required), or from the API server's OIDC discovery
   * (`jwksFromApiServer`; `issuer` defaults to the discovered one).
   * `registry`: endpoints and pod attestation from the API server (Pods,
   * Services, EndpointSlices) instead of the connected sessions.
   */
  kubernetes?: { issuer?: string; audience?: string; jwksFile?: string; jwksFromApiServer?: boolean; jwksMinRefresh?: string; registry?: boolean };
  /** The API server connection for everything read from it; absent: in-cluster config. */
  kubeconfig?: string;
  signing?: { concurrency?: number; maxQueue?: number };
  revocationsFile?: string;
  /** The federatesWith config (other trust domains' bundles); watched. */
  federation?: string;
  idleStreamTimeout?: string;
  pushDebounce?: string;
  logLevel?: LogLevel;
  /** Discovery streams one identity may hold open at once. */
  maxStreamsPerIdentity?: number;
  /** Open discovery connections (TLS/HTTP/2 sessions), authenticated or not. */
  maxConnections?: number;
  /** A connection none of whose streams authenticated within this is closed. */
  authTimeout?: string;
  /** Serve the valid policy files even when some fail validation at first load (fails open; off by default). */
  allowInvalidPolicies?: boolean;
  /** How long a lost discovery stream's endpoints stay listed (0s: withdrawn at once). */
  endpointGrace?: string;
  /** The longest a just-started control plane holds endpoint lists back for the sidecars it expects (0s: never). */
  endpointsSettle?: string;
  /**
   * Read PeerAuthentication/AuthorizationPolicy objects from the API server
   * (security.trellis.dev/v1; security.istio.io v1/v1beta1 when installed)
   * besides the policy dir. Default: on when a kubeconfig is given or the
   * control plane runs in a pod; false turns it off, true requires it.
   */
  policyCrds?: boolean;
  /** Keep ConfigMap trellis-ca-root-cert current in every namespace. Default as policyCrds. */
  rootCertConfigMaps?: boolean;
  /**
   * Keep the state replicas share (revocations, join-token uses, re-issue
   * orders, replica reports, the CA's rotation state) on the API server.
   * Default as policyCrds; false keeps it in the CA dir.
   */
  sharedState?: boolean;
  /** The Lease that elects the replica doing singleton work (default 15s, client-go's). */
  leaderLease?: string;
}

/** The resolved configuration. */
export interface ControlPlaneConfig {
  readonly trustDomain: string | null;
  readonly caDir: string;
  readonly policyDir: string;
  readonly listen: string;
  readonly admin: string;
  /** The admin allow-list; null means the default admin identity of the trust domain. */
  readonly adminAllow: readonly string[] | null;
  readonly adminHosts: readonly string[];
  readonly rootRotationAuth: 'root-key' | 'admin-identity';
  readonly svidTtlSeconds: number;
  readonly defaultMtlsMode: EffectiveMtlsMode;
  /** How sidecars normalize request paths before AuthorizationPolicy (default BASE, as Istio). */
  readonly pathNormalization: PathNormalization;
  readonly keyExchange: KeyExchangePolicy;
  readonly rootNamespace: string;
  readonly kubernetes: {
    /** null: take the issuer the API server's discovery names. */
    readonly issuer: string | null;
    readonly audience: string;
    /** The offline key file, or null when the keys come from the API server. */
    readonly jwksFile: string | null;
    readonly jwksFromApiServer: boolean;
    /** Least time between two key refetches from the API server (default 30 s). */
    readonly jwksMinRefreshMs: number;
    /** The registry (endpoints, pod attestation) comes from the API server (`--k8s-registry`). */
    readonly registry: boolean;
  } | null;
  /** A kubeconfig file; null: the in-cluster config when something needs the API server. */
  readonly kubeconfig: string | null;
  readonly signing: { readonly concurrency: number; readonly maxQueue: number };
  readonly revocationsFile: string | null;
  /** The federatesWith config file, or null when we federate with no one. */
  readonly federationFile: string | null;
  readonly idleStreamTimeoutMs: number;
  readonly debounceMs: number;
  readonly logLevel: LogLevel;
  readonly maxStreamsPerIdentity: number;
  readonly maxConnections: number;
  readonly authTimeoutMs: number;
  readonly allowInvalidPolicies: boolean;
  readonly endpointGraceMs: number;
  readonly endpointsSettleMs: number;
  /** true/false as configured; null: on when there is an API server to reach (kubeconfig, or in a pod). */
  readonly policyCrds: boolean | null;
  /** As policyCrds, for the trust-bundle ConfigMaps. */
  readonly rootCertConfigMaps: boolean | null;
  /** As policyCrds, for the state the replicas share. */
  readonly sharedState: boolean | null;
  readonly leaderLeaseMs: number;
}

const HOST_PORT = '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$';
const DURATION = '^([0-9]+(ms|s|m|h|d))+$';
const ADMIN_HOST = '^((\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)$';

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    trustDomain: { type: 'string', minLength: 1 },
    caDir: { type: 'string', minLength: 1 },
    policyDir: { type: 'string', minLength: 1 },
    listen: { type: 'string', pattern: HOST_PORT },
    admin: { type: 'string', pattern: HOST_PORT },
    adminAllow: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^spiffe://' } },
    adminHosts: { type: 'array', items: { type: 'string', pattern: ADMIN_HOST } },
    rootRotationAuth: { enum: ['root-key', 'admin-identity'] },
    svidTtl: { type: 'string', pattern: DURATION },
    defaultMtlsMode: { enum: [...MTLS_MODES] },
    pathNormalization: { enum: [...PATH_NORMALIZATIONS] },
    keyExchange: { enum: [...KEY_EXCHANGE_POLICIES] },
    rootNamespace: { type: 'string', minLength: 1 },
    kubernetes: {
      type: 'object',
      additionalProperties: false,
      properties: {
        issuer: { type: 'string', minLength: 1 },
        audience: { type: 'string', minLength: 1 },
        jwksFile: { type: 'string', minLength: 1 },
        jwksFromApiServer: { type: 'boolean' },
        jwksMinRefresh: { type: 'string', pattern: DURATION },
        registry: { type: 'boolean' },
      },
      // Where the issuer's keys come from is part of the block: a file that sets kubernetes without it is incomplete.
      anyOf: [{ properties: { jwksFile: true }, required: ['jwksFile'] }, { properties: { jwksFromApiServer: true }, required: ['jwksFromApiServer'] }],
    },
    kubeconfig: { type: 'string', minLength: 1 },
    signing: {
      type: 'object',
      additionalProperties: false,
      properties: {
        concurrency: { type: 'integer', minimum: 1, maximum: 1024 },
        maxQueue: { type: 'integer', minimum: 0, maximum: 1000000 },
      },
    },
    revocationsFile: { type: 'string', minLength: 1 },
    federation: { type: 'string', minLength: 1 },
    idleStreamTimeout: { type: 'string', pattern: DURATION },
    pushDebounce: { type: 'string', pattern: DURATION },
    logLevel: { enum: ['debug', 'info', 'warn', 'error'] },
    maxStreamsPerIdentity: { type: 'integer', minimum: 1, maximum: 100000 },
    maxConnections: { type: 'integer', minimum: 1, maximum: 1000000 },
    authTimeout: { type: 'string', pattern: DURATION },
    allowInvalidPolicies: { type: 'boolean' },
    endpointGrace: { type: 'string', pattern: DURATION },
    endpointsSettle: { type: 'string', pattern: DURATION },
    policyCrds: { type: 'boolean' },
    rootCertConfigMaps: { type: 'boolean' },
    sharedState: { type: 'boolean' },
    leaderLease: { type: 'string', pattern: DURATION },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true });
const validate = ajv.compile(SCHEMA);

/** Reads and validates a config file; relative paths in it resolve against its folder. */
export function readConfigFile(file: string): ControlPlaneConfigInput {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw invalid([`${file}: cannot read: ${(err as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw invalid([`${file}: not YAML: ${(err as Error).message}`]);
  }
  const problems = check(doc, file);
  if (problems.length > 0) throw invalid(problems);
  const input = doc as ControlPlaneConfigInput;
  const base = dirname(resolve(file));
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(base, p));
  return {
    ...input,
    caDir: abs(input.caDir),
    policyDir: abs(input.policyDir),
    revocationsFile: abs(input.revocationsFile),
    federation: abs(input.federation),
    kubernetes: input.kubernetes ? { ...input.kubernetes, jwksFile: abs(input.kubernetes.jwksFile) } : undefined,
    kubeconfig: abs(input.kubeconfig),
  };
}

/** Every schema problem as "source: /path: reason". */
export function check(doc: unknown, source: string): string[] {
  if (validate(doc)) return [];
  // An anyOf's branches each report their own miss; the anyOf's one line says it better.
  return (validate.errors ?? []).filter((e) => !e.schemaPath.includes('/anyOf/')).map((e) => {
    const path = e.instancePath || '/';
    if (e.keyword === 'additionalProperties') return `${source}: ${path}: unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    if (e.keyword === 'enum') return `${source}: ${path}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    if (e.keyword === 'anyOf' && path === '/kubernetes') return `${source}: ${path}: the issuer's keys are needed: jwksFile (--k8s-jwks FILE) or jwksFromApiServer (--k8s-jwks-from-api)`;
    return `${source}: ${path}: ${e.message}`;
  });
}

/**
 * Merges file and flags (flags win) into the resolved config, applying
 * defaults. Throws TRELLIS_CP_CONFIG_INVALID listing every problem.
 */
export function resolveConfig(file: ControlPlaneConfigInput, flags: ControlPlaneConfigInput): ControlPlaneConfig {
  const merged: ControlPlaneConfigInput = {
    ...file,
    ...stripUndefined(flags),
    kubernetes: mergeObj(file.kubernetes, flags.kubernetes),
    signing: mergeObj(file.signing, flags.signing),
  };
  if (!merged.kubernetes) delete merged.kubernetes;
  if (!merged.signing) delete merged.signing;
  const problems = check(merged, 'config');
  if (!merged.caDir) problems.push('config: /caDir: required (--ca-dir or caDir in the config file)');
  if (!merged.policyDir) problems.push('config: /policyDir: required (--policy-dir or policyDir in the config file)');
  const dur = (v: string | undefined, field: string, dflt: number): number => {
    if (v === undefined) return dflt;
    try {
      return parseDuration(v, field);
    } catch (err) {
      problems.push(`config: /${field}: ${(err as Error).message}`);
      return dflt;
    }
  };
  const svidTtlMs = dur(merged.svidTtl, 'svidTtl', 3600_000);
  if (svidTtlMs < 60_000 || svidTtlMs > 86_400_000) problems.push('config: /svidTtl: must be between 1m and 24h');
  (merged.adminAllow ?? []).forEach((id, i) => {
    if (!isSpiffeId(id)) problems.push(`config: /adminAllow/${i}: "${id}" is not a SPIFFE ID`);
  });
  const k8s = merged.kubernetes;
  if (k8s) {
    if (k8s.jwksFile && k8s.jwksFromApiServer) problems.push('config: /kubernetes: give either jwksFile (--k8s-jwks) or jwksFromApiServer (--k8s-jwks-from-api), not both');
    else if (k8s.jwksFile && !k8s.issuer) problems.push('config: /kubernetes/issuer: required with jwksFile (--k8s-issuer URL)');
  }
  const jwksMinRefreshMs = dur(merged.kubernetes?.jwksMinRefresh, 'kubernetes/jwksMinRefresh', 30_000);
  const idle = dur(merged.idleStreamTimeout, 'idleStreamTimeout', 10_000);
  const debounce = dur(merged.pushDebounce, 'pushDebounce', 100);
  const authTimeout = dur(merged.authTimeout, 'authTimeout', DEFAULT_CONNECTION_LIMITS.authTimeoutMs);
  if (authTimeout < 100 || authTimeout > 600_000) problems.push('config: /authTimeout: must be between 100ms and 10m');
  const endpointGrace = dur(merged.endpointGrace, 'endpointGrace', DEFAULT_ENDPOINT_GRACE_MS);
  if (endpointGrace > 3600_000) problems.push('config: /endpointGrace: must be at most 1h');
  const endpointsSettle = dur(merged.endpointsSettle, 'endpointsSettle', DEFAULT_ENDPOINTS_SETTLE_MS);
  if (endpointsSettle > 600_000) problems.push('config: /endpointsSettle: must be at most 10m');
  const leaderLease = dur(merged.leaderLease, 'leaderLease', 15_000);
  if (leaderLease < 1500 || leaderLease > 300_000) problems.push('config: /leaderLease: must be between 1.5s and 5m');
  if (problems.length > 0) throw invalid(problems);
  const k = merged.kubernetes;
  return Object.freeze({
    trustDomain: merged.trustDomain ?? null,
    caDir: merged.caDir!,
    policyDir: merged.policyDir!,
    listen: merged.listen ?? '127.0.0.1:15012',
    admin: merged.admin ?? '127.0.0.1:15014',
    adminAllow: merged.adminAllow ? Object.freeze([...merged.adminAllow]) : null,
    adminHosts: Object.freeze([...(merged.adminHosts ?? [])]),
    rootRotationAuth: merged.rootRotationAuth ?? 'root-key',
    svidTtlSeconds: Math.round(svidTtlMs / 1000),
    defaultMtlsMode: merged.defaultMtlsMode ?? 'STRICT',
    pathNormalization: merged.pathNormalization ?? DEFAULT_PATH_NORMALIZATION,
    keyExchange: merged.keyExchange ?? DEFAULT_KEY_EXCHANGE,
    rootNamespace: merged.rootNamespace ?? 'trellis-system',
    kubernetes: k ? Object.freeze({ issuer: k.issuer ?? null, audience: k.audience ?? 'trellis', jwksFile: k.jwksFile ?? null, jwksFromApiServer: k.jwksFromApiServer === true, jwksMinRefreshMs, registry: k.registry === true }) : null,
    kubeconfig: merged.kubeconfig ?? null,
    signing: Object.freeze({ concurrency: merged.signing?.concurrency ?? 4, maxQueue: merged.signing?.maxQueue ?? 20_000 }),
    revocationsFile: merged.revocationsFile ?? null,
    federationFile: merged.federation ?? null,
    idleStreamTimeoutMs: idle,
    debounceMs: debounce,
    logLevel: merged.logLevel ?? 'info',
    maxStreamsPerIdentity: merged.maxStreamsPerIdentity ?? DEFAULT_MAX_STREAMS_PER_IDENTITY,
    maxConnections: merged.maxConnections ?? DEFAULT_CONNECTION_LIMITS.maxConnections,
    authTimeoutMs: authTimeout,
    allowInvalidPolicies: merged.allowInvalidPolicies ?? false,
    endpointGraceMs: endpointGrace,
    endpointsSettleMs: endpointsSettle,
    policyCrds: merged.policyCrds ?? null,
    rootCertConfigMaps: merged.rootCertConfigMaps ?? null,
    sharedState: merged.sharedState ?? null,
    leaderLeaseMs: leaderLease,
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function mergeObj<T extends object>(a: T | undefined, b: T | undefined): T | undefined {
  if (!a && !b) return undefined;
  return { ...(a ?? {}), ...stripUndefined(b ?? ({} as T)) } as T;
}

function invalid(problems: string[]): ControlPlaneError {
  return new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `invalid control-plane configuration:\n  ${problems.join('\n  ')}`, { problems });
}
