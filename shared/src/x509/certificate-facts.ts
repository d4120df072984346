/**
 * One pass over a DER certificate that pulls out the facts SVID validation, the
 * CA and the sidecar decide on: validity, keys, and the six extensions the
 * X509-SVID profile is about. Byte fields are subarrays of the input (no
 * copies); keep the input alive and unmodified while the facts are in use.
 *
 * This is a reader, not a validator: it rejects only what is not a well-formed
 * DER certificate (including duplicate extensions and a signature algorithm
 * mismatch, which RFC 5280 forbids), never a certificate that is merely
 * unacceptable. Policy lives in identity/x509-svid.ts.
 */
import {
  DerError,
  DerTag,
  CONSTRUCTED,
  CONTEXT,
  decodeBitString,
  decodeOid,
  decodeSmallInteger,
  decodeTime,
  decodeUnsignedIntegerBytes,
  expectTlv,
  readChildren,
  readWhole,
  type Tlv,
} from './der';
import { SIGNATURE_ALGORITHMS } from './oids';
import { readExtensions, summariseExtensions, type ExtensionFacts, type ExtensionSummary } from './extensions';
import { nameText } from './name';
import { spkiKeyType, type KeyType } from './spki';
import { X509Error, X509ErrorCode } from './x509-error';
import { normaliseSerial } from './serial';

/** What {@link parseCertificate} reads out of a certificate, the extensions' facts included. Frozen. */
export interface CertificateFacts extends ExtensionSummary {
  /** The whole certificate DER (the input). */
  readonly der: Buffer;
  /** The tbsCertificate DER, i.e. the signed bytes. */
  readonly tbs: Buffer;
  /** 1, 2 or 3. */
  readonly version: number;
  /** Serial magnitude bytes without sign padding. */
  readonly serial: Buffer;
  /** Serial in the one printed form, {@link normaliseSerial}'s: lower-case hex, no leading zeros (e.g. `7a3f00…`). */
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Issuer Name DER (the whole SEQUENCE). */
  readonly issuer: Buffer;
  /** Subject Name DER (the whole SEQUENCE). */
  readonly subject: Buffer;
  /** RFC 4514 rendering (last RDN first) for logs and messages, e.g. `CN=x,O=y`; `''` when empty. */
  readonly issuerText: string;
  readonly subjectText: string;
  /** True when the subject Name has no RDNs. */
  readonly subjectEmpty: boolean;
  /** SubjectPublicKeyInfo DER (whole SEQUENCE), usable with node:crypto createPublicKey. */
  readonly spki: Buffer;
  readonly publicKeyAlgorithm: string;
  readonly keyType: KeyType;
  /** Every extension, in order. */
  readonly extensions: readonly ExtensionFacts[];
  /** OIDs of the extensions marked critical. */
  readonly criticalExtensions: readonly string[];
  /** Signature algorithm OID (outer, equal to the inner one). */
  readonly signatureAlgorithm: string;
  /** Its name (`ecdsa-with-SHA256`) or the OID when unknown. */
  readonly signatureAlgorithmName: string;
  /** The node:crypto digest for verify(), or undefined (Ed25519, PSS params, unknown). */
  readonly signatureHash: 'sha1' | 'sha256' | 'sha384' | 'sha512' | undefined;
  /** The signature bytes (BIT STRING contents without the unused-bits byte). */
  readonly signature: Buffer;
}

function malformed(what: string, err: unknown): X509Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new X509Error(X509ErrorCode.MALFORMED_CERTIFICATE, `malformed certificate: ${what}: ${reason}`, {
    field: what,
    ...(err instanceof DerError ? { derCode: err.code, offset: err.details.offset } : {}),
  }, { cause: err });
}

/**
 * Reads a DER X.509 certificate. Throws {@link X509Error}:
 * `TRELLIS_X509_MALFORMED_CERTIFICATE` (with `details.field`), `..._UNSUPPORTED_VERSION`,
 * `..._SIGNATURE_ALGORITHM_MISMATCH`, `..._DUPLICATE_EXTENSION`, `..._BAD_EXTENSION`.
 */
