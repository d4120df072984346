/**
 * Who an outbound connection may reach and whether the server it reached is
 * that: the destination's address and allowed identities from a snapshot,
 * and the server check after a client handshake (a valid, unrevoked SVID of
 * one of those identities). Shared by the byte-forwarding outbound listener
 * and the HTTP/2 session pool. Pure.
 */
import { formatHostPort, parseHostPort } from '@trellis/shared';
import { leafFacts } from '../identity/leaf-facts';
import { splitWorkloadSpiffeId, verifyPeer, type PeerVerdict } from '../identity/peer-verifier';
import type { SidecarSnapshot } from '../state/sidecar-state';
import { peerTrust } from '../state/peer-trust';
import type { OutboundTarget } from './outbound-listener';

/** Picks the address and allowed identities for a target from a snapshot. Pure. */
export function resolveTarget(
  target: OutboundTarget,
  snap: SidecarSnapshot,
  pick: number,
): { address: string; spiffeIds: readonly string[] } | { error: string } {
  if (target.kind === 'explicit') return { address: target.address, spiffeIds: [target.spiffeId] };
  const keys = target.port !== undefined ? [`${target.service}:${target.port}`, target.service] : [target.service];
  for (const k of keys) {
    const e = snap.endpoints[k];
    if (!e || e.addresses.length === 0) continue;
    if (e.spiffeIds.length === 0) return { error: `service "${k}" lists no identities` };
    let address = e.addresses[pick % e.addresses.length]!;
    if (k === target.service && target.port !== undefined) {
      const hp = parseHostPort(address);
      if (typeof hp === 'string') return { error: `endpoint "${address}" of service "${k}": ${hp}` };
      address = formatHostPort(hp.host, target.port);
    }
    return { address, spiffeIds: e.spiffeIds };
  }
  return { error: `no endpoints for service "${keys[0]}"` };
}

/** Re-checks an identity verified earlier against today's revocations and its expiry. Fails closed. */
export function verifyResumed(peer: VerifiedServer, snap: SidecarSnapshot, now: Date): PeerVerdict {
  if (now.getTime() > peer.notAfter.getTime()) return { ok: false, reason: 'expired', detail: 'the resumed session belongs to an expired certificate' };
  if (snap.revocations.serials.has(peer.serialHex) || snap.revocations.spiffeIds.has(peer.spiffeId)) {
    return { ok: false, reason: 'revoked', detail: `${peer.spiffeId} is revoked` };
  }
  const parts = splitWorkloadSpiffeId(peer.spiffeId);
  return { ok: true, spiffeId: peer.spiffeId, trustDomain: parts?.trustDomain ?? '', serialHex: peer.serialHex };
}

/** A peer verdict, or a valid server that is not one the destination may have. */
export type ServerVerdict = PeerVerdict | { ok: false; reason: 'wrong_server_identity'; detail: string };

/** What a client handshake showed of the server, on either data path. */
export interface ServerEvidence {
  /** The leaf, DER (absent: none shown, as on a resumed TLS 1.3 session). */
  leafDer: Buffer | undefined;
  /** OpenSSL's complaint about the chain (undefined: it verified against the bundle). */
  chainError: string | undefined;
  /** The certificates after the leaf, DER (used with federation). */
  presented: readonly Buffer[];
  /** The identity verified when the resumed session was made (set only for a resumed session without a leaf). */
  resumedPeer: VerifiedServer | undefined;
  snap: SidecarSnapshot;
  trustDomain: string;
  now: Date;
  /** The SPIFFE IDs the destination may have. */
  allowed: readonly string[];
}

/**
 * The server check of an outbound connection: a valid, unrevoked SVID
 * chaining to the bundle (or the identity verified when a resumed session
 * was made, checked again against today's revocations), and one of the
 * identities the destination may have. Pure.
 */
export function judgeServer(e: ServerEvidence): { verdict: ServerVerdict; verified: VerifiedServer | undefined } {
  let verdict: ServerVerdict;
  let verified: VerifiedServer | undefined;
  try {
    if (e.resumedPeer) {
      verdict = verifyResumed(e.resumedPeer, e.snap, e.now);
      if (verdict.ok) verified = e.resumedPeer;
    } else {
      const facts = e.leafDer ? leafFacts(e.leafDer) : undefined;
      verdict = verifyPeer(facts, peerTrust(e.snap, e.trustDomain, e.now, () => e.presented));
      if (verdict.ok && facts) verified = { spiffeId: verdict.spiffeId, serialHex: verdict.serialHex, notAfter: facts.notAfter };
    }
  } catch (err) {
    verdict = { ok: false, reason: 'not_svid', detail: (err as Error).message };
  }
  if (e.chainError !== undefined) verdict = { ok: false, reason: 'untrusted_chain', detail: e.chainError };
  if (verdict.ok && !e.allowed.includes(verdict.spiffeId)) {
    verdict = { ok: false, reason: 'wrong_server_identity', detail: `${verdict.spiffeId} is not one of ${e.allowed.join(', ')}` };
  }
  return { verdict, verified: verdict.ok ? verified : undefined };
}

/** A server identity verified on a full handshake. */
export interface VerifiedServer {
  spiffeId: string;
  serialHex: string;
  notAfter: Date;
}

/** Errors that mean the endpoint is not there (try another), not that it misbehaved. */
export const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ETIMEDOUT']);

