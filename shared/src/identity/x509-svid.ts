/**
 * X.509-SVID profile checks (SPIFFE X509-SVID spec sections 2-5) over
 * {@link CertificateFacts}: the leaf rules, the signing-certificate rules, and
 * both applied along a chain.
 *
 * Every check is pure and fails closed: anything not positively acceptable is
 * a rejection carrying a stable `TRELLIS_SVID_*` code and a reason naming the
 * rule and spec section. Rules are checked in a fixed order (the order
 * go-spiffe reports them in, then the stricter rules go-spiffe does not check),
 * so a certificate that breaks several rules always gets the same code.
 *
 * This is the profile only. Cryptographic path validation against a trust
 * bundle (signatures, name chaining) is the TLS stack's or the caller's job.
 */
import { TrellisError } from '../errors/trellis-error';
import type { CertificateFacts } from '../x509/certificate-facts';
import { Oid } from '../x509/oids';
import type { SpiffeId } from './spiffe-id';
import { spiffeIdOfUriSans } from './uri-san';

/** Every code an {@link SvidError} or rejected verdict can carry. Stable; documented in docs/errors.md. */
export const SvidErrorCode = Object.freeze({
  /** No URI SAN: the certificate carries no SPIFFE ID (X509-SVID 2). */
  NO_URI_SAN: 'TRELLIS_SVID_NO_URI_SAN',
  /** More than one URI SAN (X509-SVID 2, 5.2). */
  MULTIPLE_URI_SANS: 'TRELLIS_SVID_MULTIPLE_URI_SANS',
  /** The URI SAN is not a valid SPIFFE ID (`details.cause` has the TRELLIS_SPIFFE_ID_* code). */
  BAD_SPIFFE_ID: 'TRELLIS_SVID_BAD_SPIFFE_ID',
  /** A leaf whose SPIFFE ID has no path, i.e. the trust domain's own ID (X509-SVID 3.1, 5.2). */
  LEAF_ID_WITHOUT_PATH: 'TRELLIS_SVID_LEAF_ID_WITHOUT_PATH',
  /** The SPIFFE ID belongs to another trust domain than the one required. */
  WRONG_TRUST_DOMAIN: 'TRELLIS_SVID_WRONG_TRUST_DOMAIN',
  /** A leaf with basicConstraints cA=true (X509-SVID 4.1, 5.2). */
  LEAF_IS_CA: 'TRELLIS_SVID_LEAF_IS_CA',
  /** A leaf without digitalSignature, including a leaf with no keyUsage extension at all (X509-SVID 4.3). */
  LEAF_MISSING_DIGITAL_SIGNATURE: 'TRELLIS_SVID_LEAF_MISSING_DIGITAL_SIGNATURE',
  /** A leaf with keyCertSign (X509-SVID 4.3, 5.2). */
  LEAF_HAS_KEY_CERT_SIGN: 'TRELLIS_SVID_LEAF_HAS_KEY_CERT_SIGN',
  /** A leaf with cRLSign (X509-SVID 4.3, 5.2). */
  LEAF_HAS_CRL_SIGN: 'TRELLIS_SVID_LEAF_HAS_CRL_SIGN',
  /** keyUsage present but not marked critical (X509-SVID 4.3). */
  KEY_USAGE_NOT_CRITICAL: 'TRELLIS_SVID_KEY_USAGE_NOT_CRITICAL',
  /** A leaf EKU that lacks serverAuth or clientAuth (X509-SVID 4.4). */
  LEAF_EKU_INCOMPLETE: 'TRELLIS_SVID_LEAF_EKU_INCOMPLETE',
  /** Empty subject with a non-critical SAN extension (X509-SVID 3.1, RFC 5280 4.1.2.6). */
  SAN_NOT_CRITICAL_WITH_EMPTY_SUBJECT: 'TRELLIS_SVID_SAN_NOT_CRITICAL_WITH_EMPTY_SUBJECT',
  /** A critical extension this validator does not understand (RFC 5280 4.2). */
  UNHANDLED_CRITICAL_EXTENSION: 'TRELLIS_SVID_UNHANDLED_CRITICAL_EXTENSION',
  /** Outside notBefore..notAfter at the time given. */
  NOT_YET_VALID: 'TRELLIS_SVID_NOT_YET_VALID',
  EXPIRED: 'TRELLIS_SVID_EXPIRED',
  /** A signing certificate without basicConstraints cA=true (X509-SVID 3.2, 4.1). */
  SIGNING_CERT_NOT_CA: 'TRELLIS_SVID_SIGNING_CERT_NOT_CA',
  /** A signing certificate without keyCertSign, including one with no keyUsage extension at all (X509-SVID 3.2, 4.3). */
  SIGNING_CERT_MISSING_KEY_CERT_SIGN: 'TRELLIS_SVID_SIGNING_CERT_MISSING_KEY_CERT_SIGN',
  /** A signing certificate whose SPIFFE ID has a path (X509-SVID 3.2). */
  SIGNING_CERT_ID_HAS_PATH: 'TRELLIS_SVID_SIGNING_CERT_ID_HAS_PATH',
  /** No trust bundle is known for the SVID's trust domain (X509-SVID 5.1). */
  NO_BUNDLE_FOR_TRUST_DOMAIN: 'TRELLIS_SVID_NO_BUNDLE_FOR_TRUST_DOMAIN',
  /** An SVID given with no certificate at all. */
  NO_CERTIFICATES: 'TRELLIS_SVID_NO_CERTIFICATES',
  /** No private key where an SVID key was expected. */
  NO_PRIVATE_KEY: 'TRELLIS_SVID_NO_PRIVATE_KEY',
  /** A private key that cannot be parsed (PKCS#8, SEC1 or PKCS#1 expected), or an encrypted one. */
  MALFORMED_PRIVATE_KEY: 'TRELLIS_SVID_MALFORMED_PRIVATE_KEY',
  /** The private key does not belong to the leaf certificate. */
  KEY_MISMATCH: 'TRELLIS_SVID_KEY_MISMATCH',
});

