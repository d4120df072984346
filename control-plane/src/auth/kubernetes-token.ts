/**
 * Verifies Kubernetes projected ServiceAccount tokens offline, against the
 * cluster issuer's public keys (a JWKS file, or the API server's OIDC
 * discovery: token-keys.ts), as the API server's TokenReview would:
 * signature, issuer, audience, expiry and not-before. A token whose `kid` is
 * not in the current keys makes the key source refetch (rate-limited) once
 * before it is refused, so the API server's key rotations need no restart.
 * `system:serviceaccount:NS:SA` becomes `spiffe://<td>/ns/NS/sa/SA`.
 * With the API-server registry (`pods`), a token bound to a pod (the
 * `kubernetes.io.pod` claim with its uid, as every kubelet-projected token
 * is) attests that pod: its labels and Services then come from the API
 * server, and a token bound to a pod that is gone is refused. Otherwise the
 * token attests the identity (and so its namespace) and nothing more.
 * Fails closed: any doubt is an UNAUTHENTICATED error carrying the reason.
 */
import { errors as joseErrors, importJWK, jwtVerify, type JSONWebKeySet, type JWTHeaderParameters, type JWTPayload, type KeyLike } from 'jose';
import { kubernetesSpiffeId } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { fromKubernetesPod, identityOnly } from '../attestation/workload-attestation';
import type { AuthenticatedPeer } from './authenticated-peer';
import { staticTokenKeys, type PodLiveness, type TokenKeySource } from './token-keys';

/** What the control plane is configured to accept. */
export interface KubernetesTokenSettings {
  issuer: string;
  audience: string;
  /** The issuer's keys as a fixed set (`--k8s-jwks FILE`); or give `keys`. */
  jwks?: JSONWebKeySet;
  /** Where the keys come from (wins over `jwks`); e.g. the API server's OIDC discovery. */
  keys?: TokenKeySource;
  /**
   * The API server's pods (the registry). When given, a token bound to a pod
   * this says is gone is refused (TOKEN_POD_GONE), and one bound to a pod
   * attests that pod (`kubernetes-pod`).
   */
  pods?: PodLiveness;
  /** Allowed clock skew in seconds (default 30). */
  clockToleranceSeconds?: number;
}

/** Verifies one token at `nowMs`. */
export type KubernetesTokenVerifier = (token: string, nowMs: number) => Promise<AuthenticatedPeer>;

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384'];

/** Builds a verifier for `trustDomain` from the settings (the JWKS is parsed once). */
export function createKubernetesTokenVerifier(settings: KubernetesTokenSettings, trustDomain: string): KubernetesTokenVerifier {
  if (!settings.keys && !settings.jwks) throw new ControlPlaneError(ControlPlaneErrorCode.CONFIG_INVALID, 'kubernetes token verification needs keys: a JWKS file or the API server');
  const keys = keyResolver(settings.keys ?? staticTokenKeys(settings.jwks!));
  return async (token, nowMs) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: settings.issuer,
        audience: settings.audience,
        algorithms: ALGORITHMS,
        currentDate: new Date(nowMs),
        clockTolerance: settings.clockToleranceSeconds ?? 30,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw fromJose(err);
    }
    const sub = String(payload.sub);
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(sub);
    if (!m) throw claims(`sub "${sub}" is not system:serviceaccount:NAMESPACE:NAME`);
    const [, namespace, serviceAccount] = m as unknown as [string, string, string];
    const k8s = (payload['kubernetes.io'] ?? {}) as { namespace?: string; serviceaccount?: { name?: string; uid?: string }; pod?: { name?: string; uid?: string } };
    // When the kubernetes.io claim is present it must agree with sub: a token
    // whose claims disagree was not minted by a real API server.
    if (k8s.namespace !== undefined && k8s.namespace !== namespace) throw claims('kubernetes.io.namespace disagrees with sub');
    if (k8s.serviceaccount?.name !== undefined && k8s.serviceaccount.name !== serviceAccount) throw claims('kubernetes.io.serviceaccount.name disagrees with sub');
    if (settings.pods && k8s.pod?.name) {
      const pod = { namespace, name: k8s.pod.name, ...(k8s.pod.uid ? { uid: k8s.pod.uid } : {}) };
      if (settings.pods.podStatus(pod) === 'gone') {
        throw new ControlPlaneError(ControlPlaneErrorCode.TOKEN_POD_GONE, `kubernetes token: bound to pod ${namespace}/${pod.name}, which no longer exists`);
      }
    }
    let spiffeId: string;
    try {
      spiffeId = kubernetesSpiffeId(trustDomain, namespace, serviceAccount).toString();
    } catch (err) {
      throw claims(`sub does not map to a SPIFFE ID: ${(err as Error).message}`);
    }
    return {
      spiffeId,
      method: 'kubernetes-token',
      expiresAtMs: (payload.exp as number) * 1000,
      audit: {
        namespace,
        serviceAccount,
        serviceAccountUid: k8s.serviceaccount?.uid,
        podName: k8s.pod?.name,
        podUid: k8s.pod?.uid,
        tokenId: payload.jti,
      },
      attestation: settings.pods && k8s.pod?.name && k8s.pod.uid ? fromKubernetesPod(spiffeId, { namespace, name: k8s.pod.name, uid: k8s.pod.uid }) : identityOnly(spiffeId),
    };
  };
}

