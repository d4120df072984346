/**
 * The sidecar's decoder of compiled AuthorizationPolicies (authz-wire.ts): a
 * hand-written, strict check of every field, then the matchers built once
 * for the whole push. No YAML, no JSON Schema engine: a sidecar never loads
 * either.
 *
 * Fails closed. Anything it does not understand is refused, never skipped:
 * an unknown field (a condition a newer control plane added would otherwise
 * be dropped, widening an ALLOW or narrowing a DENY), a wrong type, an empty
 * list (the validated form has none), a malformed IP block, a port out of
 * range, policies out of creation order. Every problem is collected with its
 * field path (`policies[2].rules[0].from[1].principals[0]`) and code; the
 * caller (the discovery handler) NACKs and keeps the last good set.
 */
import { AUTHZ_WIRE_VERSION, type AuthzWirePolicy } from './authz-wire';
import { CompiledAuthorizationPolicy } from './compiled-policy';
import { parseIpBlock } from './ip-block';
import { POLICY_CODES, PolicyError, formatIssue, type PolicyCode } from './policy-error';
import { creationOrder } from './policy-set';
import type { PolicyIssue } from './policy-types';

type Obj = Record<string, unknown>;

const ACTIONS: readonly string[] = ['ALLOW', 'DENY', 'AUDIT'];
const POLICY_FIELDS = ['namespace', 'name', 'creationTimestamp', 'action', 'dryRun', 'rules'];
const RULE_FIELDS = ['from', 'to'];
const SOURCE_FIELDS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks'];
const OPERATION_FIELDS = ['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts'];
const MATCH_KINDS = ['exact', 'prefix', 'suffix', 'any'];

/**
 * The AuthorizationPolicies resource body (`{wireVersion, policies, ...}`) →
 * compiled policies, in the order sent. Throws PolicyError
 * `TRELLIS_POLICY_WIRE_VERSION`, `TRELLIS_POLICY_WIRE_FIELD` or
 * `TRELLIS_POLICY_WIRE_ORDER` (the first problem's code; `issues` holds
 * every problem) when anything is refused. `wireVersion` may be absent only
 * with an empty list, which means the same in every version.
 */
export function decodeAuthorizationPolicies(body: unknown, origin = 'control plane'): CompiledAuthorizationPolicy[] {
  const c = new Checker(origin);
  if (!isObj(body)) c.fail(POLICY_CODES.WIRE_FIELD, '', 'the body must be an object');
  else if (!Array.isArray(body['policies'])) c.fail(POLICY_CODES.WIRE_FIELD, 'policies', 'must be an array');
  else {
    const policies = body['policies'];
    const version = body['wireVersion'];
    if (version === undefined && policies.length > 0) {
      c.fail(POLICY_CODES.WIRE_VERSION, 'wireVersion', `absent: these are not compiled policies (a control plane older than this sidecar sends manifests); this sidecar decodes wire version ${AUTHZ_WIRE_VERSION}`);
    } else if (version !== undefined && version !== AUTHZ_WIRE_VERSION) {
      c.fail(POLICY_CODES.WIRE_VERSION, 'wireVersion', `${JSON.stringify(version)} is not supported: this sidecar decodes wire version ${AUTHZ_WIRE_VERSION}`);
    } else {
      policies.forEach((p, i) => c.policy(p, `policies[${i}]`));
      c.order(policies);
    }
  }
  c.throwIfAny();
  return (body as { policies: AuthzWirePolicy[] }).policies.map((p) => new CompiledAuthorizationPolicy(p));
}

class Checker {
  readonly issues: PolicyIssue[] = [];
  constructor(private readonly origin: string) {}

  fail(code: PolicyCode, path: string, message: string): void {
    this.issues.push({ severity: 'error', code, file: this.origin, documentIndex: -1, line: 0, column: 0, path, message });
  }

  throwIfAny(): void {
    if (this.issues.length === 0) return;
    const first = this.issues[0]!;
    const n = this.issues.length;
    throw new PolicyError(first.code as PolicyCode, `${this.origin}: compiled authorization policies refused (${n} ${n === 1 ? 'problem' : 'problems'}; first: ${formatIssue(first)})`, this.issues, { field: first.path });
  }

  /** The object at `path` with only `known` fields, or undefined (after recording why). */
  private object(v: unknown, path: string, known: readonly string[]): Obj | undefined {
    if (!isObj(v)) {
      this.fail(POLICY_CODES.WIRE_FIELD, path, 'must be an object');
      return undefined;
    }
    for (const k of Object.keys(v)) if (!known.includes(k)) this.fail(POLICY_CODES.WIRE_FIELD, join(path, k), `unknown field (wire version ${AUTHZ_WIRE_VERSION} has ${known.join(', ')})`);
    return v;
  }

