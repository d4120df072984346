/**
 * Reads the discovery facts (GET /version, /api, /apis) from an API server,
 * for detectApiFeatures. Any authenticated identity may read them (the
 * default `system:discovery` ClusterRole).
 */
import type { KubeClient } from '../client/kube-client';
import type { DiscoveryFacts } from './api-features';

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
