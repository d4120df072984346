/**
 * Decides whether a peer that completed a TLS handshake is a valid workload.
 *
 * The TLS layer has already checked that the chain reaches the trust bundle.
 * This adds the SPIFFE rules: the leaf is an X.509-SVID (shared profile checks), its trust domain is
 * ours or one we federate with, it is inside its validity window at `now`,
 * and neither its serial nor its SPIFFE ID is revoked. Once the TLS layer
 * trusts several trust domains' roots, it also checks that the chain reaches
 * a root of the leaf's OWN trust domain (a partner's CA must not vouch for
 * our workloads, nor for a third domain's). Pure: the time and the
 * revocation list are inputs.
 */
import { parseSpiffeId, SvidErrorCode, validateLeafSvid, verifyX509Svid, type CertificateFacts, type TrustBundle } from '@trellis/shared';
import type { LeafFacts } from './leaf-facts';
import type { RevocationList } from '../state/sidecar-state';

/** Why a peer was refused; also the `reason` label of the refusal metric. */
export type PeerRefusal = 'no_certificate' | 'untrusted_chain' | 'not_svid' | 'foreign_trust_domain' | 'expired' | 'revoked';

/** The verdict on a peer: its identity, or the reason it was refused. */
export type PeerVerdict =
  | { readonly ok: true; readonly spiffeId: string; readonly trustDomain: string; readonly serialHex: string }
  | { readonly ok: false; readonly reason: PeerRefusal; readonly detail: string };

/** What the decision needs besides the certificate. */
export interface PeerContext {
  /** Trust domains we accept peers from (ours, plus the federated ones). */
  readonly trustDomains: ReadonlySet<string>;
  readonly revocations: RevocationList;
  readonly now: Date;
  /**
   * When the TLS layer anchored on a mixed set of roots: the roots of each
   * trust domain and the intermediates the peer presented. The chain must
   * then reach a root of the leaf's own trust domain.
   */
  readonly anchors?: {
    readonly byTrustDomain: ReadonlyMap<string, TrustBundle>;
    readonly intermediates: readonly CertificateFacts[];
  };
}

/**
 * Splits a SPIFFE ID of a workload (non-empty path) into trust domain and
 * path, or returns undefined when it is not one. The shared parser decides
 * (SPIFFE-ID spec: no `%`, `~`, `:` or other characters outside
 * `[A-Za-z0-9._-]` in the path); nothing here re-reads the string.
 */
export function splitWorkloadSpiffeId(id: string): { trustDomain: string; path: string } | undefined {
  let parsed;
  try {
    parsed = parseSpiffeId(id);
  } catch {
    return undefined;
  }
  return parsed.path === '' ? undefined : { trustDomain: parsed.trustDomain, path: parsed.path };
}

/**
 * Verifies a peer's leaf: the shared X.509-SVID profile rules
 * (`validateLeafSvid`), validity at `now`, our trust domain, revocation.
 * Fails closed: anything not positively valid is refused, with the reason.
 */
export function verifyPeer(leaf: LeafFacts | undefined, ctx: PeerContext): PeerVerdict {
  if (!leaf) return { ok: false, reason: 'no_certificate', detail: 'the peer presented no certificate' };
  const v = validateLeafSvid(leaf.facts, { now: ctx.now });
  if (!v.ok) {
    const expired = v.code === SvidErrorCode.EXPIRED || v.code === SvidErrorCode.NOT_YET_VALID;
    return { ok: false, reason: expired ? 'expired' : 'not_svid', detail: `${v.code}: ${v.reason}` };
  }
  const spiffeId = v.spiffeId.toString();
  const trustDomain = v.spiffeId.trustDomain;
  if (!ctx.trustDomains.has(trustDomain)) {
    return { ok: false, reason: 'foreign_trust_domain', detail: `trust domain "${trustDomain}" is neither ours nor federated` };
  }
  if (ctx.anchors) {
    const bundle = ctx.anchors.byTrustDomain.get(trustDomain);
    if (!bundle || bundle.x509Authorities.length === 0) return { ok: false, reason: 'foreign_trust_domain', detail: `no roots for trust domain "${trustDomain}"` };
    // The shared X.509-SVID verifier: the presented chain's profile, then a path to this trust domain's roots only.
    const full = verifyX509Svid([leaf.facts, ...ctx.anchors.intermediates], ctx.anchors.byTrustDomain, { now: ctx.now });
    if (!full.ok) return { ok: false, reason: 'untrusted_chain', detail: `not chained to a root of ${trustDomain}: ${full.code}: ${full.reason}` };
  }
  if (ctx.revocations.serials.has(leaf.serialHex)) {
    return { ok: false, reason: 'revoked', detail: `serial ${leaf.serialHex} is revoked` };
  }
  if (ctx.revocations.spiffeIds.has(spiffeId)) {
    return { ok: false, reason: 'revoked', detail: `${spiffeId} is revoked` };
  }
  return { ok: true, spiffeId, trustDomain, serialHex: leaf.serialHex };
}
