/**
 * The optional native ECDSA verifier (`@trellis/ecdsa-verify`, built from
 * `control-plane/native/` at install time) that checks a CSR's signature
 * straight from its uncompressed P-256/P-384 point.
 *
 * Why: node:crypto needs a KeyObject, and importing a point runs OpenSSL's
 * full key check including a multiplication by the group order, which for
 * these cofactor-1 curves proves nothing and costs as much as the verify.
 * The addon keeps the checks that matter (canonical encoding, coordinates in
 * the field, point on the curve) and calls the same OpenSSL ECDSA_verify.
 *
 * Always optional: when the addon is not built, does not load, or fails its
 * known-answer self-test against node:crypto, the loader returns null and the
 * CA verifies with node:crypto, with the same verdicts.
 */
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import type { SignatureAlgorithm } from './key-types';

/** Verdict of {@link NativeEcdsaVerify}: 1 verified, 0 bad signature, -1 the point is not an uncompressed point on the curve. */
export type NativeVerdict = -1 | 0 | 1;

/**
 * Verifies an ECDSA signature (DER) over `message`.
 * `curve`: 0 = P-256, 1 = P-384. `hash`: 0 = SHA-256, 1 = SHA-384, 2 = SHA-512.
 * `point` is 04 || X || Y.
 */
export type NativeEcdsaVerify = (curve: 0 | 1, point: Buffer, hash: 0 | 1 | 2, message: Buffer, signatureDer: Buffer) => NativeVerdict;

/** The addon's package name; resolved through the workspace link in node_modules. */
export const NATIVE_ECDSA_PACKAGE = '@trellis/ecdsa-verify';

/** Hash argument of {@link NativeEcdsaVerify} for a signature algorithm's digest. */
export const NATIVE_HASH: Readonly<Record<SignatureAlgorithm['hash'], 0 | 1 | 2>> = Object.freeze({ sha256: 0, sha384: 1, sha512: 2 });

/**
 * Loads the addon through `load` (default: require the package) and returns
 * its verify function once it has passed the self-test, else null. Never
 * throws: a missing or misbehaving addon only means the slower path.
 */
export function loadNativeEcdsaVerify(load: () => unknown = requireAddon): NativeEcdsaVerify | null {
  let fn: unknown;
  try {
    fn = (load() as { verify?: unknown } | null)?.verify;
  } catch {
    return null;
  }
  if (typeof fn !== 'function') return null;
  const verify = fn as NativeEcdsaVerify;
  try {
    return passesSelfTest(verify) ? verify : null;
  } catch {
    return null;
  }
}

let defaultVerify: NativeEcdsaVerify | null | undefined;

/** {@link loadNativeEcdsaVerify} with the default loader, done once per process (a cache of `require`, like `require` itself). */
export function defaultNativeEcdsaVerify(): NativeEcdsaVerify | null {
  if (defaultVerify === undefined) defaultVerify = loadNativeEcdsaVerify();
  return defaultVerify;
}

function requireAddon(): unknown {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(NATIVE_ECDSA_PACKAGE);
}

/**
 * Known answers on both curves, signed by node:crypto with fresh keys: a good
 * signature verifies, a tampered message and a tampered signature do not, and
 * a point off the curve is refused as a key. Anything else disqualifies the addon.
 */
function passesSelfTest(verify: NativeEcdsaVerify): boolean {
  const message = Buffer.from('trellis native ecdsa self-test');
  const other = Buffer.from('trellis native ecdsa self-tesT');
  const curves: Array<[0 | 1, string, 'sha256' | 'sha384']> = [
    [0, 'P-256', 'sha256'],
    [1, 'P-384', 'sha384'],
  ];
  for (const [curve, namedCurve, hash] of curves) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const point = spki.subarray(spki.length - (curve === 0 ? 65 : 97));
    const signature = cryptoSign(hash, message, privateKey);
    const h = NATIVE_HASH[hash];
    if (verify(curve, point, h, message, signature) !== 1) return false;
    if (verify(curve, point, h, other, signature) !== 0) return false;
    const badSig = Buffer.from(signature);
    badSig[badSig.length - 1]! ^= 0x01;
    if (verify(curve, point, h, message, badSig) !== 0) return false;
    const offCurve = Buffer.from(point);
    offCurve[offCurve.length - 1]! ^= 0x01;
    if (verify(curve, offCurve, h, message, signature) !== -1) return false;
  }
  return true;
}
