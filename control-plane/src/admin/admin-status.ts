/**
 * The one place where an error thrown behind the admin API becomes an HTTP
 * status. Anything not listed is a 500 whose body still carries the code,
 * so a client matches on `code`, never on the status alone.
 */
import { TrellisError } from '@trellis/shared';
import { LifecycleErrorCode } from '../lifecycle/lifecycle-error';
import { AdminErrorCode } from './admin-error';

const STATUS: Readonly<Record<string, number>> = Object.freeze({
  [AdminErrorCode.BAD_BODY]: 400,
  [AdminErrorCode.UNAUTHENTICATED]: 401,
  [AdminErrorCode.FORBIDDEN]: 403,
  [AdminErrorCode.MISDIRECTED]: 421,
  [AdminErrorCode.UNSUPPORTED_MEDIA_TYPE]: 415,
  [AdminErrorCode.NOT_FOUND]: 404,
  [AdminErrorCode.METHOD_NOT_ALLOWED]: 405,
  [LifecycleErrorCode.BAD_REVOCATION]: 400,
  [LifecycleErrorCode.BAD_ENVIRONMENT]: 400,
  [LifecycleErrorCode.NOT_REVOKED]: 404,
  [LifecycleErrorCode.ROTATION_CONFLICT]: 409,
  [LifecycleErrorCode.REVOKED]: 409,
  [LifecycleErrorCode.ROOT_UNAVAILABLE]: 422,
  [LifecycleErrorCode.NO_NEXT_INTERMEDIATE]: 409,
  [LifecycleErrorCode.NEXT_NOT_SIGNED]: 409,
  [LifecycleErrorCode.BAD_INTERMEDIATE_CSR]: 422,
  [LifecycleErrorCode.BAD_ROOT_PROOF]: 403,
  [LifecycleErrorCode.BAD_ROTATION_MATERIAL]: 422,
  [LifecycleErrorCode.BAD_FEDERATION]: 500,
  [LifecycleErrorCode.BAD_STATE]: 500,
  // The state could not be written (a full disk, the API server unreachable): retry later.
  TRELLIS_CP_STATE_WRITE_FAILED: 503,
  TRELLIS_CA_AUDIT_WRITE_FAILED: 503,
});

/** The HTTP status for `err` (500 for anything unexpected). */
export function httpStatusOf(err: unknown): number {
  return err instanceof TrellisError ? (STATUS[err.code] ?? 500) : 500;
}

/** The JSON body for `err`: code, message and details (never a stack, never a key). */
export function errorBody(err: unknown): { error: { code: string; message: string; details: Readonly<Record<string, unknown>> } } {
  if (err instanceof TrellisError) return { error: { code: err.code, message: err.message, details: err.details } };
  return { error: { code: AdminErrorCode.INTERNAL, message: (err as Error)?.message ?? String(err), details: {} } };
}
