/**
 * The signing seam of the CA: everything that needs the intermediate's
 * private key goes through a {@link Signer}, so an HSM (PKCS#11) signer can
 * replace the file-backed one without touching issuance.
 */
import { createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { CaError, CaErrorCode } from './ca-error';
import { describeKey, type SignatureAlgorithm } from './key-types';

/** Signs TBS bytes with the CA key. The private key never leaves the implementation. */
export interface Signer {
  /** The X.509 signature algorithm this signer produces. */
  readonly algorithm: SignatureAlgorithm;
  /** Key type of the signing key, e.g. `ec-p256`. */
  readonly keyType: string;
  /** The public half, for matching against the certificate. */
  readonly publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER of the public half. */
  readonly publicKeyDer: Buffer;
  /** Signs `tbs` (the DER TBSCertificate / CertificationRequestInfo); returns the DER signature value. */
  sign(tbs: Buffer): Buffer | Promise<Buffer>;
}

/**
 * A signer whose key is a PKCS#8 (or SEC1/PKCS#1) PEM held in memory,
 * normally read from `intermediate.key` (mode 0600) in the CA dir.
 * `source` names the file in error messages; the key is never logged.
 */
export function createFileSigner(keyPem: string | Buffer, source = 'private key'): Signer {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (err) {
    throw new CaError(CaErrorCode.BAD_PEM, `${source}: not a readable PEM private key`, { file: source }, { cause: err });
  }
  const { keyType, algorithm } = describeKey(key, source);
  const publicKey = createPublicKey(key);
  const publicKeyDer = publicKey.export({ type: 'spki', format: 'der' });
  const hash = algorithm.hash;
  return Object.freeze({
    algorithm,
    keyType,
    publicKey,
    publicKeyDer,
    sign: (tbs: Buffer): Buffer => cryptoSign(hash, tbs, key),
  });
}
