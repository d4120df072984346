/**
 * The PKCS#10 request for an intermediate whose key is in an HSM.
 *
 * With the key in a token there is no private key object for @peculiar/x509
 * to sign with, so the CertificationRequestInfo is encoded here (same
 * content as `trellis ca intermediate-csr`: CN and O, and an extensionRequest
 * for CA:true pathLen 0, keyCertSign + cRLSign, URI SAN `spiffe://<td>`),
 * signed through the {@link Signer}, and the result verified with the
 * token's public key before it is returned.
 */
import { verify as cryptoVerify } from 'node:crypto';
import { der } from '@trellis/shared';
import type { Signer } from '../ca/signer';
import { HsmError, HsmErrorCode } from './hsm-error';

const utf8 = (s: string): Buffer => der.tlv(0x0c, Buffer.from(s, 'utf8'));
const rdn = (oid: string, value: string): Buffer => der.tlv(0x31, der.tlv(0x30, der.oid(oid), utf8(value)));
const TRUE = Buffer.from([0x01, 0x01, 0xff]);

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return der.tlv(0x30, der.oid(oid), ...(critical ? [TRUE] : []), der.tlv(0x04, value));
}

/** The DER CertificationRequestInfo for the intermediate of `trustDomain` with public key `spkiDer`. */
export function encodeIntermediateRequestInfo(trustDomain: string, spkiDer: Buffer): Buffer {
  const subject = der.tlv(0x30, rdn('2.5.4.3', `Trellis Intermediate CA ${trustDomain}`), rdn('2.5.4.10', 'Trellis'));
  const extensions = der.tlv(0x30, 
    // basicConstraints: CA:true, pathLen 0
    extension('2.5.29.19', true, der.tlv(0x30, TRUE, Buffer.from([0x02, 0x01, 0x00]))),
    // keyUsage: keyCertSign (bit 5) + cRLSign (bit 6)
    extension('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x01, 0x06])),
    // subjectAltName: URI spiffe://<td>
    extension('2.5.29.17', false, der.tlv(0x30, der.tlv(0x86, Buffer.from(`spiffe://${trustDomain}`, 'ascii')))),
  );
  const extensionRequest = der.tlv(0x30, der.oid('1.2.840.113549.1.9.14'), der.tlv(0x31, extensions));
  return der.tlv(0x30, Buffer.from([0x02, 0x01, 0x00]), subject, spkiDer, der.tlv(0xa0, extensionRequest));
}

/**
 * A DER PKCS#10 CSR for the intermediate, signed by `signer`. SIGN_FAILED if
 * the token's signature does not verify with its own public key (nothing is
 * returned then).
 */
export async function createIntermediateCsr(signer: Signer, trustDomain: string): Promise<Buffer> {
  const info = encodeIntermediateRequestInfo(trustDomain, signer.publicKeyDer);
  const signature = await signer.sign(info);
  if (!cryptoVerify(signer.algorithm.hash, info, signer.publicKey, signature)) {
    throw new HsmError(HsmErrorCode.SIGN_FAILED, 'the CSR signature made by the token does not verify with the token\'s public key', {});
  }
  return der.tlv(0x30, info, signer.algorithm.identifierDer, der.tlv(0x03, Buffer.from([0]), signature));
}
