/**
 * AuthorizationPolicy evaluation for one request at one workload, as Istio
 * orders it: a matching DENY denies; with no ALLOW policy the request is
 * allowed; a matching ALLOW allows; otherwise it is denied. AUDIT policies
 * only mark; dry-run policies are evaluated and reported, never enforced.
 *
 * Fails closed. When a rule needs an attribute the request does not carry (a
 * peer identity on a plaintext request, a source IP, HTTP fields on a TCP
 * request, a namespace in a non-Kubernetes SPIFFE ID), the condition counts as
 * matching for DENY and AUDIT and as not matching for ALLOW. This closes the
 * PERMISSIVE-mode bypass Istio documented (a DENY on `principals` or
 * `namespaces` that a plaintext client slipped past) and keeps an ALLOW from
 * being granted on what could not be checked.
 *
 * The evaluation runs over compiled policies (compiled-policy.ts): a sidecar
 * has them from its decoder, built once per push; `authorize` compiles the
 * validated policies it is given first (for `policy explain` and tests).
 * The peer's SPIFFE ID is read with the one parser (identity/spiffe-id.ts);
 * an ID that is not valid counts as no identity at all (fail closed, as
 * for plaintext).
 */
import { parseKubernetesSpiffeId, parseSpiffeId } from '../identity/spiffe-id';
import { encodeAuthorizationPolicies } from './authz-wire';
import type { ServiceAccountWire } from './authz-wire';
import {
  CompiledAuthorizationPolicy,
  matchesAnyString,
  matchesString,
  type CompiledIpBlock,
  type CompiledOperation,
  type CompiledRule,
  type CompiledSource,
  type HostMatcher,
  type PrincipalMatcher,
  type StringMatcher,
} from './compiled-policy';
import { canonicalHost, type CanonicalHost } from './host-match';
import { parseIp, type IpAddress } from './ip-block';
import { isPolicySet, labelsMatch, type PolicyRef, type PolicySet } from './policy-set';
import type { AuthorizationPolicy, Policy, PolicyWorkload } from './policy-types';

/** The request as the sidecar sees it. */
export interface AuthzRequest {
  /** The peer's full SPIFFE ID (`spiffe://td/ns/x/sa/y`) from mTLS; undefined for plaintext. */
  principal?: string;
  sourceIp?: string;
  /** Destination (container) port. */
  port: number;
  /**
   * Present only when the port is served as HTTP; then method/path/host rules apply. `path` as the
   * sidecar normalized it (see path-normalization.ts); `host` as sent (compared as host-match.ts says).
   */
  http?: { method: string; path: string; host?: string };
}

/** Options for authorization. */
export interface AuthorizeOptions {
  /** Needed when given a PolicySet (to select policies); default `trellis-system`. */
  rootNamespace?: string;
  /** The mesh trust domain: `serviceAccounts` match only in it (and its aliases). */
  trustDomain?: string;
  /** Trust domains treated as the same as `trustDomain` (Istio's trust-domain aliases). */
  trustDomainAliases?: readonly string[];
}

/** Stable reason codes of a decision. */
export type AuthzReasonCode = 'DENY_MATCHED' | 'NO_ALLOW_POLICY' | 'ALLOW_MATCHED' | 'NO_ALLOW_MATCHED';

/** A policy rule that matched. */
export interface AuthzMatch {
  readonly policy: PolicyRef;
  readonly ruleIndex: number;
}

/** The decision with what decided it. */
export interface AuthzDecision {
  readonly decision: 'ALLOW' | 'DENY';
  readonly code: AuthzReasonCode;
  readonly reason: string;
  readonly policy?: PolicyRef;
  readonly ruleIndex?: number;
  /** AUDIT policies whose rules matched (the request is marked for auditing). */
  readonly audit?: readonly AuthzMatch[];
  /** Present when dry-run policies apply: what the decision would be if they were enforced. */
  readonly dryRun?: { readonly decision: 'ALLOW' | 'DENY'; readonly code: AuthzReasonCode; readonly policy?: PolicyRef; readonly ruleIndex?: number };
}

/**
 * The AuthorizationPolicies that apply to `workload`: those of its namespace
 * and of the root namespace (mesh-wide), with a selector matching its labels
 * or no selector. This is what the control plane pushes to the sidecar.
 */
export function selectAuthorizationPolicies(set: PolicySet, workload: PolicyWorkload, opts: { rootNamespace: string }): AuthorizationPolicy[] {
  return set.authorizationPolicies.filter(
    (p) => (p.metadata.namespace === workload.namespace || p.metadata.namespace === opts.rootNamespace) && (!p.matchLabels || labelsMatch(p.matchLabels, workload)),
  );
}

