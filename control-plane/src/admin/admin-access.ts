/**
 * Who may do what on the control plane's admin API, as one pure decision
 * over the facts of a request: its method, path, Host, Content-Type and the
 * client certificate chain it presented over TLS.
 *
 * `GET`/`HEAD` of /healthz, /readyz and /metrics need nothing (kubelet and
 * Prometheus have no SVID; they reveal no identity, key or policy).
 * Everything else needs, in this order (the first failure is the answer):
 * 1. a Host this endpoint answers to (421; see admin-host.ts),
 * 2. a client certificate that verifies as an X.509-SVID of our trust domain
 *    against the mesh bundle, with clientAuth (401), checked by the shared
 *    verifier and by OpenSSL both,
 * 3. a SPIFFE ID on the admin allow-list whose serial and ID are not revoked (403),
 * 4. an existing route (404) for this method (405),
 * 5. for a state change, `Content-Type: application/json` (415): a browser
 *    cannot send that cross-site without a CORS preflight we never answer.
 * Authentication comes before routing, so a stranger learns no paths.
 * Fails closed throughout: anything not positively allowed is refused with
 * its code and reason.
 */
import { normaliseSerial, Oid, verifyX509Svid, type CertificateFacts, type TrustBundle } from '@trellis/shared';
import { AdminErrorCode, type AdminErrorCodeValue } from './admin-error';
import { isAcceptedHost, type AcceptedHosts } from './admin-host';

/** Paths anyone may GET: liveness, readiness, Prometheus metrics. */
export const PUBLIC_PATHS: readonly string[] = Object.freeze(['/healthz', '/readyz', '/metrics']);

/** What a route at the requested path accepts; null when there is none. */
export interface RouteFacts {
  readonly method: 'GET' | 'POST';
}

/** The facts of one request, as the TLS server saw them. */
export interface AdminRequestFacts {
  readonly method: string;
  readonly path: string;
  readonly host: string | undefined;
  readonly contentType: string | undefined;
  readonly route: RouteFacts | null;
  /** The presented client chain, leaf first, without any trust anchor; empty when no certificate was sent. */
  readonly peerChain: readonly CertificateFacts[];
  /** OpenSSL's verdict on the same chain against the same roots (`TLSSocket.authorized`), and its reason when false. */
  readonly tlsVerified: boolean;
  readonly tlsError?: string;
}

/** What the decision is made against: one snapshot of the control plane's state. */
export interface AdminAccessPolicy {
  readonly trustBundle: TrustBundle;
  /** SPIFFE IDs allowed to use the admin API (exact match). */
  readonly allow: ReadonlySet<string>;
  readonly hosts: AcceptedHosts;
  /** True when the serial (normalised hex) or the SPIFFE ID is on the revocation list. */
  isRevoked(serialHex: string, spiffeId: string): boolean;
  readonly now: Date;
}

/** The outcome, with the reason either way. */
export type AdminDecision =
  | { readonly allow: true; readonly identity: string | null; readonly reason: string }
  | { readonly allow: false; readonly code: AdminErrorCodeValue; readonly reason: string; readonly details: Readonly<Record<string, unknown>> };

function refuse(code: AdminErrorCodeValue, reason: string, details: Record<string, unknown> = {}): AdminDecision {
  return Object.freeze({ allow: false as const, code, reason, details: Object.freeze(details) });
}

/** The media type of a Content-Type header, lower-case, without parameters. */
function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Decides one admin request. Pure; fails closed. */
export function decideAdminRequest(req: AdminRequestFacts, policy: AdminAccessPolicy): AdminDecision {
  const readMethod = req.method === 'GET' || req.method === 'HEAD';
  if (readMethod && PUBLIC_PATHS.includes(req.path)) return Object.freeze({ allow: true as const, identity: null, reason: `${req.path} is public` });

  if (!isAcceptedHost(req.host, policy.hosts)) {
    return refuse(AdminErrorCode.MISDIRECTED, `Host "${req.host ?? ''}" is not this admin endpoint's address; use the address it listens on (or add it with --admin-host)`, { host: req.host ?? null, accepted: [...policy.hosts] });
  }

  const [leaf, ...rest] = req.peerChain;
  if (!leaf) return refuse(AdminErrorCode.UNAUTHENTICATED, 'the admin API needs a client certificate with an admin identity (trellis admin credentials)', { reason: 'no client certificate' });
  const verdict = verifyX509Svid([leaf, ...rest], policy.trustBundle, { now: policy.now, requiredEku: Oid.clientAuth });
  if (!verdict.ok) return refuse(AdminErrorCode.UNAUTHENTICATED, `the client certificate is not an X.509-SVID of this mesh: ${verdict.reason}`, { reason: verdict.reason, svidCode: verdict.code });
  if (!req.tlsVerified) return refuse(AdminErrorCode.UNAUTHENTICATED, `the client certificate does not verify against the mesh bundle: ${req.tlsError ?? 'unknown reason'}`, { reason: req.tlsError ?? null });
  const spiffeId = verdict.spiffeId.toString();

  let serial: string;
  try {
    serial = normaliseSerial(leaf.serialHex);
  } catch {
    return refuse(AdminErrorCode.UNAUTHENTICATED, 'the client certificate has an unreadable serial', { spiffeId });
  }
  if (policy.isRevoked(serial, spiffeId)) return refuse(AdminErrorCode.FORBIDDEN, `${spiffeId} (serial ${serial}) is revoked`, { spiffeId, serial });
  if (!policy.allow.has(spiffeId)) return refuse(AdminErrorCode.FORBIDDEN, `${spiffeId} is not on the admin allow-list`, { spiffeId });

  if (!req.route) return refuse(AdminErrorCode.NOT_FOUND, `no such path ${req.path}`, { spiffeId });
  const wanted = req.route.method;
  if (!(req.method === wanted || (wanted === 'GET' && req.method === 'HEAD'))) {
    return refuse(AdminErrorCode.METHOD_NOT_ALLOWED, `${req.method} ${req.path}: use ${wanted}`, { method: req.method, allowed: wanted });
  }
  if (wanted === 'POST' && mediaType(req.contentType) !== 'application/json') {
    return refuse(AdminErrorCode.UNSUPPORTED_MEDIA_TYPE, `${req.path} takes Content-Type application/json, not "${req.contentType ?? '(none)'}"`, { contentType: req.contentType ?? null });
  }
  return Object.freeze({ allow: true as const, identity: spiffeId, reason: `${spiffeId} is an admin` });
}
