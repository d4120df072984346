/**
 * Where the Kubernetes token verifier gets the issuer's public keys: a JWKS
 * file read once (`--k8s-jwks`, offline), or the API server's OIDC discovery
 * (oidc-token-keys.ts), which is fetched again when a token names a key we
 * do not have, so a signing-key rotation on the API server needs no restart.
 *
 * Also the hook for "is the pod this token is bound to still there": the
 * verifier asks it when one is given (the registry that watches pods
 * provides it); a pod it knows to be gone refuses the token.
 */
import type { JSONWebKeySet } from 'jose';

/** The issuer's current keys. */
export interface TokenKeySource {
  /** The keys to verify with now. */
  current(): Promise<JSONWebKeySet>;
  /**
   * A token named a key id the current set lacks: fetch again if the source
   * can and its rate limit allows, and resolve to the set to use (the same
   * set when nothing changed). Never rejects: a failed fetch keeps the last good set.
   */
  refresh(reason: string): Promise<JSONWebKeySet>;
}

/** A fixed key set (the `--k8s-jwks FILE` mode): refresh returns it unchanged. */
export function staticTokenKeys(jwks: JSONWebKeySet): TokenKeySource {
  const frozen = Object.freeze({ keys: [...jwks.keys] });
  return { current: async () => frozen, refresh: async () => frozen };
}

/**
 * Whether a refetch is allowed at `nowMs`: at most one per
 * `minIntervalMs` (a flood of tokens with made-up kids must not become a
 * flood of requests to the API server). Pure.
 */
export function mayRefetchKeys(nowMs: number, lastFetchStartedMs: number | null, minIntervalMs: number): boolean {
  return lastFetchStartedMs === null || nowMs - lastFetchStartedMs >= minIntervalMs;
}

/** The pod a token is bound to (its `kubernetes.io.pod` claim). */
export interface BoundPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
}

/**
 * Tells whether the pod a token is bound to still exists. `gone` refuses the
 * token (TRELLIS_CP_TOKEN_POD_GONE): the API server would refuse it too
 * (TokenReview checks the bound object), but an offline verifier only learns
 * it from a pod watch. `alive` and `unknown` (not synced yet, or not a pod
 * this source watches) let the signature and claims decide; an implementation
 * that has synced should answer `gone` for a pod it does not have, or one
 * whose uid differs (a new pod with the same name is not the bound one).
 */
export interface PodLiveness {
  podStatus(pod: BoundPod): 'alive' | 'gone' | 'unknown';
}
