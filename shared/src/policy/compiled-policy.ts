/**
 * AuthorizationPolicies compiled into matchers: what `authorize` evaluates.
 * Built once per push from the compiled wire form (authz-wire.ts), so a
 * request pays for string compares and a set lookup, never for parsing a
 * pattern, an IP block or a host: CIDR blocks are already numbers, ports a
 * set, a principal pattern already knows which trust domain it names (for
 * trust-domain aliases).
 *
 * A CompiledAuthorizationPolicy keeps the wire form it was built from, and
 * serialises to it (`toJSON`), so `/config_dump` shows what was pushed.
 */
import type { AuthzWirePolicy, HostMatchWire, OperationWire, RuleWire, ServiceAccountWire, SourceWire, StringMatchWire } from './authz-wire';
import { parseSpiffeId, parseTrustDomain } from '../identity/spiffe-id';
import { parseIpBlock, type IpBlock } from './ip-block';
import type { PolicyRef } from './policy-set';
import type { AuthzAction } from './policy-types';

/** How a string pattern compares. */
export type StringMatchKind = 'exact' | 'prefix' | 'suffix' | 'any';

/** A compiled string pattern. */
export interface StringMatcher {
  readonly kind: StringMatchKind;
  /** `''` for `any`. */
  readonly value: string;
}

/** A compiled principal pattern: for an exact or prefix pattern naming a trust domain, that domain and the rest (for aliases). */
export interface PrincipalMatcher extends StringMatcher {
  readonly aliasTrustDomain?: string;
  /** The pattern after its trust domain, from the first `/`. */
  readonly aliasRest?: string;
}

/** A compiled `hosts` entry: the canonical name pattern and the port (undefined: any). */
export interface HostMatcher {
  readonly host: StringMatcher;
  readonly port?: string;
}

/** A parsed CIDR block with its IPv4 network and mask as plain numbers (0 for IPv6). */
export interface CompiledIpBlock extends IpBlock {
  readonly v4Network: number;
  readonly v4Mask: number;
}

/** A compiled source; `hasPeerFields` says whether it has identity conditions (for reasons). */
export interface CompiledSource {
  readonly principals?: readonly PrincipalMatcher[];
  readonly notPrincipals?: readonly PrincipalMatcher[];
  readonly namespaces?: readonly StringMatcher[];
  readonly notNamespaces?: readonly StringMatcher[];
  readonly serviceAccounts?: readonly ServiceAccountWire[];
  readonly notServiceAccounts?: readonly ServiceAccountWire[];
  readonly ipBlocks?: readonly CompiledIpBlock[];
  readonly notIpBlocks?: readonly CompiledIpBlock[];
  readonly hasPeerFields: boolean;
}

/** A compiled operation; `hasHttpFields` says whether it has methods, paths or hosts. */
export interface CompiledOperation {
  readonly ports?: ReadonlySet<number>;
  readonly notPorts?: ReadonlySet<number>;
  readonly methods?: readonly StringMatcher[];
  readonly notMethods?: readonly StringMatcher[];
  readonly paths?: readonly StringMatcher[];
  readonly notPaths?: readonly StringMatcher[];
  readonly hosts?: readonly HostMatcher[];
  readonly notHosts?: readonly HostMatcher[];
  readonly hasHttpFields: boolean;
}

/** A compiled rule. */
export interface CompiledRule {
  readonly from?: readonly CompiledSource[];
  readonly to?: readonly CompiledOperation[];
}

/** One AuthorizationPolicy ready to evaluate. Frozen. */
export class CompiledAuthorizationPolicy {
  readonly ref: PolicyRef;
  readonly creationTimestamp: string;
  readonly action: AuthzAction;
  readonly dryRun: boolean;
  /** Undefined when the policy has no rules (an ALLOW then matches nothing). */
  readonly rules?: readonly CompiledRule[];
  private readonly wire: AuthzWirePolicy;

  /** Compiles `wire`, which must have passed the decoder's checks (or come from the encoder). */
  constructor(wire: AuthzWirePolicy) {
    this.wire = wire;
    this.ref = Object.freeze({ namespace: wire.namespace, name: wire.name });
    this.creationTimestamp = wire.creationTimestamp;
    this.action = wire.action;
    this.dryRun = wire.dryRun;
    if (wire.rules) this.rules = Object.freeze(wire.rules.map(compileRule));
    Object.freeze(this);
  }

  /** The wire form it was compiled from (what `/config_dump` shows). */
  toJSON(): AuthzWirePolicy {
    return this.wire;
  }
}

/** True when `value` matches the compiled pattern. Pure. */
export function matchesString(m: StringMatcher, value: string): boolean {
  switch (m.kind) {
    case 'exact':
      return value === m.value;
    case 'prefix':
      return value.startsWith(m.value);
    case 'suffix':
      return value.endsWith(m.value);
    default:
      return true;
  }
}

