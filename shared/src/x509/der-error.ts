/**
 * The error family of the DER reader and writer.
 */
import { TrellisError } from '../errors/trellis-error';

/** Every code a {@link DerError} can carry. Stable; documented in docs/errors.md. */
export const DerErrorCode = Object.freeze({
  /** The input ends before the TLV it announces (header or contents). */
  TRUNCATED: 'TRELLIS_DER_TRUNCATED',
  /** Indefinite length (0x80): BER, not DER. */
  INDEFINITE_LENGTH: 'TRELLIS_DER_INDEFINITE_LENGTH',
  /** A length encoded with more bytes than needed (DER requires the minimal form). */
  NON_MINIMAL_LENGTH: 'TRELLIS_DER_NON_MINIMAL_LENGTH',
  /** A length that does not fit in 4 bytes. */
  LENGTH_TOO_LARGE: 'TRELLIS_DER_LENGTH_TOO_LARGE',
  /** A high-tag-number form tag (low bits 0x1f); X.509 never needs one. */
  HIGH_TAG_NUMBER: 'TRELLIS_DER_HIGH_TAG_NUMBER',
  /** A TLV with another tag than the structure requires at that place. */
  UNEXPECTED_TAG: 'TRELLIS_DER_UNEXPECTED_TAG',
  /** Bytes left over after a complete structure. */
  TRAILING_DATA: 'TRELLIS_DER_TRAILING_DATA',
  /** An INTEGER that is empty or not minimally encoded. */
  BAD_INTEGER: 'TRELLIS_DER_BAD_INTEGER',
  /** An INTEGER too large (or negative) for the number it is read into. */
  INTEGER_OUT_OF_RANGE: 'TRELLIS_DER_INTEGER_OUT_OF_RANGE',
  /** A malformed OBJECT IDENTIFIER (encoded or dotted). */
  BAD_OID: 'TRELLIS_DER_BAD_OID',
  /** A malformed BIT STRING (unused-bits byte > 7, or set padding bits). */
  BAD_BIT_STRING: 'TRELLIS_DER_BAD_BIT_STRING',
  /** A malformed UTCTime/GeneralizedTime, or a date the writer cannot encode. */
  BAD_TIME: 'TRELLIS_DER_BAD_TIME',
  /** A BOOLEAN whose content is not exactly 0x00 or 0xFF. */
  BAD_BOOLEAN: 'TRELLIS_DER_BAD_BOOLEAN',
  /** A string whose bytes are not valid for its type (e.g. IA5String > 0x7f, bad UTF-8). */
  BAD_STRING: 'TRELLIS_DER_BAD_STRING',
  /** A NULL with contents. */
  BAD_NULL: 'TRELLIS_DER_BAD_NULL',
  /** A writer argument out of range (tag number, unused bits...). */
  BAD_ARGUMENT: 'TRELLIS_DER_BAD_ARGUMENT',
});

/** One of the {@link DerErrorCode} values. */
export type DerErrorCodeValue = (typeof DerErrorCode)[keyof typeof DerErrorCode];

/**
 * Malformed or non-DER input (reader) or an unencodable value (writer).
 * `details.offset` is the byte offset of the offending TLV when known.
 */
export class DerError extends TrellisError<DerErrorCodeValue> {}
