/**
 * Parses a multi-document YAML file of PeerAuthentication and
 * AuthorizationPolicy manifests into normalised, frozen policies.
 *
 * Validation happens in three passes that all run, so every problem of every
 * document is reported at once with file, document index, line, column and
 * field path: YAML syntax, the JSON Schemas (unknown fields, types, enums,
 * empty lists), then the semantic checks in policy-semantics.ts. A document
 * with any error yields no policy; the other documents of the file still do
 * (callers that need all-or-nothing, like the control plane's per-file
 * last-good rule, look at `issues`).
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import { yamlLibrary } from './yaml-library';
import authorizationPolicySchema from './schemas/authorization-policy.schema.json';
import peerAuthenticationSchema from './schemas/peer-authentication.schema.json';
import { formatPath, locate, pointerToPath, type FieldPath } from './manifest-location';
import { POLICY_CODES } from './policy-error';
import { checkAuthorizationPolicy, checkPeerAuthentication, DRY_RUN_ANNOTATION, type RawIssue } from './policy-semantics';
import {
  POLICY_API_VERSIONS,
  type AuthorizationPolicy,
  type AuthzOperation,
  type AuthzRule,
  type AuthzSource,
  type ManifestMtlsMode,
  type PeerAuthentication,
  type Policy,
  type PolicyIssue,
  type PolicyMetadata,
} from './policy-types';

/** The root namespace Trellis uses when none is configured. */
export const DEFAULT_ROOT_NAMESPACE = 'trellis-system';

/** Options for parsing. */
export interface ParsePolicyOptions {
  /** Used as creationTimestamp for documents without one (the time the file was first seen). */
  firstSeen: Date;
  /** For the "selector in the root namespace is ignored" warning; default `trellis-system`. */
  rootNamespace?: string;
}

/** What a file yields: the valid policies and every issue (errors and warnings). */
export interface ParsedPolicyFile {
  policies: Policy[];
  issues: PolicyIssue[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

let validators: { pa: ValidateFunction; ap: ValidateFunction } | undefined;

function getValidators(): { pa: ValidateFunction; ap: ValidateFunction } {
  if (!validators) {
    // Loaded on first parse, not at import: sidecars import this package for authorize() and
    // never parse manifests, and ajv + its formats cost them several MB of resident memory.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { default: Ajv } = require('ajv') as typeof import('ajv');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { default: addFormats } = require('ajv-formats') as typeof import('ajv-formats');
    const ajv = new Ajv({ allErrors: true, strict: true });
    addFormats(ajv, ['date-time']);
    validators = { pa: ajv.compile(peerAuthenticationSchema), ap: ajv.compile(authorizationPolicySchema) };
  }
  return validators;
}

/** Parses `text` (the content of `file`); never throws for bad input. */
export function parsePolicyFile(text: string, file: string, opts: ParsePolicyOptions): ParsedPolicyFile {
  const { LineCounter, parseAllDocuments } = yamlLibrary();
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: true });
  const policies: Policy[] = [];
  const issues: PolicyIssue[] = [];
  const seen = new Map<string, number>();
  const root = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  if (!Array.isArray(docs)) {
    return { policies, issues: [{ severity: 'error', code: POLICY_CODES.YAML, file, documentIndex: -1, line: 1, column: 1, path: '', message: 'not a YAML stream' }] };
  }
  docs.forEach((doc, index) => {
    const push = (raw: RawIssue, label?: string): void => {
      const pos = locate(doc, lc, raw.path, raw.at);
      issues.push({ severity: raw.severity, code: raw.code, file, documentIndex: index, line: pos.line, column: pos.column, path: formatPath(raw.path), message: raw.message, ...(label ? { policy: label } : {}) });
    };
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const lp = e.linePos?.[0];
        issues.push({ severity: 'error', code: POLICY_CODES.YAML, file, documentIndex: index, line: lp?.line ?? 1, column: lp?.col ?? 1, path: '', message: `invalid YAML: ${e.message.split('\n')[0]}` });
      }
      return;
    }
    if (doc.contents === null) return; // an empty document (a stray `---`) is not a manifest
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      // Unresolved aliases and alias bombs surface only here.
      push({ severity: 'error', code: POLICY_CODES.YAML, path: [], at: 'value', message: `invalid YAML: ${(err as Error).message}` });
      return;
    }
    if (value === null || value === undefined) return;
    if (!isObj(value)) {
      push({ severity: 'error', code: POLICY_CODES.NOT_A_MANIFEST, path: [], at: 'value', message: 'a policy document must be a mapping with apiVersion, kind, metadata and spec' });
      return;
    }
    // `kubectl get ... -o yaml` wraps resources in a v1 List: read its items as documents of their own.
    const units: Array<{ value: Obj; prefix: FieldPath }> = [];
    if (value['kind'] === 'List' && value['apiVersion'] === 'v1') {
      for (const k of Object.keys(value)) {
        if (!['apiVersion', 'kind', 'items', 'metadata'].includes(k)) push({ severity: 'error', code: POLICY_CODES.UNKNOWN_FIELD, path: [k], at: 'key', message: `unknown field "${k}" in a List` });
      }
      const items = Array.isArray(value['items']) ? (value['items'] as unknown[]) : [];
      items.forEach((item, i) => {
        if (isObj(item)) units.push({ value: item, prefix: ['items', i] });
        else push({ severity: 'error', code: POLICY_CODES.NOT_A_MANIFEST, path: ['items', i], at: 'value', message: 'a List item must be a policy mapping' });
      });
    } else {
      units.push({ value, prefix: [] });
    }
    for (const { value: unit, prefix } of units) {
      const result = checkDocument(unit, root);
      const label = describe(unit);
      for (const r of result) push({ ...r, path: [...prefix, ...r.path] }, label);
      if (result.some((r) => r.severity === 'error')) continue;
      const policy = normalise(unit, file, index, opts.firstSeen);
      const key = `${policy.kind}/${policy.metadata.namespace}/${policy.metadata.name}`;
      const first = seen.get(key);
      if (first !== undefined) {
        push({ severity: 'error', code: POLICY_CODES.DUPLICATE, path: [...prefix, 'metadata', 'name'], at: 'value', message: `${policy.kind} ${policy.metadata.namespace}/${policy.metadata.name} is already defined in document ${first} of this file` }, label);
        continue;
      }
      seen.set(key, index);
      policies.push(policy);
    }
  });
  return { policies, issues };
}