/**
 * Decides one request. Given a PolicySet it first selects the workload's
 * policies; given a list it uses the list as is. Compiles them, then
 * evaluates as {@link authorizeCompiled}. Fails closed as described in the
 * module comment.
 */
export function authorize(policies: readonly Policy[] | PolicySet, workload: PolicyWorkload, request: AuthzRequest, opts: AuthorizeOptions = {}): AuthzDecision {
  const list = isPolicySet(policies)
    ? selectAuthorizationPolicies(policies, workload, { rootNamespace: opts.rootNamespace ?? 'trellis-system' })
    : (policies as readonly Policy[]).filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy');
  return authorizeCompiled(compileAuthorizationPolicies(list), request, opts);
}

/** Validated policies → compiled ones, in the order given (what a sidecar's decoder builds from the wire). */
export function compileAuthorizationPolicies(policies: readonly AuthorizationPolicy[]): CompiledAuthorizationPolicy[] {
  return encodeAuthorizationPolicies(policies).map((w) => new CompiledAuthorizationPolicy(w));
}

/**
 * Decides one request against the compiled policies pushed for the
 * workload (what a sidecar holds). Pure; per request it parses the peer's
 * SPIFFE ID, the source IP and the Host once. Fails closed as described in
 * the module comment.
 */
export function authorizeCompiled(list: readonly CompiledAuthorizationPolicy[], request: AuthzRequest, opts: AuthorizeOptions = {}): AuthzDecision {
  const tds = new Set<string>();
  if (opts.trustDomain) tds.add(opts.trustDomain);
  for (const td of opts.trustDomainAliases ?? []) if (td) tds.add(td);
  const ctx: Ctx = {
    request,
    peer: request.principal === undefined ? undefined : memo(peers, request.principal, parsePeer),
    tds,
    ip: request.sourceIp === undefined ? undefined : memo(ips, request.sourceIp, requestIp),
    ...(request.http ? { http: { method: request.http.method, path: withoutQuery(request.http.path), host: canonicalHost(request.http.host ?? '') } } : {}),
  };
  let anyDryRun = false;
  for (const p of list) if (p.dryRun) anyDryRun = true;
  const enforced = anyDryRun ? list.filter((p) => !p.dryRun) : list;
  const result = decide(enforced, ctx);
  const audit: AuthzMatch[] = [];
  for (const p of enforced) {
    if (p.action !== 'AUDIT') continue;
    const ri = firstMatchingRule(p, ctx);
    if (ri !== undefined) audit.push({ policy: p.ref, ruleIndex: ri });
  }
  let dryRun: AuthzDecision['dryRun'];
  if (anyDryRun) {
    const shadow = decide(list, ctx);
    dryRun = { decision: shadow.decision, code: shadow.code, ...(shadow.policy ? { policy: shadow.policy, ruleIndex: shadow.ruleIndex } : {}) };
  }
  return Object.freeze({ ...result, ...(audit.length ? { audit } : {}), ...(dryRun ? { dryRun } : {}) });
}

interface Peer {
  /** `td/path` without the scheme. */
  id: string;
  td: string;
  namespace?: string;
  serviceAccount?: string;
}

interface Ctx {
  request: AuthzRequest;
  peer?: Peer;
  tds: Set<string>;
  /** undefined: no source IP; null: one that does not parse (in no block). */
  ip?: RequestIp | null;
  http?: { method: string; path: string; host: CanonicalHost };
}

/**
 * Parsed peers and source addresses, by their text. A sidecar judges every
 * request of a connection with the same two strings, and parsing them was
 * about 2% of an /http port's CPU under load. Results are frozen and depend
 * on the text alone; a full table is emptied, not grown.
 */
const MEMO_MAX = 4096;
const peers = new Map<string, Peer | undefined>();
const ips = new Map<string, RequestIp | null>();

function memo<T>(table: Map<string, T>, key: string, parse: (text: string) => T): T {
  if (table.has(key)) return table.get(key) as T;
  if (table.size >= MEMO_MAX) table.clear();
  const v = parse(key);
  table.set(key, v);
  return v;
}

/** The peer from its SPIFFE ID, by the one parser; an invalid ID is no peer (fail closed). */
function parsePeer(principal: string): Peer | undefined {
  let id;
  try {
    id = parseSpiffeId(principal);
  } catch {
    return undefined;
  }
  const k8s = parseKubernetesSpiffeId(id);
  return Object.freeze({ id: id.trustDomain + id.path, td: id.trustDomain, ...(k8s ? { namespace: k8s.namespace, serviceAccount: k8s.serviceAccount } : {}) });
}

/** The request's address, with its IPv4 value as a plain number too. */
interface RequestIp extends IpAddress {
  readonly v4: number;
}

function requestIp(text: string): RequestIp | null {
  const a = parseIp(text);
  if (!a) return null;
  return Object.freeze({ ...a, v4: a.family === 4 ? Number(a.value) : 0 });
}

