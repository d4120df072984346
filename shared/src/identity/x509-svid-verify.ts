/**
 * Full X.509-SVID verification (X509-SVID section 5): the profile rules on the
 * presented chain, then RFC 5280 path validation against the bundle of the
 * leaf's own trust domain, never another's.
 *
 * Pure (node:crypto for signatures) and fail closed: an empty bundle trusts
 * nothing, an unknown trust domain is refused, the time is a parameter.
 */
import { parseCertificates, type CertificateFacts } from '../x509/certificate-facts';
import { pemToDer } from '../x509/pem';
import { X509Error, X509ErrorCode, type X509ErrorCodeValue } from '../x509/x509-error';
import { peerCertificateChainDer, type PeerCertificateChain } from './uri-san';
import { verifyCertificatePath, type PathErrorCodeValue } from '../x509/path-validation';
import { createTrustBundle, type TrustBundle } from '../x509/trust-bundle';
import type { SpiffeId } from './spiffe-id';
import { SvidErrorCode, validateSvidChain, type SvidErrorCodeValue } from './x509-svid';

/** Trust bundles by trust domain name, or the single bundle a workload trusts. */
export type TrustBundleSet = TrustBundle | ReadonlyMap<string, TrustBundle>;

/** The outcome: the peer's SPIFFE ID and the path to its trust anchor, or the reason. */
export type X509SvidVerification =
  | { readonly ok: true; readonly spiffeId: SpiffeId; readonly path: readonly CertificateFacts[] }
  | {
      readonly ok: false;
      /** A profile, path or (for an unreadable peer chain) X.509 code. */
      readonly code: SvidErrorCodeValue | PathErrorCodeValue | X509ErrorCodeValue;
      readonly reason: string;
      /** Spec section, for profile rejections. */
      readonly rule?: string;
      /** 0 = leaf, i = i-th intermediate, for profile rejections. */
      readonly index?: number;
    };

/** Options for {@link verifyX509Svid}. */
export interface X509SvidVerifyOptions {
  readonly now: Date;
  /** Purpose the leaf must allow (Oid.serverAuth when verifying a server, Oid.clientAuth for a client). */
  readonly requiredEku?: string;
}

function bundleFor(bundles: TrustBundleSet, trustDomain: string): TrustBundle | undefined {
  if (bundles instanceof Map) return bundles.get(trustDomain);
  const single = bundles as TrustBundle;
  return single.trustDomain === trustDomain ? single : undefined;
}

/**
 * Verifies a presented X.509-SVID chain (leaf first). Fails closed.
 *
 * Order: at least one certificate; the leaf and signing-certificate profile
 * rules (with validity at `now`); a bundle for the leaf's trust domain
 * (`TRELLIS_SVID_NO_BUNDLE_FOR_TRUST_DOMAIN` otherwise); a valid path from the
 * leaf to one of that bundle's X.509 authorities (`TRELLIS_X509_PATH_*` otherwise).
 */
export function verifyX509Svid(chain: readonly CertificateFacts[], bundles: TrustBundleSet, opts: X509SvidVerifyOptions): X509SvidVerification {
  const [leaf, ...intermediates] = chain;
  if (!leaf) return Object.freeze({ ok: false as const, code: SvidErrorCode.NO_CERTIFICATES, reason: 'no certificate was presented' });
  const profile = validateSvidChain(leaf, intermediates, { now: opts.now });
  if (!profile.ok) return profile;
  const td = profile.spiffeId.trustDomain;
  const bundle = bundleFor(bundles, td);
  if (!bundle) {
    return Object.freeze({
      ok: false as const,
      code: SvidErrorCode.NO_BUNDLE_FOR_TRUST_DOMAIN,
      reason: `no trust bundle for trust domain ${td} (SPIFFE ID ${profile.spiffeId})`,
      rule: 'X509-SVID 5.1',
    });
  }
  const path = verifyCertificatePath(leaf, intermediates, bundle.x509Authorities, {
    now: opts.now,
    ...(opts.requiredEku ? { requiredEku: opts.requiredEku } : {}),
  });
  if (!path.ok) return path;
  return Object.freeze({ ok: true as const, spiffeId: profile.spiffeId, path: path.path });
}

/**
 * {@link verifyX509Svid} for a TLS peer as node:tls hands it over (a detailed
 * PeerCertificate, in `checkServerIdentity` or from `getPeerCertificate(true)`),
 * against `rootsPem` as the bundle of `trustDomain`. Anything unreadable is a
 * rejection with code `TRELLIS_X509_MALFORMED_CERTIFICATE` (or the PEM code),
 * never an exception: fails closed.
 */
export function verifyPeerCertificateSvid(cert: PeerCertificateChain, trustDomain: string, rootsPem: readonly string[], opts: X509SvidVerifyOptions): X509SvidVerification {
  let chain: CertificateFacts[];
  let bundle: TrustBundle;
  try {
    chain = parseCertificates(peerCertificateChainDer(cert));
    bundle = createTrustBundle(trustDomain, parseCertificates(rootsPem.flatMap((p) => pemToDer(p))));
  } catch (err) {
    const code: X509ErrorCodeValue = err instanceof X509Error ? err.code : X509ErrorCode.MALFORMED_CERTIFICATE;
    return Object.freeze({ ok: false as const, code, reason: (err as Error).message });
  }
  return verifyX509Svid(chain, bundle, opts);
}
