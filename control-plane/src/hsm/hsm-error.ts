/**
 * The one error family of the HSM (PKCS#11) signer.
 *
 * Callers match on `code` (listed in {@link HsmErrorCode} and docs/errors.md),
 * never on the message. Messages name the file, field or token involved and
 * never contain the PIN.
 */
import { TrellisError } from '@trellis/shared';

/** Every code an {@link HsmError} can carry. Stable; documented in docs/errors.md. */
export const HsmErrorCode = Object.freeze({
  /** `signer.yaml` is unreadable, not YAML, or has missing/invalid fields (every problem is listed). */
  BAD_CONFIG: 'TRELLIS_HSM_BAD_CONFIG',
  /** The CA dir has no `signer.yaml` but the operation needs the HSM signer. */
  NOT_CONFIGURED: 'TRELLIS_HSM_NOT_CONFIGURED',
  /** The PIN file cannot be read or is empty, or the PIN environment variable is unset or empty. */
  PIN_UNAVAILABLE: 'TRELLIS_HSM_PIN_UNAVAILABLE',
  /** The `pkcs11js` binding is not installed or its native part failed to load. */
  BINDING_UNAVAILABLE: 'TRELLIS_HSM_BINDING_UNAVAILABLE',
  /** The PKCS#11 module (shared library) cannot be loaded or initialised. */
  MODULE_FAILED: 'TRELLIS_HSM_MODULE_FAILED',
  /** No initialised token carries the configured label (or the slot does not exist). */
  TOKEN_NOT_FOUND: 'TRELLIS_HSM_TOKEN_NOT_FOUND',
  /** The token refused the PIN (incorrect, locked or expired). */
  LOGIN_FAILED: 'TRELLIS_HSM_LOGIN_FAILED',
  /** No private/public key pair with the configured label (and id) is on the token. */
  KEY_NOT_FOUND: 'TRELLIS_HSM_KEY_NOT_FOUND',
  /** More than one key pair matches the configured label (and id); set `keyId`. */
  KEY_AMBIGUOUS: 'TRELLIS_HSM_KEY_AMBIGUOUS',
  /** `trellis hsm keygen` found a `signer.yaml` already in the CA dir and `--force` was not given. */
  CONFIG_EXISTS: 'TRELLIS_HSM_CONFIG_EXISTS',
  /** Key generation refused: a key with that label already exists on the token. */
  KEY_EXISTS: 'TRELLIS_HSM_KEY_EXISTS',
  /** The private key is extractable or not sensitive; Trellis refuses to sign with it (fail closed). */
  KEY_EXPORTABLE: 'TRELLIS_HSM_KEY_EXPORTABLE',
  /** The token key is not EC P-256/P-384 or RSA 2048..4096. */
  UNSUPPORTED_KEY: 'TRELLIS_HSM_UNSUPPORTED_KEY',
  /** After a reconnect the label names a different key pair than the one the signer opened with; it refuses to sign (fail closed). */
  KEY_CHANGED: 'TRELLIS_HSM_KEY_CHANGED',
  /** The token failed a signing operation. */
  SIGN_FAILED: 'TRELLIS_HSM_SIGN_FAILED',
  /** The signer was used after `close()`. */
  CLOSED: 'TRELLIS_HSM_CLOSED',
});

/** One of the {@link HsmErrorCode} values. */
export type HsmErrorCodeValue = (typeof HsmErrorCode)[keyof typeof HsmErrorCode];

/** An error raised by the HSM signer; `code` says exactly what went wrong. */
export class HsmError extends TrellisError<HsmErrorCodeValue> {}
