/**
 * The PKCS#10 request for a Trellis intermediate, whoever holds its key: a
 * key file (`trellis ca intermediate-csr`, a rotation's next intermediate, a
 * new environment) or an HSM token. The content is the shared one (CN and O,
 * and an extensionRequest for CA:true pathLen 0, keyCertSign + cRLSign, URI
 * SAN `spiffe://<td>`: shared x509/certification-request.ts), signed through
 * the {@link Signer}, and the signature verified with the signer's public key
 * before the request is returned.
 */
import { verify as cryptoVerify } from 'node:crypto';
import { encodeCertificationRequest, encodeCertificationRequestInfo, intermediateCaExtensions } from '@trellis/shared';
import { CaError, CaErrorCode } from './ca-error';
import type { Signer } from './signer';

/** The DER CertificationRequestInfo for the intermediate of `trustDomain` with public key `spkiDer`; `label` is appended to its CN. */
export function encodeIntermediateRequestInfo(trustDomain: string, spkiDer: Buffer, label?: string): Buffer {
  return encodeCertificationRequestInfo({
    subject: [
      ['2.5.4.3', label ? `Trellis Intermediate CA ${trustDomain} ${label}` : `Trellis Intermediate CA ${trustDomain}`],
      ['2.5.4.10', 'Trellis'],
    ],
    spkiDer,
    extensions: intermediateCaExtensions(trustDomain),
  });
}

/**
 * A DER PKCS#10 CSR for the intermediate, signed by `signer`. Throws
 * CaError KEY_MISMATCH when the signature does not verify with the signer's
 * own public key (a token that signs with another key): nothing is returned then.
 */
export async function createIntermediateCsr(signer: Signer, trustDomain: string, label?: string): Promise<Buffer> {
  const info = encodeIntermediateRequestInfo(trustDomain, signer.publicKeyDer, label);
  const signature = await signer.sign(info);
  if (!cryptoVerify(signer.algorithm.hash, info, signer.publicKey, signature)) {
    throw new CaError(CaErrorCode.KEY_MISMATCH, 'the CSR signature does not verify with the signer\'s public key', {});
  }
  return encodeCertificationRequest(info, signer.algorithm.identifierDer, signature);
}
