/**
 * What a handshake's peer is checked against, taken from one snapshot: the
 * trust domains we accept (ours and every federated one in the bundle), the
 * revocations, and, when the TLS layer trusts more than one trust domain's
 * roots, the per-trust-domain roots and the peer's presented intermediates,
 * so `verifyPeer` can insist on a root of the peer's own trust domain.
 */
import type { TLSSocket } from 'node:tls';
import { parseCertificate, peerCertificateChainDer, type CertificateFacts, type PeerCertificateChain } from '@trellis/shared';
import type { PeerContext } from '../identity/peer-verifier';
import type { SidecarSnapshot } from './sidecar-state';

/**
 * The PeerContext for a handshake. `presented` yields the peer's
 * certificates after the leaf (DER); it is only called when federation is in
 * force, since without it OpenSSL already anchored on our roots alone.
 */
export function peerTrust(snap: SidecarSnapshot, ownTrustDomain: string, now: Date, presented: () => readonly Buffer[]): PeerContext {
  const byTd = snap.bundle?.byTrustDomain;
  if (!byTd || byTd.size <= 1) return { trustDomains: new Set([ownTrustDomain]), revocations: snap.revocations, now };
  const intermediates: CertificateFacts[] = [];
  for (const der of presented()) {
    try {
      intermediates.push(parseCertificate(der));
    } catch {
      // An unparsable extra certificate cannot help build a path; path validation decides.
    }
  }
  return { trustDomains: new Set([ownTrustDomain, ...byTd.keys()]), revocations: snap.revocations, now, anchors: { byTrustDomain: byTd, intermediates } };
}

/** Whether `snap` trusts more than one trust domain's roots (then the presented chain is needed). */
export function federationInForce(snap: SidecarSnapshot): boolean {
  return (snap.bundle?.byTrustDomain?.size ?? 0) > 1;
}

/**
 * The certificates a TLS peer sent after its leaf (and whatever issuers Node
 * found for them), DER, leaf excluded. Path validation ignores the ones that
 * do not lead to a root of the peer's trust domain. Call it before
 * `getPeerX509Certificate()`: once that ran, Node returns the leaf alone.
 */
export function presentedIntermediates(tls: TLSSocket): Buffer[] {
  const peer = tls.getPeerCertificate(true) as PeerCertificateChain | undefined;
  return peer ? peerCertificateChainDer(peer, 11).slice(1) : [];
}

/**
 * What a TLS peer showed after the handshake, for either data path: the
 * certificates after its leaf (only when federation is in force; read
 * first, see presentedIntermediates) and its leaf, DER. A leaf Node cannot
 * hand over is undefined, which the verdict refuses (fails closed).
 */
export function peerCertificates(tls: TLSSocket, snap: SidecarSnapshot): { presented: Buffer[]; leafDer: Buffer | undefined } {
  let presented: Buffer[] = [];
  let leafDer: Buffer | undefined;
  try {
    // The presented chain first: Node returns only the leaf once getPeerX509Certificate ran.
    presented = federationInForce(snap) ? presentedIntermediates(tls) : [];
    leafDer = tls.getPeerX509Certificate()?.raw;
  } catch {
    leafDer = undefined;
  }
  return { presented, leafDer };
}
