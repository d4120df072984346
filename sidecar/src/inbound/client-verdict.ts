/**
 * The verdict on a client after an inbound server handshake, on either data
 * path: a leaf was presented, OpenSSL verified the chain against our bundle,
 * and the leaf is a valid, unrevoked SVID of a trust domain we accept; and
 * the refusal reason for a handshake that failed. Fails closed.
 */
import type { TLSSocket } from 'node:tls';
import { isSpiffeId, type KeyExchangePolicy } from '@trellis/shared';
import { leafFacts } from '../identity/leaf-facts';
import { verifyPeer, type PeerRefusal } from '../identity/peer-verifier';
import type { SidecarSnapshot, SidecarState } from '../state/sidecar-state';
import { peerTrust } from '../state/peer-trust';

/** What a verified client is. */
export interface ClientPeer {
  principal?: string;
  serialHex?: string;
  certSha256?: string;
}

/**
 * The checks after a server handshake, on either data path: a leaf was
 * presented, OpenSSL verified the chain against our bundle, and the leaf
 * is a valid, unrevoked SVID of a trust domain we accept. Reads the state
 * again, since a revocation may have landed during the handshake.
 */
export function judgeClient(
  deps: { state: SidecarState; clock: () => Date },
  leafDer: Buffer | undefined,
  chainError: string | undefined,
  presented: () => readonly Buffer[],
): { ok: true; snap: SidecarSnapshot; peer: ClientPeer } | { ok: false; reason: string; detail?: string; peer?: string } {
  if (!leafDer) return { ok: false, reason: 'no_certificate', detail: 'the peer presented no certificate' };
  if (chainError !== undefined) {
    const reason = handshakeRefusal(chainError);
    return { ok: false, reason: reason === 'handshake_failed' ? 'untrusted_chain' : reason, detail: chainError };
  }
  const now = deps.state.current();
  const trustDomain = now.credentials?.trustDomain;
  if (!trustDomain) return { ok: false, reason: 'no_valid_svid', detail: 'we hold no valid SVID: failing closed' };
  let verdict;
  let sha256: string | undefined;
  // Whom a refusal is counted against: the leaf's one URI SAN, which the CA vouched for since the chain verified.
  let claimed: string | undefined;
  try {
    const facts = leafFacts(leafDer);
    sha256 = facts.sha256;
    claimed = facts.uris.length === 1 && isSpiffeId(facts.uris[0]) ? facts.uris[0] : undefined;
    verdict = verifyPeer(facts, peerTrust(now, trustDomain, deps.clock(), presented));
  } catch (err) {
    verdict = { ok: false as const, reason: 'not_svid' as const, detail: (err as Error).message };
  }
  if (!verdict.ok) return { ok: false, reason: verdict.reason, detail: verdict.detail, peer: verdict.reason === 'untrusted_chain' ? undefined : claimed };
  return { ok: true, snap: now, peer: { principal: verdict.spiffeId, serialHex: verdict.serialHex, certSha256: sha256 } };
}


/**
 * OpenSSL's verdict on the peer chain against our bundle: undefined when it
 * verified, else the error code. A TLSSocket made outside a tls.Server does
 * not fill in `authorized`, so ask the handle the way tls.Server does.
 */
export function verifyError(tls: TLSSocket): string | undefined {
  const handle = (tls as unknown as { _handle?: { verifyError(): (Error & { code?: string }) | null } })._handle;
  if (!handle) return 'NO_TLS_HANDLE';
  const err = handle.verifyError();
  return err ? (err.code ?? err.message) : undefined;
}

/** The failure code of a handshake the client ended by closing its side, with no alert or error (the relay's word for it too). */
export const CLIENT_CLOSED = 'EOF';

/** A handshake failure code as a refusal reason (`require` makes a no-shared-group failure `kex_not_hybrid`). */
export function handshakeRefusal(code: string | undefined, keyExchange: KeyExchangePolicy = 'prefer'): PeerRefusal | string {
  switch (code) {
    // Our groups and the client's have nothing in common: under require, that is a classical-only client.
    case 'ERR_SSL_NO_SUITABLE_KEY_SHARE':
    case 'ERR_SSL_NO_SHARED_CIPHER':
      return keyExchange === 'require' ? 'kex_not_hybrid' : 'handshake_failed';
    case 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE':
      return 'no_certificate';
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'expired';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
    case 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA':
      return 'untrusted_chain';
    // The client closed its side (FIN, no alert) before our side of the handshake was done: a TLS health
    // check, a port probe, a client that closes the moment its own side is done. Nothing was refused.
    case CLIENT_CLOSED:
      return 'client_closed';
    default:
      return 'handshake_failed';
  }
}