type ImportedKey = { kid?: string; alg: string; key: KeyLike | Uint8Array };

/**
 * Imports each key set once (on first use) and picks the key by `kid` and
 * `alg`, so verifying a token costs one signature check, not a key import.
 * A `kid` the set lacks asks the source to refetch (it rate-limits) and the
 * lookup runs once more on what it returns.
 */
function keyResolver(source: TokenKeySource): (header: JWTHeaderParameters) => Promise<KeyLike | Uint8Array> {
  const imported = new WeakMap<JSONWebKeySet, Promise<ImportedKey[]>>();
  const importSet = (jwks: JSONWebKeySet): Promise<ImportedKey[]> => {
    let p = imported.get(jwks);
    if (!p) {
      p = (async () => {
        const out: ImportedKey[] = [];
        for (const jwk of jwks.keys) {
          if (jwk.use !== undefined && jwk.use !== 'sig') continue;
          const algs = jwk.alg ? [jwk.alg] : jwk.kty === 'RSA' ? ['RS256'] : jwk.kty === 'EC' ? [jwk.crv === 'P-384' ? 'ES384' : 'ES256'] : [];
          for (const alg of algs) {
            if (!ALGORITHMS.includes(alg)) continue;
            out.push({ kid: jwk.kid, alg, key: await importJWK(jwk, alg) });
          }
        }
        return out;
      })();
      imported.set(jwks, p);
    }
    return p;
  };
  const pick = (keys: ImportedKey[], header: JWTHeaderParameters): ImportedKey[] => keys.filter((k) => k.alg === header.alg && (header.kid === undefined || k.kid === header.kid));
  return async (header) => {
    let candidates = pick(await importSet(await source.current()), header);
    if (candidates.length === 0 && header.kid !== undefined) {
      candidates = pick(await importSet(await source.refresh(`token names unknown kid ${header.kid}`)), header);
    }
    if (candidates.length !== 1) throw new joseErrors.JWKSNoMatchingKey(candidates.length === 0 ? 'no key in the JWKS matches the token header' : 'several keys match the token header; give them kids');
    return candidates[0]!.key;
  };
}

function claims(reason: string): ControlPlaneError {
  return new ControlPlaneError(ControlPlaneErrorCode.TOKEN_BAD_CLAIMS, `kubernetes token: ${reason}`);
}

/** Translates jose's failures into our codes, keeping the reason. */
function fromJose(err: unknown): ControlPlaneError {
  const C = ControlPlaneErrorCode;
  const why = (err as Error).message;
  if (err instanceof joseErrors.JWTExpired) return new ControlPlaneError(C.TOKEN_EXPIRED, `kubernetes token expired: ${why}`);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return new ControlPlaneError(C.TOKEN_WRONG_AUDIENCE, `kubernetes token: wrong audience: ${why}`);
    if (err.claim === 'iss') return new ControlPlaneError(C.TOKEN_WRONG_ISSUER, `kubernetes token: wrong issuer: ${why}`);
    if (err.claim === 'nbf' || err.claim === 'iat') return new ControlPlaneError(C.TOKEN_NOT_YET_VALID, `kubernetes token not yet valid: ${why}`);
    return new ControlPlaneError(C.TOKEN_BAD_CLAIMS, `kubernetes token: ${why}`);
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JOSEAlgNotAllowed) {
    return new ControlPlaneError(C.TOKEN_BAD_SIGNATURE, `kubernetes token: signature not from the cluster issuer: ${why}`);
  }
  return new ControlPlaneError(C.TOKEN_MALFORMED, `kubernetes token malformed: ${why}`);
}
