/**
 * A small DER writer: functions that return encoded Buffers and compose.
 *
 * Each call allocates exactly one Buffer for its TLV and copies its parts in
 * once; OIDs are cached since the same handful is written on every issuance.
 * For templates (fill a pre-encoded TBSCertificate per request), build the
 * constant parts once with these functions and splice only what changes.
 */
import { DerError, DerErrorCode } from './der-error';
import { CONSTRUCTED, CONTEXT, DerTag } from './der-reader';

/** Encodes a DER length (minimal form). */
export function encodeLength(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new DerError(DerErrorCode.BAD_ARGUMENT, `DER: cannot encode length ${n}`, { length: n });
  }
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  if (n < 0x10000) return Buffer.from([0x82, n >> 8, n & 0xff]);
  if (n < 0x1000000) return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.from([0x84, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

/** Bytes a header for contents of `n` bytes takes (tag + length). */
export function headerLength(n: number): number {
  return n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : n < 0x1000000 ? 5 : 6;
}

function writeHeader(out: Buffer, tag: number, n: number): number {
  out[0] = tag;
  if (n < 0x80) {
    out[1] = n;
    return 2;
  }
  const h = headerLength(n);
  out[1] = 0x80 | (h - 2);
  for (let i = h - 1, v = n; i >= 2; i--, v = Math.floor(v / 256)) out[i] = v & 0xff;
  return h;
}

/** A TLV with identifier octet `tag` whose contents are `parts` concatenated. */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) {
    throw new DerError(DerErrorCode.BAD_ARGUMENT, `DER: bad tag ${tag}`, { tag });
  }
  let n = 0;
  for (const p of parts) n += p.length;
  const out = Buffer.allocUnsafe(headerLength(n) + n);
  let off = writeHeader(out, tag, n);
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** SEQUENCE of the given encodings, in order. */
export function sequence(...parts: Uint8Array[]): Buffer {
  return tlv(DerTag.SEQUENCE, ...parts);
}

/** SET OF the given encodings, sorted as DER requires (X.690 11.6). */
export function set(...parts: Uint8Array[]): Buffer {
  const sorted = parts.slice().sort((a, b) => Buffer.compare(a, b));
  return tlv(DerTag.SET, ...sorted);
}

/**
 * INTEGER. A bigint or number is encoded in minimal two's complement; a Buffer
 * is an unsigned big-endian magnitude (leading zeros dropped, 0x00 added when
 * the high bit is set), which is how serials are written.
 */
export function integer(value: bigint | number | Uint8Array): Buffer {
  if (value instanceof Uint8Array) {
    let i = 0;
    while (i < value.length - 1 && value[i] === 0) i++;
    const mag = value.subarray(i);
    if (mag.length === 0) return Buffer.from([DerTag.INTEGER, 1, 0]);
    return mag[0]! & 0x80 ? tlv(DerTag.INTEGER, ZERO, mag) : tlv(DerTag.INTEGER, mag);
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new DerError(DerErrorCode.BAD_ARGUMENT, `DER: ${value} is not a safe integer`, { value });
    if (value >= 0 && value < 0x80) return Buffer.from([DerTag.INTEGER, 1, value]);
    value = BigInt(value);
  }
  const bytes: number[] = [];
  let v = value;
  // Emit bytes until the remaining value is only sign extension of the last byte.
  for (;;) {
    const b = Number(v & 0xffn);
    bytes.unshift(b);
    v >>= 8n;
    if ((v === 0n && (b & 0x80) === 0) || (v === -1n && (b & 0x80) !== 0)) break;
  }
  return tlv(DerTag.INTEGER, Buffer.from(bytes));
}

const ZERO = Buffer.from([0]);
const OID_CACHE = new Map<string, Buffer>();

function oidArcs(dotted: string): bigint[] {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) {
    throw new DerError(DerErrorCode.BAD_OID, `DER: ${JSON.stringify(dotted)} is not a dotted OID`, { oid: dotted });
  }
  const arcs = dotted.split('.').map((s) => BigInt(s));
  if (arcs[0]! < 2n && arcs[1]! >= 40n) {
    throw new DerError(DerErrorCode.BAD_OID, `DER: OID ${dotted}: second arc must be < 40 under arc ${arcs[0]}`, { oid: dotted });
  }
  return arcs;
}

/** OBJECT IDENTIFIER from dotted form (`1.2.840.10045.4.3.2`). Cached; do not mutate the result. */
export function oid(dotted: string): Buffer {
  const hit = OID_CACHE.get(dotted);
  if (hit) return hit;
  const arcs = oidArcs(dotted);
  const body: number[] = [];
  const push = (arc: bigint): void => {
    const chunk: number[] = [Number(arc & 0x7fn)];
    arc >>= 7n;
    while (arc > 0n) {
      chunk.unshift(Number(arc & 0x7fn) | 0x80);
      arc >>= 7n;
    }
    body.push(...chunk);
  };
  push(arcs[0]! * 40n + arcs[1]!);
  for (let i = 2; i < arcs.length; i++) push(arcs[i]!);
  const enc = tlv(DerTag.OID, Buffer.from(body));
  if (OID_CACHE.size < 1024) OID_CACHE.set(dotted, enc);
  return enc;
}

