/**
 * The proof that whoever starts a root rotation over the admin API holds
 * the CURRENT root key: a compact JWS (RFC 7515), signed with that key, over
 * a small statement binding the exact material (SHA-256 of the new root's
 * and the next intermediate's DER), the trust domain and the time. The
 * control plane checks it against the roots already in its bundle, so a
 * stolen admin credential alone cannot put an attacker's root into every
 * sidecar's trust bundle. The protected header names the signing root by its
 * `x5t#S256` thumbprint; the algorithm follows its key (ES256, ES384, RS256).
 *
 * Replay: the statement is bound to the material and valid for five minutes;
 * replaying it can only re-offer the same root, which is refused once
 * trusted. Signing runs where the root lives (the CLI); verifying is pure
 * apart from the clock, which is a parameter.
 */
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { CompactSign, compactVerify, type JWSHeaderParameters } from 'jose';
import type { CaCertificate } from '../ca/ca-chain';
import { pemCertificates } from '../ca/pem';
import type { RootSigner } from './ca-material';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import type { RootRotationMaterial } from './root-rotation-driver';

/** The `aud` of a root rotation proof: it is good for nothing else. */
export const ROOT_PROOF_AUDIENCE = 'trellis-root-rotation';
/** How far `iat` may be from the control plane's clock, either way. */
export const ROOT_PROOF_MAX_SKEW_SECONDS = 300;

const ALGORITHMS = ['ES256', 'ES384', 'RS256'];

function b64url(b: Buffer): string {
  return b.toString('base64url');
}

function derSha256(pem: string, source: string): string {
  return b64url(createHash('sha256').update(pemCertificates(pem, source)[0]!).digest());
}

function algorithmOf(key: KeyObject): string {
  if (key.asymmetricKeyType === 'ec') return key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'ES384' : 'ES256';
  return 'RS256';
}

/** The statement a proof signs. */
export interface RootProofStatement {
  readonly aud: string;
  readonly trustDomain: string;
  /** base64url SHA-256 of the new root's DER. */
  readonly newRoot: string;
  /** base64url SHA-256 of the next intermediate's DER. */
  readonly intermediate: string;
  /** Seconds since the epoch. */
  readonly iat: number;
}

/** Signs the proof for `material` with the current root (root.pem + root.key, see loadRootSigner). */
export async function signRootRotationProof(material: RootRotationMaterial, currentRoot: RootSigner, o: { trustDomain: string; now: Date }): Promise<string> {
  const statement: RootProofStatement = {
    aud: ROOT_PROOF_AUDIENCE,
    trustDomain: o.trustDomain,
    newRoot: derSha256(material.newRootPem, 'newRootPem'),
    intermediate: derSha256(material.intermediatePem, 'intermediatePem'),
    iat: Math.floor(o.now.getTime() / 1000),
  };
  const key = createPrivateKey(currentRoot.key.pem);
  return new CompactSign(Buffer.from(JSON.stringify(statement)))
    .setProtectedHeader({ alg: algorithmOf(key), typ: 'trellis-root-rotation+jws', 'x5t#S256': derSha256(currentRoot.certPem, 'current root') })
    .sign(key);
}

/**
 * Checks `proof` for `material`: signed by one of `roots` (the current
 * bundle), for `trustDomain`, for exactly this material, within the skew
 * window of `now`. Returns the signing root. Fails closed with BAD_ROOT_PROOF
 * naming what did not match.
 */
export async function verifyRootRotationProof(proof: string, material: RootRotationMaterial, o: { roots: readonly CaCertificate[]; trustDomain: string; now: Date }): Promise<CaCertificate> {
  const bad = (why: string, cause?: unknown): LifecycleError => new LifecycleError(LifecycleErrorCode.BAD_ROOT_PROOF, `the root rotation proof ${why}`, { reason: why }, cause ? { cause } : undefined);
  let signer: CaCertificate | undefined;
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(proof, async (header: JWSHeaderParameters) => {
      const thumb = header['x5t#S256'];
      signer = o.roots.find((r) => r.selfSigned && b64url(createHash('sha256').update(r.der).digest()) === thumb);
      if (!signer) throw bad('is not signed by a root in the current trust bundle');
      return signer.x509.publicKey;
    }, { algorithms: ALGORITHMS }));
  } catch (err) {
    if (err instanceof LifecycleError) throw err;
    throw bad(`does not verify: ${(err as Error).message}`, err);
  }
  let st: Partial<RootProofStatement>;
  try {
    st = JSON.parse(Buffer.from(payload).toString('utf8')) as Partial<RootProofStatement>;
  } catch (err) {
    throw bad('carries no JSON statement', err);
  }
  if (st.aud !== ROOT_PROOF_AUDIENCE) throw bad(`is for "${String(st.aud)}", not ${ROOT_PROOF_AUDIENCE}`);
  if (st.trustDomain !== o.trustDomain) throw bad(`is for trust domain ${String(st.trustDomain)}, not ${o.trustDomain}`);
  if (st.newRoot !== derSha256(material.newRootPem, 'newRootPem') || st.intermediate !== derSha256(material.intermediatePem, 'intermediatePem')) throw bad('was made for other certificates');
  if (typeof st.iat !== 'number' || Math.abs(o.now.getTime() / 1000 - st.iat) > ROOT_PROOF_MAX_SKEW_SECONDS) throw bad(`is stale or from the future (iat ${String(st.iat)}, allowed ±${ROOT_PROOF_MAX_SKEW_SECONDS} s)`);
  return signer!;
}
