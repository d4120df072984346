/**
 * The control plane's error family. Every refusal on the discovery stream and
 * every config problem is a ControlPlaneError with a stable code (listed in
 * docs/errors.md); `grpc-status.ts` maps codes to gRPC status in one place.
 */
import { TrellisError } from '@trellis/shared';

/** Stable codes of the control-plane family. */
export const ControlPlaneErrorCode = Object.freeze({
  TOKEN_MISSING: 'TRELLIS_CP_TOKEN_MISSING',
  TOKEN_MALFORMED: 'TRELLIS_CP_TOKEN_MALFORMED',
  TOKEN_BAD_SIGNATURE: 'TRELLIS_CP_TOKEN_BAD_SIGNATURE',
  TOKEN_EXPIRED: 'TRELLIS_CP_TOKEN_EXPIRED',
  TOKEN_NOT_YET_VALID: 'TRELLIS_CP_TOKEN_NOT_YET_VALID',
  TOKEN_WRONG_AUDIENCE: 'TRELLIS_CP_TOKEN_WRONG_AUDIENCE',
  TOKEN_WRONG_ISSUER: 'TRELLIS_CP_TOKEN_WRONG_ISSUER',
  TOKEN_BAD_CLAIMS: 'TRELLIS_CP_TOKEN_BAD_CLAIMS',
  TOKEN_SPENT: 'TRELLIS_CP_TOKEN_SPENT',
  TOKEN_POD_GONE: 'TRELLIS_CP_TOKEN_POD_GONE',
  KUBERNETES_AUTH_DISABLED: 'TRELLIS_CP_KUBERNETES_AUTH_DISABLED',
  CERT_REJECTED: 'TRELLIS_CP_CERT_REJECTED',
  CREDENTIAL_EXPIRED: 'TRELLIS_CP_CREDENTIAL_EXPIRED',
  IDENTITY_MISMATCH: 'TRELLIS_CP_IDENTITY_MISMATCH',
  ATTESTATION_MISMATCH: 'TRELLIS_CP_ATTESTATION_MISMATCH',
  NODE_TOO_LARGE: 'TRELLIS_CP_NODE_TOO_LARGE',
  STREAM_LIMIT: 'TRELLIS_CP_STREAM_LIMIT',
  TOKEN_STREAM_SPENT: 'TRELLIS_CP_TOKEN_STREAM_SPENT',
  CSR_IDENTITY_MISMATCH: 'TRELLIS_CP_CSR_IDENTITY_MISMATCH',
  CSR_MALFORMED: 'TRELLIS_CP_CSR_MALFORMED',
  OVERLOADED: 'TRELLIS_CP_OVERLOADED',
  UNKNOWN_TYPE: 'TRELLIS_CP_UNKNOWN_TYPE',
  UNKNOWN_NONCE: 'TRELLIS_CP_UNKNOWN_NONCE',
  BAD_REQUEST: 'TRELLIS_CP_BAD_REQUEST',
  IDLE_STREAM: 'TRELLIS_CP_IDLE_STREAM',
  REQUEST_FLOOD: 'TRELLIS_CP_REQUEST_FLOOD',
  MESSAGE_TOO_LARGE: 'TRELLIS_CP_MESSAGE_TOO_LARGE',
  SHUTTING_DOWN: 'TRELLIS_CP_SHUTTING_DOWN',
  CONFIG_INVALID: 'TRELLIS_CP_CONFIG_INVALID',
  JOIN_TOKEN_STORE: 'TRELLIS_CP_JOIN_TOKEN_STORE',
  ATTESTATION_STORE: 'TRELLIS_CP_ATTESTATION_STORE',
});

/** One of the codes above. */
export type ControlPlaneErrorCodeValue = (typeof ControlPlaneErrorCode)[keyof typeof ControlPlaneErrorCode];

/** A refusal or failure raised by the control plane on purpose. */
export class ControlPlaneError extends TrellisError {
  constructor(code: ControlPlaneErrorCodeValue, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, details, options);
  }
}
