/**
 * Errors of the sidecar's discovery client. `code` is stable; for a refusal
 * by the control plane, `details.grpcCode` and `details.serverCode` carry the
 * gRPC status and the control plane's own code (e.g. TRELLIS_CP_CSR_IDENTITY_MISMATCH).
 */
import { TrellisError } from '@trellis/shared';

/** Stable codes of the discovery client. */
export const DiscoveryErrorCode = Object.freeze({
  /** The control plane refused a request (see details.serverCode). */
  REFUSED: 'TRELLIS_DISCOVERY_REFUSED',
  /** The client was stopped while a request was pending. */
  STOPPED: 'TRELLIS_DISCOVERY_STOPPED',
  /** Options passed to the client are invalid. */
  BAD_OPTIONS: 'TRELLIS_DISCOVERY_BAD_OPTIONS',
  /** The control plane's certificate is not the expected SPIFFE ID. */
  SERVER_IDENTITY: 'TRELLIS_DISCOVERY_SERVER_IDENTITY',
  /** The control plane sent a gRPC frame we cannot accept (compressed, or over the size limit). */
  BAD_FRAME: 'TRELLIS_DISCOVERY_BAD_FRAME',
  /** Call metadata (e.g. the bearer token) is not a valid gRPC header; nothing is sent. */
  BAD_METADATA: 'TRELLIS_DISCOVERY_BAD_METADATA',
});

/** An error raised by the discovery client. */
export class DiscoveryError extends TrellisError {}
