/**
 * Join tokens for workloads outside Kubernetes: `tj1.` + an HS256 JWT signed
 * with the control plane's join-token key (kept 0600 in the CA dir). The token
 * names the SPIFFE ID it may obtain, its expiry and how many times it may be
 * used; uses are recorded on disk by {@link JoinTokenStore} so a restart or a
 * second replica never accepts a spent token. Verification fails closed.
 */
import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { isJoinToken, JOIN_TOKEN_PREFIX, parseSpiffeId } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';

// The token's wire form (prefix, unverified `sub`) has one home in @trellis/shared, which the sidecar reads too.
export { isJoinToken, JOIN_TOKEN_PREFIX };
const ISSUER = 'trellis-join-token';

/** What a verified join token grants. */
export interface JoinTokenClaims {
  tokenId: string;
  spiffeId: string;
  uses: number;
  expiresAtMs: number;
}

/** Mints a join token for `spiffeId` valid `ttlSeconds` from `nowMs`, usable `uses` times. */
export async function createJoinToken(key: Uint8Array, req: { spiffeId: string; ttlSeconds: number; uses: number; nowMs: number }): Promise<{ token: string; claims: JoinTokenClaims }> {
  parseSpiffeId(req.spiffeId);
  if (!Number.isInteger(req.uses) || req.uses < 1 || req.uses > 1000) {
    throw new ControlPlaneError(ControlPlaneErrorCode.BAD_REQUEST, `uses must be an integer 1..1000, got ${req.uses}`);
  }
  const iat = Math.floor(req.nowMs / 1000);
  const exp = iat + Math.max(1, Math.floor(req.ttlSeconds));
  const tokenId = randomUUID();
  const jwt = await new SignJWT({ uses: req.uses })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setSubject(req.spiffeId)
    .setJti(tokenId)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key);
  return { token: JOIN_TOKEN_PREFIX + jwt, claims: { tokenId, spiffeId: req.spiffeId, uses: req.uses, expiresAtMs: exp * 1000 } };
}

/** Checks signature, expiry and shape; does not consume a use. */
export async function verifyJoinToken(key: Uint8Array, token: string, nowMs: number, trustDomain: string): Promise<JoinTokenClaims> {
  const C = ControlPlaneErrorCode;
  if (!isJoinToken(token)) throw new ControlPlaneError(C.TOKEN_MALFORMED, 'not a join token');
  let payload;
  try {
    ({ payload } = await jwtVerify(token.slice(JOIN_TOKEN_PREFIX.length), key, {
      issuer: ISSUER,
      algorithms: ['HS256'],
      currentDate: new Date(nowMs),
      requiredClaims: ['exp', 'sub', 'jti'],
    }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new ControlPlaneError(C.TOKEN_EXPIRED, 'join token expired');
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw new ControlPlaneError(C.TOKEN_BAD_SIGNATURE, 'join token signature does not verify (forged, or minted for another control plane)');
    throw new ControlPlaneError(C.TOKEN_MALFORMED, `join token malformed: ${(err as Error).message}`);
  }
  const uses = payload['uses'];
  if (typeof uses !== 'number' || !Number.isInteger(uses) || uses < 1) throw new ControlPlaneError(C.TOKEN_BAD_CLAIMS, 'join token: uses must be a positive integer');
  const spiffeId = String(payload.sub);
  let td: string;
  try {
    td = parseSpiffeId(spiffeId).trustDomain;
  } catch {
    throw new ControlPlaneError(C.TOKEN_BAD_CLAIMS, 'join token: sub is not a SPIFFE ID');
  }
  if (td !== trustDomain) throw new ControlPlaneError(C.TOKEN_BAD_CLAIMS, `join token: ${spiffeId} is outside trust domain ${trustDomain}`);
  if (!/^[0-9a-f-]{36}$/.test(String(payload.jti))) throw new ControlPlaneError(C.TOKEN_BAD_CLAIMS, 'join token: bad jti');
  return { tokenId: String(payload.jti), spiffeId, uses, expiresAtMs: (payload.exp as number) * 1000 };
}