/** BIT STRING of `bytes` with `unusedBits` (0-7) padding bits in the last byte (which must be zero). */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) {
    throw new DerError(DerErrorCode.BAD_ARGUMENT, `DER: bad unused-bits count ${unusedBits}`, { unusedBits });
  }
  if (unusedBits > 0 && (bytes[bytes.length - 1]! & ((1 << unusedBits) - 1)) !== 0) {
    throw new DerError(DerErrorCode.BAD_ARGUMENT, 'DER: BIT STRING padding bits must be zero', { unusedBits });
  }
  return tlv(DerTag.BIT_STRING, Buffer.from([unusedBits]), bytes);
}

/**
 * A named-bit BIT STRING (keyUsage) from bit numbers (bit 0 = most significant
 * bit of the first byte), with trailing zero bits removed as DER requires.
 */
export function namedBits(bits: readonly number[]): Buffer {
  if (bits.length === 0) return Buffer.from([DerTag.BIT_STRING, 1, 0]);
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (const b of bits) {
    if (!Number.isInteger(b) || b < 0) throw new DerError(DerErrorCode.BAD_ARGUMENT, `DER: bad bit number ${b}`, { bit: b });
    bytes[b >> 3]! |= 0x80 >> (b & 7);
  }
  return bitString(bytes, 7 - (highest & 7));
}

/** OCTET STRING. */
export function octetString(bytes: Uint8Array): Buffer {
  return tlv(DerTag.OCTET_STRING, bytes);
}

/** UTF8String. */
export function utf8String(s: string): Buffer {
  return tlv(DerTag.UTF8_STRING, Buffer.from(s, 'utf8'));
}

/** PrintableString; throws when `s` has characters outside its alphabet. */
export function printableString(s: string): Buffer {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(s)) {
    throw new DerError(DerErrorCode.BAD_STRING, `DER: ${JSON.stringify(s)} is not a PrintableString`, {});
  }
  return tlv(DerTag.PRINTABLE_STRING, Buffer.from(s, 'latin1'));
}

/** IA5String (ASCII); throws on non-ASCII. */
export function ia5String(s: string): Buffer {
  return tlv(DerTag.IA5_STRING, asciiBytes(s));
}

/** ASCII bytes of `s`; throws `TRELLIS_DER_BAD_STRING` on non-ASCII. */
export function asciiBytes(s: string): Buffer {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) throw new DerError(DerErrorCode.BAD_STRING, `DER: non-ASCII character in ${JSON.stringify(s)}`, {});
  }
  return Buffer.from(s, 'latin1');
}

/** BOOLEAN (DER: 0xFF for true). */
export function boolean(v: boolean): Buffer {
  return Buffer.from([DerTag.BOOLEAN, 1, v ? 0xff : 0x00]);
}

/** NULL. */
export function nullValue(): Buffer {
  return Buffer.from([DerTag.NULL, 0]);
}

function pad2(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

/**
 * The time as RFC 5280 wants it: UTCTime for years 1950-2049, GeneralizedTime
 * otherwise; always UTC with seconds, milliseconds truncated.
 */
export function time(date: Date): Buffer {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new DerError(DerErrorCode.BAD_TIME, 'DER: invalid Date', {});
  const y = date.getUTCFullYear();
  if (y < 0 || y > 9999) throw new DerError(DerErrorCode.BAD_TIME, `DER: year ${y} cannot be encoded`, { year: y });
  const rest =
    pad2(date.getUTCMonth() + 1) + pad2(date.getUTCDate()) + pad2(date.getUTCHours()) + pad2(date.getUTCMinutes()) + pad2(date.getUTCSeconds()) + 'Z';
  if (y >= 1950 && y < 2050) return tlv(DerTag.UTC_TIME, Buffer.from(pad2(y % 100) + rest, 'latin1'));
  return tlv(DerTag.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

function checkTagNumber(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new DerError(DerErrorCode.BAD_ARGUMENT, `DER: context tag number ${n} out of range 0-30`, { n });
}

/** `[n] EXPLICIT`: a constructed context tag wrapping the given encodings. */
export function contextExplicit(n: number, ...parts: Uint8Array[]): Buffer {
  checkTagNumber(n);
  return tlv(CONTEXT | CONSTRUCTED | n, ...parts);
}

/**
 * `[n] IMPLICIT`: the context tag replaces the inner tag. `content` is the raw
 * contents (e.g. the ASCII of a URI for a GeneralName uniformResourceIdentifier
 * [6]); set `constructed` when the replaced type was constructed (a SEQUENCE).
 */
export function contextImplicit(n: number, content: Uint8Array, constructed = false): Buffer {
  checkTagNumber(n);
  return tlv(CONTEXT | (constructed ? CONSTRUCTED : 0) | n, content);
}
