/**
 * The AuthorizationPolicy decision as the data plane sees it. The evaluation
 * itself is shared code (`authorize` in @trellis/shared's policy module); the
 * sidecar calls it through this type so listeners stay independent of how
 * policies are represented.
 */
import { authorize, policiesFromJSON, type Policy } from '@trellis/shared';

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
 * The production authorizer: the shared Istio-compatible `authorize`, over
 * policies already validated with `policiesFromJSON` (see `policiesFromWire`).
 * `trustDomain` lets `serviceAccounts`-style rules match only in our domain.
 */
export function sharedAuthorizer(opts: { trustDomain?: () => string | undefined } = {}): Authorizer {
  return (policies, workload, request) => {
    const d = authorize(policies as readonly Policy[], workload, request, { trustDomain: opts.trustDomain?.() });
    return { decision: d.decision, reason: `${d.code}: ${d.reason}`, policy: d.policy ? { namespace: d.policy.namespace, name: d.policy.name } : undefined, ruleIndex: d.ruleIndex };
  };
}

/**
 * Policies from the wire (Istio-shaped JSON manifests) → validated, frozen
 * policies for the state. Throws PolicyError `TRELLIS_POLICY_WIRE` on any
 * invalid one, so the caller keeps the previous set.
 */
export function policiesFromWire(data: unknown, origin = 'control plane'): object[] {
  return policiesFromJSON(data, origin).filter((p) => p.kind === 'AuthorizationPolicy');
}