/** The metadata fields a policy means something by; the rest is the API server's bookkeeping. */
const POLICY_METADATA_FIELDS = ['name', 'namespace', 'labels', 'annotations', 'creationTimestamp'] as const;

/**
 * Validates and normalises one policy object as the API server stores it
 * (a custom resource from an admission review or a watch) with exactly the
 * checks `parsePolicyFile` runs on a file, so `kubectl apply` and
 * `trellis validate` refuse the same things with the same field paths and
 * reasons. `source` stands in for the file name in issues (e.g.
 * `PeerAuthentication shop/web`); issues carry line and column 0 (an object
 * has no text). Metadata the API server manages (uid, resourceVersion,
 * managedFields, finalizers, ...) and `status` are not policy content and
 * are dropped before checking. Never throws for bad input.
 */
export function parsePolicyObject(value: unknown, source: string, opts: ParsePolicyOptions): ParsedPolicyFile {
  const at = { file: source, documentIndex: -1, line: 0, column: 0 };
  if (!isObj(value)) {
    return { policies: [], issues: [{ severity: 'error', code: POLICY_CODES.NOT_A_MANIFEST, ...at, path: '', message: 'a policy object must be a mapping with apiVersion, kind, metadata and spec' }] };
  }
  const meta = isObj(value['metadata']) ? value['metadata'] : {};
  const doc: Obj = {
    apiVersion: value['apiVersion'],
    kind: value['kind'],
    metadata: Object.fromEntries(POLICY_METADATA_FIELDS.filter((k) => meta[k] !== undefined).map((k) => [k, meta[k]])),
    ...(value['spec'] !== undefined ? { spec: value['spec'] } : {}),
  };
  const raw = checkDocument(doc, opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE);
  const label = describe(doc);
  const issues: PolicyIssue[] = raw.map((r) => ({ severity: r.severity, code: r.code, ...at, path: formatPath(r.path), message: r.message, ...(label ? { policy: label } : {}) }));
  if (raw.some((r) => r.severity === 'error')) return { policies: [], issues };
  return { policies: [normalise(doc, source, -1, opts.firstSeen)], issues };
}

/**
 * `Kind namespace/name`: how a policy is named in issues and logs, and what
 * stands in for the file name of a policy checked as an API object (the
 * admission webhook, the control plane's CRD source).
 */
export function policyObjectName(kind: string, namespace: string, name: string): string {
  return `${kind} ${namespace}/${name}`;
}

