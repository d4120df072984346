/**
 * Reading an X.509-SVID (certificate chain + private key) from PEM, the way
 * go-spiffe's x509svid.Parse does: certificates and key may come from separate
 * inputs or one combined input, in any block order.
 *
 * Pure: the caller reads files. The private key is returned as a node:crypto
 * KeyObject and appears in no error message or detail.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { parseCertificates, type CertificateFacts } from '../x509/certificate-facts';
import { pemBlocks } from '../x509/pem';
import { samePublicKey } from '../x509/public-key';
import type { SpiffeId } from './spiffe-id';
import { SvidError, SvidErrorCode, assertSvidChain, type SvidCheckOptions } from './x509-svid';

/** A parsed, profile-checked X.509-SVID with its private key. */
export interface X509SvidMaterial {
  readonly spiffeId: SpiffeId;
  /** Leaf first, then the intermediates as given. */
  readonly certificates: readonly CertificateFacts[];
  readonly privateKey: KeyObject;
}

const KEY_LABELS: Readonly<Record<string, 'pkcs8' | 'sec1' | 'pkcs1'>> = {
  'PRIVATE KEY': 'pkcs8',
  'EC PRIVATE KEY': 'sec1',
  'RSA PRIVATE KEY': 'pkcs1',
};

/**
 * Parses and checks an SVID: `certsPem` holds the leaf then its intermediates,
 * `keyPem` the leaf's private key (both may be the same combined input).
 *
 * Throws X509Error (`TRELLIS_X509_NOT_PEM`, `..._BAD_PEM`, `..._MALFORMED_CERTIFICATE`)
 * for unreadable input and {@link SvidError} for the rest: `NO_CERTIFICATES`,
 * `MALFORMED_PRIVATE_KEY`, any profile rule of {@link assertSvidChain},
 * `NO_PRIVATE_KEY`, `KEY_MISMATCH`. Fails closed.
 */
export function parseX509SvidPem(
  certsPem: string | Buffer,
  keyPem: string | Buffer,
  opts: SvidCheckOptions & { certsSource?: string; keySource?: string } = {},
): X509SvidMaterial {
  const certsSource = opts.certsSource ?? 'certificates';
  const keySource = opts.keySource ?? 'private key';
  const certs = parseCertificates(
    pemBlocks(certsPem, certsSource)
      .filter((b) => b.label === 'CERTIFICATE')
      .map((b) => b.der),
  );
  const keyBlocks = pemBlocks(keyPem, keySource);
  const keyBlock = keyBlocks.find((b) => KEY_LABELS[b.label] !== undefined);
  const encrypted = keyBlocks.find((b) => b.label === 'ENCRYPTED PRIVATE KEY');
  if (!keyBlock && encrypted) {
    throw new SvidError(SvidErrorCode.MALFORMED_PRIVATE_KEY, `${keySource}: the private key at line ${encrypted.line} is encrypted; SVID keys must be stored unencrypted (0600)`, {
      source: keySource,
      line: encrypted.line,
    });
  }
  let privateKey: KeyObject | undefined;
  if (keyBlock) {
    try {
      privateKey = createPrivateKey({ key: keyBlock.der, format: 'der', type: KEY_LABELS[keyBlock.label]! });
    } catch {
      // The cause is deliberately dropped: OpenSSL messages may quote key bytes.
      throw new SvidError(SvidErrorCode.MALFORMED_PRIVATE_KEY, `${keySource}: the ${keyBlock.label} block at line ${keyBlock.line} is not a valid private key`, {
        source: keySource,
        line: keyBlock.line,
      });
    }
  }
  if (certs.length === 0) throw new SvidError(SvidErrorCode.NO_CERTIFICATES, `${certsSource}: no certificates found`, { source: certsSource });
  const [leaf, ...intermediates] = certs as [CertificateFacts, ...CertificateFacts[]];
  const spiffeId = assertSvidChain(leaf, intermediates, opts);
  if (!privateKey) throw new SvidError(SvidErrorCode.NO_PRIVATE_KEY, `${keySource}: no private key found`, { source: keySource });
  let matches = false;
  try {
    matches = samePublicKey(createPublicKey(privateKey), createPublicKey({ key: leaf.spki, format: 'der', type: 'spki' }));
  } catch {
    matches = false;
  }
  if (!matches) {
    throw new SvidError(SvidErrorCode.KEY_MISMATCH, `${keySource}: the private key does not match the leaf certificate (${leaf.subjectText || spiffeId})`, {
      source: keySource,
    });
  }
  return Object.freeze({ spiffeId, certificates: Object.freeze(certs), privateKey });
}
