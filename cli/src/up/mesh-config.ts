/**
 * The `trellis up` mesh file: one YAML document describing a local mesh.
 *
 * Parsed once at the edge into a frozen, typed `MeshConfig`; every problem is
 * reported with its line, column and field path, all at once, so a user fixes
 * the file in one pass.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isSeq, isPair, isScalar, type Node } from 'yaml';
import { workloadMetadataProblems } from '@trellis/control-plane';
import { INBOUND_PROTOCOLS, KEY_EXCHANGE_POLICIES, parseHostPort, PATH_NORMALIZATIONS, TrellisError, type InboundProtocol, type KeyExchangePolicy, type PathNormalization } from '@trellis/shared';

/** The app a workload runs: a command, or the built-in echo/HTTP app. */
export type WorkloadApp =
  | { readonly kind: 'builtin'; readonly port: number }
  | { readonly kind: 'command'; readonly command: readonly string[]; readonly port: number };

/** An inbound listener: the sidecar listens on `port` and forwards to the app on `appPort`. */
export interface InboundPort {
  readonly port: number;
  readonly appPort: number;
  /** `tcp` (bytes), or an HTTP port with the app's protocol as the sidecar's `--inbound` suffix names it. */
  readonly protocol: 'tcp' | InboundProtocol;
}

/** An outbound listener: the app calls 127.0.0.1:`port`, the sidecar dials `service` over mTLS. */
export interface OutboundPort {
  readonly port: number;
  readonly service: string;
}

export interface WorkloadConfig {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly service: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly app: WorkloadApp;
  readonly inbound: readonly InboundPort[];
  readonly outbound: readonly OutboundPort[];
  /** Sidecar admin address (127.0.0.1:PORT). */
  readonly admin: string;
}

export interface MeshConfig {
  /** The file it came from (absolute), for messages. */
  readonly file: string;
  readonly trustDomain: string;
  /** Policy dir, resolved relative to the mesh file. */
  readonly policyDir: string;
  readonly svidTtl: string;
  /**
   * `pathNormalization` (Istio's names) and `keyExchange` (prefer, require, off) are passed to the
   * control plane, which pushes them to every sidecar; absent: BASE and prefer.
   */
  readonly controlPlane: { readonly listen: string; readonly admin: string; readonly pathNormalization?: PathNormalization; readonly keyExchange?: KeyExchangePolicy };
  /** Where `trellis up` serves the live dashboard (loopback; default 127.0.0.1:15080). */
  readonly dashboard: string;
  readonly workloads: readonly WorkloadConfig[];
}

/** One problem in a mesh file. */
export interface MeshConfigIssue {
  file: string;
  line: number;
  column: number;
  path: string;
  message: string;
}

/** A mesh file that could not be used; `issues` lists every problem. */
export class MeshConfigError extends TrellisError {
  readonly issues: readonly MeshConfigIssue[];
  constructor(file: string, issues: MeshConfigIssue[]) {
    super(
      'TRELLIS_UP_BAD_CONFIG',
      `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}:\n` +
        issues.map((i) => `  ${i.file}:${i.line}:${i.column} ${i.path || '(document)'}: ${i.message}`).join('\n'),
      { file, issues },
    );
    this.issues = Object.freeze(issues.slice());
  }
}