function describe(value: Obj): string | undefined {
  const m = isObj(value['metadata']) ? value['metadata'] : {};
  if (typeof value['kind'] !== 'string' || typeof m['name'] !== 'string') return undefined;
  return policyObjectName(value['kind'], typeof m['namespace'] === 'string' ? m['namespace'] : 'default', m['name']);
}

function checkDocument(value: Obj, root: string): RawIssue[] {
  const out: RawIssue[] = [];
  const kind = value['kind'];
  const apiVersion = value['apiVersion'];
  if (apiVersion === undefined) out.push({ severity: 'error', code: POLICY_CODES.MISSING_FIELD, path: ['apiVersion'], at: 'key', message: `apiVersion is required (one of ${POLICY_API_VERSIONS.join(', ')})` });
  else if (typeof apiVersion !== 'string' || !(POLICY_API_VERSIONS as readonly string[]).includes(apiVersion)) {
    out.push({ severity: 'error', code: POLICY_CODES.BAD_API_VERSION, path: ['apiVersion'], at: 'value', message: `apiVersion ${JSON.stringify(apiVersion)} is not accepted; use one of ${POLICY_API_VERSIONS.join(', ')}` });
  }
  let validate: ValidateFunction | undefined;
  let semantic: RawIssue[] = [];
  if (kind === 'PeerAuthentication') {
    validate = getValidators().pa;
    semantic = checkPeerAuthentication(value, root);
  } else if (kind === 'AuthorizationPolicy') {
    validate = getValidators().ap;
    semantic = checkAuthorizationPolicy(value);
  } else if (kind === undefined) {
    out.push({ severity: 'error', code: POLICY_CODES.MISSING_FIELD, path: ['kind'], at: 'key', message: 'kind is required (PeerAuthentication or AuthorizationPolicy)' });
  } else if (kind === 'RequestAuthentication') {
    out.push({ severity: 'error', code: POLICY_CODES.UNSUPPORTED, path: ['kind'], at: 'value', message: 'kind RequestAuthentication (JWT end-user authentication) is not supported by Trellis' });
  } else {
    out.push({ severity: 'error', code: POLICY_CODES.UNKNOWN_KIND, path: ['kind'], at: 'value', message: `kind ${JSON.stringify(kind)} is not a policy kind; use PeerAuthentication or AuthorizationPolicy` });
  }
  if (validate) {
    validate(value);
    for (const e of validate.errors ?? []) {
      const mapped = mapAjvError(e, value);
      if (mapped && !(mapped.path.length === 1 && (mapped.path[0] === 'apiVersion' || mapped.path[0] === 'kind'))) out.push(mapped);
    }
  }
  // A field already refused as unsupported also fails the schema in a few cases; keep the clearer message.
  const unsupported = new Set(semantic.filter((s) => s.code === POLICY_CODES.UNSUPPORTED).map((s) => formatPath(s.path)));
  return [...out.filter((o) => !unsupported.has(formatPath(o.path))), ...semantic];
}

function mapAjvError(e: ErrorObject, value: unknown): RawIssue | undefined {
  const base = pointerToPath(e.instancePath, value);
  const params = e.params as Record<string, unknown>;
  const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
  switch (e.keyword) {
    case 'propertyNames':
      return undefined; // the nested error (with propertyName) says what is wrong
    case 'additionalProperties': {
      const field = String(params['additionalProperty']);
      return issue(POLICY_CODES.UNKNOWN_FIELD, [...base, field], 'key', `unknown field "${field}"`);
    }
    case 'required': {
      const field = String(params['missingProperty']);
      return issue(POLICY_CODES.MISSING_FIELD, [...base, field], 'key', `missing required field "${field}"`);
    }
    case 'enum':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', `Unsupported value: ${JSON.stringify(valueAt(value, base))}: must be one of ${(params['allowedValues'] as unknown[]).join(', ')}`);
    case 'const':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', `must be ${JSON.stringify(params['allowedValue'])}`);
    case 'type':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', `must be of type ${String(params['type'])}${typeof params['type'] === 'string' && params['type'] === 'array' ? ' (a list)' : ''}`);
    case 'minItems':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', 'must not be an empty list (omit the field instead)');
    case 'minProperties':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', `must not be empty (should have at least ${String(params['limit'])} properties)`);
    case 'minLength':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', 'must not be an empty string');
    case 'maxLength':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', `must be at most ${String(params['limit'])} characters`);
    case 'pattern':
      if (propertyName !== undefined) {
        return issue(POLICY_CODES.INVALID_VALUE, [...base, propertyName], 'key', `key "${propertyName}" is invalid: ${describePattern(base)}`);
      }
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', `${JSON.stringify(valueAt(value, base))} is invalid: ${describePattern(base)}`);
    case 'format':
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', `must be an RFC 3339 ${String(params['format'])} (e.g. 2024-01-02T03:04:05Z)`);
    default:
      return issue(POLICY_CODES.INVALID_VALUE, base, 'value', e.message ?? 'invalid value');
  }
}

