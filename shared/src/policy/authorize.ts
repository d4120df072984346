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
 */
import { ipInBlock } from './ip-block';
import { isPolicySet, labelsMatch, refOf, type PolicyRef, type PolicySet } from './policy-set';
import type { AuthorizationPolicy, AuthzOperation, AuthzRule, AuthzSource, Policy, PolicyWorkload } from './policy-types';
import { hostMatches } from './host-match';
import { matchAny, matchString } from './string-match';

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
 * policies; given a list (what a sidecar was pushed) it uses the list as is.
 * Fails closed as described in the module comment.
 */
export function authorize(policies: readonly Policy[] | PolicySet, workload: PolicyWorkload, request: AuthzRequest, opts: AuthorizeOptions = {}): AuthzDecision {
  const list = isPolicySet(policies)
    ? selectAuthorizationPolicies(policies, workload, { rootNamespace: opts.rootNamespace ?? 'trellis-system' })
    : (policies as readonly Policy[]).filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy');
  const peer = parsePeer(request.principal);
  const ctx: Ctx = { request, peer, tds: new Set([opts.trustDomain, ...(opts.trustDomainAliases ?? [])].filter((t): t is string => !!t)) };
  const enforced = list.filter((p) => !p.dryRun);
  const result = decide(enforced, ctx);
  const audit: AuthzMatch[] = [];
  for (const p of enforced.filter((x) => x.action === 'AUDIT')) {
    const ri = firstMatchingRule(p, ctx);
    if (ri !== undefined) audit.push({ policy: refOf(p), ruleIndex: ri });
  }
  let dryRun: AuthzDecision['dryRun'];
  if (list.some((p) => p.dryRun)) {
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
}

function parsePeer(principal: string | undefined): Peer | undefined {
  if (principal === undefined || !principal.startsWith('spiffe://')) return undefined;
  const id = principal.slice('spiffe://'.length);
  const slash = id.indexOf('/');
  const td = slash < 0 ? id : id.slice(0, slash);
  if (td === '') return undefined;
  const m = /^[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id);
  return { id, td, ...(m ? { namespace: m[1], serviceAccount: m[2] } : {}) };
}

function decide(list: readonly AuthorizationPolicy[], ctx: Ctx): Omit<AuthzDecision, 'audit' | 'dryRun'> {
  for (const p of list.filter((x) => x.action === 'DENY')) {
    const ri = firstMatchingRule(p, ctx);
    if (ri !== undefined) {
      const rule = p.rules?.[ri];
      const notes: string[] = [];
      if (!ctx.request.http && rule?.to?.some(hasHttpFields)) notes.push('its HTTP fields cannot be checked on a non-HTTP port, so it applies on its other fields');
      if (!ctx.request.principal && rule?.from?.some(hasPeerFields)) notes.push('the request is plaintext, so its identity conditions count as matched');
      return { decision: 'DENY', code: 'DENY_MATCHED', reason: `denied by DENY policy ${p.metadata.namespace}/${p.metadata.name} rule ${ri}${notes.length ? ` (${notes.join('; ')})` : ''}`, policy: refOf(p), ruleIndex: ri };
    }
  }
  const allows = list.filter((x) => x.action === 'ALLOW');
  if (allows.length === 0) return { decision: 'ALLOW', code: 'NO_ALLOW_POLICY', reason: 'allowed: no DENY policy matched and no ALLOW policy applies to this workload' };
  for (const p of allows) {
    const ri = firstMatchingRule(p, ctx);
    if (ri !== undefined) return { decision: 'ALLOW', code: 'ALLOW_MATCHED', reason: `allowed by ALLOW policy ${p.metadata.namespace}/${p.metadata.name} rule ${ri}`, policy: refOf(p), ruleIndex: ri };
  }
  const notes: string[] = [];
  if (!ctx.request.principal) notes.push('the request is plaintext, so rules on principals or namespaces cannot match');
  if (!ctx.request.http && allows.some((p) => p.rules?.some((r) => r.to?.some(hasHttpFields)))) notes.push('the port is not HTTP, so rules with methods, paths or hosts cannot match');
  return { decision: 'DENY', code: 'NO_ALLOW_MATCHED', reason: `denied: ${allows.length} ALLOW ${allows.length === 1 ? 'policy applies' : 'policies apply'} and none matched${notes.length ? ` (${notes.join('; ')})` : ''}` };
}

/** Index of the first rule of `p` matching the request, or undefined. An ALLOW with no rules matches nothing. */
function firstMatchingRule(p: AuthorizationPolicy, ctx: Ctx): number | undefined {
  const rules = p.rules ?? [];
  const denyLike = p.action !== 'ALLOW';
  const i = rules.findIndex((r) => ruleMatches(r, p, ctx, denyLike));
  return i < 0 ? undefined : i;
}

function ruleMatches(rule: AuthzRule, p: AuthorizationPolicy, ctx: Ctx, denyLike: boolean): boolean {
  const fromOk = !rule.from || rule.from.some((s) => sourceMatches(s, p, ctx, denyLike));
  const toOk = !rule.to || rule.to.some((o) => operationMatches(o, ctx, denyLike));
  return fromOk && toOk;
}

/**
 * A condition on an attribute the request lacks is `denyLike`: true for
 * DENY/AUDIT (fail closed), false for ALLOW.
 */
function sourceMatches(s: AuthzSource, p: AuthorizationPolicy, ctx: Ctx, denyLike: boolean): boolean {
  const peer = ctx.peer;
  const checks: Array<() => boolean> = [];
  const onPeer = (list: readonly string[] | undefined, negate: boolean, test: (v: string, peer: Peer) => boolean | undefined): void => {
    if (!list) return;
    checks.push(() => {
      if (!peer) return denyLike;
      const hit = list.map((v) => test(v, peer));
      if (hit.some((h) => h === undefined) && !hit.some((h) => h === true)) return denyLike;
      const any = hit.some((h) => h === true);
      return negate ? !any : any;
    });
  };
  onPeer(s.principals, false, (v, pr) => principalMatches(v, pr, ctx));
  onPeer(s.notPrincipals, true, (v, pr) => principalMatches(v, pr, ctx));
  onPeer(s.namespaces, false, (v, pr) => (pr.namespace === undefined ? undefined : matchString(v, pr.namespace)));
  onPeer(s.notNamespaces, true, (v, pr) => (pr.namespace === undefined ? undefined : matchString(v, pr.namespace)));
  onPeer(s.serviceAccounts, false, (v, pr) => serviceAccountMatches(v, p, pr, ctx));
  onPeer(s.notServiceAccounts, true, (v, pr) => serviceAccountMatches(v, p, pr, ctx));
  const ip = ctx.request.sourceIp;
  if (s.ipBlocks) checks.push(() => (ip === undefined ? denyLike : s.ipBlocks!.some((b) => ipInBlock(ip, b))));
  if (s.notIpBlocks) checks.push(() => (ip === undefined ? denyLike : !s.notIpBlocks!.some((b) => ipInBlock(ip, b))));
  return checks.every((c) => c());
}

function principalMatches(pattern: string, peer: Peer, ctx: Ctx): boolean {
  if (matchString(pattern, peer.id)) return true;
  // Trust-domain aliases: a principal named in the local trust domain or an alias matches the same path in any of them.
  const slash = pattern.indexOf('/');
  if (slash <= 0) return false;
  const td = pattern.slice(0, slash);
  if (td.includes('*') || !ctx.tds.has(td) || !ctx.tds.has(peer.td)) return false;
  return matchString(peer.td + pattern.slice(slash), peer.id);
}

/** `ns/sa` or `sa` (the policy's namespace); undefined (cannot tell) when the trust domain is not configured or the ID is not ns/sa shaped. */
function serviceAccountMatches(entry: string, p: AuthorizationPolicy, peer: Peer, ctx: Ctx): boolean | undefined {
  if (ctx.tds.size === 0 || peer.namespace === undefined) return undefined;
  const [ns, sa] = entry.includes('/') ? (entry.split('/') as [string, string]) : [p.metadata.namespace, entry];
  return ctx.tds.has(peer.td) && peer.namespace === ns && peer.serviceAccount === sa;
}

function hasPeerFields(s: AuthzSource): boolean {
  return !!(s.principals || s.notPrincipals || s.namespaces || s.notNamespaces || s.serviceAccounts || s.notServiceAccounts);
}

function hasHttpFields(o: AuthzOperation): boolean {
  return !!(o.methods || o.notMethods || o.paths || o.notPaths || o.hosts || o.notHosts);
}

function operationMatches(o: AuthzOperation, ctx: Ctx, denyLike: boolean): boolean {
  const { port, http } = ctx.request;
  if (o.ports && !o.ports.includes(port)) return false;
  if (o.notPorts && o.notPorts.includes(port)) return false;
  if (!hasHttpFields(o)) return true;
  // HTTP fields on a TCP request: an ALLOW rule cannot match; a DENY/AUDIT rule applies on its other fields (as Istio's TCP filter does).
  if (!http) return denyLike;
  // The sidecar passes a path it already normalized (path-normalization.ts) without its query; a caller
  // such as `policy explain` may pass a query, which Istio never matches on.
  const path = http.path.replace(/[?#].*$/s, '');
  const host = http.host ?? '';
  const pos = (list: readonly string[] | undefined, v: string): boolean => !list || matchAny(list, v);
  const neg = (list: readonly string[] | undefined, v: string): boolean => !list || !matchAny(list, v);
  const anyHost = (list: readonly string[]): boolean => list.some((p) => hostMatches(p, host));
  return (
    pos(o.methods, http.method) &&
    neg(o.notMethods, http.method) &&
    pos(o.paths, path) &&
    neg(o.notPaths, path) &&
    (!o.hosts || anyHost(o.hosts)) &&
    (!o.notHosts || !anyHost(o.notHosts))
  );
}
