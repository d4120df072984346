/**
 * X.509 extensions (RFC 5280 4.2): the one reader for the list in a
 * certificate and for the list a CSR requests (PKCS#10 extensionRequest has
 * the same Extensions type), and the readers of the six extensions the
 * X509-SVID profile is about. As PeculiarVentures/x509 parses a CSR's
 * extensions with the same factory as a certificate's.
 *
 * A reader, not a validator: it refuses only what RFC 5280 makes malformed
 * (an extension twice, a bad extnValue); policy lives in identity/x509-svid.ts.
 */
import {
  DerError,
  DerErrorCode,
  DerTag,
  CONTEXT,
  decodeBitString,
  decodeBoolean,
  decodeOid,
  decodeSmallInteger,
  decodeString,
  readChildren,
  readWhole,
  type Tlv,
} from './der';
import { Oid } from './oids';
import { X509Error, X509ErrorCode } from './x509-error';

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

/** What the extensions say, each one absent (its `NO_*` value) when not present. */
export interface ExtensionSummary {
  readonly basicConstraints: BasicConstraintsFacts;
  readonly keyUsage: KeyUsageFacts;
  readonly extKeyUsage: ExtKeyUsageFacts;
  readonly subjectAltName: SubjectAltNameFacts;
  readonly subjectKeyId: Buffer | undefined;
  readonly authorityKeyId: Buffer | undefined;
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

function unexpected(message: string, at: Tlv): DerError {
  return new DerError(DerErrorCode.UNEXPECTED_TAG, `DER: ${message}`, { field: 'extensions', offset: at.offset });
}

/**
 * Reads an `Extensions` SEQUENCE (`list`, inside `buf`): each
 * `{extnID, critical DEFAULT FALSE, extnValue}`. Throws DerError on a
 * malformed entry and X509Error `TRELLIS_X509_DUPLICATE_EXTENSION` when an
 * extension appears twice (RFC 5280 4.2); `what` names the holder in messages
 * (`certificate`, `certificate request`).
 */
export function readExtensions(buf: Buffer, list: Tlv, what: string): ExtensionFacts[] {
  const extensions: ExtensionFacts[] = [];
  for (const ext of readChildren(buf, list)) {
    const parts = readChildren(buf, ext);
    if (ext.tag !== DerTag.SEQUENCE || parts.length < 2 || parts.length > 3 || parts[0]!.tag !== DerTag.OID) throw unexpected('malformed Extension', ext);
    const extOid = decodeOid(buf, parts[0]!);
    let critical = false;
    if (parts.length === 3) {
      if (parts[1]!.tag !== DerTag.BOOLEAN) throw unexpected(`extension ${extOid}: critical is not a BOOLEAN`, parts[1]!);
      critical = decodeBoolean(buf, parts[1]!);
      // DER: a DEFAULT FALSE field equal to its default must be omitted; tolerated, as
      // common issuers (and go-spiffe's test data) have written it.
    }
    const valueT = parts[parts.length - 1]!;
    if (valueT.tag !== DerTag.OCTET_STRING) throw unexpected(`extension ${extOid}: extnValue is not an OCTET STRING`, valueT);
    if (extensions.some((e) => e.oid === extOid)) {
      throw new X509Error(X509ErrorCode.DUPLICATE_EXTENSION, `${what} has extension ${extOid} twice (RFC 5280 4.2)`, { extension: extOid });
    }
    extensions.push(Object.freeze({ oid: extOid, critical, value: buf.subarray(valueT.start, valueT.end) }));
  }
  return extensions;
}

/**
 * Reads the extensions Trellis decides on out of `extensions`; any other is
 * left to the caller (critical ones are refused by the SVID profile). Throws
 * X509Error `TRELLIS_X509_BAD_EXTENSION` naming the extension whose value is
 * malformed; `what` names the holder in messages.
 */
export function summariseExtensions(extensions: readonly ExtensionFacts[], what = 'certificate'): ExtensionSummary {
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
      throw badExtension(what, name, err);
    }
  }
  return Object.freeze({ basicConstraints, keyUsage, extKeyUsage, subjectAltName, subjectKeyId, authorityKeyId });
}

function badExtension(what: string, name: string, err: unknown): X509Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new X509Error(X509ErrorCode.BAD_EXTENSION, `${what} extension ${name} is malformed: ${reason}`, { extension: name }, { cause: err });
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
