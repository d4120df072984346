/**
 * The compiled wire form of AuthorizationPolicies: what the control plane
 * sends a sidecar in the AuthorizationPolicies resource, instead of the
 * manifests. As linkerd2's policy controller does, the control plane
 * validates manifests (YAML, JSON Schema, semantics) once, and the proxy
 * receives typed matchers it can decode without a schema engine: every
 * string pattern is already split into its kind (exact, prefix, suffix,
 * any), a bare service account already carries its policy's namespace, a
 * host pattern is already canonical (lower case, no trailing dot, its port
 * apart). What a rule means is decided here, once; the sidecar's decoder
 * (authz-wire-decoder.ts) only checks shapes and builds matchers.
 *
 * Versioned by `wireVersion` in the resource body ({@link AUTHZ_WIRE_VERSION}):
 * a change of meaning or a new field is a new version, which an older
 * sidecar refuses (NACK, last good set kept) rather than ignores.
 */
import { canonicalHost } from './host-match';
import type { AuthorizationPolicy, AuthzAction, AuthzOperation, AuthzRule, AuthzSource } from './policy-types';

/** The wire version this code writes and decodes. */
export const AUTHZ_WIRE_VERSION = 1;

/** A string pattern: Istio's `abc` (exact), `abc*` (prefix), `*abc` (suffix) or `*` (any value). */
export type StringMatchWire = { readonly exact: string } | { readonly prefix: string } | { readonly suffix: string } | { readonly any: true };

/** A `hosts` entry: the canonical host name pattern and, when the policy names one, the port (`*` and no port: any port). */
export interface HostMatchWire {
  readonly host: StringMatchWire;
  /** Decimal digits, compared as text with the request's port. */
  readonly port?: string;
}

/** A `serviceAccounts` entry resolved to its namespace (`sa` alone means the policy's namespace). */
export interface ServiceAccountWire {
  readonly namespace: string;
  readonly name: string;
}

/** `from[].source`: every present field must match (AND); each list matches any entry (OR). */
export interface SourceWire {
  /** Matched against the peer's SPIFFE ID without `spiffe://` (`td/ns/x/sa/y`). */
  readonly principals?: readonly StringMatchWire[];
  readonly notPrincipals?: readonly StringMatchWire[];
  readonly namespaces?: readonly StringMatchWire[];
  readonly notNamespaces?: readonly StringMatchWire[];
  readonly serviceAccounts?: readonly ServiceAccountWire[];
  readonly notServiceAccounts?: readonly ServiceAccountWire[];
  /** `1.2.3.4`, `10.0.0.0/8`, `fd00::/8`. */
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
}

/** `to[].operation`. */
export interface OperationWire {
  readonly ports?: readonly number[];
  readonly notPorts?: readonly number[];
  readonly methods?: readonly StringMatchWire[];
  readonly notMethods?: readonly StringMatchWire[];
  readonly paths?: readonly StringMatchWire[];
  readonly notPaths?: readonly StringMatchWire[];
  readonly hosts?: readonly HostMatchWire[];
  readonly notHosts?: readonly HostMatchWire[];
}

/** One rule: any `from` AND any `to`; an absent list matches everything. */
export interface RuleWire {
  readonly from?: readonly SourceWire[];
  readonly to?: readonly OperationWire[];
}

/** One compiled AuthorizationPolicy. Lists are absent, never empty, as in the validated form. */
export interface AuthzWirePolicy {
  readonly namespace: string;
  readonly name: string;
  /** RFC 3339: the conflict order travels with the policy. */
  readonly creationTimestamp: string;
  readonly action: AuthzAction;
  /** `istio.io/dry-run`: evaluated and reported, never enforced. */
  readonly dryRun: boolean;
  /** Absent when the manifest has none (an ALLOW without rules matches nothing). */
  readonly rules?: readonly RuleWire[];
}

/**
 * Validated policies → their compiled wire form, in the order given (the
 * control plane gives them in creation order, which the sidecar checks).
 * Pure; the input must have passed parsePolicyFile/parsePolicyObject.
 */
export function encodeAuthorizationPolicies(policies: readonly AuthorizationPolicy[]): AuthzWirePolicy[] {
  return policies.map(encodePolicy);
}

function encodePolicy(p: AuthorizationPolicy): AuthzWirePolicy {
  const { namespace, name, creationTimestamp } = p.metadata;
  return {
    namespace,
    name,
    creationTimestamp,
    action: p.action,
    dryRun: p.dryRun,
    ...(p.rules ? { rules: p.rules.map((r) => encodeRule(r, namespace)) } : {}),
  };
}

function encodeRule(r: AuthzRule, namespace: string): RuleWire {
  return {
    ...(r.from ? { from: r.from.map((s) => encodeSource(s, namespace)) } : {}),
    ...(r.to ? { to: r.to.map(encodeOperation) } : {}),
  };
}

function encodeSource(s: AuthzSource, namespace: string): SourceWire {
  const out: Record<string, unknown> = {};
  const strings = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'] as const;
  for (const f of strings) if (s[f]) out[f] = s[f].map(stringMatch);
  for (const f of ['serviceAccounts', 'notServiceAccounts'] as const) if (s[f]) out[f] = s[f].map((e) => serviceAccount(e, namespace));
  for (const f of ['ipBlocks', 'notIpBlocks'] as const) if (s[f]) out[f] = [...s[f]];
  return out as SourceWire;
}

function encodeOperation(o: AuthzOperation): OperationWire {
  const out: Record<string, unknown> = {};
  for (const f of ['ports', 'notPorts'] as const) if (o[f]) out[f] = [...o[f]];
  for (const f of ['methods', 'notMethods', 'paths', 'notPaths'] as const) if (o[f]) out[f] = o[f].map(stringMatch);
  for (const f of ['hosts', 'notHosts'] as const) if (o[f]) out[f] = o[f].map(hostMatch);
  return out as OperationWire;
}

/** Istio's pattern syntax → its kind. A `*` elsewhere than one end was refused at parse time. */
export function stringMatch(pattern: string): StringMatchWire {
  if (pattern === '*') return { any: true };
  if (pattern.startsWith('*')) return { suffix: pattern.slice(1) };
  if (pattern.endsWith('*')) return { prefix: pattern.slice(0, -1) };
  return { exact: pattern };
}

/** A host pattern, canonical as host-match.ts compares it. */
function hostMatch(pattern: string): HostMatchWire {
  if (pattern === '*') return { host: { any: true } };
  const want = canonicalHost(pattern);
  return { host: stringMatch(want.name), ...(want.port !== undefined && want.port !== '*' ? { port: want.port } : {}) };
}

function serviceAccount(entry: string, policyNamespace: string): ServiceAccountWire {
  const slash = entry.indexOf('/');
  return slash < 0 ? { namespace: policyNamespace, name: entry } : { namespace: entry.slice(0, slash), name: entry.slice(slash + 1) };
}