  /** The non-empty array at `o[f]`, undefined when absent (after recording a wrong one). */
  private list(o: Obj, f: string, path: string): unknown[] | undefined {
    const v = o[f];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length === 0) {
      this.fail(POLICY_CODES.WIRE_FIELD, join(path, f), 'must be a non-empty array when present');
      return undefined;
    }
    return v;
  }

  private string(o: Obj, f: string, path: string): void {
    if (typeof o[f] !== 'string' || o[f] === '') this.fail(POLICY_CODES.WIRE_FIELD, join(path, f), 'must be a non-empty string');
  }

  policy(v: unknown, path: string): void {
    const p = this.object(v, path, POLICY_FIELDS);
    if (!p) return;
    this.string(p, 'namespace', path);
    this.string(p, 'name', path);
    if (typeof p['creationTimestamp'] !== 'string' || Number.isNaN(Date.parse(p['creationTimestamp']))) this.fail(POLICY_CODES.WIRE_FIELD, join(path, 'creationTimestamp'), 'must be an RFC 3339 date');
    if (!ACTIONS.includes(p['action'] as string)) this.fail(POLICY_CODES.WIRE_FIELD, join(path, 'action'), `must be one of ${ACTIONS.join(', ')}`);
    if (typeof p['dryRun'] !== 'boolean') this.fail(POLICY_CODES.WIRE_FIELD, join(path, 'dryRun'), 'must be true or false');
    this.list(p, 'rules', path)?.forEach((r, i) => this.rule(r, `${path}.rules[${i}]`));
  }

  private rule(v: unknown, path: string): void {
    const r = this.object(v, path, RULE_FIELDS);
    if (!r) return;
    this.list(r, 'from', path)?.forEach((s, i) => this.source(s, `${path}.from[${i}]`));
    this.list(r, 'to', path)?.forEach((o, i) => this.operation(o, `${path}.to[${i}]`));
  }

  private source(v: unknown, path: string): void {
    const s = this.object(v, path, SOURCE_FIELDS);
    if (!s) return;
    for (const f of ['principals', 'notPrincipals', 'namespaces', 'notNamespaces']) this.list(s, f, path)?.forEach((m, i) => this.match(m, `${path}.${f}[${i}]`));
    for (const f of ['serviceAccounts', 'notServiceAccounts']) {
      this.list(s, f, path)?.forEach((e, i) => {
        const at = `${path}.${f}[${i}]`;
        const sa = this.object(e, at, ['namespace', 'name']);
        if (!sa) return;
        for (const k of ['namespace', 'name']) {
          if (typeof sa[k] !== 'string' || sa[k] === '' || (sa[k] as string).includes('/')) this.fail(POLICY_CODES.WIRE_FIELD, join(at, k), 'must be a non-empty string without "/"');
        }
      });
    }
    for (const f of ['ipBlocks', 'notIpBlocks']) {
      this.list(s, f, path)?.forEach((b, i) => {
        if (typeof b !== 'string' || !parseIpBlock(b)) this.fail(POLICY_CODES.WIRE_FIELD, `${path}.${f}[${i}]`, 'must be an IP address or CIDR block');
      });
    }
  }

  private operation(v: unknown, path: string): void {
    const o = this.object(v, path, OPERATION_FIELDS);
    if (!o) return;
    for (const f of ['ports', 'notPorts']) {
      this.list(o, f, path)?.forEach((n, i) => {
        if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) this.fail(POLICY_CODES.WIRE_FIELD, `${path}.${f}[${i}]`, 'must be an integer port from 0 to 65535');
      });
    }
    for (const f of ['methods', 'notMethods', 'paths', 'notPaths']) this.list(o, f, path)?.forEach((m, i) => this.match(m, `${path}.${f}[${i}]`));
    for (const f of ['hosts', 'notHosts']) {
      this.list(o, f, path)?.forEach((h, i) => {
        const at = `${path}.${f}[${i}]`;
        const host = this.object(h, at, ['host', 'port']);
        if (!host) return;
        if (host['host'] === undefined) this.fail(POLICY_CODES.WIRE_FIELD, join(at, 'host'), 'missing');
        else this.match(host['host'], join(at, 'host'), true);
        if (host['port'] !== undefined && (typeof host['port'] !== 'string' || !/^\d{1,5}$/.test(host['port']))) this.fail(POLICY_CODES.WIRE_FIELD, join(at, 'port'), 'must be a port number as a string of digits');
      });
    }
  }

  /** `{exact|prefix|suffix: string}` or `{any: true}`; a host pattern must be lower case (hosts compare case-insensitively). */
  private match(v: unknown, path: string, lowerCase = false): void {
    const m = this.object(v, path, MATCH_KINDS);
    if (!m) return;
    const kinds = Object.keys(m);
    if (kinds.length !== 1) {
      if (kinds.every((k) => MATCH_KINDS.includes(k))) this.fail(POLICY_CODES.WIRE_FIELD, path, `must have exactly one of ${MATCH_KINDS.join(', ')}`);
      return;
    }
    const kind = kinds[0]!;
    const value = m[kind];
    if (kind === 'any') {
      if (value !== true) this.fail(POLICY_CODES.WIRE_FIELD, join(path, 'any'), 'must be true');
      return;
    }
    if (typeof value !== 'string') return this.fail(POLICY_CODES.WIRE_FIELD, join(path, kind), 'must be a string');
    if (kind !== 'exact' && value === '') return this.fail(POLICY_CODES.WIRE_FIELD, join(path, kind), 'must not be empty (use any)');
    if (value.includes('*')) return this.fail(POLICY_CODES.WIRE_FIELD, join(path, kind), 'must not contain "*" (the kind says where the wildcard is)');
    if (lowerCase && value !== value.toLowerCase()) this.fail(POLICY_CODES.WIRE_FIELD, join(path, kind), 'must be lower case (hosts are canonical on the wire)');
  }

  /** Istio's conflict order: the control plane sends oldest first, each policy once. */
  order(policies: unknown[]): void {
    if (this.issues.length > 0) return;
    const seen = new Set<string>();
    const ps = policies as AuthzWirePolicy[];
    ps.forEach((p, i) => {
      const key = `${p.namespace}/${p.name}`;
      if (seen.has(key)) this.fail(POLICY_CODES.WIRE_ORDER, `policies[${i}]`, `${key} is sent twice`);
      seen.add(key);
      if (i > 0 && creationOrder(ps[i - 1]!, p) > 0) this.fail(POLICY_CODES.WIRE_ORDER, `policies[${i}]`, `${key} comes after ${ps[i - 1]!.namespace}/${ps[i - 1]!.name} but is older: policies must be in creation order`);
    });
  }
}

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function join(path: string, field: string): string {
  return path ? `${path}.${field}` : field;
}
