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
  decodeBoolean,
  decodeOid,
  decodeSmallInteger,
  decodeString,
  decodeTime,
  decodeUnsignedIntegerBytes,
  expectTlv,
  readChildren,
  readWhole,
  type Tlv,
} from './der';
import { NAME_ATTRIBUTE_SHORT, Oid, SIGNATURE_ALGORITHMS } from './oids';
import { X509Error, X509ErrorCode } from './x509-error';
import { normaliseSerial } from './serial';

/** `ec-p256`, `ec-p384`, `ec-p521`, `rsa-<modulus bits>`, `ed25519`, or `other`. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'ec-p521' | `rsa-${number}` | 'ed25519' | 'other';

/** basicConstraints (RFC 5280 4.2.1.9). */
export interface BasicConstraintsFacts {
  readonly present: boolean;
  readonly critical: boolean;
  /** false when absent. */
  readonly ca: boolean;
  /** undefined when absent or unlimited. */
  readonly pathLen: number | undefined;
}

/** keyUsage (RFC 5280 4.2.1.3), one boolean per named bit; all false when absent. */
export interface KeyUsageFacts {
  readonly present: boolean;
  readonly critical: boolean;
  readonly digitalSignature: boolean;
  readonly contentCommitment: boolean;
  readonly keyEncipherment: boolean;
  readonly dataEncipherment: boolean;
  readonly keyAgreement: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
  readonly encipherOnly: boolean;
  readonly decipherOnly: boolean;
}

/** extKeyUsage (RFC 5280 4.2.1.12). */
export interface ExtKeyUsageFacts {
  readonly present: boolean;
  readonly critical: boolean;
  /** Purpose OIDs in certificate order. */
  readonly oids: readonly string[];
}

/** subjectAltName (RFC 5280 4.2.1.6). */
export interface SubjectAltNameFacts {
  readonly present: boolean;
  readonly critical: boolean;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  /** Dotted IPv4 or full, uncompressed colon-hex IPv6. */
  readonly ipAddresses: readonly string[];
  readonly emails: readonly string[];
  /** How many names of other kinds (otherName, directoryName, ...). */
  readonly otherCount: number;
}

/** One extension as it appears in the certificate. */
export interface ExtensionFacts {
  readonly oid: string;
  readonly critical: boolean;
  /** The extnValue contents (the DER inside the OCTET STRING). */
  readonly value: Buffer;
}

/** What {@link parseCertificate} reads out of a certificate. Frozen. */
export interface CertificateFacts {
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
  readonly basicConstraints: BasicConstraintsFacts;
  readonly keyUsage: KeyUsageFacts;
  readonly extKeyUsage: ExtKeyUsageFacts;
  readonly subjectAltName: SubjectAltNameFacts;
  readonly subjectKeyId: Buffer | undefined;
  readonly authorityKeyId: Buffer | undefined;
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

const KU_NAMES = [
  'digitalSignature',
  'contentCommitment',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;

const NO_KU: KeyUsageFacts = Object.freeze({
  present: false,
  critical: false,
  digitalSignature: false,
  contentCommitment: false,
  keyEncipherment: false,
  dataEncipherment: false,
  keyAgreement: false,
  keyCertSign: false,
  cRLSign: false,
  encipherOnly: false,
  decipherOnly: false,
});
const NO_BC: BasicConstraintsFacts = Object.freeze({ present: false, critical: false, ca: false, pathLen: undefined });
const NO_EKU: ExtKeyUsageFacts = Object.freeze({ present: false, critical: false, oids: Object.freeze([]) });
const NO_SAN: SubjectAltNameFacts = Object.freeze({
  present: false,
  critical: false,
  uris: Object.freeze([]),
  dnsNames: Object.freeze([]),
  ipAddresses: Object.freeze([]),
  emails: Object.freeze([]),
  otherCount: 0,
});

function malformed(what: string, err: unknown): X509Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new X509Error(X509ErrorCode.MALFORMED_CERTIFICATE, `malformed certificate: ${what}: ${reason}`, {
    field: what,
    ...(err instanceof DerError ? { derCode: err.code, offset: err.details.offset } : {}),
  }, { cause: err });
}

function badExtension(name: string, err: unknown): X509Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new X509Error(X509ErrorCode.BAD_EXTENSION, `certificate extension ${name} is malformed: ${reason}`, { extension: name }, { cause: err });
}