/** One of the {@link SvidErrorCode} values. */
export type SvidErrorCodeValue = (typeof SvidErrorCode)[keyof typeof SvidErrorCode];

/** An X.509-SVID that breaks the profile; `details` carries `rule` (spec section) and `index` in a chain. */
export class SvidError extends TrellisError<SvidErrorCodeValue> {}

/** A rejection: the code, the rule's spec section and a sentence naming it. */
export interface SvidRejection {
  readonly ok: false;
  readonly code: SvidErrorCodeValue;
  /** Spec section of the broken rule, e.g. `X509-SVID 4.3`. */
  readonly rule: string;
  readonly reason: string;
  /** In chain verdicts: 0 for the leaf, 1.. for the intermediates in the order given. */
  readonly index?: number;
  /** For BAD_SPIFFE_ID: the TRELLIS_SPIFFE_ID_* code. */
  readonly cause?: string;
}

/** The verdict on a leaf (or a chain): accepted with its SPIFFE ID, or rejected with a reason. */
export type SvidVerdict = { readonly ok: true; readonly spiffeId: SpiffeId } | SvidRejection;

/** The verdict on a signing certificate: its SPIFFE ID is optional (X509-SVID 3.2). */
export type SigningCertVerdict = { readonly ok: true; readonly spiffeId: SpiffeId | undefined } | SvidRejection;

/** Options for the checks. */
export interface SvidCheckOptions {
  /** Require the SPIFFE ID(s) to be in this trust domain. */
  readonly trustDomain?: string;
  /** Check notBefore <= now <= notAfter at this instant. Omitted: validity is not checked. */
  readonly now?: Date;
}

/** Extensions whose meaning the leaf checks account for; any other critical one is refused. */
const LEAF_UNDERSTOOD = new Set<string>([
  Oid.basicConstraints,
  Oid.keyUsage,
  Oid.extKeyUsage,
  Oid.subjectAltName,
  Oid.subjectKeyIdentifier,
  Oid.authorityKeyIdentifier,
]);
/**
 * Signing certificates may also carry critical nameConstraints: the TLS stack
 * (OpenSSL) enforces them during path validation, so accepting them here does
 * not skip the check, it only leaves it to the component that does it.
 */
const SIGNING_UNDERSTOOD = new Set<string>([...LEAF_UNDERSTOOD, Oid.nameConstraints]);

function reject(code: SvidErrorCodeValue, rule: string, reason: string, extra: { cause?: string } = {}): SvidRejection {
  return Object.freeze({ ok: false as const, code, rule, reason, ...extra });
}

/** The single URI SAN as a SPIFFE ID (uri-san.ts), or a rejection; `required` false lets "no URI" pass as undefined. */
function uriSanId(cert: CertificateFacts, who: string, required: boolean): SpiffeId | undefined | SvidRejection {
  const v = spiffeIdOfUriSans(cert.subjectAltName.uris, who);
  if (v.ok) return v.spiffeId;
  switch (v.refusal) {
    case 'no_uri_san':
      return required ? reject(SvidErrorCode.NO_URI_SAN, 'X509-SVID 2', v.reason) : undefined;
    case 'multiple_uri_sans':
      return reject(SvidErrorCode.MULTIPLE_URI_SANS, 'X509-SVID 2, 5.2', v.reason);
    default:
      return reject(SvidErrorCode.BAD_SPIFFE_ID, 'X509-SVID 2; SPIFFE-ID 2', v.reason, v.cause ? { cause: v.cause } : {});
  }
}

