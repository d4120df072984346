/**
 * What the API server supports, decided from its discovery document alone
 * (pure): which EndpointSlice and PodDisruptionBudget versions it serves,
 * whether it runs native sidecars, checks CRD CEL rules, labels namespaces
 * with their name. Served group versions decide where they can (a cluster
 * may disable a group); the server version decides what discovery cannot
 * show (a feature gate's default).
 *
 * Minimums (docs/kubernetes.md): EndpointSlice discovery.k8s.io/v1 and
 * policy/v1 PodDisruptionBudget 1.21 (v1beta1 served until 1.24);
 * native sidecars 1.29 (SidecarContainers beta, on by default);
 * CRD x-kubernetes-validations 1.25; kubernetes.io/metadata.name 1.21.
 */

/** The facts discovery gives: GET /version and the served group versions of /api and /apis. */
export interface DiscoveryFacts {
  /** `/version` */
  readonly version: { readonly major: string; readonly minor: string; readonly gitVersion: string };
  /** Every served group version, core included: `v1`, `apps/v1`, `discovery.k8s.io/v1beta1`, ... */
  readonly groupVersions: readonly string[];
}

/** Features Trellis adapts to. */
export interface ApiFeatures {
  /** major.minor as numbers (`29+` from some distributions reads as 29). */
  readonly serverVersion: { readonly major: number; readonly minor: number; readonly gitVersion: string };
  /** The EndpointSlice version to watch, newest served first; null when neither is served. */
  readonly endpointSlice: 'discovery.k8s.io/v1' | 'discovery.k8s.io/v1beta1' | null;
  /** The PodDisruptionBudget version to write; null when neither is served. */
  readonly podDisruptionBudget: 'policy/v1' | 'policy/v1beta1' | null;
  /** admissionregistration.k8s.io/v1 webhooks (1.16+); Trellis needs them. */
  readonly admissionRegistrationV1: boolean;
  /** coordination.k8s.io/v1 Leases (1.14+); leader election needs them. */
  readonly leases: boolean;
  /** Init containers with `restartPolicy: Always` run as native sidecars (1.29+). */
  readonly nativeSidecars: boolean;
  /** CRD `x-kubernetes-validations` (CEL) rules are enforced (1.25+). */
  readonly crdValidationRules: boolean;
  /** Every namespace carries `kubernetes.io/metadata.name` (1.21+), so selectors may use it. */
  readonly namespaceNameLabel: boolean;
}

/** Parses `"29"` or `"29+"`; NaN when there is no leading number. */
function leadingInt(s: string): number {
  const m = /^\d+/.exec(s);
  return m ? Number(m[0]) : NaN;
}

/** The features of a server from its discovery facts. Pure. */
export function detectApiFeatures(facts: DiscoveryFacts): ApiFeatures {
  let major = leadingInt(facts.version.major);
  let minor = leadingInt(facts.version.minor);
  if (Number.isNaN(major) || Number.isNaN(minor)) {
    // Some builds leave major/minor empty; gitVersion (v1.29.3-eks-...) still says it.
    const m = /^v(\d+)\.(\d+)/.exec(facts.version.gitVersion);
    major = m ? Number(m[1]) : 0;
    minor = m ? Number(m[2]) : 0;
  }
  const served = new Set(facts.groupVersions);
  const atLeast = (mi: number): boolean => major > 1 || (major === 1 && minor >= mi);
  return Object.freeze({
    serverVersion: Object.freeze({ major, minor, gitVersion: facts.version.gitVersion }),
    endpointSlice: served.has('discovery.k8s.io/v1') ? 'discovery.k8s.io/v1' : served.has('discovery.k8s.io/v1beta1') ? 'discovery.k8s.io/v1beta1' : null,
    podDisruptionBudget: served.has('policy/v1') ? 'policy/v1' : served.has('policy/v1beta1') ? 'policy/v1beta1' : null,
    admissionRegistrationV1: served.has('admissionregistration.k8s.io/v1'),
    leases: served.has('coordination.k8s.io/v1'),
    nativeSidecars: atLeast(29),
    crdValidationRules: atLeast(25),
    namespaceNameLabel: atLeast(21),
  });
}