/** Renders a Name per RFC 4514: last RDN first, multi-valued RDNs joined with `+`. */
function nameText(buf: Buffer, name: Tlv): string {
  const rdns: string[] = [];
  for (const rdn of readChildren(buf, name)) {
    const parts: string[] = [];
    for (const atv of readChildren(buf, rdn)) {
      const [t, v] = readChildren(buf, atv);
      const type = decodeOid(buf, t!);
      let value: string;
      try {
        value = decodeString(buf, v!);
      } catch {
        value = '#' + buf.subarray(v!.offset, v!.end).toString('hex');
      }
      parts.push(`${NAME_ATTRIBUTE_SHORT[type] ?? type}=${value.replace(/([,+"\\<>;])/g, '\\$1')}`);
    }
    rdns.push(parts.join('+'));
  }
  return rdns.reverse().join(',');
}

function keyTypeOf(buf: Buffer, spki: Tlv): { algorithm: string; keyType: KeyType } {
  const [algId, key] = readChildren(buf, spki);
  if (!algId || !key || algId.tag !== DerTag.SEQUENCE || key.tag !== DerTag.BIT_STRING) throw new Error('subjectPublicKeyInfo is not {AlgorithmIdentifier, BIT STRING}');
  const algParts = readChildren(buf, algId);
  const algorithm = decodeOid(buf, expectTlv(buf, algParts[0]?.offset ?? algId.end, DerTag.OID, 'spki algorithm', algId.end));
  if (algorithm === Oid.ecPublicKey) {
    const params = algParts[1];
    const curve = params && params.tag === DerTag.OID ? decodeOid(buf, params) : '';
    const keyType: KeyType = curve === Oid.prime256v1 ? 'ec-p256' : curve === Oid.secp384r1 ? 'ec-p384' : curve === Oid.secp521r1 ? 'ec-p521' : 'other';
    return { algorithm, keyType };
  }
  if (algorithm === Oid.rsaEncryption) {
    const bits = decodeBitString(buf, key).bytes;
    const rsaKey = readWhole(bits, DerTag.SEQUENCE, 'RSAPublicKey');
    const modulus = expectTlv(bits, rsaKey.start, DerTag.INTEGER, 'RSA modulus', rsaKey.end);
    const mag = decodeUnsignedIntegerBytes(bits, modulus);
    const top = mag[0] ?? 0;
    const size = mag.length === 0 ? 0 : (mag.length - 1) * 8 + (32 - Math.clz32(top));
    return { algorithm, keyType: `rsa-${size}` };
  }
  if (algorithm === Oid.ed25519) return { algorithm, keyType: 'ed25519' };
  return { algorithm, keyType: 'other' };
}

function parseBasicConstraints(buf: Buffer, critical: boolean): BasicConstraintsFacts {
  const seq = readWhole(buf, DerTag.SEQUENCE, 'basicConstraints');
  let ca = false;
  let pathLen: number | undefined;
  for (const c of readChildren(buf, seq)) {
    if (c.tag === DerTag.BOOLEAN && pathLen === undefined) ca = decodeBoolean(buf, c);
    else if (c.tag === DerTag.INTEGER && pathLen === undefined) pathLen = decodeSmallInteger(buf, c);
    else throw new Error('unexpected field');
  }
  return Object.freeze({ present: true, critical, ca, pathLen });
}

function parseKeyUsage(buf: Buffer, critical: boolean): KeyUsageFacts {
  const bs = decodeBitString(buf, readWhole(buf, DerTag.BIT_STRING, 'keyUsage'));
  const out: Record<string, boolean> = { present: true, critical };
  KU_NAMES.forEach((name, bit) => {
    const byte = bs.bytes[bit >> 3];
    out[name] = byte !== undefined && (byte & (0x80 >> (bit & 7))) !== 0;
  });
  return Object.freeze(out as unknown as KeyUsageFacts);
}

function parseExtKeyUsage(buf: Buffer, critical: boolean): ExtKeyUsageFacts {
  const seq = readWhole(buf, DerTag.SEQUENCE, 'extKeyUsage');
  const oids = readChildren(buf, seq).map((c) => {
    if (c.tag !== DerTag.OID) throw new Error('purpose is not an OID');
    return decodeOid(buf, c);
  });
  if (oids.length === 0) throw new Error('empty purpose list');
  return Object.freeze({ present: true, critical, oids: Object.freeze(oids) });
}

function ipText(b: Buffer): string {
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    return groups.join(':');
  }
  throw new Error(`iPAddress of ${b.length} bytes`);
}

