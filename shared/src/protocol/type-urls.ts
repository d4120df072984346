/**
 * The resource types carried on the discovery stream, named by type URL as in
 * xDS. A type URL is the contract for the JSON shape of a resource body (see
 * `resources.ts` and docs/protocol.md); a new shape gets a new URL.
 */

/** The workload's X.509-SVID: the control plane answers a CSR with the chain. */
export const SVID_TYPE_URL = 'type.trellis.dev/trellis.v1.X509Svid';
/** Every trusted root of the trust domain (more than one during a rotation). */
export const TRUST_BUNDLE_TYPE_URL = 'type.trellis.dev/trellis.v1.TrustBundle';
/** The effective PeerAuthentication (mTLS mode) for the workload. */
export const PEER_AUTHENTICATION_TYPE_URL = 'type.trellis.dev/trellis.v1.PeerAuthentication';
/** The AuthorizationPolicies that select the workload. */
export const AUTHORIZATION_POLICIES_TYPE_URL = 'type.trellis.dev/trellis.v1.AuthorizationPolicies';
/** Serials and SPIFFE IDs that must be refused at once. */
export const REVOCATIONS_TYPE_URL = 'type.trellis.dev/trellis.v1.Revocations';
/** Service name → addresses and the SPIFFE IDs serving them. */
export const ENDPOINTS_TYPE_URL = 'type.trellis.dev/trellis.v1.Endpoints';
/** "Renew with a fresh key by this time": a forced re-issue or a root rotation's switch, jittered per sidecar. */
export const RENEWAL_TYPE_URL = 'type.trellis.dev/trellis.v1.Renewal';

/** Every type URL, in the order a sidecar should subscribe to them (bundle before SVID). */
export const ALL_TYPE_URLS = [
  TRUST_BUNDLE_TYPE_URL,
  SVID_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  AUTHORIZATION_POLICIES_TYPE_URL,
  REVOCATIONS_TYPE_URL,
  ENDPOINTS_TYPE_URL,
  RENEWAL_TYPE_URL,
] as const;

/** One of the known type URLs. */
export type TypeUrl = (typeof ALL_TYPE_URLS)[number];

/** Short names for logs, metrics labels and `trellis proxy-status` columns. */
export const TYPE_SHORT_NAMES: Readonly<Record<TypeUrl, string>> = Object.freeze({
  [SVID_TYPE_URL]: 'svid',
  [TRUST_BUNDLE_TYPE_URL]: 'bundle',
  [PEER_AUTHENTICATION_TYPE_URL]: 'peer_authn',
  [AUTHORIZATION_POLICIES_TYPE_URL]: 'authz',
  [REVOCATIONS_TYPE_URL]: 'revocations',
  [ENDPOINTS_TYPE_URL]: 'endpoints',
  [RENEWAL_TYPE_URL]: 'renewal',
});

/** True when `typeUrl` is one this protocol version defines. */
export function isKnownTypeUrl(typeUrl: string): typeUrl is TypeUrl {
  return (ALL_TYPE_URLS as readonly string[]).includes(typeUrl);
}

/** The short name of a type URL (the URL itself when unknown). */
export function typeShortName(typeUrl: string): string {
  return isKnownTypeUrl(typeUrl) ? TYPE_SHORT_NAMES[typeUrl] : typeUrl;
}
