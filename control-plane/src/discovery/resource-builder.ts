/**
 * Computes what one sidecar should hold for each non-SVID type from the
 * current snapshot, with its content-hash version. Pure apart from
 * memoisation: results depend only on (snapshot part, workload facts), so
 * 10,000 sidecars sharing a few label sets cost a few computations per change.
 */
import {
  AUTHORIZATION_POLICIES_TYPE_URL,
  contentVersion,
  encodeResource,
  ENDPOINTS_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  REVOCATIONS_TYPE_URL,
  SINGLETON_RESOURCE_NAME,
  TRUST_BUNDLE_TYPE_URL,
  type RevocationsResource,
  type TrustBundleResource,
} from '@trellis/shared';
import type { EndpointsView } from '../registry/registry-source';
import type { PolicyView, WorkloadFacts } from './policy-source';

/** Everything resources are computed from; each part is replaced whole on change. */
export interface DiscoverySnapshot {
  readonly bundle: TrustBundleResource;
  /** Null while no policy may be served (see PolicySource.current). */
  readonly policy: PolicyView | null;
  readonly revocations: RevocationsResource;
  /** Resource name → endpoints per namespace, from the registry source (sessions, or the Kubernetes API server). */
  readonly endpoints: EndpointsView;
}

/** A computed resource set and its version. */
export interface BuiltResources {
  readonly version: string;
  readonly resources: ReadonlyArray<{ name: string; body: unknown }>;
  /** The resources serialised for the wire, computed once and shared by every sidecar that gets them. */
  readonly wire: ReadonlyArray<{ name: string; body: Buffer }>;
}

/** Builds resources with per-snapshot-part memoisation. */
export class ResourceBuilder {
  private readonly singletons = new WeakMap<object, BuiltResources>();
  private readonly perWorkload = new WeakMap<object, Map<string, BuiltResources>>();

  /**
   * The resources of `typeUrl` for a workload; `names` filters endpoints
   * (empty = all). Null for the policy types while no policy may be served:
   * nothing is sent, never an empty (allow-all) set.
   */
  build(typeUrl: string, w: WorkloadFacts, names: readonly string[], snap: DiscoverySnapshot): BuiltResources | null {
    const policy = snap.policy;
    switch (typeUrl) {
      case TRUST_BUNDLE_TYPE_URL:
        return this.singleton(snap.bundle, () => snap.bundle);
      case REVOCATIONS_TYPE_URL:
        return this.singleton(snap.revocations, () => snap.revocations);
      case PEER_AUTHENTICATION_TYPE_URL:
        return policy && this.memo(policy, `pa|${workloadKey(w)}`, () => one(policy.peerAuthentication(w)));
      case AUTHORIZATION_POLICIES_TYPE_URL:
        return policy && this.memo(policy, `az|${workloadKey(w)}`, () => one(policy.authorizationPolicies(w)));
      case ENDPOINTS_TYPE_URL: {
        const endpoints = snap.endpoints.forNamespace(w.namespace);
        return this.memo(endpoints, `ep|${names.join(',')}`, () => {
          const wanted = names.length === 0 ? [...endpoints.keys()] : names;
          const resources = wanted
            .filter((n) => endpoints.has(n))
            .sort()
            .map((n) => ({ name: n, body: endpoints.get(n) as unknown }));
          return built(contentVersion(resources), resources);
        });
      }
      default:
        throw new Error(`no builder for ${typeUrl}`);
    }
  }

  private singleton(key: object, body: () => unknown): BuiltResources {
    let r = this.singletons.get(key);
    if (!r) {
      r = one(body());
      this.singletons.set(key, r);
    }
    return r;
  }

  private memo(part: object, key: string, compute: () => BuiltResources): BuiltResources {
    let m = this.perWorkload.get(part);
    if (!m) {
      m = new Map();
      this.perWorkload.set(part, m);
    }
    let r = m.get(key);
    if (!r) {
      r = compute();
      m.set(key, r);
    }
    return r;
  }
}

function one(body: unknown): BuiltResources {
  const resources = [{ name: SINGLETON_RESOURCE_NAME, body }];
  return built(contentVersion(resources), resources);
}

function built(version: string, resources: Array<{ name: string; body: unknown }>): BuiltResources {
  let wire: Array<{ name: string; body: Buffer }> | null = null;
  return {
    version,
    resources,
    get wire() {
      wire ??= resources.map((r) => ({ name: r.name, body: encodeResource(r.body) }));
      return wire;
    },
  };
}

/** Policies select on namespace and labels only (the PolicyView contract); this key captures both. */
function workloadKey(w: WorkloadFacts): string {
  const labels = Object.keys(w.labels)
    .sort()
    .map((k) => `${k}=${w.labels[k]}`)
    .join('&');
  return `${w.namespace}|${labels}`;
}
