/**
 * `trellis sidecar` settings from three sources, parsed once at the edge
 * into a frozen typed object: command-line flags win over `TRELLIS_*`
 * environment variables (what injection sets), which win over the YAML
 * config file. Every problem is collected with its source and field before
 * anything starts, and reported together.
 */
import { controlPlaneSpiffeId as wellKnownControlPlaneId, isLoopbackHost, isSpiffeId, parseHostPort, parsePort, joinTokenSpiffeId, kubernetesSpiffeId, parseDuration, parseKubernetesSpiffeId, parseSpiffeId } from '@trellis/shared';
import { SidecarError } from '../errors';
import type { InboundSpec } from '../inbound/inbound-listener';
import type { OutboundSpec } from '../outbound/outbound-listener';
import type { RotationPolicy } from '../identity/next-rotation';
import { parseAppProbes, type AppProbe } from '../admin/health-server';
import { DEFAULT_MAX_PENDING_HANDSHAKES } from '../inbound/pending-handshakes';
import { INBOUND_PROTOCOL_LIST, isInboundProtocol } from '../inbound/inbound-protocol';

/** Everything the sidecar process needs, validated. */
export interface SidecarConfig {
  readonly controlPlane: readonly string[];
  readonly caBundleFile: string;
  readonly tokenFile: string;
  readonly namespace: string;
  readonly service: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  /** Our expected SPIFFE ID: --spiffe-id, else the one the join token names, else the Kubernetes form. */
  readonly spiffeId: string;
  /** Where `spiffeId` came from, so a mismatch can name the setting to fix. */
  readonly spiffeIdSource: 'flag' | 'join-token' | 'kubernetes';
  readonly controlPlaneSpiffeId: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly inbound: readonly InboundSpec[];
  readonly outbound: readonly OutboundSpec[];
  /**
   * The admin endpoint (`/ready`, `/stats`, `/config_dump`, `POST /quitquitquit`). It has no
   * authentication, so it is a loopback address unless `--admin-allow-remote` was given.
   */
  readonly admin?: { readonly host: string; readonly port: number };
  /** The kubelet-facing health port (`/ready`, `/app-health/...`), when set. */
  readonly health?: { readonly host: string; readonly port: number };
  /** Original application probes from TRELLIS_APP_PROBES, keyed by `/app-health/...` path. */
  readonly appProbes: Readonly<Record<string, AppProbe>>;
  readonly drainMs: number;
  readonly detectTimeoutMs: number;
  /** The cap on inbound connections not yet judged (see pending-handshakes.ts). */
  readonly maxPendingHandshakes: number;
  /** Which data path carries STRICT TCP ports and outbound connections (see SidecarOptions.dataPath). */
  readonly dataPath: 'auto' | 'native' | 'node';
  readonly rotation: RotationPolicy;
  readonly podIp?: string;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
}

/** One setting's raw value(s) as each source gives it. */
type Raw = string | string[] | undefined;

/** The settings, their flag names, environment variables and config-file keys. */
export const SETTINGS = [
  { flag: 'control-plane', env: 'TRELLIS_CONTROL_PLANE', key: 'controlPlane', list: true },
  { flag: 'ca-bundle', env: 'TRELLIS_CA_BUNDLE', key: 'caBundle' },
  { flag: 'token-file', env: 'TRELLIS_TOKEN_FILE', key: 'tokenFile' },
  { flag: 'namespace', env: 'TRELLIS_NAMESPACE', key: 'namespace', fallbackEnv: 'TRELLIS_POD_NAMESPACE' },
  { flag: 'service', env: 'TRELLIS_SERVICE', key: 'service' },
  { flag: 'service-account', env: 'TRELLIS_SERVICE_ACCOUNT', key: 'serviceAccount' },
  { flag: 'trust-domain', env: 'TRELLIS_TRUST_DOMAIN', key: 'trustDomain' },
  { flag: 'spiffe-id', env: 'TRELLIS_SPIFFE_ID', key: 'spiffeId' },
  { flag: 'control-plane-id', env: 'TRELLIS_CONTROL_PLANE_ID', key: 'controlPlaneSpiffeId' },
  { flag: 'labels', env: 'TRELLIS_LABELS', key: 'labels', list: true },
  { flag: 'inbound', env: 'TRELLIS_INBOUND', key: 'inbound', list: true },
  { flag: 'outbound', env: 'TRELLIS_OUTBOUND', key: 'outbound', list: true },
  { flag: 'admin', env: 'TRELLIS_ADMIN', key: 'admin' },
  { flag: 'admin-allow-remote', env: 'TRELLIS_ADMIN_ALLOW_REMOTE', key: 'adminAllowRemote', boolean: true },
  { flag: 'health', env: 'TRELLIS_HEALTH_LISTEN', key: 'health' },
  { flag: 'drain', env: 'TRELLIS_DRAIN', key: 'drain' },
  { flag: 'detect-timeout', env: 'TRELLIS_DETECT_TIMEOUT', key: 'detectTimeout' },
  { flag: 'max-pending-handshakes', env: 'TRELLIS_MAX_PENDING_HANDSHAKES', key: 'maxPendingHandshakes' },
  { flag: 'data-path', env: 'TRELLIS_DATA_PATH', key: 'dataPath' },
  { flag: 'rotate-at', env: 'TRELLIS_ROTATE_AT', key: 'rotateAt' },
  { flag: 'rotate-jitter', env: 'TRELLIS_ROTATE_JITTER', key: 'rotateJitter' },
  { flag: 'log-level', env: 'TRELLIS_LOG_LEVEL', key: 'logLevel' },
] as const;