/** True when any pattern matches. Pure. */
export function matchesAnyString(list: readonly StringMatcher[], value: string): boolean {
  for (const m of list) if (matchesString(m, value)) return true;
  return false;
}

/** A wire pattern → its matcher. */
export function compileStringMatch(w: StringMatchWire): StringMatcher {
  if ('exact' in w) return Object.freeze({ kind: 'exact', value: w.exact });
  if ('prefix' in w) return Object.freeze({ kind: 'prefix', value: w.prefix });
  if ('suffix' in w) return Object.freeze({ kind: 'suffix', value: w.suffix });
  return Object.freeze({ kind: 'any', value: '' });
}

function compilePrincipal(w: StringMatchWire): PrincipalMatcher {
  const m = compileStringMatch(w);
  // A principal naming its trust domain (`td/ns/x/sa/y`, `td/ns/x*`) also matches the same path in an alias of it.
  const named = principalTrustDomain(m);
  return named ? Object.freeze({ ...m, aliasTrustDomain: named.trustDomain, aliasRest: named.rest }) : m;
}

/**
 * The trust domain an exact or prefix principal names, read by the shared
 * SPIFFE ID parser. Istio writes a principal as a SPIFFE ID without
 * `spiffe://` (`cluster.local/ns/x/sa/y`): an exact one must be a whole
 * workload ID; a prefix may end mid-path, so only its trust domain (before
 * the first `/`) is checked. Anything else names no trust domain and gets
 * no alias (it can still match literally).
 */
function principalTrustDomain(m: StringMatcher): { trustDomain: string; rest: string } | undefined {
  try {
    if (m.kind === 'exact') {
      const id = parseSpiffeId(`spiffe://${m.value}`);
      return id.path === '' ? undefined : { trustDomain: id.trustDomain, rest: id.path };
    }
    if (m.kind !== 'prefix') return undefined;
    const slash = m.value.indexOf('/');
    return slash <= 0 ? undefined : { trustDomain: parseTrustDomain(m.value.slice(0, slash)), rest: m.value.slice(slash) };
  } catch {
    return undefined;
  }
}

function compileHost(w: HostMatchWire): HostMatcher {
  return Object.freeze({ host: compileStringMatch(w.host), ...(w.port !== undefined ? { port: w.port } : {}) });
}

function compileRule(r: RuleWire): CompiledRule {
  return Object.freeze({
    ...(r.from ? { from: Object.freeze(r.from.map(compileSource)) } : {}),
    ...(r.to ? { to: Object.freeze(r.to.map(compileOperation)) } : {}),
  });
}

function list<T, U>(v: readonly T[] | undefined, f: (x: T) => U): readonly U[] | undefined {
  return v ? Object.freeze(v.map(f)) : undefined;
}

function block(text: string): CompiledIpBlock {
  // The decoder refused malformed blocks; this guards the encoder's callers and fails closed (no address is in it).
  const b = parseIpBlock(text) ?? { family: 6 as const, network: -1n, prefix: 128 };
  if (b.family === 6) return Object.freeze({ ...b, v4Network: 0, v4Mask: 0 });
  const mask = b.prefix === 0 ? 0 : (0xffffffff << (32 - b.prefix)) >>> 0;
  return Object.freeze({ ...b, v4Network: Number(b.network), v4Mask: mask });
}

function compileSource(s: SourceWire): CompiledSource {
  const out = {
    principals: list(s.principals, compilePrincipal),
    notPrincipals: list(s.notPrincipals, compilePrincipal),
    namespaces: list(s.namespaces, compileStringMatch),
    notNamespaces: list(s.notNamespaces, compileStringMatch),
    serviceAccounts: list(s.serviceAccounts, (e) => Object.freeze({ namespace: e.namespace, name: e.name })),
    notServiceAccounts: list(s.notServiceAccounts, (e) => Object.freeze({ namespace: e.namespace, name: e.name })),
    ipBlocks: list(s.ipBlocks, block),
    notIpBlocks: list(s.notIpBlocks, block),
    hasPeerFields: !!(s.principals || s.notPrincipals || s.namespaces || s.notNamespaces || s.serviceAccounts || s.notServiceAccounts),
  };
  return Object.freeze(dropUndefined(out));
}

function compileOperation(o: OperationWire): CompiledOperation {
  const out = {
    ports: o.ports ? new Set(o.ports) : undefined,
    notPorts: o.notPorts ? new Set(o.notPorts) : undefined,
    methods: list(o.methods, compileStringMatch),
    notMethods: list(o.notMethods, compileStringMatch),
    paths: list(o.paths, compileStringMatch),
    notPaths: list(o.notPaths, compileStringMatch),
    hosts: list(o.hosts, compileHost),
    notHosts: list(o.notHosts, compileHost),
    hasHttpFields: !!(o.methods || o.notMethods || o.paths || o.notPaths || o.hosts || o.notHosts),
  };
  return Object.freeze(dropUndefined(out));
}

function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}
