/**
 * The checks JSON Schema cannot express: Istio's cross-field rules (portLevelMtls
 * needs a selector, serviceAccounts excludes principals, DENY needs rules),
 * value syntax (ports, CIDRs, wildcard placement), and Trellis's refusal of
 * fields Istio supports but we do not implement. Written defensively: it runs
 * even when the schema already failed, so a user sees every problem at once.
 */
import { parseIpBlock } from './ip-block';
import { POLICY_CODES } from './policy-error';
import { patternProblem } from './string-match';
import type { FieldPath } from './manifest-location';

/** A problem before it is given a file and position. */
export interface RawIssue {
  severity: 'error' | 'warning';
  code: string;
  path: FieldPath;
  /** Point at the key (unknown/unsupported fields) or the value. */
  at: 'key' | 'value';
  message: string;
}

/** The annotation that makes a policy dry-run (Istio's name). */
export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

const HTTP_FIELDS = ['methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts'] as const;

const UNSUPPORTED_SOURCE: Record<string, string> = {
  requestPrincipals: 'requestPrincipals (JWT identities) is not supported by Trellis: there is no RequestAuthentication',
  notRequestPrincipals: 'notRequestPrincipals (JWT identities) is not supported by Trellis: there is no RequestAuthentication',
  remoteIpBlocks: 'remoteIpBlocks (X-Forwarded-For addresses) is not supported by Trellis; use ipBlocks',
  notRemoteIpBlocks: 'notRemoteIpBlocks (X-Forwarded-For addresses) is not supported by Trellis; use notIpBlocks',
  trustDomains: 'trustDomains is not supported by Trellis; name the trust domain in principals (e.g. "td/*")',
  notTrustDomains: 'notTrustDomains is not supported by Trellis; name the trust domain in notPrincipals (e.g. "td/*")',
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/** Semantic checks for a PeerAuthentication document (already known to be that kind). */
export function checkPeerAuthentication(raw: Obj, rootNamespace: string): RawIssue[] {
  const out: RawIssue[] = [];
  const spec = isObj(raw['spec']) ? raw['spec'] : {};
  const labels = checkSelector(spec, out);
  const ns = namespaceOf(raw);
  const pl = spec['portLevelMtls'];
  if (isObj(pl)) {
    if (labels === 0) {
      out.push(error(POLICY_CODES.CONFLICT, ['spec', 'portLevelMtls'], 'key', 'portLevelMtls requires selector: a mesh- or namespace-wide policy cannot set per-port modes'));
    }
    for (const key of Object.keys(pl)) {
      if (!/^[0-9]+$/.test(key)) continue; // the schema reports it
      const port = Number(key);
      if (port < 1 || port > 65535) out.push(error(POLICY_CODES.INVALID_VALUE, ['spec', 'portLevelMtls', key], 'key', `port must be between 1-65535, got ${key}`));
    }
  }
  if (labels > 0 && ns === rootNamespace) {
    out.push(warning(POLICY_CODES.IGNORED_SELECTOR, ['spec', 'selector'], `a PeerAuthentication with a selector in the root namespace "${rootNamespace}" is ignored (as in Istio); remove the selector for a mesh-wide policy or move it to the workload's namespace`));
  }
  return out;
}

/** Semantic checks for an AuthorizationPolicy document. */
export function checkAuthorizationPolicy(raw: Obj): RawIssue[] {
  const out: RawIssue[] = [];
  const spec = isObj(raw['spec']) ? raw['spec'] : {};
  checkSelector(spec, out);
  const action = typeof spec['action'] === 'string' ? spec['action'] : 'ALLOW';
  if (action === 'CUSTOM') {
    out.push(error(POLICY_CODES.UNSUPPORTED, ['spec', 'action'], 'value', 'action CUSTOM (an external authorizer) is not supported by Trellis; use ALLOW, DENY or AUDIT'));
  }
  if ('provider' in spec && action !== 'CUSTOM') {
    out.push(error(POLICY_CODES.CONFLICT, ['spec', 'provider'], 'key', 'provider is only valid with action CUSTOM'));
  }
  for (const f of ['targetRef', 'targetRefs']) {
    if (f in spec) out.push(error(POLICY_CODES.UNSUPPORTED, ['spec', f], 'key', `${f} (attaching to a Gateway or Service) is not supported by Trellis; use selector`));
  }
  if ('selector' in spec && ('targetRef' in spec || 'targetRefs' in spec)) {
    out.push(error(POLICY_CODES.CONFLICT, ['spec', 'selector'], 'key', 'only one of targetRef(s) or selector can be set'));
  }
  const annotations = isObj(raw['metadata']) && isObj(raw['metadata']['annotations']) ? raw['metadata']['annotations'] : {};
  const dryRun = annotations[DRY_RUN_ANNOTATION];
  if (dryRun !== undefined) {
    const path = ['metadata', 'annotations', DRY_RUN_ANNOTATION];
    if (dryRun !== 'true' && dryRun !== 'false') out.push(error(POLICY_CODES.INVALID_VALUE, path, 'value', `${DRY_RUN_ANNOTATION} must be "true" or "false"`));
    else if (dryRun === 'true' && action !== 'ALLOW' && action !== 'DENY') out.push(error(POLICY_CODES.CONFLICT, path, 'key', `${DRY_RUN_ANNOTATION} is only valid with action ALLOW or DENY`));
  }
  const rules = spec['rules'];
  if (action === 'DENY' && (!Array.isArray(rules) || rules.length === 0)) {
    out.push(error(POLICY_CODES.MISSING_FIELD, ['spec', 'rules'], 'key', 'a DENY policy needs at least one rule (use rules: [{}] to deny everything)'));
  }
  if (!Array.isArray(rules)) return out;
  rules.forEach((rule, ri) => {
    if (!isObj(rule)) return;
    const rp: FieldPath = ['spec', 'rules', ri];
    if ('when' in rule) {
      out.push(error(POLICY_CODES.UNSUPPORTED, [...rp, 'when'], 'key', 'when conditions are not supported by Trellis; express the rule with from/to fields'));
    }
    if (Array.isArray(rule['from'])) {
      rule['from'].forEach((f, fi) => {
        if (isObj(f) && isObj(f['source'])) checkSource(f['source'], [...rp, 'from', fi, 'source'], out);
      });
    }
    if (Array.isArray(rule['to'])) {
      rule['to'].forEach((t, ti) => {
        if (isObj(t) && isObj(t['operation'])) checkOperation(t['operation'], [...rp, 'to', ti, 'operation'], action, out);
      });
    }
  });
  return out;
}

function checkSource(src: Obj, path: FieldPath, out: RawIssue[]): void {
  for (const [field, why] of Object.entries(UNSUPPORTED_SOURCE)) {
    if (field in src) out.push(error(POLICY_CODES.UNSUPPORTED, [...path, field], 'key', why));
  }
  const hasSa = 'serviceAccounts' in src || 'notServiceAccounts' in src;
  if (hasSa && ['namespaces', 'notNamespaces', 'principals', 'notPrincipals'].some((f) => f in src)) {
    out.push(error(POLICY_CODES.CONFLICT, [...path, 'serviceAccounts' in src ? 'serviceAccounts' : 'notServiceAccounts'], 'key', 'Cannot set serviceAccounts with namespaces or principals; split them into separate sources'));
  }
  for (const field of ['serviceAccounts', 'notServiceAccounts']) {
    strings(src[field]).forEach((v, i) => {
      if (v !== '' && !/^([a-z0-9]([-a-z0-9]*[a-z0-9])?\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v)) {
        out.push(error(POLICY_CODES.INVALID_VALUE, [...path, field, i], 'value', `"${v}" is not a service account ("namespace/name" or "name", no wildcards)`));
      }
    });
  }
  for (const field of ['ipBlocks', 'notIpBlocks']) {
    strings(src[field]).forEach((v, i) => {
      if (v !== '' && !parseIpBlock(v)) out.push(error(POLICY_CODES.INVALID_VALUE, [...path, field, i], 'value', `"${v}" is not an IP address or CIDR block`));
    });
  }
  for (const field of ['principals', 'notPrincipals', 'namespaces', 'notNamespaces']) checkPatterns(src, field, path, out);
}

function checkOperation(op: Obj, path: FieldPath, action: string, out: RawIssue[]): void {
  for (const field of ['ports', 'notPorts']) {
    strings(op[field]).forEach((v, i) => {
      if (/^[0-9]+$/.test(v) && (Number(v) < 1 || Number(v) > 65535)) out.push(error(POLICY_CODES.INVALID_VALUE, [...path, field, i], 'value', `port must be between 1-65535, got ${v}`));
    });
  }
  for (const field of HTTP_FIELDS) checkPatterns(op, field, path, out);
  for (const field of ['paths', 'notPaths']) {
    strings(op[field]).forEach((v, i) => {
      if (v.includes('{')) out.push(error(POLICY_CODES.UNSUPPORTED, [...path, field, i], 'value', `path templates ("{*}", "{**}") are not supported by Trellis: "${v}"`));
    });
  }
  if ((action === 'DENY' || action === 'AUDIT') && HTTP_FIELDS.some((f) => f in op) && !('ports' in op)) {
    out.push(warning(POLICY_CODES.DENY_HTTP_ON_TCP, path, `this ${action} operation uses HTTP fields without ports: on TCP (non-HTTP) traffic the HTTP fields cannot be checked, so it applies to every TCP request; add ports to limit it`));
  }
}

function checkPatterns(obj: Obj, field: string, path: FieldPath, out: RawIssue[]): void {
  strings(obj[field]).forEach((v, i) => {
    if (v.includes('{')) return;
    const p = patternProblem(v);
    if (p) out.push(error(POLICY_CODES.INVALID_VALUE, [...path, field, i], 'value', `"${v}": ${p}`));
  });
}

/** Checks `spec.selector`; returns the number of labels (0 when absent or empty). */
function checkSelector(spec: Obj, out: RawIssue[]): number {
  if (!('selector' in spec)) return 0;
  const sel = spec['selector'];
  const labels = isObj(sel) && isObj(sel['matchLabels']) ? sel['matchLabels'] : {};
  const keys = Object.keys(labels);
  for (const k of keys) {
    const path: FieldPath = ['spec', 'selector', 'matchLabels', k];
    if (k === '') out.push(error(POLICY_CODES.INVALID_VALUE, path, 'key', 'a label key cannot be empty'));
    else if (k.includes('*')) out.push(error(POLICY_CODES.INVALID_VALUE, path, 'key', `wildcards are not allowed in selector label keys: "${k}"`));
    const v = labels[k];
    if (typeof v === 'string' && v.includes('*')) out.push(error(POLICY_CODES.INVALID_VALUE, path, 'value', `wildcards are not allowed in selector label values: "${v}"`));
  }
  if (keys.length === 0 && isObj(sel)) {
    out.push(warning(POLICY_CODES.EMPTY_SELECTOR, ['spec', 'selector'], 'a selector without labels selects every workload in the namespace; omit it to say so plainly'));
  }
  return keys.length;
}

function namespaceOf(raw: Obj): string {
  const m = raw['metadata'];
  return isObj(m) && typeof m['namespace'] === 'string' ? m['namespace'] : 'default';
}

function error(code: string, path: FieldPath, at: 'key' | 'value', message: string): RawIssue {
  return { severity: 'error', code, path, at, message };
}

function warning(code: string, path: FieldPath, message: string): RawIssue {
  return { severity: 'warning', code, path, at: 'key', message };
}
