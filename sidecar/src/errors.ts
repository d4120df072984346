/**
 * The sidecar's error family. Callers match on `code` (documented in
 * docs/errors.md under "Sidecar"), never on the message.
 */
import { TrellisError } from '@trellis/shared';

/** Stable codes for everything the sidecar refuses or fails at. */
export type SidecarErrorCode =
  | 'TRELLIS_SIDECAR_BAD_CONFIG'
  | 'TRELLIS_SIDECAR_BAD_CREDENTIALS'
  | 'TRELLIS_SIDECAR_BAD_BUNDLE'
  | 'TRELLIS_SIDECAR_BAD_PEER_AUTH'
  | 'TRELLIS_SIDECAR_BAD_POLICY'
  | 'TRELLIS_SIDECAR_BAD_REVOCATIONS'
  | 'TRELLIS_SIDECAR_BAD_ENDPOINTS'
  | 'TRELLIS_SIDECAR_KEY_MISMATCH'
  | 'TRELLIS_SIDECAR_ISSUE_FAILED'
  | 'TRELLIS_SIDECAR_LISTEN_FAILED'
  | 'TRELLIS_SIDECAR_NATIVE_RELAY_MISSING'
  | 'TRELLIS_SIDECAR_NO_CREDENTIAL';

/** An error raised by the sidecar; `code` says exactly what went wrong. */
export class SidecarError extends TrellisError {
  constructor(code: SidecarErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, details, options);
  }
}
