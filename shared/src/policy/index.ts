/** Policy manifests (Istio-compatible PeerAuthentication and AuthorizationPolicy) and their pure decisions. */
export { parsePolicyFile, parsePolicyObject, policyObjectName, DEFAULT_ROOT_NAMESPACE, deepFreeze } from './parse-policy-file';
export type { ParsePolicyOptions, ParsedPolicyFile } from './parse-policy-file';
export { PolicyError, POLICY_CODES, formatIssue, formatRejection } from './policy-error';
export type { PolicyCode } from './policy-error';
export { POLICY_API_VERSIONS } from './policy-types';
export type {
  AuthorizationPolicy,
  AuthzAction,
  AuthzOperation,
  AuthzRule,
  AuthzSource,
  EffectiveMtlsMode,
  MatchLabels,
  ManifestMtlsMode,
  PeerAuthentication,
  Policy,
  PolicyIssue,
  PolicyMetadata,
  PolicyWorkload,
} from './policy-types';
export { buildPolicySet, isPolicySet, labelsMatch, policySetFingerprint, byAge, creationOrder } from './policy-set';
export type { PolicySet, PolicyRef } from './policy-set';
export { effectivePeerAuthentication, resolvePeerAuthentication, peerAuthenticationLevels, modeForPort } from './peer-authentication';
export type { EffectivePeerAuthentication, PeerAuthenticationOptions, PeerAuthenticationScope, ResolvedPeerAuthentication } from './peer-authentication';
export { authorize, authorizeCompiled, compileAuthorizationPolicies, selectAuthorizationPolicies } from './authorize';
export type { AuthorizeOptions, AuthzDecision, AuthzMatch, AuthzReasonCode, AuthzRequest } from './authorize';
export { policiesFromJSON, policiesToJSON, policyToManifest } from './policy-wire';
export { AUTHZ_WIRE_VERSION, encodeAuthorizationPolicies, stringMatch } from './authz-wire';
export type { AuthzWirePolicy, HostMatchWire, OperationWire, RuleWire, ServiceAccountWire, SourceWire, StringMatchWire } from './authz-wire';
export { decodeAuthorizationPolicies } from './authz-wire-decoder';
export { CompiledAuthorizationPolicy, compileStringMatch, matchesString, matchesAnyString } from './compiled-policy';
export type { CompiledIpBlock, CompiledOperation, CompiledRule, CompiledSource, HostMatcher, PrincipalMatcher, StringMatcher, StringMatchKind } from './compiled-policy';
export type { PolicyManifest } from './policy-wire';
export { matchString } from './string-match';
export { ipInBlock, parseIp, parseIpBlock } from './ip-block';
export { explainInbound } from './explain';
export type { InboundExplanation } from './explain';
export { normalizePath, isPathNormalization, PATH_NORMALIZATIONS, DEFAULT_PATH_NORMALIZATION } from './path-normalization';
export type { PathNormalization, NormalizedPath } from './path-normalization';
export { canonicalHost, sameHost, hostMatches } from './host-match';
export type { CanonicalHost } from './host-match';