function describePattern(path: FieldPath): string {
  const last = path.filter((p) => typeof p === 'string').pop();
  if (last === 'portLevelMtls') return 'a port number 1-65535 (type conversion error from string to port)';
  if (last === 'ports' || last === 'notPorts') return 'must be a port number 1-65535';
  if (last === 'name') return 'must be a DNS-1123 subdomain (lowercase letters, digits, "-", ".")';
  if (last === 'namespace') return 'must be a DNS-1123 label (lowercase letters, digits, "-")';
  return 'does not match the expected format';
}

function valueAt(value: unknown, path: FieldPath): unknown {
  let cur = value;
  for (const seg of path) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[seg] : undefined;
  return cur;
}

function issue(code: string, path: FieldPath, at: 'key' | 'value', message: string): RawIssue {
  return { severity: 'error', code, path, at, message };
}

function normalise(value: Obj, file: string, documentIndex: number, firstSeen: Date): Policy {
  const meta = value['metadata'] as Obj;
  const spec = isObj(value['spec']) ? value['spec'] : {};
  const ts = typeof meta['creationTimestamp'] === 'string' ? meta['creationTimestamp'] : undefined;
  const metadata: PolicyMetadata = {
    name: meta['name'] as string,
    namespace: typeof meta['namespace'] === 'string' ? meta['namespace'] : 'default',
    creationTimestamp: ts !== undefined ? new Date(ts).toISOString() : firstSeen.toISOString(),
    creationTimestampSource: ts !== undefined ? 'manifest' : 'firstSeen',
    apiVersion: value['apiVersion'] as string,
    source: { file, documentIndex },
  };
  const sel = isObj(spec['selector']) && isObj(spec['selector']['matchLabels']) ? (spec['selector']['matchLabels'] as Record<string, string>) : {};
  const matchLabels = Object.keys(sel).length > 0 ? { ...sel } : undefined;
  if (value['kind'] === 'PeerAuthentication') {
    const mtls = isObj(spec['mtls']) ? spec['mtls'] : {};
    const portLevelMtls: Record<string, ManifestMtlsMode> = {};
    if (isObj(spec['portLevelMtls'])) {
      for (const [port, v] of Object.entries(spec['portLevelMtls'])) portLevelMtls[String(Number(port))] = ((isObj(v) ? v['mode'] : undefined) as ManifestMtlsMode | undefined) ?? 'UNSET';
    }
    const pa: PeerAuthentication = { kind: 'PeerAuthentication', metadata, ...(matchLabels ? { matchLabels } : {}), mtlsMode: (mtls['mode'] as ManifestMtlsMode | undefined) ?? 'UNSET', portLevelMtls };
    return deepFreeze(pa);
  }
  const annotations = isObj(meta['annotations']) ? meta['annotations'] : {};
  const rules = Array.isArray(spec['rules']) ? (spec['rules'] as Obj[]).map(normaliseRule) : undefined;
  const ap: AuthorizationPolicy = {
    kind: 'AuthorizationPolicy',
    metadata,
    ...(matchLabels ? { matchLabels } : {}),
    action: ((spec['action'] as string | undefined) ?? 'ALLOW') as AuthorizationPolicy['action'],
    dryRun: annotations[DRY_RUN_ANNOTATION] === 'true',
    ...(rules ? { rules } : {}),
  };
  return deepFreeze(ap);
}

function normaliseRule(rule: Obj): AuthzRule {
  const out: { from?: AuthzSource[]; to?: AuthzOperation[] } = {};
  if (Array.isArray(rule['from'])) out.from = (rule['from'] as Obj[]).map((f) => pickLists(f['source'] as Obj) as AuthzSource);
  if (Array.isArray(rule['to'])) {
    out.to = (rule['to'] as Obj[]).map((t) => {
      const op = pickLists(t['operation'] as Obj) as Record<string, unknown>;
      for (const f of ['ports', 'notPorts']) if (Array.isArray(op[f])) op[f] = (op[f] as string[]).map(Number);
      return op as AuthzOperation;
    });
  }
  return out;
}

function pickLists(o: Obj): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (Array.isArray(v)) out[k] = [...(v as unknown[])];
  return out;
}

/** Freezes an object graph of plain data. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
