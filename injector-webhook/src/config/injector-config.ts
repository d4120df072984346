/**
 * What the injector adds to a pod, as one frozen, validated object.
 *
 * The same config drives the webhook (`trellis injector --config FILE`) and the
 * offline `trellis inject`; it is parsed once at the edge, every problem is
 * reported with its field path, and unknown keys are errors (a typo must not
 * silently fall back to a default).
 */
import { parse as parseYaml } from 'yaml';
import { ROOT_CERT_CONFIGMAP } from '@trellis/shared';
import { InjectorError } from '../errors/injector-error';

/** Kubernetes resource quantities for the sidecar (strings as Kubernetes writes them). */
export interface ResourceSpec {
  readonly requests: Readonly<Record<string, string>>;
  readonly limits: Readonly<Record<string, string>>;
}

/** Injection settings. See docs/kubernetes.md for each field's meaning. */
export interface InjectorConfig {
  /** Image holding the `trellis` binary; runs both the sidecar and the init container. */
  readonly image: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** `host:port` of the control plane's discovery endpoint (comma-separated for several). */
  readonly controlPlane: string;
  /** Trust domain of the mesh; the sidecar forms its SPIFFE ID from it, the namespace and the service account. */
  readonly trustDomain: string;
  /** ConfigMap (in the pod's namespace) holding the first trust anchor, and its key. */
  readonly caBundleConfigMap: string;
  readonly caBundleKey: string;
  /** Native sidecar: an init container with `restartPolicy: Always` (Kubernetes 1.29+). */
  readonly nativeSidecar: boolean;
  /** UID (and GID) the sidecar runs as; the redirect rules exempt it. */
  readonly proxyUid: number;
  /** First port of the range the sidecar's inbound listeners take, one per app port. */
  readonly inboundPortBase: number;
  /** Admin listener port (bound to 127.0.0.1 only). */
  readonly adminPort: number;
  /** Health port kubelet reaches on the pod IP: `/ready` and the rewritten app probes. */
  readonly healthPort: number;
  /** Projected ServiceAccount token audience and lifetime. */
  readonly tokenAudience: string;
  readonly tokenExpirationSeconds: number;
  readonly resources: ResourceSpec;
}

/** The defaults; `parseInjectorConfig` overlays a file on these. */
export const DEFAULT_INJECTOR_CONFIG: InjectorConfig = deepFreeze({
  image: 'ghcr.io/trellis-mesh/trellis:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  controlPlane: 'trellis-control-plane.trellis-system.svc:15012',
  trustDomain: 'cluster.local',
  caBundleConfigMap: ROOT_CERT_CONFIGMAP.name,
  caBundleKey: ROOT_CERT_CONFIGMAP.key,
  nativeSidecar: false,
  proxyUid: 1337,
  inboundPortBase: 15100,
  adminPort: 15000,
  healthPort: 15021,
  tokenAudience: 'trellis',
  tokenExpirationSeconds: 3600,
  resources: {
    requests: { cpu: '50m', memory: '64Mi' },
    limits: { cpu: '1', memory: '256Mi' },
  },
});

const PORT_FIELDS = ['proxyUid', 'inboundPortBase', 'adminPort', 'healthPort', 'tokenExpirationSeconds'] as const;
const STRING_FIELDS = ['image', 'controlPlane', 'trustDomain', 'caBundleConfigMap', 'caBundleKey', 'tokenAudience'] as const;
const KNOWN = new Set<string>([...PORT_FIELDS, ...STRING_FIELDS, 'imagePullPolicy', 'nativeSidecar', 'resources']);
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

/**
 * Validates a plain object (already parsed from YAML/JSON) into an InjectorConfig.
 * Throws TRELLIS_INJECTOR_BAD_CONFIG listing every problem as `source: field: reason`.
 */
export function buildInjectorConfig(raw: unknown, source = 'config'): InjectorConfig {
  const problems: string[] = [];
  if (raw === null || raw === undefined) return DEFAULT_INJECTOR_CONFIG;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CONFIG', `${source}: the injector config must be a mapping`, { source });
  }
  const r = raw as Record<string, unknown>;
  const out: Record<string, unknown> = { ...DEFAULT_INJECTOR_CONFIG };
  for (const key of Object.keys(r)) if (!KNOWN.has(key)) problems.push(`${key}: unknown field`);
  for (const key of STRING_FIELDS) {
    if (r[key] === undefined) continue;
    if (typeof r[key] !== 'string' || (r[key] as string).trim() === '') problems.push(`${key}: must be a non-empty string`);
    else out[key] = r[key];
  }
  for (const key of PORT_FIELDS) {
    if (r[key] === undefined) continue;
    const v = r[key];
    const max = key === 'tokenExpirationSeconds' ? 86400 * 2 : key === 'proxyUid' ? 2 ** 31 - 1 : 65535;
    const min = key === 'tokenExpirationSeconds' ? 600 : 1;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) problems.push(`${key}: must be an integer from ${min} to ${max}`);
    else out[key] = v;
  }
  if (r.imagePullPolicy !== undefined) {
    if (r.imagePullPolicy !== 'Always' && r.imagePullPolicy !== 'IfNotPresent' && r.imagePullPolicy !== 'Never') {
      problems.push('imagePullPolicy: must be Always, IfNotPresent or Never');
    } else out.imagePullPolicy = r.imagePullPolicy;
  }
  if (r.nativeSidecar !== undefined) {
    if (typeof r.nativeSidecar !== 'boolean') problems.push('nativeSidecar: must be true or false');
    else out.nativeSidecar = r.nativeSidecar;
  }
  if (r.resources !== undefined) out.resources = buildResources(r.resources, problems);
  const ports = [out.adminPort, out.healthPort] as number[];
  if (new Set(ports).size !== ports.length) problems.push('healthPort: must differ from adminPort');
  const base = out.inboundPortBase as number;
  if (base + 64 > 65535) problems.push('inboundPortBase: leaves no room for the inbound listener range');
  for (const p of ports) if (p >= base && p < base + 64) problems.push(`inboundPortBase: the range ${base}-${base + 63} overlaps port ${p}`);
  if (problems.length > 0) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CONFIG', `${source}: ${problems.join('; ')}`, { source, problems });
  }
  return deepFreeze(out as unknown as InjectorConfig);
}

/** Parses YAML text (the `--config` file) into an InjectorConfig; `source` names the file in errors. */
export function parseInjectorConfig(text: string, source: string): InjectorConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CONFIG', `${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`, { source }, { cause: err });
  }
  return buildInjectorConfig(raw, source);
}

function buildResources(v: unknown, problems: string[]): ResourceSpec {
  const out: { requests: Record<string, string>; limits: Record<string, string> } = { requests: {}, limits: {} };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    problems.push('resources: must be a mapping with requests and/or limits');
    return out;
  }
  for (const [k, section] of Object.entries(v as Record<string, unknown>)) {
    if (k !== 'requests' && k !== 'limits') {
      problems.push(`resources.${k}: unknown field`);
      continue;
    }
    if (typeof section !== 'object' || section === null || Array.isArray(section)) {
      problems.push(`resources.${k}: must be a mapping of resource name to quantity`);
      continue;
    }
    for (const [name, q] of Object.entries(section as Record<string, unknown>)) {
      const s = typeof q === 'number' ? String(q) : q;
      if (typeof s !== 'string' || !QUANTITY.test(s)) problems.push(`resources.${k}.${name}: "${String(q)}" is not a Kubernetes quantity`);
      else out[k][name] = s;
    }
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