function isRejection(v: unknown): v is SvidRejection {
  return typeof v === 'object' && v !== null && (v as { ok?: unknown }).ok === false;
}

function commonTail(cert: CertificateFacts, who: string, understood: Set<string>, opts: SvidCheckOptions): SvidRejection | undefined {
  if (!cert.keyUsage.critical) {
    return reject(SvidErrorCode.KEY_USAGE_NOT_CRITICAL, 'X509-SVID 4.3', `${who} certificate keyUsage extension must be marked critical`);
  }
  if (cert.subjectEmpty && cert.subjectAltName.present && !cert.subjectAltName.critical) {
    return reject(
      SvidErrorCode.SAN_NOT_CRITICAL_WITH_EMPTY_SUBJECT,
      'X509-SVID 3.1; RFC 5280 4.1.2.6',
      `${who} certificate has an empty subject, so its subjectAltName extension must be critical`,
    );
  }
  for (const oid of cert.criticalExtensions) {
    if (!understood.has(oid)) {
      return reject(SvidErrorCode.UNHANDLED_CRITICAL_EXTENSION, 'RFC 5280 4.2', `${who} certificate has critical extension ${oid}, which is not understood`);
    }
  }
  if (opts.now) {
    const t = opts.now.getTime();
    if (t < cert.notBefore.getTime()) {
      return reject(SvidErrorCode.NOT_YET_VALID, 'RFC 5280 4.1.2.5', `${who} certificate is not valid before ${cert.notBefore.toISOString()}`);
    }
    if (t > cert.notAfter.getTime()) {
      return reject(SvidErrorCode.EXPIRED, 'RFC 5280 4.1.2.5', `${who} certificate expired at ${cert.notAfter.toISOString()}`);
    }
  }
  return undefined;
}

/**
 * Checks a leaf X.509-SVID. Fails closed; returns the SPIFFE ID or the first broken rule.
 *
 * Rules, in order: exactly one URI SAN that is a valid SPIFFE ID with a path
 * (and in `opts.trustDomain` when given); not a CA; keyUsage with
 * digitalSignature and without keyCertSign and cRLSign; EKU, when present,
 * holding serverAuth and clientAuth; keyUsage critical; a critical SAN when the
 * subject is empty; no critical extension we do not understand; within validity
 * at `opts.now` when given.
 */
export function validateLeafSvid(cert: CertificateFacts, opts: SvidCheckOptions = {}): SvidVerdict {
  const id = uriSanId(cert, 'leaf', true);
  if (isRejection(id)) return id;
  const spiffeId = id!;
  if (spiffeId.path === '') {
    return reject(SvidErrorCode.LEAF_ID_WITHOUT_PATH, 'X509-SVID 3.1, 5.2', `leaf SPIFFE ID ${spiffeId} has no path; a workload identity must not be the trust domain itself`);
  }
  if (opts.trustDomain !== undefined && spiffeId.trustDomain !== opts.trustDomain) {
    return reject(SvidErrorCode.WRONG_TRUST_DOMAIN, 'X509-SVID 5.1', `leaf SPIFFE ID ${spiffeId} is not in trust domain ${opts.trustDomain}`);
  }
  if (cert.basicConstraints.ca) {
    return reject(SvidErrorCode.LEAF_IS_CA, 'X509-SVID 4.1, 5.2', 'leaf certificate must not have the basicConstraints CA flag set to true');
  }
  const ku = cert.keyUsage;
  // No keyUsage at all means digitalSignature is not set: same code as go-spiffe (Go omits an empty keyUsage).
  if (!ku.present) {
    return reject(SvidErrorCode.LEAF_MISSING_DIGITAL_SIGNATURE, 'X509-SVID 4.3', "leaf certificate has no keyUsage extension, so 'digitalSignature' is not set");
  }
  if (!ku.digitalSignature) {
    return reject(SvidErrorCode.LEAF_MISSING_DIGITAL_SIGNATURE, 'X509-SVID 4.3', "leaf certificate must have 'digitalSignature' set as key usage");
  }
  if (ku.keyCertSign) return reject(SvidErrorCode.LEAF_HAS_KEY_CERT_SIGN, 'X509-SVID 4.3, 5.2', "leaf certificate must not have 'keyCertSign' set as key usage");
  if (ku.cRLSign) return reject(SvidErrorCode.LEAF_HAS_CRL_SIGN, 'X509-SVID 4.3, 5.2', "leaf certificate must not have 'cRLSign' set as key usage");
  const eku = cert.extKeyUsage;
  if (eku.present && !(eku.oids.includes(Oid.serverAuth) && eku.oids.includes(Oid.clientAuth))) {
    return reject(SvidErrorCode.LEAF_EKU_INCOMPLETE, 'X509-SVID 4.4', 'leaf certificate extendedKeyUsage, when present, must include both serverAuth and clientAuth');
  }
  const tail = commonTail(cert, 'leaf', LEAF_UNDERSTOOD, opts);
  if (tail) return tail;
  return Object.freeze({ ok: true as const, spiffeId });
}

