/**
 * Which policy collections to watch, decided from discovery alone (pure):
 * `security.trellis.dev/v1`, and Istio's `security.istio.io` when its CRDs
 * are installed. The v1 and v1beta1 of an Istio CRD are two views of the
 * same objects, so one version per kind is watched: the newest served (v1,
 * else v1beta1), as istiod reads its own config. A kind whose CRD is not
 * installed is simply not watched. Whether Trellis may write an object's
 * status follows from the served `PLURAL/status` subresource: a CRD without
 * it gets Events only.
 */
import type { ServedResource } from '@trellis/kubernetes';

/** The policy kinds. */
export const POLICY_CRD_KINDS = Object.freeze(['PeerAuthentication', 'AuthorizationPolicy'] as const);

/** Each group's versions, newest (preferred) first. */
export const POLICY_GROUP_VERSIONS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  'security.trellis.dev': Object.freeze(['v1']),
  'security.istio.io': Object.freeze(['v1', 'v1beta1']),
});

/** Every group version to ask discovery about. */
export function policyGroupVersions(): string[] {
  return Object.entries(POLICY_GROUP_VERSIONS).flatMap(([g, vs]) => vs.map((v) => `${g}/${v}`));
}

/** One collection of policy objects to watch. */
export interface PolicyCollection {
  readonly group: string;
  /** The version watched, e.g. `security.istio.io/v1`. */
  readonly apiVersion: string;
  readonly kind: (typeof POLICY_CRD_KINDS)[number];
  readonly plural: string;
  /** The CRD serves the status subresource: Trellis writes its condition there. */
  readonly statusSubresource: boolean;
}

/** `group/Kind`: a collection's identity, whatever version is watched. */
export function collectionKey(c: { group: string; kind: string }): string {
  return `${c.group}/${c.kind}`;
}

/**
 * The collections to watch, given what each policy group version serves
 * (null or absent: not served). `current` (group/Kind → apiVersion being
 * watched) is kept while still served, so a newly served version never
 * restarts a watch that works.
 */
export function policyCollections(served: ReadonlyMap<string, readonly ServedResource[] | null>, current: ReadonlyMap<string, string> = new Map()): PolicyCollection[] {
  const out: PolicyCollection[] = [];
  for (const [group, versions] of Object.entries(POLICY_GROUP_VERSIONS)) {
    for (const kind of POLICY_CRD_KINDS) {
      const candidates = versions
        .map((v) => `${group}/${v}`)
        .map((apiVersion) => ({ apiVersion, resources: served.get(apiVersion) ?? null }))
        .map(({ apiVersion, resources }) => ({ apiVersion, main: resources?.find((r) => r.kind === kind && !r.name.includes('/') && r.namespaced), resources }))
        .filter((c) => c.main !== undefined && c.main.verbs.includes('list') && c.main.verbs.includes('watch'));
      const keep = current.get(collectionKey({ group, kind }));
      const chosen = candidates.find((c) => c.apiVersion === keep) ?? candidates[0];
      if (!chosen) continue;
      const plural = chosen.main!.name;
      out.push(Object.freeze({ group, apiVersion: chosen.apiVersion, kind, plural, statusSubresource: (chosen.resources ?? []).some((r) => r.name === `${plural}/status` && r.verbs.includes('update')) }));
    }
  }
  return out;
}
