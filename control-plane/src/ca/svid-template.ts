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
import * as nodeCrypto from 'node:crypto';
import { der } from '@trellis/shared';
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
  /** Optional DNS SANs (the X509-SVID spec allows other SAN types beside the one URI), e.g. for a webhook's serving name. */
  dnsNames?: readonly string[];
  /** RSA leaves also get keyEncipherment. */
  rsa: boolean;
}

const VERSION_3 = Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]);
const EMPTY_SUBJECT = Buffer.from([0x30, 0x00]);

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return critical ? der.sequence(der.oid(oid), der.boolean(true), der.octetString(value)) : der.sequence(der.oid(oid), der.octetString(value));
}

/** basicConstraints CA:false, critical. */
const BASIC_CONSTRAINTS = extension('2.5.29.19', true, Buffer.from([0x30, 0x00]));
/** keyUsage digitalSignature, critical. */
const KEY_USAGE_EC = extension('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x07, 0x80]));
/** keyUsage digitalSignature + keyEncipherment, critical. */
const KEY_USAGE_RSA = extension('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x05, 0xa0]));
/** extKeyUsage serverAuth + clientAuth. */
const EXT_KEY_USAGE = extension('2.5.29.37', false, der.sequence(der.oid('1.3.6.1.5.5.7.3.1'), der.oid('1.3.6.1.5.5.7.3.2')));
/** SKI extension header up to the 20-byte SHA-1. */
const SKI_PREFIX = extension('2.5.29.14', false, der.octetString(Buffer.alloc(20))).subarray(0, -20);
/** SAN: OID + critical flag (the subject is empty, so RFC 5280 4.2.1.6 makes SAN critical). */
const SAN_OID_CRITICAL = Buffer.concat([der.oid('2.5.29.17'), der.boolean(true)]);

/** SHA-1 for the SKI: one-shot `crypto.hash` (Node >= 20.12, no Hash object per request) when present. */
const sha1: (data: Buffer) => Buffer = typeof nodeCrypto.hash === 'function'
  ? (data) => nodeCrypto.hash('sha1', data, 'buffer')
  : (data) => nodeCrypto.createHash('sha1').update(data).digest();

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
    this.akiExtension = extension('2.5.29.35', false, der.sequence(der.contextImplicit(0, issuerKeyId)));
  }

  /** The DER TBSCertificate for `f`. */
  encodeTbs(f: SvidFields): Buffer {
    const ski = sha1(f.publicKeyBits);
    const uri = der.contextImplicit(6, Buffer.from(f.spiffeId, 'utf8'));
    const names = f.dnsNames && f.dnsNames.length > 0 ? der.sequence(uri, ...f.dnsNames.map((d) => der.contextImplicit(2, Buffer.from(d, 'ascii')))) : der.sequence(uri);
    const san = der.sequence(SAN_OID_CRITICAL, der.octetString(names));
    const extensions = der.contextExplicit(3, der.sequence(BASIC_CONSTRAINTS, f.rsa ? KEY_USAGE_RSA : KEY_USAGE_EC, EXT_KEY_USAGE, SKI_PREFIX, ski, this.akiExtension, san));
    return der.sequence(
      VERSION_3,
      der.integer(f.serial),
      this.afterSerial,
      der.sequence(der.time(f.notBefore), der.time(f.notAfter)),
      EMPTY_SUBJECT,
      f.spkiDer,
      extensions,
    );
  }

  /** The complete Certificate DER: TBS, signature algorithm, signature BIT STRING. */
  encodeCertificate(tbs: Buffer, signature: Buffer): Buffer {
    return der.sequence(tbs, this.algorithm.identifierDer, der.bitString(signature));
  }
}
