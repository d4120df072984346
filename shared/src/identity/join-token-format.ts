/**
 * The wire form of a Trellis join token, readable without its key: `tj1.`
 * followed by an HS256 JWT whose `sub` claim is the SPIFFE ID the token
 * obtains. The control plane mints and verifies tokens
 * (control-plane/src/auth/join-token.ts); the sidecar only reads its own
 * token's `sub` to know which identity it is about to prove, so it needs no
 * `--spiffe-id` or `--trust-domain`. What is read here is a hint about our
 * own token, never an authorization decision: the control plane verifies the
 * signature, expiry and uses before issuing anything.
 */
import { parseSpiffeId } from './spiffe-id';

/** Prefix that tells a join token from a Kubernetes token at a glance. */
export const JOIN_TOKEN_PREFIX = 'tj1.';

/** True when `token` has the join-token form (it may still be invalid). */
export function isJoinToken(token: string): boolean {
  return token.startsWith(JOIN_TOKEN_PREFIX);
}

/**
 * The SPIFFE ID a join token names (its `sub`), read WITHOUT checking the
 * signature: only for the token's own holder. Undefined when `token` is not a
 * join token, its payload is not base64url JSON, or `sub` is not a valid
 * SPIFFE ID (then the caller falls back to its other sources).
 */
export function joinTokenSpiffeId(token: string): string | undefined {
  const t = token.trim();
  if (!isJoinToken(t)) return undefined;
  const parts = t.slice(JOIN_TOKEN_PREFIX.length).split('.');
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1]!)) return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  const sub = payload !== null && typeof payload === 'object' ? (payload as Record<string, unknown>)['sub'] : undefined;
  if (typeof sub !== 'string') return undefined;
  try {
    return parseSpiffeId(sub).toString();
  } catch {
    return undefined;
  }
}
