/**
 * The per-request check of what the CA has just signed: a strict read-back
 * of the certificate DER with the shared DER reader (not the template code
 * that wrote it), comparing every field to what the CA decided.
 *
 * Why not the full shared certificate parser on every SVID: it renders names
 * to text, decodes every OID to a string and freezes a facts object, which
 * cost about as much as the rest of issuance's JavaScript together. This
 * reader checks the exact expected values instead, which implies every
 * X.509-SVID leaf rule (one URI SAN that is a SPIFFE ID with a path in our
 * trust domain, CA:false critical, keyUsage critical with digitalSignature
 * and without keyCertSign/cRLSign, serverAuth + clientAuth, critical SAN on
 * the empty subject) and is stricter than them: any extension other than the
 * six of the profile, a duplicate, or trailing bytes anywhere fails. The full
 * parser + `validateLeafSvid` still run on a probe of the template when the
 * CA loads (see `checkIssuedSvid`).
 *
 * Fails closed: any deviation is TRELLIS_CA_SELF_CHECK_FAILED naming the rule.
 */
import * as nodeCrypto from 'node:crypto';
import { der, DerError, parseSpiffeId, type Tlv } from '@trellis/shared';
import { CaError, CaErrorCode } from './ca-error';
import type { ExpectedSvid } from './issued-check';

const SEQ = 0x30;
const OID = 0x06;
const BOOLEAN = 0x01;
const OCTET_STRING = 0x04;
const BIT_STRING = 0x03;
const INTEGER = 0x02;

/** OIDs compared as their DER encoding (tag + length + value). */
const OID_BC = der.oid('2.5.29.19');
const OID_KU = der.oid('2.5.29.15');
const OID_EKU = der.oid('2.5.29.37');
const OID_SKI = der.oid('2.5.29.14');
const OID_AKI = der.oid('2.5.29.35');
const OID_SAN = der.oid('2.5.29.17');
const OID_SERVER_AUTH = der.oid('1.3.6.1.5.5.7.3.1');
const OID_CLIENT_AUTH = der.oid('1.3.6.1.5.5.7.3.2');

/** keyUsage bits (RFC 5280 4.2.1.3), counted from the most significant bit of the first byte. */
const KU_DIGITAL_SIGNATURE = 0;
const KU_KEY_ENCIPHERMENT = 2;
const KU_KEY_CERT_SIGN = 5;
const KU_CRL_SIGN = 6;

class Broken extends Error {}

/** SHA-1 for the SKI: one-shot `crypto.hash` (Node >= 20.12) when present. */
const sha1: (data: Buffer) => Buffer = typeof nodeCrypto.hash === 'function'
  ? (data) => nodeCrypto.hash('sha1', data, 'buffer')
  : (data) => nodeCrypto.createHash('sha1').update(data).digest();

/**
 * Whether `buf[from, to)` is exactly `expected`. A plain loop: for the few
 * dozen bytes compared here it beats a subarray plus Buffer#equals (a native
 * call each), which dominated this check.
 */