/** The sources to merge. */
export interface ConfigSources {
  /** Parsed flags (node:util parseArgs values). */
  flags: Record<string, string | boolean | Array<string | boolean> | undefined>;
  env: NodeJS.ProcessEnv;
  /** The config file (YAML, or JSON when its name ends in `.json`), when --config / TRELLIS_CONFIG was given. */
  file?: { path: string; text: string };
  /**
   * Reads the token file (trimmed), or undefined when it cannot be read. A
   * join token names its SPIFFE ID, which then needs no flag; any other token
   * (a Kubernetes ServiceAccount token) is ignored here.
   */
  readToken?: (path: string) => string | undefined;
}

/**
 * Merges and validates the sources. Throws SidecarError
 * `TRELLIS_SIDECAR_BAD_CONFIG` listing every problem (`details.problems`).
 */
export function parseSidecarConfig(src: ConfigSources): SidecarConfig {
  const problems: string[] = [];
  let fileValues: Record<string, unknown> = {};
  if (src.file) {
    try {
      // A `.json` file is read with JSON.parse; yaml is required only for a YAML file, since
      // it costs an idle sidecar several MB of resident memory for the rest of its life.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const doc = (/\.json$/i.test(src.file.path) ? JSON.parse(src.file.text) : (require('yaml') as typeof import('yaml')).parse(src.file.text)) as unknown;
      if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) problems.push(`${src.file.path}: the config file must be a mapping`);
      else fileValues = (doc ?? {}) as Record<string, unknown>;
      const known = new Set<string>(SETTINGS.map((s) => s.key));
      for (const k of Object.keys(fileValues)) if (!known.has(k)) problems.push(`${src.file.path}: unknown field "${k}" (known: ${[...known].join(', ')})`);
    } catch (err) {
      problems.push(`${src.file.path}: not valid ${/\.json$/i.test(src.file.path) ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const where = new Map<string, string>();
  const get = (flag: string): Raw => {
    const s = SETTINGS.find((x) => x.flag === flag)!;
    const f = src.flags[flag];
    if (f !== undefined && f !== false) {
      where.set(flag, `--${flag}`);
      const arr = (Array.isArray(f) ? f : [f]).filter((v): v is string => typeof v === 'string');
      return 'list' in s && s.list ? arr.flatMap(splitList) : arr[arr.length - 1];
    }
    const e = src.env[s.env] ?? ('fallbackEnv' in s ? src.env[s.fallbackEnv] : undefined);
    if (e !== undefined && e !== '') {
      where.set(flag, `$${s.env}`);
      return 'list' in s && s.list ? splitList(e) : e;
    }
    const v = fileValues[s.key];
    if (v !== undefined && v !== null) {
      where.set(flag, `${src.file!.path}: ${s.key}`);
      if ('list' in s && s.list) {
        if (Array.isArray(v)) return v.map(String);
        if (typeof v === 'object') return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}=${String(x)}`);
        return splitList(String(v));
      }
      return String(v);
    }
    return undefined;
  };
  const label = (flag: string): string => where.get(flag) ?? `--${flag}`;
  const required = (flag: string): string => {
    const v = get(flag);
    const s = Array.isArray(v) ? v.join(',') : v;
    if (!s) {
      const setting = SETTINGS.find((x) => x.flag === flag)!;
      problems.push(`--${flag} is required (or $${setting.env}, or "${setting.key}" in the config file)`);
      return '';
    }
    return s;
  };

  const controlPlane = (get('control-plane') as string[] | undefined) ?? [];
  if (controlPlane.length === 0) problems.push('--control-plane is required (or $TRELLIS_CONTROL_PLANE, or "controlPlane" in the config file)');
  controlPlane.forEach((a) => {
    if (!/^[^\s:]+:\d{1,5}$/.test(a) && !/^\[[0-9a-fA-F:.]+\]:\d{1,5}$/.test(a)) problems.push(`${label('control-plane')}: "${a}" is not HOST:PORT`);
  });
  const caBundleFile = required('ca-bundle');
  const tokenFile = required('token-file');
  // Who we are: --spiffe-id, else the SPIFFE ID our join token names (the control plane
  // issues exactly that one, so repeating it in flags can only contradict it), else the
  // Kubernetes form from trust domain, namespace and service account.
  const trustDomainRaw = get('trust-domain') as string | undefined;
  let spiffeId = get('spiffe-id') as string | undefined;
  let spiffeIdSource: SidecarConfig['spiffeIdSource'] = 'flag';
  if (spiffeId !== undefined && !isSpiffeId(spiffeId)) problems.push(`${label('spiffe-id')}: "${spiffeId}" is not a SPIFFE ID`);
  if (spiffeId === undefined && tokenFile && src.readToken) {
    const token = src.readToken(tokenFile);
    const fromToken = token === undefined ? undefined : joinTokenSpiffeId(token);
    if (fromToken !== undefined) {
      spiffeId = fromToken;
      spiffeIdSource = 'join-token';
    }
  }
  const named = spiffeId !== undefined && isSpiffeId(spiffeId) ? parseSpiffeId(spiffeId) : undefined;
  const k8s = named ? parseKubernetesSpiffeId(named) : undefined;
  const namespace = (get('namespace') as string | undefined) ?? k8s?.namespace ?? required('namespace');
  const service = required('service');
  const serviceAccount = (get('service-account') as string | undefined) ?? k8s?.serviceAccount ?? 'default';
  const trustDomain = trustDomainRaw ?? named?.trustDomain ?? 'cluster.local';
  if (spiffeId === undefined && namespace) {
    spiffeIdSource = 'kubernetes';
    try {
      spiffeId = kubernetesSpiffeId(trustDomain, namespace, serviceAccount).toString();
    } catch (err) {
      problems.push(`cannot form our SPIFFE ID from trust domain "${trustDomain}", namespace "${namespace}", service account "${serviceAccount}": ${(err as Error).message}`);
    }
  }
  let controlPlaneId = get('control-plane-id') as string | undefined;
  if (controlPlaneId === undefined) {
    try {
      controlPlaneId = wellKnownControlPlaneId(trustDomain);
    } catch (err) {
      controlPlaneId = '';
      problems.push(`${label('control-plane-id')}: cannot form the control plane's SPIFFE ID from trust domain "${trustDomain}": ${(err as Error).message}`);
    }
  } else if (!isSpiffeId(controlPlaneId)) problems.push(`${label('control-plane-id')}: "${controlPlaneId}" is not a SPIFFE ID`);

  const labels: Record<string, string> = {};
  for (const kv of (get('labels') as string[] | undefined) ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) problems.push(`${label('labels')}: "${kv}" is not KEY=VALUE`);
    else labels[kv.slice(0, i)] = kv.slice(i + 1);
  }

  const inbound: InboundSpec[] = [];
  for (const s of (get('inbound') as string[] | undefined) ?? []) {
    const r = parseInboundSpec(s);
    if (typeof r === 'string') problems.push(`${label('inbound')}: "${s}": ${r}`);
    else inbound.push(r);
  }
  const outbound: OutboundSpec[] = [];
  for (const s of (get('outbound') as string[] | undefined) ?? []) {
    const r = parseOutboundSpec(s);
    if (typeof r === 'string') problems.push(`${label('outbound')}: "${s}": ${r}`);
    else outbound.push(r);
  }
  const ports = [...inbound.map((l) => `${l.host}:${l.port}`), ...outbound.map((l) => `${l.host}:${l.port}`)];
  for (const p of new Set(ports.filter((p, i) => ports.indexOf(p) !== i && !p.endsWith(':0')))) problems.push(`listener address ${p} is used twice`);

  let admin: SidecarConfig['admin'];
  const adminRaw = get('admin') as string | undefined;
  if (adminRaw !== undefined) {
    const hp = parseHostPort(adminRaw, { defaultHost: '127.0.0.1' });
    if (typeof hp === 'string') problems.push(`${label('admin')}: "${adminRaw}": ${hp}`);
    // Fails closed: /config_dump and POST /quitquitquit answer anyone who can connect (as Envoy's admin does).
    else if (!isLoopbackHost(hp.host) && !allowRemoteAdmin(src, fileValues)) {
      problems.push(`${label('admin')}: "${adminRaw}" is not a loopback address; the admin endpoint has no authentication, so keep it on 127.0.0.1, or pass --admin-allow-remote (TRELLIS_ADMIN_ALLOW_REMOTE=true) if the network around it is trusted`);
    } else admin = hp;
  }

  let health: SidecarConfig['health'];
  const healthRaw = get('health') as string | undefined;
  if (healthRaw !== undefined) {
    const hp = parseHostPort(healthRaw, { defaultHost: '0.0.0.0' });
    if (typeof hp === 'string') problems.push(`${label('health')}: "${healthRaw}": ${hp}`);
    else health = hp;
  }
  let appProbes: Record<string, AppProbe> = {};
  if (src.env.TRELLIS_APP_PROBES) {
    const parsed = parseAppProbes(src.env.TRELLIS_APP_PROBES, '$TRELLIS_APP_PROBES');
    appProbes = parsed.probes;
    problems.push(...parsed.problems);
  }

  const duration = (flag: string, dflt: number): number => {
    const v = get(flag) as string | undefined;
    if (v === undefined) return dflt;
    try {
      return parseDuration(v, label(flag));
    } catch (err) {
      problems.push(`${label(flag)}: ${(err as Error).message}`);
      return dflt;
    }
  };
  const drainMs = duration('drain', 5000);
  const detectTimeoutMs = duration('detect-timeout', 1000);
  let maxPendingHandshakes = DEFAULT_MAX_PENDING_HANDSHAKES;
  const pendingRaw = get('max-pending-handshakes') as string | undefined;
  if (pendingRaw !== undefined) {
    if (/^\d{1,9}$/.test(pendingRaw) && Number(pendingRaw) >= 1) maxPendingHandshakes = Number(pendingRaw);
    else problems.push(`${label('max-pending-handshakes')}: "${pendingRaw}" must be a whole number of connections, at least 1`);
  }
  const fraction = (flag: string, dflt: number, min: number, max: number): number => {
    const v = get(flag) as string | undefined;
    if (v === undefined) return dflt;
    const n = v.endsWith('%') ? Number(v.slice(0, -1)) / 100 : Number(v);
    if (!Number.isFinite(n) || n < min || n >= max) {
      problems.push(`${label(flag)}: "${v}" must be a fraction in [${min}, ${max}) such as 0.5 or 50%`);
      return dflt;
    }
    return n;
  };
  const rotation = { fraction: fraction('rotate-at', 0.5, 0.05, 1), jitter: fraction('rotate-jitter', 0.1, 0, 0.5) };
  if (rotation.fraction - rotation.jitter <= 0 || rotation.fraction + rotation.jitter >= 1) {
    problems.push(`rotation window ${rotation.fraction}±${rotation.jitter} must stay inside (0, 1) of the lifetime`);
  }
  const dataPath = ((get('data-path') as string | undefined) ?? 'auto') as SidecarConfig['dataPath'];
  if (!['auto', 'native', 'node'].includes(dataPath)) problems.push(`${label('data-path')}: "${dataPath}" must be auto, native or node`);
  const logLevel = ((get('log-level') as string | undefined) ?? 'info') as SidecarConfig['logLevel'];
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) problems.push(`${label('log-level')}: "${logLevel}" must be debug, info, warn or error`);

  if (problems.length > 0) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_CONFIG', `invalid sidecar configuration (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  - ${problems.join('\n  - ')}`, { problems });
  }
  return Object.freeze({
    controlPlane: Object.freeze(controlPlane),
    caBundleFile,
    tokenFile,
    namespace,
    service,
    serviceAccount,
    trustDomain,
    spiffeId: spiffeId!,
    spiffeIdSource,
    controlPlaneSpiffeId: controlPlaneId,
    labels: Object.freeze(labels),
    inbound: Object.freeze(inbound),
    outbound: Object.freeze(outbound),
    admin,
    health,
    appProbes: Object.freeze(appProbes),
    drainMs,
    detectTimeoutMs,
    maxPendingHandshakes,
    dataPath,
    rotation: Object.freeze(rotation),
    podIp: src.env.TRELLIS_POD_IP || undefined,
    logLevel,
  });
}