const PORT = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const ADDR = { type: 'string', pattern: '^[^\\s:]+:[0-9]{1,5}$' } as const;
const DNS_LABEL = { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' } as const;

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['trustDomain', 'policyDir', 'workloads'],
  properties: {
    trustDomain: { type: 'string', pattern: '^[a-z0-9._-]+$' },
    policyDir: { type: 'string', minLength: 1 },
    svidTtl: { type: 'string', pattern: '^[0-9]+(s|m|h)$' },
    controlPlane: {
      type: 'object',
      additionalProperties: false,
      properties: { listen: ADDR, admin: ADDR, pathNormalization: { enum: [...PATH_NORMALIZATIONS] }, keyExchange: { enum: [...KEY_EXCHANGE_POLICIES] } },
    },
    dashboard: ADDR,
    workloads: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'namespace', 'app', 'admin'],
        properties: {
          name: DNS_LABEL,
          namespace: DNS_LABEL,
          serviceAccount: DNS_LABEL,
          service: DNS_LABEL,
          labels: { type: 'object', additionalProperties: { type: 'string' } },
          admin: ADDR,
          app: {
            type: 'object',
            additionalProperties: false,
            required: ['port'],
            properties: {
              builtin: { enum: ['echo'] },
              command: { type: 'array', minItems: 1, items: { type: 'string' } },
              port: PORT,
            },
            oneOf: [{ required: ['builtin'] }, { required: ['command'] }],
          },
          inbound: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['port', 'appPort'],
              properties: { port: PORT, appPort: PORT, protocol: { enum: ['tcp', ...INBOUND_PROTOCOLS] } },
            },
          },
          outbound: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['port', 'service'],
              properties: { port: PORT, service: { type: 'string', minLength: 1 } },
            },
          },
        },
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: false });
const validateSchema = ajv.compile(SCHEMA);

/**
 * Parses and validates mesh file text. `resolvePath` turns the policy dir into
 * an absolute path (relative to the file). Throws MeshConfigError listing every problem.
 */
export function parseMeshConfig(text: string, file: string, resolvePath: (p: string) => string): MeshConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const issues: MeshConfigIssue[] = [];
  const at = (offset: number | undefined, path: string, message: string): void => {
    const pos = lineCounter.linePos(offset ?? 0);
    issues.push({ file, line: pos.line, column: pos.col, path, message });
  };
  for (const e of doc.errors) at(e.pos[0], '', e.message);
  if (issues.length > 0) throw new MeshConfigError(file, issues);

  const data = doc.toJS() as unknown;
  if (!validateSchema(data)) {
    for (const err of validateSchema.errors ?? []) {
      const { offset, path } = locate(doc.contents, err);
      at(offset, path, describe(err));
    }
    throw new MeshConfigError(file, dedupe(issues));
  }
  const raw = data as RawMesh;

  // Cross-field checks the schema cannot express: unique names and ports.
  const seenPorts = new Map<number, string>();
  const claim = (port: number, owner: string, path: string[]): void => {
    const prev = seenPorts.get(port);
    if (prev !== undefined) at(offsetOf(doc.contents, path), path.join('.'), `port ${port} is already used by ${prev}`);
    else seenPorts.set(port, owner);
  };
  const cp = {
    listen: raw.controlPlane?.listen ?? '127.0.0.1:15012',
    admin: raw.controlPlane?.admin ?? '127.0.0.1:15014',
    ...(raw.controlPlane?.pathNormalization ? { pathNormalization: raw.controlPlane.pathNormalization } : {}),
    ...(raw.controlPlane?.keyExchange ? { keyExchange: raw.controlPlane.keyExchange } : {}),
  };
  claim(portOf(cp.listen), 'controlPlane.listen', ['controlPlane', 'listen']);
  claim(portOf(cp.admin), 'controlPlane.admin', ['controlPlane', 'admin']);
  const dashboard = raw.dashboard ?? '127.0.0.1:15080';
  claim(portOf(dashboard), 'dashboard', ['dashboard']);
  const names = new Set<string>();
  raw.workloads.forEach((w, i) => {
    const base = ['workloads', String(i)];
    if (names.has(w.name)) at(offsetOf(doc.contents, [...base, 'name']), `workloads.${i}.name`, `duplicate workload name "${w.name}"`);
    names.add(w.name);
    claim(portOf(w.admin), `${w.name} admin`, [...base, 'admin']);
    claim(w.app.port, `${w.name} app`, [...base, 'app', 'port']);
    (w.inbound ?? []).forEach((p, j) => claim(p.port, `${w.name} inbound`, [...base, 'inbound', String(j), 'port']));
    (w.outbound ?? []).forEach((p, j) => claim(p.port, `${w.name} outbound`, [...base, 'outbound', String(j), 'port']));
    // Labels go into the workload's join token: the control plane's bounds and Kubernetes syntax apply.
    for (const problem of workloadMetadataProblems({ labels: { app: w.name, ...(w.labels ?? {}) } })) at(offsetOf(doc.contents, [...base, 'labels']), `workloads.${i}.labels`, problem);
  });
  if (issues.length > 0) throw new MeshConfigError(file, issues);

  return deepFreeze({
    file,
    trustDomain: raw.trustDomain,
    policyDir: resolvePath(raw.policyDir),
    svidTtl: raw.svidTtl ?? '1h',
    controlPlane: cp,
    dashboard,
    workloads: raw.workloads.map((w) => ({
      name: w.name,
      namespace: w.namespace,
      serviceAccount: w.serviceAccount ?? w.name,
      service: w.service ?? w.name,
      labels: { app: w.name, ...(w.labels ?? {}) },
      app: w.app.builtin ? { kind: 'builtin' as const, port: w.app.port } : { kind: 'command' as const, command: w.app.command ?? [], port: w.app.port },
      inbound: (w.inbound ?? []).map((p) => ({ port: p.port, appPort: p.appPort, protocol: p.protocol ?? 'tcp' })),
      outbound: (w.outbound ?? []).map((p) => ({ port: p.port, service: p.service })),
      admin: w.admin,
    })),
  });
}

