/**
 * A minimal PKCS#10 builder for our own EC P-256 key: empty subject, one URI
 * SAN in an extensionRequest, signed ecdsa-with-SHA256. Synchronous and
 * allocation-light; the CA decides everything else about the certificate.
 */
import { sign, type KeyObject } from 'node:crypto';

const OID_EXTENSION_REQUEST = Buffer.from('06092a864886f70d01090e', 'hex');
const OID_SUBJECT_ALT_NAME = Buffer.from('0603551d11', 'hex');
const ALG_ECDSA_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}

/** Builds a DER CSR for `privateKey` asking for `uriSan` (omit for none). */
export function buildCsr(privateKey: KeyObject, publicKeySpkiDer: Buffer, uriSan?: string): Buffer {
  const attrs: Buffer[] = [];
  if (uriSan !== undefined) {
    const generalNames = tlv(0x30, tlv(0x86, Buffer.from(uriSan, 'ascii')));
    const ext = tlv(0x30, OID_SUBJECT_ALT_NAME, tlv(0x04, generalNames));
    attrs.push(tlv(0x30, OID_EXTENSION_REQUEST, tlv(0x31, tlv(0x30, ext))));
  }
  const info = tlv(0x30, Buffer.from([0x02, 0x01, 0x00]), tlv(0x30), publicKeySpkiDer, tlv(0xa0, ...attrs));
  const signature = sign('sha256', info, privateKey);
  return tlv(0x30, info, ALG_ECDSA_SHA256, tlv(0x03, Buffer.from([0]), signature));
}
