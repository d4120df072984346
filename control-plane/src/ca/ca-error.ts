/**
 * The one error family of the certificate authority.
 *
 * Callers match on `code` (listed in {@link CaErrorCode} and docs/errors.md),
 * never on the message. The control plane maps `TRELLIS_CA_CSR_IDENTITY_MISMATCH`
 * to PERMISSION_DENIED and the other request errors to INVALID_ARGUMENT.
 */
import { TrellisError } from '@trellis/shared';

/** Every code a {@link CaError} can carry. Stable; documented in docs/errors.md. */
export const CaErrorCode = Object.freeze({
  /** A PEM input has no block of the expected type, or its base64 is broken. */
  BAD_PEM: 'TRELLIS_CA_BAD_PEM',
  /** DER bytes do not parse as the expected ASN.1 structure. */
  BAD_DER: 'TRELLIS_CA_BAD_DER',
  /** The CSR's own signature does not verify with the key it carries. */
  BAD_CSR_SIGNATURE: 'TRELLIS_CA_BAD_CSR_SIGNATURE',
  /** The key (leaf or CA) or signature algorithm is not one Trellis accepts. */
  UNSUPPORTED_KEY: 'TRELLIS_CA_UNSUPPORTED_KEY',
  /** The SPIFFE ID to issue for is invalid or outside the CA's trust domain. */
  BAD_SPIFFE_ID: 'TRELLIS_CA_BAD_SPIFFE_ID',
  /** The requested TTL is outside 1 minute .. 24 hours. */
  TTL_OUT_OF_RANGE: 'TRELLIS_CA_TTL_OUT_OF_RANGE',
  /** The CA directory does not exist. */
  DIR_MISSING: 'TRELLIS_CA_DIR_MISSING',
  /** The CA directory lacks a file the operation needs. */
  DIR_INCOMPLETE: 'TRELLIS_CA_DIR_INCOMPLETE',
  /** `ca init` found an existing CA and `--force` was not given. */
  EXISTS: 'TRELLIS_CA_EXISTS',
  /** A certificate does not match the private key it is installed with. */
  KEY_MISMATCH: 'TRELLIS_CA_KEY_MISMATCH',
  /** A chain does not verify up to the given root(s), or has an invalid CA profile. */
  CHAIN_INVALID: 'TRELLIS_CA_CHAIN_INVALID',
  /** The CSR asks for an identity other than the authorized one, or for a CA certificate. */
  CSR_IDENTITY_MISMATCH: 'TRELLIS_CA_CSR_IDENTITY_MISMATCH',
  /** The intermediate has expired (or is not yet valid): nothing can be issued. */
  INTERMEDIATE_EXPIRED: 'TRELLIS_CA_INTERMEDIATE_EXPIRED',
  /** The freshly signed certificate failed the post-signing check; it was not returned. */
  SELF_CHECK_FAILED: 'TRELLIS_CA_SELF_CHECK_FAILED',
  /** A request field is missing or of the wrong type (e.g. no requester). */
  BAD_REQUEST: 'TRELLIS_CA_BAD_REQUEST',
  /** The audit record of an issuance could not be written and flushed (a full or read-only disk, the log locked): nothing was issued. */
  AUDIT_WRITE_FAILED: 'TRELLIS_CA_AUDIT_WRITE_FAILED',
  /** `trellis audit verify` found a record that is incomplete, edited, or out of the hash chain. */
  AUDIT_CHAIN_BROKEN: 'TRELLIS_CA_AUDIT_CHAIN_BROKEN',
});

/** One of the {@link CaErrorCode} values. */
export type CaErrorCodeValue = (typeof CaErrorCode)[keyof typeof CaErrorCode];

/** An error raised by the certificate authority; `code` says exactly what went wrong. */
export class CaError extends TrellisError<CaErrorCodeValue> {}
