/**
 * The injector's error family. Callers match on `code` (listed in
 * docs/errors.md, section "Injector"), never on the message.
 */
import { TrellisError } from '@trellis/shared';

/** Stable codes raised by the injector, the offline injection and the redirect step. */
export type InjectorErrorCode =
  | 'TRELLIS_INJECTOR_BAD_CONFIG'
  | 'TRELLIS_INJECTOR_BAD_ANNOTATION'
  | 'TRELLIS_INJECTOR_BAD_MANIFEST'
  | 'TRELLIS_INJECTOR_BAD_REVIEW'
  | 'TRELLIS_INJECTOR_TOO_LARGE'
  | 'TRELLIS_INJECTOR_BAD_CERT'
  | 'TRELLIS_INJECTOR_BAD_REDIRECT'
  | 'TRELLIS_INJECTOR_IPTABLES_FAILED';

/** An error from the injector family; `code` says exactly what went wrong. */
export class InjectorError extends TrellisError<InjectorErrorCode> {}
