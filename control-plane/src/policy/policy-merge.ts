/**
 * The one rule for a policy defined twice (the same kind, namespace and
 * name from two files, two API groups, or the policy dir and the API
 * server): the first origin in reading order wins, the later one is ignored
 * and reported as TRELLIS_POLICY_DUPLICATE. Reading order is the caller's:
 * files by name, `security.trellis.dev` before `security.istio.io`, the
 * policy dir before the API server. Pure.
 */
import { POLICY_CODES, policyObjectName, type Policy } from '@trellis/shared';

/** One policy and where it came from (a file name, `AuthorizationPolicy shop/web`, ...). */
export interface PolicyEntry {
  readonly origin: string;
  readonly policy: Policy;
}

/** The policies kept, in reading order, and one line per policy ignored. */
export interface MergedPolicies {
  readonly policies: Policy[];
  readonly duplicates: string[];
}

/** `Kind namespace/name`: what two origins must not both define. */
export function policyIdentity(p: Policy): string {
  return policyObjectName(p.kind, p.metadata.namespace, p.metadata.name);
}

/** Keeps the first definition of each kind/namespace/name; reports the others. */
export function mergePolicies(entries: Iterable<PolicyEntry>): MergedPolicies {
  const owners = new Map<string, string>();
  const policies: Policy[] = [];
  const duplicates: string[] = [];
  for (const { origin, policy } of entries) {
    const id = policyIdentity(policy);
    const owner = owners.get(id);
    if (owner !== undefined) {
      duplicates.push(`${id} is defined in ${owner} and ${origin}; ${origin} is ignored [${POLICY_CODES.DUPLICATE}]`);
      continue;
    }
    owners.set(id, origin);
    policies.push(policy);
  }
  return { policies, duplicates };
}