function parseSubjectAltName(buf: Buffer, critical: boolean): SubjectAltNameFacts {
  const seq = readWhole(buf, DerTag.SEQUENCE, 'subjectAltName');
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const emails: string[] = [];
  let otherCount = 0;
  for (const g of readChildren(buf, seq)) {
    switch (g.tag) {
      case CONTEXT | 1:
        emails.push(decodeString(buf, g));
        break;
      case CONTEXT | 2:
        dnsNames.push(decodeString(buf, g));
        break;
      case CONTEXT | 6:
        uris.push(decodeString(buf, g));
        break;
      case CONTEXT | 7:
        ipAddresses.push(ipText(buf.subarray(g.start, g.end)));
        break;
      default:
        if ((g.tag & 0xc0) !== CONTEXT) throw new Error(`GeneralName with tag 0x${g.tag.toString(16)}`);
        otherCount++;
    }
  }
  if (uris.length + dnsNames.length + ipAddresses.length + emails.length + otherCount === 0) throw new Error('empty name list');
  return Object.freeze({
    present: true,
    critical,
    uris: Object.freeze(uris),
    dnsNames: Object.freeze(dnsNames),
    ipAddresses: Object.freeze(ipAddresses),
    emails: Object.freeze(emails),
    otherCount,
  });
}

function parseAuthorityKeyId(buf: Buffer): Buffer | undefined {
  const seq = readWhole(buf, DerTag.SEQUENCE, 'authorityKeyIdentifier');
  for (const c of readChildren(buf, seq)) if (c.tag === (CONTEXT | 0)) return buf.subarray(c.start, c.end);
  return undefined;
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
    const { algorithm: publicKeyAlgorithm, keyType } = keyTypeOf(der, spkiT);

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
      const list = readChildren(der, wrapper[0]!);
      if (list.length === 0) throw new Error('empty extension list');
      for (const ext of list) {
        const parts = readChildren(der, ext);
        if (ext.tag !== DerTag.SEQUENCE || parts.length < 2 || parts.length > 3 || parts[0]!.tag !== DerTag.OID) throw new Error('malformed Extension');
        const extOid = decodeOid(der, parts[0]!);
        let critical = false;
        if (parts.length === 3) {
          if (parts[1]!.tag !== DerTag.BOOLEAN) throw new Error(`extension ${extOid}: critical is not a BOOLEAN`);
          critical = decodeBoolean(der, parts[1]!);
          // DER: a DEFAULT FALSE field equal to its default must be omitted; tolerated, as
          // common issuers (and go-spiffe's test data) have written it.
        }
        const valueT = parts[parts.length - 1]!;
        if (valueT.tag !== DerTag.OCTET_STRING) throw new Error(`extension ${extOid}: extnValue is not an OCTET STRING`);
        if (extensions.some((e) => e.oid === extOid)) {
          throw new X509Error(X509ErrorCode.DUPLICATE_EXTENSION, `certificate has extension ${extOid} twice (RFC 5280 4.2)`, { extension: extOid });
        }
        extensions.push(Object.freeze({ oid: extOid, critical, value: der.subarray(valueT.start, valueT.end) }));
      }
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

    let basicConstraints = NO_BC;
    let keyUsage = NO_KU;
    let extKeyUsage = NO_EKU;
    let subjectAltName = NO_SAN;
    let subjectKeyId: Buffer | undefined;
    let authorityKeyId: Buffer | undefined;
    for (const e of extensions) {
      const name = e.oid;
      try {
        switch (e.oid) {
          case Oid.basicConstraints:
            basicConstraints = parseBasicConstraints(e.value, e.critical);
            break;
          case Oid.keyUsage:
            keyUsage = parseKeyUsage(e.value, e.critical);
            break;
          case Oid.extKeyUsage:
            extKeyUsage = parseExtKeyUsage(e.value, e.critical);
            break;
          case Oid.subjectAltName:
            subjectAltName = parseSubjectAltName(e.value, e.critical);
            break;
          case Oid.subjectKeyIdentifier: {
            const t = readWhole(e.value, DerTag.OCTET_STRING, 'subjectKeyIdentifier');
            subjectKeyId = e.value.subarray(t.start, t.end);
            break;
          }
          case Oid.authorityKeyIdentifier:
            authorityKeyId = parseAuthorityKeyId(e.value);
            break;
          default:
            break;
        }
      } catch (err) {
        throw badExtension(name, err);
      }
    }

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
