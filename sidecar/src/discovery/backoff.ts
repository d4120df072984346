/** Reconnect backoff: the one implementation lives in @trellis/shared (util/backoff.ts). */
export { backoffDelayMs, DEFAULT_BACKOFF, type BackoffOptions } from '@trellis/shared';