interface RawMesh {
  trustDomain: string;
  policyDir: string;
  svidTtl?: string;
  controlPlane?: { listen?: string; admin?: string; pathNormalization?: PathNormalization; keyExchange?: KeyExchangePolicy };
  dashboard?: string;
  workloads: Array<{
    name: string;
    namespace: string;
    serviceAccount?: string;
    service?: string;
    labels?: Record<string, string>;
    admin: string;
    app: { builtin?: 'echo'; command?: string[]; port: number };
    inbound?: Array<{ port: number; appPort: number; protocol?: 'tcp' | InboundProtocol }>;
    outbound?: Array<{ port: number; service: string }>;
  }>;
}

function portOf(addr: string): number {
  const hp = parseHostPort(addr);
  return typeof hp === 'string' ? NaN : hp.port;
}

function describe(err: ErrorObject): string {
  switch (err.keyword) {
    case 'additionalProperties':
      return `unknown field "${String((err.params as { additionalProperty: string }).additionalProperty)}"`;
    case 'required':
      return `missing required field "${String((err.params as { missingProperty: string }).missingProperty)}"`;
    case 'oneOf':
      return 'needs exactly one of "builtin" or "command"';
    case 'enum':
      return `${err.message ?? 'invalid value'}: ${JSON.stringify((err.params as { allowedValues: unknown[] }).allowedValues)}`;
    default:
      return err.message ?? 'invalid';
  }
}

function locate(root: unknown, err: ErrorObject): { offset: number | undefined; path: string } {
  const segs = err.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (err.keyword === 'additionalProperties') segs.push(String((err.params as { additionalProperty: string }).additionalProperty));
  const offset = offsetOf(root, segs, err.keyword === 'additionalProperties');
  return { offset, path: segs.join('.') };
}

/** The source offset of the node at `path` (or the key, for unknown fields), falling back to the nearest parent. */
function offsetOf(root: unknown, path: string[], wantKey = false): number | undefined {
  let node = root as Node | null | undefined;
  let best = (node as { range?: [number] } | undefined)?.range?.[0];
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === seg);
      if (!pair) break;
      if (wantKey && i === path.length - 1) return (pair.key as { range?: [number] }).range?.[0] ?? best;
      node = pair.value as Node | null;
    } else if (isSeq(node)) {
      node = node.items[Number(seg)] as Node | null;
    } else break;
    best = (node as { range?: [number] } | null | undefined)?.range?.[0] ?? best;
  }
  return best;
}

function dedupe(issues: MeshConfigIssue[]): MeshConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.line}:${i.column}:${i.path}:${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
