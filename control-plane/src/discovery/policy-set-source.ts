/**
 * Adapts one or more PolicySet providers (the policy dir's PolicyStore, the
 * API server's PolicyObjectStore) to the discovery layer's PolicySource, with
 * one rule for readiness and one for conflicts:
 *
 * - Fails closed: `current()` is null (no policy served, not ready) until
 *   every provider is servable, since a workload's ALLOW policy may live in
 *   any of them and serving the others alone would allow it everything.
 *   Each provider keeps its own last-good rule after that.
 * - A kind/namespace/name defined by two providers is kept from the first
 *   (the policy dir before the API server; policy-merge.ts) and reported.
 *
 * One PolicyView per merged PolicySet, so resource memoisation keys on the
 * set's identity; with a single provider its own set is used as is.
 */
import type { Logger, PolicySet } from '@trellis/shared';
import { buildPolicySet, POLICY_CODES } from '@trellis/shared';
import { mergePolicies } from '../policy/policy-merge';
import type { PolicySource, PolicyView } from './policy-source';
import { policyViewFromSet, type MeshPolicyOptions } from './policy-view';

/** What a policy source behind the discovery layer provides (PolicyStore and PolicyObjectStore both do). */
export interface PolicySetProvider {
  /** False while nothing may be served (first load incomplete or invalid). */
  servable(): boolean;
  current(): PolicySet;
  subscribe(listener: () => void): () => void;
  status(): unknown;
  close(): void;
}

/** A named provider; the name labels it in status and duplicate reports. */
export interface NamedPolicySetProvider {
  readonly name: string;
  readonly provider: PolicySetProvider;
}

/** How the sets are turned into views (the mesh-wide settings of policy-view.ts). */
export type PolicyViewOptions = MeshPolicyOptions;

/**
 * A PolicySource over `providers`, in precedence order; close() closes them.
 * `status()` is the provider's own with one provider, else
 * `{servable, duplicates, sources: {name: status}}`.
 */
export function policySetSource(providers: readonly NamedPolicySetProvider[], opts: PolicyViewOptions, deps: { logger?: Logger } = {}): PolicySource {
  let sets: readonly PolicySet[] = [];
  let merged: PolicySet | null = null;
  let duplicates: string[] = [];
  let view: PolicyView | null = null;
  let viewOf: PolicySet | null = null;

  const mergedSet = (): PolicySet => {
    const now = providers.map((p) => p.provider.current());
    if (merged && now.every((s, i) => s === sets[i])) return merged;
    sets = now;
    if (providers.length === 1) {
      merged = now[0]!;
      return merged;
    }
    const entries = providers.flatMap((p, i) => [...now[i]!.peerAuthentications, ...now[i]!.authorizationPolicies].map((policy) => ({ origin: `${p.name} ${policy.metadata.source?.file ?? '?'}`, policy })));
    const r = mergePolicies(entries);
    if (r.duplicates.join('\n') !== duplicates.join('\n')) {
      for (const d of r.duplicates) deps.logger?.warn('policy defined in two sources; the first source wins', { issue: d, code: POLICY_CODES.DUPLICATE });
    }
    duplicates = r.duplicates;
    merged = buildPolicySet(r.policies);
    return merged;
  };

  return {
    current() {
      if (!providers.every((p) => p.provider.servable())) return null;
      const s = mergedSet();
      if (s !== viewOf || !view) {
        viewOf = s;
        view = policyViewFromSet(s, opts);
      }
      return view;
    },
    subscribe(listener) {
      const offs = providers.map((p) => p.provider.subscribe(() => listener()));
      return () => {
        for (const off of offs) off();
      };
    },
    status() {
      if (providers.length === 1) return providers[0]!.provider.status();
      if (providers.every((p) => p.provider.servable())) mergedSet();
      return {
        servable: providers.every((p) => p.provider.servable()),
        duplicates: [...duplicates],
        sources: Object.fromEntries(providers.map((p) => [p.name, p.provider.status()])),
      };
    },
    close() {
      for (const p of providers) p.provider.close();
    },
  };
}
