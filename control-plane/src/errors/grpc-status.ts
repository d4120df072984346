/**
 * The one place where domain error codes become gRPC status codes. Anything
 * not listed (a bug, an I/O failure) is INTERNAL with a generic message so no
 * internals leak to a workload.
 */
import { status, Metadata, type StatusObject } from '@grpc/grpc-js';
import { TrellisError } from '@trellis/shared';

const BY_CODE: Readonly<Record<string, status>> = Object.freeze({
  TRELLIS_CP_TOKEN_MISSING: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_MALFORMED: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_BAD_SIGNATURE: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_EXPIRED: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_NOT_YET_VALID: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_WRONG_AUDIENCE: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_WRONG_ISSUER: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_BAD_CLAIMS: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_SPENT: status.UNAUTHENTICATED,
  TRELLIS_CP_KUBERNETES_AUTH_DISABLED: status.UNAUTHENTICATED,
  TRELLIS_CP_TOKEN_POD_GONE: status.UNAUTHENTICATED,
  // Not yet synced with the API server: retry (the sidecar does, after trellis-retry-after-ms).
  TRELLIS_CP_REGISTRY_NOT_SYNCED: status.UNAVAILABLE,
  TRELLIS_CP_CERT_REJECTED: status.UNAUTHENTICATED,
  TRELLIS_CP_CREDENTIAL_EXPIRED: status.UNAUTHENTICATED,
  TRELLIS_CP_IDENTITY_MISMATCH: status.PERMISSION_DENIED,
  TRELLIS_CP_ATTESTATION_MISMATCH: status.PERMISSION_DENIED,
  TRELLIS_CP_NODE_TOO_LARGE: status.INVALID_ARGUMENT,
  TRELLIS_CP_STREAM_LIMIT: status.RESOURCE_EXHAUSTED,
  // The sidecar keeps its CSR on this status and re-sends it on a new stream, authenticated by its SVID.
  TRELLIS_CP_TOKEN_STREAM_SPENT: status.FAILED_PRECONDITION,
  TRELLIS_CP_CSR_IDENTITY_MISMATCH: status.PERMISSION_DENIED,
  TRELLIS_CP_CSR_MALFORMED: status.INVALID_ARGUMENT,
  TRELLIS_CP_OVERLOADED: status.RESOURCE_EXHAUSTED,
  TRELLIS_CP_UNKNOWN_TYPE: status.INVALID_ARGUMENT,
  TRELLIS_CP_UNKNOWN_NONCE: status.INVALID_ARGUMENT,
  TRELLIS_CP_BAD_REQUEST: status.INVALID_ARGUMENT,
  TRELLIS_CP_BAD_REPORT: status.INVALID_ARGUMENT,
  TRELLIS_CP_IDLE_STREAM: status.DEADLINE_EXCEEDED,
  TRELLIS_CP_REQUEST_FLOOD: status.RESOURCE_EXHAUSTED,
  TRELLIS_CP_MESSAGE_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  TRELLIS_CP_SHUTTING_DOWN: status.UNAVAILABLE,
  // The use of a join token could not be recorded (a full disk, the API server down): nothing was spent; retry.
  TRELLIS_CP_JOIN_TOKEN_STORE: status.UNAVAILABLE,
  // The CA's own refusals (control-plane/src/ca/ca-error.ts).
  TRELLIS_CA_CSR_IDENTITY_MISMATCH: status.PERMISSION_DENIED,
  TRELLIS_CA_BAD_SPIFFE_ID: status.PERMISSION_DENIED,
  TRELLIS_CA_BAD_CSR_SIGNATURE: status.INVALID_ARGUMENT,
  TRELLIS_CA_BAD_DER: status.INVALID_ARGUMENT,
  TRELLIS_CA_BAD_PEM: status.INVALID_ARGUMENT,
  TRELLIS_CA_UNSUPPORTED_KEY: status.INVALID_ARGUMENT,
  TRELLIS_CA_TTL_OUT_OF_RANGE: status.INVALID_ARGUMENT,
  TRELLIS_CA_BAD_REQUEST: status.INVALID_ARGUMENT,
  TRELLIS_CA_INTERMEDIATE_EXPIRED: status.UNAVAILABLE,
  // The audit record could not be made durable (a full disk): nothing was issued; the sidecar retries.
  TRELLIS_CA_AUDIT_WRITE_FAILED: status.UNAVAILABLE,
  // The reloading CA refuses revoked identities (control-plane/src/lifecycle).
  TRELLIS_LIFECYCLE_REVOKED: status.PERMISSION_DENIED,
});

/** Metadata key carrying the stable Trellis error code on a failed call. */
export const ERROR_CODE_METADATA_KEY = 'trellis-error-code';
/** Metadata key carrying a retry hint in milliseconds (RESOURCE_EXHAUSTED). */
export const RETRY_AFTER_METADATA_KEY = 'trellis-retry-after-ms';

/** The gRPC status for a Trellis error code. */
export function grpcStatusForCode(code: string): status {
  const s = BY_CODE[code];
  if (s !== undefined) return s;
  return status.INTERNAL;
}

/** Turns any thrown value into the status a workload sees, with the code in trailers. */
export function toGrpcStatus(err: unknown): Partial<StatusObject> & { code: status } {
  const metadata = new Metadata();
  if (err instanceof TrellisError) {
    metadata.set(ERROR_CODE_METADATA_KEY, err.code);
    const retry = err.details['retryAfterMs'];
    if (typeof retry === 'number') metadata.set(RETRY_AFTER_METADATA_KEY, String(retry));
    const code = grpcStatusForCode(err.code);
    const details = code === status.INTERNAL ? `internal error [${err.code}]` : `${err.message} [${err.code}]`;
    return { code, details, metadata };
  }
  metadata.set(ERROR_CODE_METADATA_KEY, 'TRELLIS_CP_INTERNAL');
  return { code: status.INTERNAL, details: 'internal error', metadata };
}
