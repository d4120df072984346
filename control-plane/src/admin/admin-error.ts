/**
 * The error family of the control plane's admin API: a request the admin
 * server refuses (no admin identity, a foreign Host, not JSON) or cannot act
 * on (bad JSON, a field of the wrong type, an unknown path or method), and
 * the client side's failures (no credentials, no answer). Lifecycle
 * refusals keep their own LifecycleError codes; {@link httpStatusOf} maps
 * both families to HTTP statuses in one place.
 */
import { TrellisError } from '@trellis/shared';

/** Every code an {@link AdminError} can carry. Stable; documented in docs/errors.md. */
export const AdminErrorCode = Object.freeze({
  /** The request body is not JSON, not an object, too large, or a field is missing or of the wrong type (`details.field`). */
  BAD_BODY: 'TRELLIS_ADMIN_BAD_BODY',
  /** No such admin path. */
  NOT_FOUND: 'TRELLIS_ADMIN_NOT_FOUND',
  /** The path exists but not for this HTTP method. */
  METHOD_NOT_ALLOWED: 'TRELLIS_ADMIN_METHOD_NOT_ALLOWED',
  /** HTTP 401: no client certificate, or one that does not verify as an X.509-SVID of the mesh (`details.reason`). */
  UNAUTHENTICATED: 'TRELLIS_ADMIN_UNAUTHENTICATED',
  /** HTTP 403: a verified SVID that is not on the admin allow-list, or whose serial or SPIFFE ID is revoked (`details.spiffeId`). */
  FORBIDDEN: 'TRELLIS_ADMIN_FORBIDDEN',
  /** HTTP 421: the request's Host is not an address this admin endpoint answers to (`details.accepted`). */
  MISDIRECTED: 'TRELLIS_ADMIN_MISDIRECTED',
  /** HTTP 415: a state-changing request whose Content-Type is not application/json. */
  UNSUPPORTED_MEDIA_TYPE: 'TRELLIS_ADMIN_UNSUPPORTED_MEDIA_TYPE',
  /** CLI: a command that talks to --admin was given no admin credentials (--admin-credentials DIR or TRELLIS_ADMIN_CREDENTIALS). */
  CREDENTIALS_MISSING: 'TRELLIS_ADMIN_CREDENTIALS_MISSING',
  /** CLI: the admin credentials dir is unreadable, its key does not match, or its certificate has expired (`details.file`). */
  BAD_CREDENTIALS: 'TRELLIS_ADMIN_BAD_CREDENTIALS',
  /** HTTP 500: the step failed in a way no other code covers (the message says how); the state is as it was or as the step left it. */
  INTERNAL: 'TRELLIS_ADMIN_INTERNAL',
  /** The client could not reach the admin endpoint, or it answered something that is not the admin API's JSON. */
  UNREACHABLE: 'TRELLIS_ADMIN_UNREACHABLE',
  /** The admin endpoint refused the request; `details.serverCode` is the server's code, `details.status` the HTTP status. */
  REFUSED: 'TRELLIS_ADMIN_REFUSED',
});

/** One of the {@link AdminErrorCode} values. */
export type AdminErrorCodeValue = (typeof AdminErrorCode)[keyof typeof AdminErrorCode];

/** An error of the admin API; `code` says exactly what went wrong. */
export class AdminError extends TrellisError<AdminErrorCodeValue> {}
