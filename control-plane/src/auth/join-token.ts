/**
 * Join tokens for workloads outside Kubernetes: `tj1.` + an HS256 JWT signed
 * with the control plane's join-token key (kept 0600 in the CA dir). The token
 * names the SPIFFE ID it may obtain, its expiry, how many times it may be
 * used, and what the workload is known by: the service it serves, its labels
 * and inbound ports (`svc`, `labels`, `ports` claims). Those claims are the
 * attested source of the workload's metadata: the control plane publishes
 * them, never what the sidecar announces (see attestation/). Uses are recorded
 * on disk by {@link JoinTokenStore} so a restart or a second replica never
 * accepts a spent token. Verification fails closed.
 */
import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { isJoinToken, JOIN_TOKEN_PREFIX, parseSpiffeId } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { workloadMetadataProblems, type WorkloadMetadata } from '../attestation/workload-metadata';

// The token's wire form (prefix, unverified `sub`) has one home in @trellis/shared, which the sidecar reads too.
export { isJoinToken, JOIN_TOKEN_PREFIX };
const ISSUER = 'trellis-join-token';

/** What a verified join token grants. */
export interface JoinTokenClaims {
  tokenId: string;
  spiffeId: string;
  uses: number;
  expiresAtMs: number;
  /** The workload's attested service, labels and inbound ports (empty when the token names none). */
  workload: WorkloadMetadata;
}

const NO_METADATA: WorkloadMetadata = Object.freeze({ service: '', labels: Object.freeze({}), inboundPorts: Object.freeze([]) });

/**
 * Mints a join token for `spiffeId` valid `ttlSeconds` from `nowMs`, usable
 * `uses` times, binding `workload` (service, labels, inbound ports; default
 * none). Ports need a service (they are published for it); a service without
 * ports makes the workload a member that publishes no endpoint. Throws
 * BAD_REQUEST listing every problem.
 */
export async function createJoinToken(
  key: Uint8Array,
  req: { spiffeId: string; ttlSeconds: number; uses: number; nowMs: number; workload?: Partial<WorkloadMetadata> },
): Promise<{ token: string; claims: JoinTokenClaims }> {
  parseSpiffeId(req.spiffeId);
  if (!Number.isInteger(req.uses) || req.uses < 1 || req.uses > 1000) {
    throw new ControlPlaneError(ControlPlaneErrorCode.BAD_REQUEST, `uses must be an integer 1..1000, got ${req.uses}`);
  }
  const workload = Object.freeze({
    service: req.workload?.service ?? '',
    labels: Object.freeze({ ...(req.workload?.labels ?? {}) }),
    inboundPorts: Object.freeze([...(req.workload?.inboundPorts ?? [])].sort((a, b) => a - b)),
  });
  const problems = workloadMetadataProblems(workload);
  if (workload.service === '' && workload.inboundPorts.length > 0) problems.push('inboundPorts: need the service they are published for');
  if (problems.length > 0) throw new ControlPlaneError(ControlPlaneErrorCode.BAD_REQUEST, `join token: ${problems.join('; ')}`, { problems });
  const iat = Math.floor(req.nowMs / 1000);
  const exp = iat + Math.max(1, Math.floor(req.ttlSeconds));
  const tokenId = randomUUID();
  const body: Record<string, unknown> = { uses: req.uses };
  if (workload.service !== '') body['svc'] = workload.service;
  if (Object.keys(workload.labels).length > 0) body['labels'] = workload.labels;
  if (workload.inboundPorts.length > 0) body['ports'] = workload.inboundPorts;
  const jwt = await new SignJWT(body)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setSubject(req.spiffeId)
    .setJti(tokenId)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key);
  return { token: JOIN_TOKEN_PREFIX + jwt, claims: { tokenId, spiffeId: req.spiffeId, uses: req.uses, expiresAtMs: exp * 1000, workload } };
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
  return { tokenId: String(payload.jti), spiffeId, uses, expiresAtMs: (payload.exp as number) * 1000, workload: workloadClaims(payload) };
}

/**
 * The `svc`, `labels` and `ports` claims, checked as strictly as when they
 * were minted: a signed token with claims we would not mint is refused
 * whole (TOKEN_BAD_CLAIMS), never half-used.
 */
function workloadClaims(payload: Record<string, unknown>): WorkloadMetadata {
  const svc = payload['svc'];
  const labels = payload['labels'];
  const ports = payload['ports'];
  if (svc === undefined && labels === undefined && ports === undefined) return NO_METADATA;
  const bad = (why: string): ControlPlaneError => new ControlPlaneError(ControlPlaneErrorCode.TOKEN_BAD_CLAIMS, `join token: ${why}`);
  if (svc !== undefined && typeof svc !== 'string') throw bad('svc must be a string');
  if (labels !== undefined && (labels === null || typeof labels !== 'object' || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string'))) {
    throw bad('labels must map strings to strings');
  }
  if (ports !== undefined && (!Array.isArray(ports) || ports.some((p) => typeof p !== 'number'))) throw bad('ports must be a list of numbers');
  const w = {
    service: (svc as string | undefined) ?? '',
    labels: Object.freeze({ ...((labels as Record<string, string> | undefined) ?? {}) }),
    inboundPorts: Object.freeze([...((ports as number[] | undefined) ?? [])]),
  };
  const problems = workloadMetadataProblems(w);
  if (w.service === '' && w.inboundPorts.length > 0) problems.push('ports need svc');
  if (problems.length > 0) throw bad(problems.join('; '));
  return Object.freeze(w);
}
