/**
 * Which credential a discovery stream is opened with, when the open stream
 * must move to a newer one, and when none is left: the decisions of the
 * discovery client about its own credentials, as pure functions (the time
 * is a parameter).
 *
 * A stream is only as good as the credential that opened it. A join token
 * attests one issuance; a stream opened with an SVID cannot renew once that
 * SVID expired (TRELLIS_CP_CREDENTIAL_EXPIRED). So the client moves to a
 * stream authenticated with each new SVID, and when no SVID is left and the
 * control plane refuses the join token as spent or expired, nothing the
 * process holds can authenticate again.
 */
import type { BackoffOptions } from '@trellis/shared';

/** The sidecar's current SVID, for mTLS streams. */
export interface ClientCredentials {
  keyPem: string;
  chainPem: string;
  notAfter: Date;
}

/** How the open stream authenticated. */
export type StreamAuth = { readonly kind: 'token'; readonly joinToken: boolean } | { readonly kind: 'svid'; readonly notAfterMs: number };

/** An SVID must have this much life left to open a stream with: a stream opened on the brink is refused mid-handshake. */
const MIN_LIFE_TO_CONNECT_MS = 5_000;
/** The reconnect cap while the sidecar holds no valid SVID: it serves nothing until it is back. */
const NOT_SERVING_MAX_BACKOFF_MS = 5_000;
/** The control plane's refusals of a join token that no retry of it can overcome. */
const SPENT_TOKEN_CODES: ReadonlySet<string> = new Set(['TRELLIS_CP_TOKEN_SPENT', 'TRELLIS_CP_TOKEN_EXPIRED']);

/** The SVID to open a stream with at `nowMs`: `creds` when it has more than 5 s left, else null (the token). */
export function streamCredentials(creds: ClientCredentials | null, nowMs: number): ClientCredentials | null {
  return creds !== null && creds.notAfter.getTime() > nowMs + MIN_LIFE_TO_CONNECT_MS ? creds : null;
}

/** True when the open stream should move to one opened with `usable`: it was opened with a token or an SVID that expires sooner. */
export function shouldMoveStream(open: StreamAuth, usable: ClientCredentials | null): boolean {
  if (usable === null) return false;
  return open.kind === 'token' || open.notAfterMs < usable.notAfter.getTime();
}

/**
 * True when no credential is left: a stream opened with a join token was
 * refused as spent or expired, and no SVID can open one instead. A
 * Kubernetes token is not: kubelet rotates it in place, so a retry reads a
 * fresh one.
 */
export function credentialsExhausted(ended: StreamAuth, serverCode: string | null, usable: ClientCredentials | null): boolean {
  return ended.kind === 'token' && ended.joinToken && serverCode !== null && SPENT_TOKEN_CODES.has(serverCode) && usable === null;
}

/**
 * The reconnect backoff: `configured`, capped at 5 s while the sidecar holds
 * no valid SVID (`serving` false). Such a sidecar refuses all traffic, so it
 * must not sleep up to 30 s after the control plane is back.
 */
export function reconnectBackoff(configured: BackoffOptions, serving: boolean): BackoffOptions {
  if (serving || configured.maxMs <= NOT_SERVING_MAX_BACKOFF_MS) return configured;
  return { initialMs: Math.min(configured.initialMs, NOT_SERVING_MAX_BACKOFF_MS), maxMs: NOT_SERVING_MAX_BACKOFF_MS };
}