function sameBytes(buf: Buffer, from: number, to: number, expected: Buffer): boolean {
  if (to - from !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (buf[from + i] !== expected[i]) return false;
  return true;
}

/** The whole encoding (header + contents) of `t` is exactly `expected`. */
function encodedIs(buf: Buffer, t: Tlv, expected: Buffer): boolean {
  return sameBytes(buf, t.offset, t.end, expected);
}

/** The contents of `t` are exactly `expected`. */
function contentsAre(buf: Buffer, t: Tlv, expected: Buffer): boolean {
  return sameBytes(buf, t.start, t.end, expected);
}

function bit(bytes: Buffer, n: number): boolean {
  const b = bytes[n >> 3];
  return b !== undefined && (b & (0x80 >> (n & 7))) !== 0;
}

/** Throws SELF_CHECK_FAILED naming the first rule the certificate breaks. */
export function readBackIssuedSvid(certDer: Buffer, want: ExpectedSvid): void {
  try {
    readBack(certDer, want);
  } catch (err) {
    const rule = err instanceof Broken ? err.message : err instanceof DerError ? `it does not parse (${err.message})` : `it cannot be read back (${(err as Error).message})`;
    throw new CaError(CaErrorCode.SELF_CHECK_FAILED, `refusing to hand out a certificate that breaks the SVID profile: ${rule}`, { rule, spiffeId: want.spiffeId });
  }
}

function fail(rule: string): never {
  throw new Broken(rule);
}

function readBack(buf: Buffer, want: ExpectedSvid): void {
  const cert = der.readWhole(buf, SEQ, 'Certificate');
  const tbs = der.expectTlv(buf, cert.start, SEQ, 'tbsCertificate', cert.end);
  const outerAlg = der.expectTlv(buf, tbs.end, SEQ, 'signatureAlgorithm', cert.end);
  const sig = der.expectTlv(buf, outerAlg.end, BIT_STRING, 'signature', cert.end);
  if (sig.end !== cert.end) fail('data after the signature');
  const signature = der.decodeBitString(buf, sig);
  if (signature.unusedBits !== 0 || signature.bytes.length === 0) fail('the signature is not a whole number of bytes');
  if (!encodedIs(buf, outerAlg, want.algorithm.identifierDer)) fail('signature algorithm differs from the signer');

  const version = der.expectTlv(buf, tbs.start, 0xa0, 'version', tbs.end);
  const versionInt = der.expectTlv(buf, version.start, INTEGER, 'version', version.end);
  if (versionInt.end !== version.end || der.decodeSmallInteger(buf, versionInt) !== 2) fail('version is not v3');
  const serial = der.expectTlv(buf, version.end, INTEGER, 'serialNumber', tbs.end);
  if (!der.decodeUnsignedIntegerBytes(buf, serial).equals(stripZeros(want.serial))) fail('serial differs from the one drawn');
  const innerAlg = der.expectTlv(buf, serial.end, SEQ, 'signature', tbs.end);
  if (!encodedIs(buf, innerAlg, want.algorithm.identifierDer)) fail('signature algorithm differs from the signer');
  const issuer = der.expectTlv(buf, innerAlg.end, SEQ, 'issuer', tbs.end);
  if (!encodedIs(buf, issuer, want.issuerDer)) fail('issuer is not the intermediate subject');
  const validity = der.expectTlv(buf, issuer.end, SEQ, 'validity', tbs.end);
  const notBefore = der.readTlv(buf, validity.start, validity.end);
  const notAfter = der.readTlv(buf, notBefore.end, validity.end);
  if (notAfter.end !== validity.end) fail('data after notAfter');
  if (der.decodeTime(buf, notBefore).getTime() !== want.notBefore.getTime() || der.decodeTime(buf, notAfter).getTime() !== want.notAfter.getTime()) {
    fail('validity differs from the decided window');
  }
  const subject = der.expectTlv(buf, validity.end, SEQ, 'subject', tbs.end);
  if (subject.length !== 0) fail('subject is not empty');
  const spki = der.expectTlv(buf, subject.end, SEQ, 'subjectPublicKeyInfo', tbs.end);
  if (!encodedIs(buf, spki, want.spkiDer)) fail('public key is not the CSR key');
  const extsWrapper = der.expectTlv(buf, spki.end, 0xa3, 'extensions', tbs.end);
  if (extsWrapper.end !== tbs.end) fail('fields after the extensions (issuer/subject unique IDs are not in the profile)');
  const exts = der.expectTlv(buf, extsWrapper.start, SEQ, 'extensions', extsWrapper.end);
  if (exts.end !== extsWrapper.end) fail('data after the extensions');

  const seen = new Set<string>();
  der.forEachChild(buf, exts, (ext) => {
    if (ext.tag !== SEQ) fail('an extension is not a SEQUENCE');
    const oid = der.expectTlv(buf, ext.start, OID, 'extnID', ext.end);
    let next = der.readTlv(buf, oid.end, ext.end);
    let critical = false;
    if (next.tag === BOOLEAN) {
      // DER leaves out the DEFAULT FALSE, so an explicit flag must be TRUE.
      if (!der.decodeBoolean(buf, next)) fail('an extension encodes critical FALSE explicitly (not DER)');
      critical = true;
      next = der.readTlv(buf, next.end, ext.end);
    }
    if (next.tag !== OCTET_STRING || next.end !== ext.end) fail('an extension value is not one OCTET STRING');
    const name = extensionName(buf, oid);
    if (seen.has(name)) fail(`duplicate extension ${name}`);
    seen.add(name);
    checkExtension(name, critical, buf, next.start, next.end, want);
  });
  for (const name of ['basicConstraints', 'keyUsage', 'extKeyUsage', 'subjectKeyIdentifier', 'authorityKeyIdentifier', 'subjectAltName']) {
    if (!seen.has(name)) fail(`${name} is missing`);
  }

  if (want.issuerPublicKey) {
    let ok = false;
    try {
      ok = nodeCrypto.verify(want.algorithm.hash, der.encoded(buf, tbs), want.issuerPublicKey, signature.bytes);
    } catch {
      ok = false;
    }
    if (!ok) fail('signature does not verify with the intermediate key');
  }
}

function extensionName(buf: Buffer, oid: Tlv): string {
  if (encodedIs(buf, oid, OID_BC)) return 'basicConstraints';
  if (encodedIs(buf, oid, OID_KU)) return 'keyUsage';
  if (encodedIs(buf, oid, OID_EKU)) return 'extKeyUsage';
  if (encodedIs(buf, oid, OID_SKI)) return 'subjectKeyIdentifier';
  if (encodedIs(buf, oid, OID_AKI)) return 'authorityKeyIdentifier';
  if (encodedIs(buf, oid, OID_SAN)) return 'subjectAltName';
  return fail(`extension ${der.decodeOid(buf, oid)} is not in the SVID profile`);
}

function checkExtension(name: string, critical: boolean, buf: Buffer, start: number, end: number, want: ExpectedSvid): void {
  const value = der.readTlv(buf, start, end);
  if (value.end !== end) fail(`data after the ${name} value`);
  switch (name) {
    case 'basicConstraints':
      if (!critical) fail('basicConstraints is not critical');
      if (value.tag !== SEQ || value.length !== 0) fail('basicConstraints is not CA:false without pathLen');
      return;
    case 'keyUsage': {
      if (!critical) fail('keyUsage is not critical');
      if (value.tag !== BIT_STRING) fail('keyUsage is not a BIT STRING');
      const bits = der.decodeBitString(buf, value).bytes;
      if (!bit(bits, KU_DIGITAL_SIGNATURE)) fail('keyUsage lacks digitalSignature');
      if (bit(bits, KU_KEY_CERT_SIGN) || bit(bits, KU_CRL_SIGN)) fail('keyUsage allows keyCertSign or cRLSign');
      const rsa = spkiAlgorithmIs(want.spkiDer, RSA_ENCRYPTION_OID);
      for (let n = 0; n < Math.max(bits.length * 8, KU_KEY_ENCIPHERMENT + 1); n++) {
        const wanted = n === KU_DIGITAL_SIGNATURE || (rsa && n === KU_KEY_ENCIPHERMENT);
        if (bit(bits, n) !== wanted) fail('keyUsage is not exactly the profile (digitalSignature, plus keyEncipherment for RSA)');
      }
      return;
    }
    case 'extKeyUsage': {
      if (critical) fail('extKeyUsage is critical');
      if (value.tag !== SEQ) fail('extKeyUsage is not a SEQUENCE');
      let server = false;
      let client = false;
      let count = 0;
      der.forEachChild(buf, value, (p) => {
        count++;
        if (p.tag !== OID) fail('an extKeyUsage purpose is not an OID');
        if (encodedIs(buf, p, OID_SERVER_AUTH)) server = true;
        else if (encodedIs(buf, p, OID_CLIENT_AUTH)) client = true;
      });
      if (!server || !client || count !== 2) fail('extKeyUsage is not exactly serverAuth + clientAuth');
      return;
    }
    case 'subjectKeyIdentifier': {
      if (value.tag !== OCTET_STRING) fail('SKI is not an OCTET STRING');
      const keyBits = subjectPublicKeyBits(want.spkiDer);
      if (!contentsAre(buf, value, sha1(keyBits))) fail('SKI is not the SHA-1 of the public key (RFC 5280 method 1)');
      return;
    }
    case 'authorityKeyIdentifier': {
      if (value.tag !== SEQ) fail('AKI is not a SEQUENCE');
      const keyId = der.readTlv(buf, value.start, value.end);
      if (keyId.tag !== 0x80 || keyId.end !== value.end || !contentsAre(buf, keyId, want.issuerKeyId)) fail('AKI is not the intermediate key id');
      return;
    }
    case 'subjectAltName':
      checkSan(critical, buf, value, want);
      return;
  }
}

function checkSan(critical: boolean, buf: Buffer, names: Tlv, want: ExpectedSvid): void {
  if (!critical) fail('subjectAltName is not critical although the subject is empty');
  if (names.tag !== SEQ) fail('subjectAltName is not a SEQUENCE');
  const uris: string[] = [];
  const dns: string[] = [];
  der.forEachChild(buf, names, (n) => {
    if (n.tag === 0x86) uris.push(buf.toString('utf8', n.start, n.end));
    else if (n.tag === 0x82) dns.push(buf.toString('latin1', n.start, n.end));
    else fail(`subjectAltName holds a name of tag 0x${n.tag.toString(16)}, not in the profile`);
  });
  if (uris.length !== 1 || uris[0] !== want.spiffeId) fail('the URI SAN is not exactly the authorized ID');
  let id;
  try {
    id = parseSpiffeId(uris[0]!);
  } catch (err) {
    return fail(`the URI SAN is not a valid SPIFFE ID (${(err as Error).message})`);
  }
  if (id.trustDomain !== want.trustDomain) fail('the URI SAN is outside the trust domain');
  if (id.path === '') fail('the URI SAN has no path');
  const wantDns = want.dnsNames ?? [];
  if (dns.length !== wantDns.length || wantDns.some((d, i) => dns[i] !== d)) fail('the DNS SANs are not exactly the requested ones');
}

/** rsaEncryption, the SPKI algorithm of RSA keys (whose leaves also get keyEncipherment). */
const RSA_ENCRYPTION_OID = der.oid('1.2.840.113549.1.1.1');

/** Whether the SPKI's algorithm OID is `oid` (DER). */
function spkiAlgorithmIs(spki: Buffer, oid: Buffer): boolean {
  const s = der.readWhole(spki, SEQ, 'subjectPublicKeyInfo');
  const alg = der.expectTlv(spki, s.start, SEQ, 'algorithm', s.end);
  return encodedIs(spki, der.expectTlv(spki, alg.start, OID, 'algorithm', alg.end), oid);
}

function subjectPublicKeyBits(spki: Buffer): Buffer {
  const s = der.readWhole(spki, SEQ, 'subjectPublicKeyInfo');
  const alg = der.expectTlv(spki, s.start, SEQ, 'algorithm', s.end);
  return der.decodeBitString(spki, der.expectTlv(spki, alg.end, BIT_STRING, 'subjectPublicKey', s.end)).bytes;
}

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}
