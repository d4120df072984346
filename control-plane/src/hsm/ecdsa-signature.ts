/**
 * ECDSA signature and public-key encodings between PKCS#11 and X.509.
 *
 * PKCS#11 `CKM_ECDSA` returns the raw `r || s` (each the curve's byte size)
 * while X.509 and node:crypto want `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER,
 * s INTEGER }` in DER. `CKA_EC_POINT` is (per the spec) a DER OCTET STRING
 * around the uncompressed point, though some modules return the bare point.
 * Pure functions, no PKCS#11 calls.
 */
import { der } from '@trellis/shared';

/** Encodes a non-negative big-endian magnitude as a DER INTEGER. */
function derUnsignedInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  let v = magnitude.subarray(i);
  if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return der.tlv(0x02, v);
}

/**
 * Converts a raw `r || s` ECDSA signature to DER. Returns undefined when the
 * length is odd or zero (so the caller can report which token misbehaved).
 */
export function ecdsaRawToDer(raw: Buffer): Buffer | undefined {
  if (raw.length === 0 || raw.length % 2 !== 0) return undefined;
  const half = raw.length / 2;
  return der.tlv(0x30, derUnsignedInteger(raw.subarray(0, half)), derUnsignedInteger(raw.subarray(half)));
}

/**
 * The uncompressed point (`04 || X || Y`) from a `CKA_EC_POINT` value of a
 * curve whose coordinates are `size` bytes: accepts the DER OCTET STRING the
 * spec prescribes and the bare point some modules return. Undefined when it
 * is neither.
 */
export function ecPointFromAttribute(value: Buffer, size: number): Buffer | undefined {
  const pointLen = 2 * size + 1;
  if (value.length === pointLen && value[0] === 0x04) return value;
  // DER OCTET STRING: short form (P-256: 0x41) or long form 0x81 (P-384: 0x61 fits short form too).
  if (value[0] === 0x04) {
    let off = 2;
    let len = value[1]!;
    if (len === 0x81) {
      len = value[2]!;
      off = 3;
    }
    if (len === pointLen && value.length === off + pointLen && value[off] === 0x04) return value.subarray(off);
  }
  return undefined;
}
