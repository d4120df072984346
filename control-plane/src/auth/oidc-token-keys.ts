/**
 * The API server's ServiceAccount token keys from its OIDC discovery:
 * `GET /.well-known/openid-configuration` names the issuer, and the keys come
 * from `GET /openid/v1/jwks`, both fetched from the API server with the
 * control plane's own credentials (any ServiceAccount may read them through
 * the default `system:service-account-issuer-discovery` binding). The
 * discovery's `jwks_uri` is for relying parties outside the cluster and may
 * name a host we cannot reach (an in-cluster DNS name, a public bucket); the
 * API server itself always serves the same keys at /openid/v1/jwks, so that
 * is where we read them.
 *
 * Keys are cached; a token with an unknown `kid` triggers a refetch, at most
 * once per `minRefreshIntervalMs` (default 30 s) and one at a time, so a
 * rotation on the API server is picked up without a restart and made-up kids
 * cannot flood the API server. A failed refetch keeps the last good keys.
 * The HTTP call is a collaborator (`fetchJson`): this file imports no client.
 */
import type { JSONWebKeySet } from 'jose';
import type { Logger } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { mayRefetchKeys, type TokenKeySource } from './token-keys';

/** The API server paths read. */
export const OIDC_DISCOVERY_PATH = '/.well-known/openid-configuration';
export const API_SERVER_JWKS_PATH = '/openid/v1/jwks';

/** Collaborators. */
export interface OidcTokenKeysDeps {
  /** GET `path` on the API server with our credentials; resolves to the parsed JSON. */
  fetchJson(path: string): Promise<unknown>;
  logger: Logger;
  nowMs?: () => number;
  /** Least time between two refetches (default 30 s). */
  minRefreshIntervalMs?: number;
}

/** The discovered issuer and a key source that follows the API server's rotations. */
export interface OidcTokenKeys extends TokenKeySource {
  /** The issuer the API server's discovery names (the `iss` its tokens carry). */
  readonly issuer: string;
  /** The jwks_uri it advertises (for logs; keys are read from /openid/v1/jwks). */
  readonly jwksUri: string;
  /** Fetch attempts made so far (the first included). */
  fetches(): number;
}

/** Checks a JWKS document: an object with a `keys` array of objects. */
export function parseJwks(doc: unknown, source: string): JSONWebKeySet {
  if (!doc || typeof doc !== 'object' || !Array.isArray((doc as { keys?: unknown }).keys) || (doc as { keys: unknown[] }).keys.some((k) => !k || typeof k !== 'object')) {
    throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `${source}: /keys: must be an array of JWKs`);
  }
  return Object.freeze({ keys: [...(doc as JSONWebKeySet).keys] });
}

/**
 * Fetches discovery and the keys once (throws TRELLIS_CP_CONFIG_INVALID when
 * either is unusable, so a misconfigured control plane fails at start) and
 * returns the source.
 */
export async function discoverOidcTokenKeys(deps: OidcTokenKeysDeps): Promise<OidcTokenKeys> {
  const now = deps.nowMs ?? Date.now;
  const minInterval = deps.minRefreshIntervalMs ?? 30_000;
  let discovery: { issuer?: unknown; jwks_uri?: unknown };
  try {
    discovery = (await deps.fetchJson(OIDC_DISCOVERY_PATH)) as typeof discovery;
  } catch (err) {
    throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `API server ${OIDC_DISCOVERY_PATH}: ${(err as Error).message}`, {}, { cause: err });
  }
  if (!discovery || typeof discovery.issuer !== 'string' || discovery.issuer === '') {
    throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `API server ${OIDC_DISCOVERY_PATH}: no issuer (is service-account issuer discovery enabled?)`);
  }
  const fetchKeys = async (): Promise<JSONWebKeySet> => parseJwks(await deps.fetchJson(API_SERVER_JWKS_PATH), `API server ${API_SERVER_JWKS_PATH}`);
  let fetchCount = 1;
  let lastFetchMs: number | null = now();
  let keys: JSONWebKeySet;
  try {
    keys = await fetchKeys();
  } catch (err) {
    if (err instanceof ControlPlaneError) throw err;
    throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, `API server ${API_SERVER_JWKS_PATH}: ${(err as Error).message}`, {}, { cause: err });
  }
  let inflight: Promise<JSONWebKeySet> | null = null;
  deps.logger.info('kubernetes token keys fetched', { issuer: discovery.issuer, keys: keys.keys.length, kids: keys.keys.map((k) => k.kid) });
  return {
    issuer: discovery.issuer,
    jwksUri: typeof discovery.jwks_uri === 'string' ? discovery.jwks_uri : '',
    fetches: () => fetchCount,
    current: async () => keys,
    refresh(reason) {
      if (inflight) return inflight;
      if (!mayRefetchKeys(now(), lastFetchMs, minInterval)) return Promise.resolve(keys);
      lastFetchMs = now();
      fetchCount++;
      inflight = fetchKeys()
        .then((next) => {
          const before = JSON.stringify(keys);
          keys = next;
          if (JSON.stringify(next) !== before) deps.logger.info('kubernetes token keys changed', { reason, keys: next.keys.length, kids: next.keys.map((k) => k.kid) });
          return keys;
        })
        .catch((err: unknown) => {
          deps.logger.warn('kubernetes token keys not refetched; keeping the last good set', { reason, error: err });
          return keys;
        })
        .finally(() => {
          inflight = null;
        });
      return inflight;
    },
  };
}
