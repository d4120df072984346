/**
 * The error family for PEM, certificates and trust bundles.
 */
import { TrellisError } from '../errors/trellis-error';

/** Every code an {@link X509Error} can carry. Stable; documented in docs/errors.md. */
export const X509ErrorCode = Object.freeze({
  /** Non-empty input with no PEM block at all. */
  NOT_PEM: 'TRELLIS_X509_NOT_PEM',
  /** A PEM block that is unterminated, mislabelled at its END line, has headers or bad base64. */
  BAD_PEM: 'TRELLIS_X509_BAD_PEM',
  /** Bytes that are not a DER X.509 certificate (bad structure, bad field encoding). */
  MALFORMED_CERTIFICATE: 'TRELLIS_X509_MALFORMED_CERTIFICATE',
  /** A certificate version other than v1, v2 or v3, or extensions in a non-v3 certificate. */
  UNSUPPORTED_VERSION: 'TRELLIS_X509_UNSUPPORTED_VERSION',
  /** The outer signatureAlgorithm differs from the one inside tbsCertificate (RFC 5280 4.1.1.2). */
  SIGNATURE_ALGORITHM_MISMATCH: 'TRELLIS_X509_SIGNATURE_ALGORITHM_MISMATCH',
  /** The same extension appears twice (RFC 5280 4.2). */
  DUPLICATE_EXTENSION: 'TRELLIS_X509_DUPLICATE_EXTENSION',
  /** An extension Trellis reads (basicConstraints, keyUsage, EKU, SAN, SKI, AKI) whose value is malformed. */
  BAD_EXTENSION: 'TRELLIS_X509_BAD_EXTENSION',
  /** A SPIFFE bundle that is not a JSON object, or a field of the wrong type. */
  BUNDLE_BAD_JSON: 'TRELLIS_X509_BUNDLE_BAD_JSON',
  /** A SPIFFE bundle without the `keys` member (Trust Domain and Bundle 4.1.3). */
  BUNDLE_NO_KEYS: 'TRELLIS_X509_BUNDLE_NO_KEYS',
  /** `spiffe_sequence` / `spiffe_refresh_hint` that is not a non-negative integer. */
  BUNDLE_BAD_FIELD: 'TRELLIS_X509_BUNDLE_BAD_FIELD',
  /** An `x509-svid` entry whose `x5c` holds more than one certificate (X509-SVID 6.1). */
  BUNDLE_X5C_COUNT: 'TRELLIS_X509_BUNDLE_X5C_COUNT',
  /** An `x509-svid` entry whose `x5c` is not base64 DER of a certificate. */
  BUNDLE_BAD_X5C: 'TRELLIS_X509_BUNDLE_BAD_X5C',
  /** An entry whose JWK key parameters are not a valid public key. */
  BUNDLE_BAD_KEY: 'TRELLIS_X509_BUNDLE_BAD_KEY',
  /** An `x509-svid` entry whose JWK key is not the key of its `x5c` certificate. */
  BUNDLE_KEY_MISMATCH: 'TRELLIS_X509_BUNDLE_KEY_MISMATCH',
  /** A `jwt-svid` entry without a `kid` (JWT-SVID 6). */
  BUNDLE_MISSING_KID: 'TRELLIS_X509_BUNDLE_MISSING_KID',
  /** Two `jwt-svid` entries with the same `kid`. */
  BUNDLE_DUPLICATE_KID: 'TRELLIS_X509_BUNDLE_DUPLICATE_KID',
  /** A certificate serial that is not hex, or longer than 20 octets (RFC 5280 4.1.2.2). */
  BAD_SERIAL: 'TRELLIS_X509_BAD_SERIAL',
  /** An entry carrying private key parameters (`d`, `p`, ...): never publish or accept those. */
  BUNDLE_PRIVATE_KEY: 'TRELLIS_X509_BUNDLE_PRIVATE_KEY',
});

/** One of the {@link X509ErrorCode} values. */
export type X509ErrorCodeValue = (typeof X509ErrorCode)[keyof typeof X509ErrorCode];

/** A PEM, certificate or bundle input that cannot be read; `details` names where. */
export class X509Error extends TrellisError<X509ErrorCodeValue> {}
