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
  /** A trust bundle that cannot be used (malformed document, bad entry). */
  BAD_BUNDLE: 'TRELLIS_X509_BAD_BUNDLE',
});

/** One of the {@link X509ErrorCode} values. */
export type X509ErrorCodeValue = (typeof X509ErrorCode)[keyof typeof X509ErrorCode];

/** A PEM, certificate or bundle input that cannot be read; `details` names where. */
export class X509Error extends TrellisError {
  declare readonly code: X509ErrorCodeValue;
  constructor(code: X509ErrorCodeValue, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, details, options);
  }
}
