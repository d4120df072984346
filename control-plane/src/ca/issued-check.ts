/**
 * The full check of a certificate the template produced (the SPIRE habit:
 * build, sign, then validate the result). The CA runs it on unsigned probes
 * of its template when it loads; each issued SVID then goes through the
 * cheaper, stricter byte-level read-back in issued-readback.ts.
 *
 * The certificate is re-read from its DER by the shared certificate parser,
 * an implementation independent of the template that wrote it, and must:
 * pass the shared X.509-SVID leaf rules (`validateLeafSvid`: one URI SAN that
 * is a SPIFFE ID in our trust domain, CA:false, digitalSignature without
 * keyCertSign/cRLSign, serverAuth + clientAuth, critical SAN on an empty
 * subject, no unknown critical extension), and carry exactly what the CA
 * decided: the authorized ID, serial, issuer, validity, CSR key, AKI and
 * signature algorithm. When a public key is given, the signature is verified
 * too. Fails closed: any deviation is TRELLIS_CA_SELF_CHECK_FAILED and the
 * certificate is dropped.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { parseCertificate, validateLeafSvid, type CertificateFacts } from '@trellis/shared';
import { CaError, CaErrorCode } from './ca-error';
import type { SignatureAlgorithm } from './key-types';

/** What the certificate must say. */
export interface ExpectedSvid {
  serial: Buffer;
  spiffeId: string;
  trustDomain: string;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  issuerDer: Buffer;
  issuerKeyId: Buffer;
  algorithm: SignatureAlgorithm;
  /** DNS SANs requested beside the SPIFFE ID (none when undefined). */
  dnsNames?: readonly string[];
  /** When set, the signature is verified with this (the intermediate's) key. */
  issuerPublicKey?: KeyObject;
}

/** Throws SELF_CHECK_FAILED naming the first rule the certificate breaks. */
export function checkIssuedSvid(der: Buffer, want: ExpectedSvid): void {
  const fail = (rule: string): never => {
    throw new CaError(CaErrorCode.SELF_CHECK_FAILED, `refusing to hand out a certificate that breaks the SVID profile: ${rule}`, { rule, spiffeId: want.spiffeId });
  };
  let f: CertificateFacts;
  try {
    f = parseCertificate(der);
  } catch (err) {
    return fail(`it does not parse (${(err as Error).message})`);
  }
  const verdict = validateLeafSvid(f, { trustDomain: want.trustDomain });
  if (!verdict.ok) fail(`${verdict.reason} [${verdict.code}]`);
  if (f.subjectAltName.uris.length !== 1 || f.subjectAltName.uris[0] !== want.spiffeId) fail('the URI SAN is not exactly the authorized ID');
  const wantDns = want.dnsNames ?? [];
  if (f.subjectAltName.dnsNames.length !== wantDns.length || wantDns.some((d, i) => f.subjectAltName.dnsNames[i] !== d)) fail('the DNS SANs are not exactly the requested ones');
  if (f.version !== 3) fail('version is not v3');
  if (!f.serial.equals(stripZeros(want.serial))) fail('serial differs from the one drawn');
  if (f.signatureAlgorithm !== want.algorithm.oid) fail('signature algorithm differs from the signer');
  if (!f.issuer.equals(want.issuerDer)) fail('issuer is not the intermediate subject');
  if (f.notBefore.getTime() !== want.notBefore.getTime() || f.notAfter.getTime() !== want.notAfter.getTime()) fail('validity differs from the decided window');
  if (!f.spki.equals(want.spkiDer)) fail('public key is not the CSR key');
  if (!f.authorityKeyId || !f.authorityKeyId.equals(want.issuerKeyId)) fail('AKI is not the intermediate key id');
  if (!f.subjectKeyId) fail('SKI is missing');
  if (!f.extKeyUsage.present) fail('extKeyUsage is missing');
  if (!f.basicConstraints.critical) fail('basicConstraints is not critical');
  if (want.issuerPublicKey) {
    let ok = false;
    try {
      ok = cryptoVerify(want.algorithm.hash, f.tbs, want.issuerPublicKey, f.signature);
    } catch {
      ok = false;
    }
    if (!ok) fail('signature does not verify with the intermediate key');
  }
}

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}
