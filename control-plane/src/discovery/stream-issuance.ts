/**
 * Issuing an SVID for a CSR that arrives on a discovery stream: the
 * stream's credential must still be valid, a join token buys one issuance
 * per stream (later keys are proven with the SVID it bought, over mTLS),
 * the CSR is bounded in size, and signing waits its turn under the signing
 * limiter. What was issued is remembered with the attestation it was
 * issued under (renewals authenticate with it) and noted against live
 * re-issue orders. A refusal is counted and audited; a join-token use that
 * bought no SVID (a full disk, an overload) is given back, so the
 * workload's retry with the same token is not refused as spent.
 */
import type { Logger, SvidResource } from '@trellis/shared';
import type { AuthenticatedPeer } from '../auth/authenticated-peer';
import type { AuthenticatorDeps } from '../auth/authenticator';
import { ControlPlaneError, ControlPlaneErrorCode, errorCodeOf } from '../errors/control-plane-error';
import type { SigningLimiter } from '../issuance/signing-limiter';
import type { SvidAuthority } from '../issuance/svid-authority';
import type { ControlPlaneMetrics } from '../observability/control-plane-metrics';
import type { ReissueBook } from './reissue-orders';

/** The largest CSR a stream may send. */
export const MAX_CSR_BYTES = 16 * 1024;

/** What issuing on a stream needs (a subset of the session's collaborators). */
export interface StreamIssuanceDeps {
  readonly auth: Pick<AuthenticatorDeps, 'attestations' | 'tokenUses' | 'joinTokens'>;
  readonly authority: SvidAuthority;
  readonly limiter: SigningLimiter;
  readonly metrics: Pick<ControlPlaneMetrics, 'svidsIssued' | 'svidsRefused'>;
  readonly logger: Logger;
  nowMs(): number;
  readonly svidTtlSeconds: number;
  readonly reissue: Pick<ReissueBook, 'noteIssued'>;
}

/** The stream asking. */
export interface IssuingStream {
  readonly id: number;
  /** True once the stream ended (what was signed meanwhile is not handed out). */
  isClosed(): boolean;
  /** True when this stream already obtained an SVID. */
  readonly alreadyIssued: boolean;
}

/** An SVID issued on a stream: the resource to send and when it was issued (our clock). */
export interface StreamIssued {
  readonly svid: SvidResource;
  readonly issuedAtMs: number;
}

/** Signs `csr` for the stream's peer; null when the stream closed while signing. Throws a coded error (counted and audited) on refusal. */
export async function issueOnStream(deps: StreamIssuanceDeps, stream: IssuingStream, csr: Buffer, peer: AuthenticatedPeer): Promise<StreamIssued | null> {
  const C = ControlPlaneErrorCode;
  try {
    if (deps.nowMs() >= peer.expiresAtMs) {
      throw new ControlPlaneError(C.CREDENTIAL_EXPIRED, `the ${peer.method} that opened this stream has expired; reconnect with the current SVID`);
    }
    // A join token attests one issuance: later keys are proven with the SVID it bought, over mTLS.
    if (peer.method === 'join-token' && stream.alreadyIssued) {
      throw new ControlPlaneError(C.TOKEN_STREAM_SPENT, 'this join-token stream already obtained its SVID; renew on a new stream authenticated with that SVID (mTLS)');
    }
    if (csr.length > MAX_CSR_BYTES) throw new ControlPlaneError(C.CSR_MALFORMED, `CSR is ${csr.length} bytes, over ${MAX_CSR_BYTES}`);
    const issued = await deps.limiter.run(() => deps.authority.issue({ csr, spiffeId: peer.spiffeId, ttlSeconds: deps.svidTtlSeconds, requester: `discovery/${peer.method}` }));
    if (stream.isClosed()) return null;
    // Renewals authenticate with this SVID: they must find what it was issued under.
    await deps.auth.attestations?.remember(issued.serialHex, peer.attestation, new Date(issued.notAfter).getTime(), deps.nowMs());
    const svid: SvidResource = {
      spiffeId: issued.spiffeId,
      chainPem: issued.chainPem,
      serialHex: issued.serialHex, // already in the one serial form (the CA writes it)
      notBefore: new Date(issued.notBefore).toISOString(),
      notAfter: new Date(issued.notAfter).toISOString(),
    };
    const issuedAtMs = deps.nowMs();
    deps.reissue.noteIssued(issued.serialHex, issuedAtMs);
    deps.metrics.svidsIssued.inc({ method: peer.method });
    deps.logger.info('svid issued', { stream: stream.id, event: 'audit', spiffeId: svid.spiffeId, serial: svid.serialHex, notAfter: svid.notAfter, authMethod: peer.method, ...peer.audit });
    return { svid, issuedAtMs };
  } catch (err) {
    deps.metrics.svidsRefused.inc({ reason: errorCodeOf(err) });
    deps.logger.warn('svid refused', { stream: stream.id, event: 'audit', spiffeId: peer.spiffeId, authMethod: peer.method, error: err, ...peer.audit });
    if (peer.method === 'join-token' && !stream.alreadyIssued) await releaseTokenUse(deps, stream, peer);
    throw err;
  }
}

async function releaseTokenUse(deps: StreamIssuanceDeps, stream: IssuingStream, peer: AuthenticatedPeer): Promise<void> {
  const { tokenId, use } = peer.audit as { tokenId?: unknown; use?: unknown };
  if (typeof tokenId !== 'string' || typeof use !== 'number') return;
  try {
    await (deps.auth.tokenUses ?? deps.auth.joinTokens).release(tokenId, use);
    deps.logger.info('join token use given back: no SVID was handed out for it', { stream: stream.id, event: 'audit', spiffeId: peer.spiffeId, tokenId, use });
  } catch (err) {
    deps.logger.warn('join token use could not be given back; it stays spent', { stream: stream.id, event: 'audit', spiffeId: peer.spiffeId, tokenId, use, error: err });
  }
}
