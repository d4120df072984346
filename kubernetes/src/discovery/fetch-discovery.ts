/**
 * Reads the discovery facts (GET /version, /api, /apis) from an API server,
 * for detectApiFeatures. Any authenticated identity may read them (the
 * default `system:discovery` ClusterRole).
 */
import type { KubeClient } from '../client/kube-client';
import type { DiscoveryFacts } from './api-features';
import { groupVersionPath } from '../client/resource-path';

/** GET /version, /api and /apis. */
export async function fetchDiscoveryFacts(client: KubeClient): Promise<DiscoveryFacts> {
  const [version, core, groups] = await Promise.all([
    client.request<{ major?: string; minor?: string; gitVersion?: string }>('GET', '/version'),
    client.request<{ versions?: string[] }>('GET', '/api'),
    client.request<{ groups?: Array<{ versions?: Array<{ groupVersion?: string }> }> }>('GET', '/apis'),
  ]);
  const groupVersions = [
    ...(core.versions ?? []),
    ...(groups.groups ?? []).flatMap((g) => (g.versions ?? []).map((v) => v.groupVersion ?? '')).filter((v) => v !== ''),
  ];
  return { version: { major: version.major ?? '', minor: version.minor ?? '', gitVersion: version.gitVersion ?? '' }, groupVersions };
}

/** One resource of a group version's discovery document (`GET /apis/GROUP/VERSION`). */
export interface ServedResource {
  /** The plural, or `plural/subresource` (`authorizationpolicies/status`). */
  readonly name: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly verbs: readonly string[];
}

/**
 * The resources a group version serves (GET /apis/GROUP/VERSION), with their
 * subresources; null when the group version is not served (404). Any
 * authenticated identity may read it (`system:discovery`).
 */
export async function fetchServedResources(client: KubeClient, groupVersion: string): Promise<ServedResource[] | null> {
  const doc = await client.getOrNull<{ resources?: Array<{ name?: string; kind?: string; namespaced?: boolean; verbs?: string[] }> }>(groupVersionPath(groupVersion));
  if (doc === null) return null;
  return (doc.resources ?? []).map((r) => ({ name: r.name ?? '', kind: r.kind ?? '', namespaced: r.namespaced === true, verbs: [...(r.verbs ?? [])] }));
}