/** The path without its query or fragment: Istio never matches on them (a caller such as `policy explain` may pass one). */
function withoutQuery(path: string): string {
  const q = path.indexOf('?');
  const h = path.indexOf('#');
  const cut = q < 0 ? h : h < 0 ? q : Math.min(q, h);
  return cut < 0 ? path : path.slice(0, cut);
}

function decide(list: readonly CompiledAuthorizationPolicy[], ctx: Ctx): Omit<AuthzDecision, 'audit' | 'dryRun'> {
  for (const p of list) {
    if (p.action !== 'DENY') continue;
    const ri = firstMatchingRule(p, ctx);
    if (ri !== undefined) {
      const rule = p.rules?.[ri];
      const notes: string[] = [];
      if (!ctx.request.http && rule?.to?.some((o) => o.hasHttpFields)) notes.push('its HTTP fields cannot be checked on a non-HTTP port, so it applies on its other fields');
      if (!ctx.request.principal && rule?.from?.some((s) => s.hasPeerFields)) notes.push('the request is plaintext, so its identity conditions count as matched');
      return { decision: 'DENY', code: 'DENY_MATCHED', reason: `denied by DENY policy ${p.ref.namespace}/${p.ref.name} rule ${ri}${notes.length ? ` (${notes.join('; ')})` : ''}`, policy: p.ref, ruleIndex: ri };
    }
  }
  let allows = 0;
  for (const p of list) {
    if (p.action !== 'ALLOW') continue;
    allows++;
    const ri = firstMatchingRule(p, ctx);
    if (ri !== undefined) return { decision: 'ALLOW', code: 'ALLOW_MATCHED', reason: `allowed by ALLOW policy ${p.ref.namespace}/${p.ref.name} rule ${ri}`, policy: p.ref, ruleIndex: ri };
  }
  if (allows === 0) return { decision: 'ALLOW', code: 'NO_ALLOW_POLICY', reason: 'allowed: no DENY policy matched and no ALLOW policy applies to this workload' };
  const notes: string[] = [];
  if (!ctx.request.principal) notes.push('the request is plaintext, so rules on principals or namespaces cannot match');
  if (!ctx.request.http && list.some((p) => p.action === 'ALLOW' && p.rules?.some((r) => r.to?.some((o) => o.hasHttpFields)))) notes.push('the port is not HTTP, so rules with methods, paths or hosts cannot match');
  return { decision: 'DENY', code: 'NO_ALLOW_MATCHED', reason: `denied: ${allows} ALLOW ${allows === 1 ? 'policy applies' : 'policies apply'} and none matched${notes.length ? ` (${notes.join('; ')})` : ''}` };
}

/** Index of the first rule of `p` matching the request, or undefined. An ALLOW with no rules matches nothing. */
function firstMatchingRule(p: CompiledAuthorizationPolicy, ctx: Ctx): number | undefined {
  const rules = p.rules;
  if (!rules) return undefined;
  const denyLike = p.action !== 'ALLOW';
  for (let i = 0; i < rules.length; i++) if (ruleMatches(rules[i]!, ctx, denyLike)) return i;
  return undefined;
}

function ruleMatches(rule: CompiledRule, ctx: Ctx, denyLike: boolean): boolean {
  if (rule.from) {
    let ok = false;
    for (const s of rule.from) {
      if (sourceMatches(s, ctx, denyLike)) {
        ok = true;
        break;
      }
    }
    if (!ok) return false;
  }
  if (!rule.to) return true;
  for (const o of rule.to) if (operationMatches(o, ctx, denyLike)) return true;
  return false;
}

/** What one identity entry says about the peer: it matches, it does not, or it cannot be told. */
const enum Hit {
  No,
  Yes,
  Unknown,
}

/**
 * One identity list: `denyLike` when there is no peer, or when no entry
 * matched and some could not be checked; otherwise whether any entry
 * matched (negated for the not* fields). Plain loops: this runs per request.
 */
function peerList(kind: 0 | 1 | 2, list: readonly (PrincipalMatcher | StringMatcher | ServiceAccountWire)[], negate: boolean, ctx: Ctx, denyLike: boolean): boolean {
  const peer = ctx.peer;
  if (!peer) return denyLike;
  let hit = false;
  let unknown = false;
  for (const v of list) {
    const h = kind === 0 ? (principalMatches(v as PrincipalMatcher, peer, ctx) ? Hit.Yes : Hit.No) : kind === 1 ? namespaceHit(v as StringMatcher, peer) : serviceAccountHit(v as ServiceAccountWire, peer, ctx);
    if (h === Hit.Yes) {
      hit = true;
      break;
    }
    if (h === Hit.Unknown) unknown = true;
  }
  if (!hit && unknown) return denyLike;
  return negate ? !hit : hit;
}

