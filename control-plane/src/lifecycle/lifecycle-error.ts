/**
 * The one error family of the CA lifecycle: intermediate rotation, root
 * rotation, revocation, environments, federation and `trellis check`.
 *
 * Callers match on `code` (listed in {@link LifecycleErrorCode} and
 * docs/errors.md), never on the message.
 */
import { TrellisError } from '@trellis/shared';

/** Every code a {@link LifecycleError} can carry. Stable; documented in docs/errors.md. */
export const LifecycleErrorCode = Object.freeze({
  /** A lifecycle state file (rotation state, revocation list) is unreadable JSON or has a bad field. */
  BAD_STATE: 'TRELLIS_LIFECYCLE_BAD_STATE',
  /** The root directory lacks root.pem/root.key, or they do not match. */
  ROOT_UNAVAILABLE: 'TRELLIS_LIFECYCLE_ROOT_UNAVAILABLE',
  /** No next intermediate is prepared (run `trellis ca prepare-intermediate`). */
  NO_NEXT_INTERMEDIATE: 'TRELLIS_LIFECYCLE_NO_NEXT_INTERMEDIATE',
  /** The next intermediate is prepared but not signed yet (run `trellis ca sign-intermediate`). */
  NEXT_NOT_SIGNED: 'TRELLIS_LIFECYCLE_NEXT_NOT_SIGNED',
  /** A CSR handed to `ca sign-intermediate` does not ask for a Trellis intermediate. */
  BAD_INTERMEDIATE_CSR: 'TRELLIS_LIFECYCLE_BAD_INTERMEDIATE_CSR',
  /** Root rotation material sent to the admin API is not signed by a current root (or the proof is stale or for other material), and the control plane requires that proof. */
  BAD_ROOT_PROOF: 'TRELLIS_LIFECYCLE_BAD_ROOT_PROOF',
  /** Root rotation material is unusable: the new root is not a self-signed CA of the trust domain, or the intermediate is not for the prepared key or not signed by the new root. */
  BAD_ROTATION_MATERIAL: 'TRELLIS_LIFECYCLE_BAD_ROTATION_MATERIAL',
  /** A root rotation is already in progress (or none is, for an operation that needs one). */
  ROTATION_CONFLICT: 'TRELLIS_LIFECYCLE_ROTATION_CONFLICT',
  /** A revocation names neither a valid SPIFFE ID nor a hex serial. */
  BAD_REVOCATION: 'TRELLIS_LIFECYCLE_BAD_REVOCATION',
  /** The CA refuses to issue for a revoked SPIFFE ID until the entry is lifted. */
  REVOKED: 'TRELLIS_LIFECYCLE_REVOKED',
  /** `revoke --lift` named an entry that is not on the list. */
  NOT_REVOKED: 'TRELLIS_LIFECYCLE_NOT_REVOKED',
  /** The federation config has a bad entry (path, trust domain, bundle). */
  BAD_FEDERATION: 'TRELLIS_LIFECYCLE_BAD_FEDERATION',
  /** An environment name is not a DNS label. */
  BAD_ENVIRONMENT: 'TRELLIS_LIFECYCLE_BAD_ENVIRONMENT',
});

/** One of the {@link LifecycleErrorCode} values. */
export type LifecycleErrorCodeValue = (typeof LifecycleErrorCode)[keyof typeof LifecycleErrorCode];

/** An error raised by the CA lifecycle; `code` says exactly what went wrong. */
export class LifecycleError extends TrellisError<LifecycleErrorCodeValue> {}
