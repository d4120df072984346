/**
 * The CA's check of what it has just signed, before anything is handed out
 * (the SPIRE habit: build, sign, then validate the result).
 *
 * The certificate is re-read from its DER by an independent walk, not from
 * the template's inputs, and must carry exactly the SVID profile: v3, the
 * expected serial, issuer, validity and key, CA:false, digitalSignature
 * without keyCertSign/cRLSign, serverAuth + clientAuth, SKI, the issuer's
 * AKI and exactly one URI SAN equal to the authorized SPIFFE ID. When a
 * public key is given, the signature is verified too. Fails closed: any
 * deviation is TRELLIS_CA_SELF_CHECK_FAILED and the certificate is dropped.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { CaError, CaErrorCode } from './ca-error';
import { readCertificateFields, type CertificateExtension } from './certificate-fields';
import { expectTlv, readTlv } from './der-walk';
import type { SignatureAlgorithm } from './key-types';

/** What the certificate must say. */
export interface ExpectedSvid {
  serial: Buffer;
  spiffeId: string;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  issuerDer: Buffer;
  issuerKeyId: Buffer;
  algorithm: SignatureAlgorithm;
  /** When set, the signature is verified with this (the intermediate's) key. */
  issuerPublicKey?: KeyObject;
}

const REQUIRED = ['2.5.29.19', '2.5.29.15', '2.5.29.37', '2.5.29.14', '2.5.29.35', '2.5.29.17'];

/** Throws SELF_CHECK_FAILED naming the first rule the certificate breaks. */
export function checkIssuedSvid(der: Buffer, want: ExpectedSvid): void {
  const fail = (rule: string): never => {
    throw new CaError(CaErrorCode.SELF_CHECK_FAILED, `refusing to hand out a certificate that breaks the SVID profile: ${rule}`, { rule, spiffeId: want.spiffeId });
  };
  let f;
  try {
    f = readCertificateFields(der, 'issued certificate');
  } catch (err) {
    return fail(`it does not parse (${(err as Error).message})`);
  }
  if (f.version !== 3) fail('version is not v3');
  if (!sameInteger(f.serial, want.serial)) fail('serial differs from the one drawn');
  if (!f.tbsSignatureAlgorithmDer.equals(want.algorithm.identifierDer) || !f.outerSignatureAlgorithmDer.equals(want.algorithm.identifierDer)) fail('signature algorithm differs from the signer');
  if (!f.issuerDer.equals(want.issuerDer)) fail('issuer is not the intermediate subject');
  if (f.notBefore.getTime() !== want.notBefore.getTime() || f.notAfter.getTime() !== want.notAfter.getTime()) fail('validity differs from the decided window');
  if (!f.spkiDer.equals(want.spkiDer)) fail('public key is not the CSR key');
  const seen = new Map<string, CertificateExtension>();
  for (const e of f.extensions) {
    if (seen.has(e.oid)) fail(`extension ${e.oid} appears twice`);
    seen.set(e.oid, e);
  }
  for (const oid of REQUIRED) if (!seen.has(oid)) fail(`extension ${oid} is missing`);
  if (seen.size !== REQUIRED.length) fail('unexpected extensions present');

  const bc = seen.get('2.5.29.19')!;
  if (!bc.critical) fail('basicConstraints is not critical');
  const bcSeq = expectTlv(bc.value, 0, bc.value.length, 0x30, 'basicConstraints');
  if (bcSeq.valueStart !== bcSeq.end) {
    const first = readTlv(bc.value, bcSeq.valueStart, bcSeq.end, 'basicConstraints');
    if (first.tag === 0x01 && bc.value[first.valueStart] !== 0) fail('basicConstraints says CA:true');
  }

  const ku = seen.get('2.5.29.15')!;
  if (!ku.critical) fail('keyUsage is not critical');
  const kuBits = expectTlv(ku.value, 0, ku.value.length, 0x03, 'keyUsage');
  const firstByte = kuBits.end - kuBits.valueStart > 1 ? ku.value[kuBits.valueStart + 1]! : 0;
  if (!(firstByte & 0x80)) fail('keyUsage lacks digitalSignature');
  if (firstByte & 0x06) fail('keyUsage has keyCertSign or cRLSign');

  const aki = seen.get('2.5.29.35')!;
  const akiSeq = expectTlv(aki.value, 0, aki.value.length, 0x30, 'authorityKeyIdentifier');
  const keyId = expectTlv(aki.value, akiSeq.valueStart, akiSeq.end, 0x80, 'authorityKeyIdentifier keyIdentifier');
  if (!aki.value.subarray(keyId.valueStart, keyId.end).equals(want.issuerKeyId)) fail('AKI is not the intermediate key id');

  const san = seen.get('2.5.29.17')!;
  const names = expectTlv(san.value, 0, san.value.length, 0x30, 'subjectAltName');
  const uris: string[] = [];
  let p = names.valueStart;
  while (p < names.end) {
    const n = readTlv(san.value, p, names.end, 'subjectAltName entry');
    if (n.tag === 0x86) uris.push(san.value.toString('utf8', n.valueStart, n.end));
    p = n.end;
  }
  if (uris.length !== 1 || uris[0] !== want.spiffeId) fail(`URI SANs are [${uris.join(', ')}], not exactly the authorized ID`);

  if (want.issuerPublicKey) {
    let ok = false;
    try {
      ok = cryptoVerify(want.algorithm.hash, f.tbsDer, want.issuerPublicKey, f.signature);
    } catch {
      ok = false;
    }
    if (!ok) fail('signature does not verify with the intermediate key');
  }
}

function sameInteger(encoded: Buffer, magnitude: Buffer): boolean {
  let i = 0;
  while (i < encoded.length - 1 && encoded[i] === 0) i++;
  let j = 0;
  while (j < magnitude.length - 1 && magnitude[j] === 0) j++;
  return encoded.subarray(i).equals(magnitude.subarray(j));
}
