/**
 * The pre-encoded TBSCertificate for X.509-SVIDs.
 *
 * Everything that is the same for every SVID of one intermediate (version,
 * signature algorithm, issuer, basicConstraints, keyUsage, extKeyUsage, AKI)
 * is DER-encoded once; per request only the serial, validity, public key,
 * SKI and URI SAN are encoded and the pieces concatenated. This is what lets
 * issuance run near the raw ECDSA sign + verify rate instead of rebuilding
 * ASN.1 objects per certificate.
 *
 * Extension order: basicConstraints, keyUsage, extKeyUsage, SKI, AKI, SAN.
 */
import { createHash } from 'node:crypto';
import { header, oidTlv, timeTlv, tlvOf, unsignedIntegerTlv } from './der-walk';
import type { SignatureAlgorithm } from './key-types';

/** The per-request inputs of one SVID. */
export interface SvidFields {
  /** 16 random bytes; encoded as a positive INTEGER. */
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** The leaf's SubjectPublicKeyInfo DER (copied verbatim from the CSR). */
  spkiDer: Buffer;
  /** The subjectPublicKey bits inside `spkiDer`, for the SKI. */
  publicKeyBits: Buffer;
  /** The one URI SAN. */
  spiffeId: string;
  /** RSA leaves also get keyEncipherment. */
  rsa: boolean;
}

const VERSION_3 = Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]);
const EMPTY_SUBJECT = Buffer.from([0x30, 0x00]);

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  const parts = [oidTlv(oid)];
  if (critical) parts.push(Buffer.from([0x01, 0x01, 0xff]));
  parts.push(tlvOf(0x04, [value]));
  return tlvOf(0x30, parts);
}

/** basicConstraints CA:false, critical. */
const BASIC_CONSTRAINTS = extension('2.5.29.19', true, Buffer.from([0x30, 0x00]));
/** keyUsage digitalSignature, critical. */
const KEY_USAGE_EC = extension('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x07, 0x80]));
/** keyUsage digitalSignature + keyEncipherment, critical. */
const KEY_USAGE_RSA = extension('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x05, 0xa0]));
/** extKeyUsage serverAuth + clientAuth. */
const EXT_KEY_USAGE = extension('2.5.29.37', false, tlvOf(0x30, [oidTlv('1.3.6.1.5.5.7.3.1'), oidTlv('1.3.6.1.5.5.7.3.2')]));
/** SKI extension header up to the 20-byte SHA-1. */
const SKI_PREFIX = extension('2.5.29.14', false, tlvOf(0x04, [Buffer.alloc(20)])).subarray(0, -20);
/** SAN: OID + critical flag (the subject is empty, so RFC 5280 4.2.1.6 makes SAN critical). */
const SAN_OID_CRITICAL = Buffer.concat([oidTlv('2.5.29.17'), Buffer.from([0x01, 0x01, 0xff])]);

/** A TBSCertificate template bound to one issuer and signature algorithm. */
export class SvidTemplate {
  private readonly afterSerial: Buffer;
  private readonly akiExtension: Buffer;

  /**
   * @param issuerSubjectDer the intermediate's subject Name, byte for byte (becomes the issuer)
   * @param issuerKeyId the intermediate's subjectKeyIdentifier (becomes the AKI)
   */
  constructor(
    issuerSubjectDer: Buffer,
    issuerKeyId: Buffer,
    readonly algorithm: SignatureAlgorithm,
  ) {
    this.afterSerial = Buffer.concat([algorithm.identifierDer, issuerSubjectDer]);
    this.akiExtension = extension('2.5.29.35', false, tlvOf(0x30, [tlvOf(0x80, [issuerKeyId])]));
  }

  /** The DER TBSCertificate for `f`. */
  encodeTbs(f: SvidFields): Buffer {
    const ski = createHash('sha1').update(f.publicKeyBits).digest();
    const uri = Buffer.from(f.spiffeId, 'utf8');
    const uriTlv = Buffer.concat([header(0x86, uri.length), uri]);
    const names = Buffer.concat([header(0x30, uriTlv.length), uriTlv]);
    const sanValue = Buffer.concat([header(0x04, names.length), names]);
    const sanBody = SAN_OID_CRITICAL.length + sanValue.length;
    const san = Buffer.concat([header(0x30, sanBody), SAN_OID_CRITICAL, sanValue]);
    const exts = [BASIC_CONSTRAINTS, f.rsa ? KEY_USAGE_RSA : KEY_USAGE_EC, EXT_KEY_USAGE, SKI_PREFIX, ski, this.akiExtension, san];
    let extLen = 0;
    for (const e of exts) extLen += e.length;
    const extSeqHeader = header(0x30, extLen);
    const extWrapper = header(0xa3, extSeqHeader.length + extLen);

    const nb = timeTlv(f.notBefore);
    const na = timeTlv(f.notAfter);
    const validityHeader = header(0x30, nb.length + na.length);
    const serial = unsignedIntegerTlv(f.serial);

    const parts = [
      VERSION_3, serial, this.afterSerial, validityHeader, nb, na, EMPTY_SUBJECT, f.spkiDer,
      extWrapper, extSeqHeader, ...exts,
    ];
    let len = 0;
    for (const p of parts) len += p.length;
    const h = header(0x30, len);
    return Buffer.concat([h, ...parts], h.length + len);
  }

  /** The complete Certificate DER: TBS, signature algorithm, signature BIT STRING. */
  encodeCertificate(tbs: Buffer, signature: Buffer): Buffer {
    const bitHeader = header(0x03, signature.length + 1);
    const body = tbs.length + this.algorithm.identifierDer.length + bitHeader.length + 1 + signature.length;
    const h = header(0x30, body);
    return Buffer.concat([h, tbs, this.algorithm.identifierDer, bitHeader, Buffer.from([0]), signature], h.length + body);
  }
}