const PRINCIPALS = 0;
const NAMESPACES = 1;
const SERVICE_ACCOUNTS = 2;

/**
 * A condition on an attribute the request lacks is `denyLike`: true for
 * DENY/AUDIT (fail closed), false for ALLOW.
 */
function sourceMatches(s: CompiledSource, ctx: Ctx, denyLike: boolean): boolean {
  if (s.principals && !peerList(PRINCIPALS, s.principals, false, ctx, denyLike)) return false;
  if (s.notPrincipals && !peerList(PRINCIPALS, s.notPrincipals, true, ctx, denyLike)) return false;
  if (s.namespaces && !peerList(NAMESPACES, s.namespaces, false, ctx, denyLike)) return false;
  if (s.notNamespaces && !peerList(NAMESPACES, s.notNamespaces, true, ctx, denyLike)) return false;
  if (s.serviceAccounts && !peerList(SERVICE_ACCOUNTS, s.serviceAccounts, false, ctx, denyLike)) return false;
  if (s.notServiceAccounts && !peerList(SERVICE_ACCOUNTS, s.notServiceAccounts, true, ctx, denyLike)) return false;
  if (s.ipBlocks && !(ctx.ip === undefined ? denyLike : inAnyBlock(ctx.ip, s.ipBlocks))) return false;
  if (s.notIpBlocks && !(ctx.ip === undefined ? denyLike : !inAnyBlock(ctx.ip, s.notIpBlocks))) return false;
  return true;
}

/** A malformed address (null) is in no block. */
function inAnyBlock(ip: RequestIp | null, blocks: readonly CompiledIpBlock[]): boolean {
  if (ip === null) return false;
  for (const b of blocks) {
    if (b.family !== ip.family) continue;
    if (b.family === 4) {
      // IPv4 in plain numbers (BigInt shifts cost more than the rest of a decision).
      if (((ip.v4 & b.v4Mask) >>> 0) === b.v4Network) return true;
      continue;
    }
    const bits = BigInt(128 - b.prefix);
    if ((ip.value >> bits) << bits === b.network) return true;
  }
  return false;
}

function namespaceHit(m: StringMatcher, peer: Peer): Hit {
  if (peer.namespace === undefined) return Hit.Unknown;
  return matchesString(m, peer.namespace) ? Hit.Yes : Hit.No;
}

/** Unknown (cannot tell) when the trust domain is not configured or the ID is not ns/sa shaped. */
function serviceAccountHit(entry: ServiceAccountWire, peer: Peer, ctx: Ctx): Hit {
  if (ctx.tds.size === 0 || peer.namespace === undefined) return Hit.Unknown;
  return ctx.tds.has(peer.td) && peer.namespace === entry.namespace && peer.serviceAccount === entry.name ? Hit.Yes : Hit.No;
}

function principalMatches(m: PrincipalMatcher, peer: Peer, ctx: Ctx): boolean {
  if (matchesString(m, peer.id)) return true;
  // Trust-domain aliases: a principal named in the local trust domain or an alias matches the same path in any of them.
  if (m.aliasTrustDomain === undefined || !ctx.tds.has(m.aliasTrustDomain) || !ctx.tds.has(peer.td)) return false;
  return matchesString({ kind: m.kind, value: peer.td + m.aliasRest! }, peer.id);
}

function hostMatchesCompiled(h: HostMatcher, got: CanonicalHost): boolean {
  if (h.port !== undefined && h.port !== got.port) return false;
  return matchesString(h.host, got.name);
}

function anyHost(list: readonly HostMatcher[], got: CanonicalHost): boolean {
  for (const h of list) if (hostMatchesCompiled(h, got)) return true;
  return false;
}

function operationMatches(o: CompiledOperation, ctx: Ctx, denyLike: boolean): boolean {
  const port = ctx.request.port;
  if (o.ports && !o.ports.has(port)) return false;
  if (o.notPorts && o.notPorts.has(port)) return false;
  if (!o.hasHttpFields) return true;
  // HTTP fields on a TCP request: an ALLOW rule cannot match; a DENY/AUDIT rule applies on its other fields (as Istio's TCP filter does).
  const http = ctx.http;
  if (!http) return denyLike;
  if (o.methods && !matchesAnyString(o.methods, http.method)) return false;
  if (o.notMethods && matchesAnyString(o.notMethods, http.method)) return false;
  if (o.paths && !matchesAnyString(o.paths, http.path)) return false;
  if (o.notPaths && matchesAnyString(o.notPaths, http.path)) return false;
  if (o.hosts && !anyHost(o.hosts, http.host)) return false;
  if (o.notHosts && anyHost(o.notHosts, http.host)) return false;
  return true;
}
