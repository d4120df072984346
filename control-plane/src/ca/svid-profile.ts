/**
 * The X.509-SVID profile decisions, as pure functions of their inputs and
 * the current time: how long a certificate lives and which identity a CSR
 * may receive. No I/O, no clock reads.
 */
import { CaError, CaErrorCode } from './ca-error';

/** SVID lifetime bounds, in seconds. */
export const SVID_TTL = Object.freeze({ defaultSeconds: 3600, minSeconds: 60, maxSeconds: 86_400 });
/** How far notBefore is back-dated so a peer whose clock is a little behind still accepts the SVID. */
export const CLOCK_SKEW_SECONDS = 60;

/** The validity window of a new SVID. */
export interface SvidValidity {
  notBefore: Date;
  notAfter: Date;
}

/**
 * notBefore = now - 60 s (never before the intermediate's own notBefore),
 * notAfter = now + TTL but never past the intermediate's notAfter; both
 * whole seconds, as DER stores them. Fails closed: a TTL outside
 * 1 min..24 h is TTL_OUT_OF_RANGE, an intermediate not valid at `now` is
 * INTERMEDIATE_EXPIRED.
 */
export function svidValidity(now: Date, ttlSeconds: number | undefined, intermediate: { notBefore: Date; notAfter: Date }): SvidValidity {
  const ttl = ttlSeconds ?? SVID_TTL.defaultSeconds;
  if (!Number.isInteger(ttl) || ttl < SVID_TTL.minSeconds || ttl > SVID_TTL.maxSeconds) {
    throw new CaError(CaErrorCode.TTL_OUT_OF_RANGE, `ttl ${String(ttlSeconds)}s is out of range: an SVID lives between ${SVID_TTL.minSeconds}s and ${SVID_TTL.maxSeconds}s`, { field: 'ttlSeconds', value: ttlSeconds });
  }
  const nowMs = now.getTime();
  if (nowMs >= intermediate.notAfter.getTime() || nowMs < intermediate.notBefore.getTime()) {
    throw new CaError(CaErrorCode.INTERMEDIATE_EXPIRED, `the intermediate is not valid now (valid ${intermediate.notBefore.toISOString()} .. ${intermediate.notAfter.toISOString()})`, {
      notBefore: intermediate.notBefore.toISOString(),
      notAfter: intermediate.notAfter.toISOString(),
    });
  }
  const nb = Math.max(floorSecond(nowMs - CLOCK_SKEW_SECONDS * 1000), ceilSecond(intermediate.notBefore.getTime()));
  const na = Math.min(floorSecond(nowMs + ttl * 1000), floorSecond(intermediate.notAfter.getTime()));
  return { notBefore: new Date(nb), notAfter: new Date(na) };
}

/**
 * Decides whether a CSR's requested identity is compatible with the one the
 * caller was authorized for. Fails closed: a URI SAN other than exactly
 * `spiffeId`, more than one URI, or a request for a CA certificate is
 * CSR_IDENTITY_MISMATCH. An empty request is fine: the CA fills in the
 * authorized ID itself.
 */
export function checkCsrIdentity(requested: { uris: string[]; requestsCa: boolean }, spiffeId: string): void {
  if (requested.requestsCa) {
    throw new CaError(CaErrorCode.CSR_IDENTITY_MISMATCH, 'the CSR asks for a CA certificate; SVIDs are leaves (CA:false)', { spiffeId });
  }
  if (requested.uris.length > 1) {
    throw new CaError(CaErrorCode.CSR_IDENTITY_MISMATCH, `the CSR asks for ${requested.uris.length} URI SANs; an SVID has exactly one`, { spiffeId, requested: requested.uris });
  }
  if (requested.uris.length === 1 && requested.uris[0] !== spiffeId) {
    throw new CaError(CaErrorCode.CSR_IDENTITY_MISMATCH, `the CSR asks for ${requested.uris[0]} but the caller is authorized for ${spiffeId}`, { spiffeId, requested: requested.uris });
  }
}

function floorSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}
function ceilSecond(ms: number): number {
  return Math.ceil(ms / 1000) * 1000;
}
