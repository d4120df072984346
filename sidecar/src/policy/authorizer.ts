/**
 * The AuthorizationPolicy decision as the data plane sees it. The evaluation
 * itself is shared code (`authorizeCompiled` in @trellis/shared's policy
 * module); the sidecar calls it through this type so listeners stay
 * independent of how policies are represented.
 *
 * Policies arrive compiled (the control plane validated the manifests) and
 * are decoded by a hand-written checker that builds the matchers once per
 * push: nothing here loads yaml or ajv.
 */
import { authorizeCompiled, CompiledAuthorizationPolicy, decodeAuthorizationPolicies } from '@trellis/shared';

/** The workload this sidecar fronts. */
export interface Workload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** One connection or HTTP request to decide on. */
export interface AuthzRequest {
  /** The peer's full SPIFFE ID; undefined for plaintext. */
  principal?: string;
  sourceIp?: string;
  /** The workload (application) port the traffic is for. */
  port: number;
  /** Present on `/http` ports only. */
  http?: { method: string; path: string; host?: string };
}

/** The outcome, with its reason. */
export interface AuthzDecision {
  decision: 'ALLOW' | 'DENY';
  reason: string;
  policy?: { namespace: string; name: string };
  ruleIndex?: number;
}

/** Decides a request against the policies pushed for this workload. */
export type Authorizer = (policies: readonly object[], workload: Workload, request: AuthzRequest) => AuthzDecision;

/**
 * Runs `authorizer` and fails closed: an evaluation that throws is a DENY
 * whose reason names the error.
 */
export function decide(authorizer: Authorizer, policies: readonly object[], workload: Workload, request: AuthzRequest): AuthzDecision {
  try {
    const d = authorizer(policies, workload, request);
    if (d && (d.decision === 'ALLOW' || d.decision === 'DENY')) return d;
    return { decision: 'DENY', reason: 'the authorizer returned no decision' };
  } catch (err) {
    return { decision: 'DENY', reason: `policy evaluation failed: ${(err as Error).message}` };
  }
}

/**
 * The production authorizer: the shared Istio-compatible evaluation over the
 * compiled policies `policiesFromWire` built. `trustDomain` lets
 * `serviceAccounts`-style rules match only in our domain. Anything in the
 * list that is not a compiled policy makes it throw, which `decide` turns
 * into a DENY (fail closed).
 */
export function sharedAuthorizer(opts: { trustDomain?: () => string | undefined } = {}): Authorizer {
  return (policies, _workload, request) => {
    const d = authorizeCompiled(compiled(policies), request, { trustDomain: opts.trustDomain?.() });
    return { decision: d.decision, reason: `${d.code}: ${d.reason}`, policy: d.policy ? { namespace: d.policy.namespace, name: d.policy.name } : undefined, ruleIndex: d.ruleIndex };
  };
}

function compiled(policies: readonly object[]): readonly CompiledAuthorizationPolicy[] {
  for (const p of policies) if (!(p instanceof CompiledAuthorizationPolicy)) throw new Error('a policy in force is not a compiled AuthorizationPolicy');
  return policies as readonly CompiledAuthorizationPolicy[];
}

/**
 * The AuthorizationPolicies resource body from the control plane
 * (`{wireVersion, policies}`, the compiled wire form) → compiled policies
 * for the state, their matchers built once. Throws PolicyError
 * `TRELLIS_POLICY_WIRE_VERSION`, `TRELLIS_POLICY_WIRE_FIELD` or
 * `TRELLIS_POLICY_WIRE_ORDER` naming the field on anything malformed, so the
 * discovery client NACKs and the previous set stays in force.
 */
export function policiesFromWire(body: unknown, origin = 'control plane'): object[] {
  return decodeAuthorizationPolicies(body, origin);
}