/**
 * Checks a signing (CA) certificate of an SVID chain. Fails closed.
 *
 * Rules, in order: basicConstraints cA=true; keyUsage with keyCertSign (cRLSign
 * allowed); at most one URI SAN, which, if present, is a valid SPIFFE ID with
 * no path (in `opts.trustDomain` when given); keyUsage critical; critical SAN
 * with an empty subject; no critical extension we do not understand; validity.
 */
export function validateSigningCertificate(cert: CertificateFacts, opts: SvidCheckOptions = {}): SigningCertVerdict {
  if (!cert.basicConstraints.ca) {
    return reject(SvidErrorCode.SIGNING_CERT_NOT_CA, 'X509-SVID 3.2, 4.1', 'signing certificate must have the basicConstraints CA flag set to true');
  }
  if (!cert.keyUsage.present) {
    return reject(SvidErrorCode.SIGNING_CERT_MISSING_KEY_CERT_SIGN, 'X509-SVID 3.2, 4.3', "signing certificate has no keyUsage extension, so 'keyCertSign' is not set");
  }
  if (!cert.keyUsage.keyCertSign) {
    return reject(SvidErrorCode.SIGNING_CERT_MISSING_KEY_CERT_SIGN, 'X509-SVID 3.2, 4.3', "signing certificate must have 'keyCertSign' set as key usage");
  }
  const id = uriSanId(cert, 'signing', false);
  if (isRejection(id)) return id;
  if (id) {
    if (id.path !== '') {
      return reject(SvidErrorCode.SIGNING_CERT_ID_HAS_PATH, 'X509-SVID 3.2', `signing certificate SPIFFE ID ${id} must not have a path`);
    }
    if (opts.trustDomain !== undefined && id.trustDomain !== opts.trustDomain) {
      return reject(SvidErrorCode.WRONG_TRUST_DOMAIN, 'X509-SVID 5.1', `signing certificate SPIFFE ID ${id} is not in trust domain ${opts.trustDomain}`);
    }
  }
  const tail = commonTail(cert, 'signing', SIGNING_UNDERSTOOD, opts);
  if (tail) return tail;
  return Object.freeze({ ok: true as const, spiffeId: id });
}

/**
 * Checks a leaf and the intermediates presented with it: the leaf rules on the
 * leaf, the signing rules on each intermediate, and every SPIFFE ID in the
 * leaf's trust domain (or `opts.trustDomain`). Fails closed; a rejection's
 * `index` is 0 for the leaf and i+1 for `intermediates[i]`.
 *
 * Signatures and issuer/subject chaining are not checked here; see the module doc.
 */
export function validateSvidChain(leaf: CertificateFacts, intermediates: readonly CertificateFacts[], opts: SvidCheckOptions = {}): SvidVerdict {
  const v = validateLeafSvid(leaf, opts);
  if (!v.ok) return Object.freeze({ ...v, index: 0 });
  const td = opts.trustDomain ?? v.spiffeId.trustDomain;
  for (let i = 0; i < intermediates.length; i++) {
    const s = validateSigningCertificate(intermediates[i]!, { ...opts, trustDomain: td });
    if (!s.ok) return Object.freeze({ ...s, index: i + 1, reason: `certificate #${i + 2} in the chain: ${s.reason}` });
  }
  return v;
}

function toError(v: SvidRejection): SvidError {
  return new SvidError(v.code, v.reason, { rule: v.rule, ...(v.index !== undefined ? { index: v.index } : {}), ...(v.cause ? { cause: v.cause } : {}) });
}

/** {@link validateSvidChain} that returns the leaf's SPIFFE ID or throws {@link SvidError}. */
export function assertSvidChain(leaf: CertificateFacts, intermediates: readonly CertificateFacts[], opts: SvidCheckOptions = {}): SpiffeId {
  const v = validateSvidChain(leaf, intermediates, opts);
  if (!v.ok) throw toError(v);
  return v.spiffeId;
}