/** `--admin-allow-remote`, `TRELLIS_ADMIN_ALLOW_REMOTE=true|1` or `adminAllowRemote: true` in the file (same precedence as every setting). */
function allowRemoteAdmin(src: ConfigSources, fileValues: Record<string, unknown>): boolean {
  const f = src.flags['admin-allow-remote'];
  if (f !== undefined) return f === true || f === 'true';
  const e = src.env.TRELLIS_ADMIN_ALLOW_REMOTE;
  if (e !== undefined && e !== '') return e === 'true' || e === '1';
  return fileValues['adminAllowRemote'] === true;
}

function splitList(s: string): string[] {
  return s
    .split(/[,\s]+/)
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/**
 * `[HOST:]PORT=APP_PORT[/PROTOCOL]` → an InboundSpec, or the reason it is
 * not one. Host defaults to 0.0.0.0; PROTOCOL is `http`, `h2c`, `grpc` or
 * `http1` (inbound-protocol.ts), and none is a TCP port.
 */
export function parseInboundSpec(s: string): InboundSpec | string {
  const eq = s.indexOf('=');
  if (eq < 0) return `expected [HOST:]PORT=APP_PORT[/PROTOCOL] (PROTOCOL: ${INBOUND_PROTOCOL_LIST})`;
  const listen = parseHostPort(s.slice(0, eq), { defaultHost: '0.0.0.0' });
  if (typeof listen === 'string') return `listen address: ${listen}`;
  const m = /^(\d+)(?:\/(.*))?$/.exec(s.slice(eq + 1));
  if (!m) return `the application side must be APP_PORT[/PROTOCOL] (PROTOCOL: ${INBOUND_PROTOCOL_LIST})`;
  const appPort = parsePort(m[1]!);
  if (appPort === undefined || appPort === 0) return `application port ${m[1]} is out of range`;
  const protocol = m[2];
  if (protocol === undefined) return Object.freeze({ host: listen.host, port: listen.port, appPort, http: false });
  if (!isInboundProtocol(protocol)) return `unknown application protocol "${protocol}": PROTOCOL must be ${INBOUND_PROTOCOL_LIST} (no suffix: TCP)`;
  return Object.freeze({ host: listen.host, port: listen.port, appPort, http: true, ...(protocol === 'http' ? {} : { appProtocol: protocol }) });
}

/**
 * `[HOST:]LOCAL_PORT=SERVICE[:PORT][/http]` or `=ADDR[/http]#SPIFFE_ID` → an
 * OutboundSpec, or the reason. Host defaults to 127.0.0.1. `/http` carries
 * the app's HTTP/1.1 and h2c requests over pooled HTTP/2 (http-outbound.ts).
 */
export function parseOutboundSpec(s: string): OutboundSpec | string {
  const eq = s.indexOf('=');
  if (eq < 0) return 'expected [HOST:]LOCAL_PORT=SERVICE[:PORT][/http] or [HOST:]LOCAL_PORT=ADDR[/http]#SPIFFE_ID';
  const listen = parseHostPort(s.slice(0, eq), { defaultHost: '127.0.0.1' });
  if (typeof listen === 'string') return `listen address: ${listen}`;
  let target = s.slice(eq + 1);
  const hash = target.indexOf('#');
  const head = hash >= 0 ? target.slice(0, hash) : target;
  const http = head.endsWith('/http');
  if (http) target = head.slice(0, -'/http'.length) + (hash >= 0 ? target.slice(hash) : '');
  const withHttp = <T extends object>(spec: T): T => Object.freeze(http ? { ...spec, http: true } : spec);
  if (hash >= 0) {
    // `target` lost its `/http`: find the `#` again.
    const h = target.indexOf('#');
    const addr = target.slice(0, h);
    const id = target.slice(h + 1);
    const hp = parseHostPort(addr);
    if (typeof hp === 'string') return `explicit target "${addr}" must be HOST:PORT`;
    if (!isSpiffeId(id)) return `"${id}" is not a SPIFFE ID`;
    return withHttp({ host: listen.host, port: listen.port, target: Object.freeze({ kind: 'explicit' as const, address: addr, spiffeId: id }) });
  }
  const m = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)(?::(\d+))?$/.exec(target);
  if (!m) return `"${target}" is not SERVICE[:PORT] (a DNS-style service name)`;
  let port: number | undefined;
  if (m[3] !== undefined) {
    port = parsePort(m[3]);
    if (port === undefined || port === 0) return `port ${m[3]} is out of range`;
  }
  return withHttp({ host: listen.host, port: listen.port, target: Object.freeze(port === undefined ? { kind: 'service' as const, service: m[1]! } : { kind: 'service' as const, service: m[1]!, port }) });
}