export function parseCertificate(der: Buffer): CertificateFacts {
  if (!Buffer.isBuffer(der)) der = Buffer.from(der as Uint8Array);
  let step = 'Certificate';
  try {
    const cert = readWhole(der, DerTag.SEQUENCE, 'Certificate');
    const top = readChildren(der, cert);
    if (top.length !== 3) throw new Error(`expected 3 fields, found ${top.length}`);
    const [tbsT, sigAlgT, sigT] = top as [Tlv, Tlv, Tlv];
    step = 'tbsCertificate';
    if (tbsT.tag !== DerTag.SEQUENCE) throw new Error('not a SEQUENCE');
    const f = readChildren(der, tbsT);
    let i = 0;
    let version = 1;
    if (f[0]?.tag === (CONTEXT | CONSTRUCTED | 0)) {
      step = 'version';
      const v = readChildren(der, f[0]);
      if (v.length !== 1 || v[0]!.tag !== DerTag.INTEGER) throw new Error('not [0] EXPLICIT INTEGER');
      version = decodeSmallInteger(der, v[0]!) + 1;
      i++;
      if (version < 1 || version > 3) {
        throw new X509Error(X509ErrorCode.UNSUPPORTED_VERSION, `certificate version ${version} is not supported (v1-v3)`, { version });
      }
    }
    const need = (tag: number, name: string): Tlv => {
      step = name;
      const t = f[i++];
      if (!t) throw new Error('missing');
      if (t.tag !== tag) throw new Error(`expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
      return t;
    };
    const serialT = need(DerTag.INTEGER, 'serialNumber');
    const serial = decodeUnsignedIntegerBytes(der, serialT);
    const innerSigAlg = need(DerTag.SEQUENCE, 'signature');
    const issuerT = need(DerTag.SEQUENCE, 'issuer');
    const issuerText = nameText(der, issuerT);
    const validityT = need(DerTag.SEQUENCE, 'validity');
    const validity = readChildren(der, validityT);
    if (validity.length !== 2) throw new Error('expected notBefore and notAfter');
    const notBefore = decodeTime(der, validity[0]!);
    const notAfter = decodeTime(der, validity[1]!);
    const subjectT = need(DerTag.SEQUENCE, 'subject');
    const subjectText = nameText(der, subjectT);
    const spkiT = need(DerTag.SEQUENCE, 'subjectPublicKeyInfo');
    const { algorithm: publicKeyAlgorithm, keyType } = spkiKeyType(der, spkiT);

    const extensions: ExtensionFacts[] = [];
    for (; i < f.length; i++) {
      const t = f[i]!;
      if (t.tag === (CONTEXT | 1) || t.tag === (CONTEXT | 2)) {
        step = 'uniqueIdentifier';
        if (version < 2) throw new X509Error(X509ErrorCode.UNSUPPORTED_VERSION, 'unique identifiers in a v1 certificate', {});
        continue;
      }
      if (t.tag !== (CONTEXT | CONSTRUCTED | 3) || i !== f.length - 1) {
        step = 'tbsCertificate';
        throw new Error(`unexpected field with tag 0x${t.tag.toString(16)}`);
      }
      step = 'extensions';
      if (version !== 3) throw new X509Error(X509ErrorCode.UNSUPPORTED_VERSION, `extensions in a v${version} certificate`, { version });
      const wrapper = readChildren(der, t);
      if (wrapper.length !== 1 || wrapper[0]!.tag !== DerTag.SEQUENCE) throw new Error('not [3] EXPLICIT SEQUENCE');
      if (wrapper[0]!.length === 0) throw new Error('empty extension list');
      extensions.push(...readExtensions(der, wrapper[0]!, 'certificate'));
    }

    step = 'signatureAlgorithm';
    if (sigAlgT.tag !== DerTag.SEQUENCE) throw new Error('not a SEQUENCE');
    if (!der.subarray(sigAlgT.offset, sigAlgT.end).equals(der.subarray(innerSigAlg.offset, innerSigAlg.end))) {
      throw new X509Error(X509ErrorCode.SIGNATURE_ALGORITHM_MISMATCH, 'certificate signatureAlgorithm differs from tbsCertificate.signature (RFC 5280 4.1.1.2)', {});
    }
    const algChildren = readChildren(der, sigAlgT);
    const signatureAlgorithm = decodeOid(der, expectTlv(der, algChildren[0]?.offset ?? sigAlgT.end, DerTag.OID, 'signatureAlgorithm', sigAlgT.end));
    const known = SIGNATURE_ALGORITHMS[signatureAlgorithm];
    step = 'signatureValue';
    if (sigT.tag !== DerTag.BIT_STRING) throw new Error('not a BIT STRING');
    const sig = decodeBitString(der, sigT);
    if (sig.unusedBits !== 0) throw new Error('signature has unused bits');

    const { basicConstraints, keyUsage, extKeyUsage, subjectAltName, subjectKeyId, authorityKeyId } = summariseExtensions(extensions, 'certificate');

    return Object.freeze({
      der,
      tbs: der.subarray(tbsT.offset, tbsT.end),
      version,
      serial,
      serialHex: normaliseSerial(serial.toString('hex')),
      notBefore,
      notAfter,
      issuer: der.subarray(issuerT.offset, issuerT.end),
      subject: der.subarray(subjectT.offset, subjectT.end),
      issuerText,
      subjectText,
      subjectEmpty: subjectT.length === 0,
      spki: der.subarray(spkiT.offset, spkiT.end),
      publicKeyAlgorithm,
      keyType,
      basicConstraints,
      keyUsage,
      extKeyUsage,
      subjectAltName,
      subjectKeyId,
      authorityKeyId,
      extensions: Object.freeze(extensions),
      criticalExtensions: Object.freeze(extensions.filter((e) => e.critical).map((e) => e.oid)),
      signatureAlgorithm,
      signatureAlgorithmName: known?.[0] ?? signatureAlgorithm,
      signatureHash: known?.[1],
      signature: sig.bytes,
    });
  } catch (err) {
    if (err instanceof X509Error) throw err;
    throw malformed(step, err);
  }
}

/** Parses each DER in order; errors name the position (`details.index`). */
export function parseCertificates(ders: readonly Buffer[]): CertificateFacts[] {
  return ders.map((d, index) => {
    try {
      return parseCertificate(d);
    } catch (err) {
      if (err instanceof X509Error) {
        throw new X509Error(err.code, `certificate #${index + 1}: ${err.message}`, { ...err.details, index }, { cause: err });
      }
      throw err;
    }
  });
}
