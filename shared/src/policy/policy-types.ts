/**
 * The normalised, frozen forms of PeerAuthentication and AuthorizationPolicy.
 *
 * These are plain data (no classes, no Dates) so a policy can be logged,
 * compared and sent to a sidecar as JSON. Field names follow Istio's API; lists
 * that were absent in the manifest are `undefined` (absent = no constraint),
 * never `[]`, because Istio gives an explicitly empty list no meaning and we
 * refuse it at parse time.
 */

/** The API versions accepted, unchanged from Istio plus our own group. */
export const POLICY_API_VERSIONS = Object.freeze(['security.trellis.dev/v1', 'security.istio.io/v1', 'security.istio.io/v1beta1'] as const);

/** PeerAuthentication mTLS modes as written in manifests. */
export type ManifestMtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';
/** A resolved mode: UNSET never survives resolution. */
export type EffectiveMtlsMode = Exclude<ManifestMtlsMode, 'UNSET'>;

/** `metadata` after normalisation. */
export interface PolicyMetadata {
  readonly name: string;
  /** `default` when the manifest omits it. */
  readonly namespace: string;
  /** RFC 3339; from the manifest, or the time the file was first seen. */
  readonly creationTimestamp: string;
  /** Where `creationTimestamp` came from. */
  readonly creationTimestampSource: 'manifest' | 'firstSeen';
  readonly apiVersion: string;
  /** Origin, for error messages and `/debug/policies`; not part of the meaning. */
  readonly source?: { readonly file: string; readonly documentIndex: number };
}

/** `selector.matchLabels`; a selector with no labels is stored as `undefined` (it selects the whole namespace). */
export type MatchLabels = Readonly<Record<string, string>>;

/** A normalised PeerAuthentication. */
export interface PeerAuthentication {
  readonly kind: 'PeerAuthentication';
  readonly metadata: PolicyMetadata;
  /** Present only with at least one label: workload-level policy. */
  readonly matchLabels?: MatchLabels;
  readonly mtlsMode: ManifestMtlsMode;
  /** Container port (decimal string, as in JSON keys) → mode. Empty when absent. */
  readonly portLevelMtls: Readonly<Record<string, ManifestMtlsMode>>;
}

/** Peer conditions; every present field must match (AND), each list matches any entry (OR). */
export interface AuthzSource {
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  /** `ns/sa` or `sa` (the policy's namespace), in the local trust domain or an alias. */
  readonly serviceAccounts?: readonly string[];
  readonly notServiceAccounts?: readonly string[];
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
}

/** Request conditions; `methods`/`paths`/`hosts` (and not*) are HTTP-only. */
export interface AuthzOperation {
  readonly ports?: readonly number[];
  readonly notPorts?: readonly number[];
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
}

/** One rule: any `from` AND any `to`; an absent list matches everything. */
export interface AuthzRule {
  readonly from?: readonly AuthzSource[];
  readonly to?: readonly AuthzOperation[];
}

/** Actions we implement (CUSTOM is refused at parse time). */
export type AuthzAction = 'ALLOW' | 'DENY' | 'AUDIT';

/** A normalised AuthorizationPolicy. */
export interface AuthorizationPolicy {
  readonly kind: 'AuthorizationPolicy';
  readonly metadata: PolicyMetadata;
  /** Present only with at least one label. */
  readonly matchLabels?: MatchLabels;
  readonly action: AuthzAction;
  /** `istio.io/dry-run: "true"`: evaluated and reported, never enforced. */
  readonly dryRun: boolean;
  /** `undefined` when the manifest has no `rules` (an ALLOW with no rules denies everything). */
  readonly rules?: readonly AuthzRule[];
}

/** Either kind. */
export type Policy = PeerAuthentication | AuthorizationPolicy;

/** A problem found in a manifest, with everything needed to find and fix it. */
export interface PolicyIssue {
  readonly severity: 'error' | 'warning';
  /** A TRELLIS_POLICY_* code. */
  readonly code: string;
  readonly file: string;
  /** 0-based index of the YAML document in the file; -1 for file-level problems. */
  readonly documentIndex: number;
  /** 1-based; 0 for an object checked without text (parsePolicyObject), where `file` names the object. */
  readonly line: number;
  /** 1-based; 0 as for `line`. */
  readonly column: number;
  /** Dotted field path, e.g. `spec.rules[0].from[0].source.principals[1]`; '' for the document. */
  readonly path: string;
  readonly message: string;
  /** `kind namespace/name` when known. */
  readonly policy?: string;
}

/** A workload as policies see it. */
export interface PolicyWorkload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}
