/**
 * Reads the fields of an X.509 certificate the CA needs (raw subject and
 * issuer bytes, key, validity, extensions) straight from the DER, with the
 * offsets-only walker. Used to load the intermediate and to re-read every
 * certificate the CA has just signed before handing it out.
 */
import { CaError, CaErrorCode } from './ca-error';
import { expectTlv, readTlv, type Tlv } from './der-walk';

/** One extension: its OID (dotted), critical flag and the extnValue contents (the inner DER). */
export interface CertificateExtension {
  oid: string;
  critical: boolean;
  value: Buffer;
}

/** The parts of a certificate the CA reads. Buffers are views into the input. */
export interface CertificateFields {
  tbsDer: Buffer;
  version: number;
  serial: Buffer;
  signatureAlgorithmOid: string;
  /** The AlgorithmIdentifier inside the TBS (must equal the outer one). */
  tbsSignatureAlgorithmDer: Buffer;
  outerSignatureAlgorithmDer: Buffer;
  issuerDer: Buffer;
  subjectDer: Buffer;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  /** In the order they appear. */
  extensions: CertificateExtension[];
  signature: Buffer;
}

/** Parses certificate DER; throws TRELLIS_CA_BAD_DER naming `what` on any malformation. */
export function readCertificateFields(der: Buffer, what = 'certificate'): CertificateFields {
  const cert = expectTlv(der, 0, der.length, 0x30, what);
  if (cert.end !== der.length) throw bad(what, 'trailing bytes after the certificate');
  const tbs = expectTlv(der, cert.valueStart, cert.end, 0x30, `${what} tbsCertificate`);
  const outerAlg = expectTlv(der, tbs.end, cert.end, 0x30, `${what} signatureAlgorithm`);
  const sig = expectTlv(der, outerAlg.end, cert.end, 0x03, `${what} signatureValue`);
  if (sig.end !== cert.end) throw bad(what, 'unexpected element after signatureValue');
  if (der[sig.valueStart] !== 0) throw bad(what, 'signatureValue has unused bits');

  let p = tbs.valueStart;
  let version = 1;
  let t = readTlv(der, p, tbs.end, `${what} version`);
  if (t.tag === 0xa0) {
    const v = expectTlv(der, t.valueStart, t.end, 0x02, `${what} version`);
    version = der[v.end - 1]! + 1;
    p = t.end;
    t = readTlv(der, p, tbs.end, `${what} serialNumber`);
  }
  if (t.tag !== 0x02) throw bad(`${what} serialNumber`, 'expected INTEGER');
  const serial = der.subarray(t.valueStart, t.end);
  const alg = expectTlv(der, t.end, tbs.end, 0x30, `${what} signature`);
  const algOid = expectTlv(der, alg.valueStart, alg.end, 0x06, `${what} signature algorithm`);
  const issuer = expectTlv(der, alg.end, tbs.end, 0x30, `${what} issuer`);
  const validity = expectTlv(der, issuer.end, tbs.end, 0x30, `${what} validity`);
  const nb = readTlv(der, validity.valueStart, validity.end, `${what} notBefore`);
  const na = readTlv(der, nb.end, validity.end, `${what} notAfter`);
  const subject = expectTlv(der, validity.end, tbs.end, 0x30, `${what} subject`);
  const spki = expectTlv(der, subject.end, tbs.end, 0x30, `${what} subjectPublicKeyInfo`);
  const extensions: CertificateExtension[] = [];
  p = spki.end;
  while (p < tbs.end) {
    const e = readTlv(der, p, tbs.end, `${what} optional field`);
    if (e.tag === 0xa3) {
      const seq = expectTlv(der, e.valueStart, e.end, 0x30, `${what} extensions`);
      let q = seq.valueStart;
      while (q < seq.end) {
        const ext = expectTlv(der, q, seq.end, 0x30, `${what} extension`);
        const oid = expectTlv(der, ext.valueStart, ext.end, 0x06, `${what} extension id`);
        let r = oid.end;
        let critical = false;
        let v = readTlv(der, r, ext.end, `${what} extension`);
        if (v.tag === 0x01) {
          critical = der[v.valueStart] === 0xff;
          r = v.end;
          v = readTlv(der, r, ext.end, `${what} extension value`);
        }
        if (v.tag !== 0x04) throw bad(`${what} extension`, 'extnValue is not an OCTET STRING');
        extensions.push({ oid: decodeOid(der, oid), critical, value: der.subarray(v.valueStart, v.end) });
        q = ext.end;
      }
    }
    p = e.end;
  }
  return {
    tbsDer: der.subarray(tbs.start, tbs.end),
    version,
    serial,
    signatureAlgorithmOid: decodeOid(der, algOid),
    tbsSignatureAlgorithmDer: der.subarray(alg.start, alg.end),
    outerSignatureAlgorithmDer: der.subarray(outerAlg.start, outerAlg.end),
    issuerDer: der.subarray(issuer.start, issuer.end),
    subjectDer: der.subarray(subject.start, subject.end),
    notBefore: decodeTime(der, nb, `${what} notBefore`),
    notAfter: decodeTime(der, na, `${what} notAfter`),
    spkiDer: der.subarray(spki.start, spki.end),
    extensions,
    signature: der.subarray(sig.valueStart + 1, sig.end),
  };
}

/** The subjectPublicKey BIT STRING contents (without the unused-bits byte) of SPKI DER. */
export function subjectPublicKeyBits(spki: Buffer, what = 'subjectPublicKeyInfo'): Buffer {
  const s = expectTlv(spki, 0, spki.length, 0x30, what);
  const alg = expectTlv(spki, s.valueStart, s.end, 0x30, `${what} algorithm`);
  const bits = expectTlv(spki, alg.end, s.end, 0x03, `${what} subjectPublicKey`);
  if (bits.end - bits.valueStart < 2 || spki[bits.valueStart] !== 0) throw bad(what, 'subjectPublicKey has unused bits or is empty');
  return spki.subarray(bits.valueStart + 1, bits.end);
}

/** Dotted form of the OID TLV `t`. */
export function decodeOid(buf: Buffer, t: Tlv): string {
  if (t.end <= t.valueStart) throw bad('object identifier', 'empty');
  const first = buf[t.valueStart]!;
  const arcs: number[] = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  let v = 0;
  for (let i = t.valueStart + 1; i < t.end; i++) {
    const b = buf[i]!;
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  return arcs.join('.');
}

/** Decodes a UTCTime or GeneralizedTime TLV (the `Z` forms RFC 5280 requires). */
export function decodeTime(buf: Buffer, t: Tlv, what: string): Date {
  const s = buf.toString('latin1', t.valueStart, t.end);
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === 0x17 && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const yy = Number(m[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (t.tag === 0x18 && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    year = Number(m[1]);
  } else {
    throw bad(what, `not a UTCTime/GeneralizedTime in Z form: "${s}"`);
  }
  const d = new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  if (Number.isNaN(d.getTime())) throw bad(what, `invalid time "${s}"`);
  return d;
}

function bad(what: string, reason: string): CaError {
  return new CaError(CaErrorCode.BAD_DER, `malformed DER in ${what}: ${reason}`, { field: what });
}
