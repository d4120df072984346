/**
 * A strict, zero-copy DER reader.
 *
 * Everything works on (buffer, offsets): a {@link Tlv} is five numbers, and
 * decoders return subarrays that share the input's memory. Only definite,
 * minimal lengths and low tag numbers are accepted, because X.509 is DER and a
 * lenient reader lets two encodings of one certificate disagree.
 */
import { DerError, DerErrorCode } from './der-error';

/** Universal and common context tags as full identifier octets. */
export const DerTag = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
});

/** Bit 0x20 of an identifier octet: constructed encoding. */
export const CONSTRUCTED = 0x20;
/** Class bits of a context-specific identifier octet. */
export const CONTEXT = 0x80;

/** One Tag-Length-Value located in a buffer. All offsets are absolute. */
export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number). */
  readonly tag: number;
  /** Where the TLV begins (its tag byte). */
  readonly offset: number;
  /** Bytes of tag + length. */
  readonly headerLength: number;
  /** Bytes of contents. */
  readonly length: number;
  /** First byte of contents (`offset + headerLength`). */
  readonly start: number;
  /** One past the last byte of contents. */
  readonly end: number;
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(2, '0');
}

/**
 * Reads the TLV beginning at `offset`, which must end at or before `limit`
 * (default: the end of `buf`). Throws {@link DerError}.
 */
export function readTlv(buf: Uint8Array, offset: number, limit: number = buf.length): Tlv {
  if (offset + 2 > limit) {
    throw new DerError(DerErrorCode.TRUNCATED, `DER: truncated header at offset ${offset}`, { offset });
  }
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) {
    throw new DerError(DerErrorCode.HIGH_TAG_NUMBER, `DER: high tag number form (${hex(tag)}) at offset ${offset} is not supported`, { offset });
  }
  const first = buf[offset + 1]!;
  let length: number;
  let headerLength: number;
  if (first < 0x80) {
    length = first;
    headerLength = 2;
  } else if (first === 0x80) {
    throw new DerError(DerErrorCode.INDEFINITE_LENGTH, `DER: indefinite length at offset ${offset} (BER, not DER)`, { offset });
  } else {
    const n = first & 0x7f;
    if (n > 4) throw new DerError(DerErrorCode.LENGTH_TOO_LARGE, `DER: ${n}-byte length at offset ${offset} is too large`, { offset });
    if (offset + 2 + n > limit) throw new DerError(DerErrorCode.TRUNCATED, `DER: truncated length at offset ${offset}`, { offset });
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[offset + 2 + i]!;
    if (buf[offset + 2]! === 0 || length < 0x80) {
      throw new DerError(DerErrorCode.NON_MINIMAL_LENGTH, `DER: non-minimal length encoding at offset ${offset}`, { offset });
    }
    headerLength = 2 + n;
  }
  const start = offset + headerLength;
  const end = start + length;
  if (end > limit) {
    throw new DerError(DerErrorCode.TRUNCATED, `DER: contents at offset ${offset} need ${length} bytes, only ${Math.max(0, limit - start)} left`, {
      offset,
    });
  }
  return { tag, offset, headerLength, length, start, end };
}

/** Reads a TLV at `offset` and checks its tag; `what` names the field for the error. */
export function expectTlv(buf: Uint8Array, offset: number, tag: number, what: string, limit: number = buf.length): Tlv {
  const t = readTlv(buf, offset, limit);
  if (t.tag !== tag) {
    throw new DerError(DerErrorCode.UNEXPECTED_TAG, `DER: ${what}: expected tag ${hex(tag)}, got ${hex(t.tag)} at offset ${offset}`, {
      offset,
      field: what,
    });
  }
  return t;
}

/**
 * Reads the single TLV that must fill `buf` exactly (a whole certificate, a
 * whole extension value). Throws `TRELLIS_DER_TRAILING_DATA` on leftovers.
 */
export function readWhole(buf: Uint8Array, tag?: number, what = 'value'): Tlv {
  const t = tag === undefined ? readTlv(buf, 0) : expectTlv(buf, 0, tag, what);
  if (t.end !== buf.length) {
    throw new DerError(DerErrorCode.TRAILING_DATA, `DER: ${what}: ${buf.length - t.end} trailing bytes after offset ${t.end}`, {
      offset: t.end,
      field: what,
    });
  }
  return t;
}

/** The children of a constructed TLV (SEQUENCE, SET, [n] EXPLICIT), in order. */
export function readChildren(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let off = parent.start;
  while (off < parent.end) {
    const t = readTlv(buf, off, parent.end);
    out.push(t);
    off = t.end;
  }
  return out;
}

/**
 * Calls `fn` for each child of `parent` without building an array (hot paths).
 * Stops early when `fn` returns `false`.
 */
export function forEachChild(buf: Uint8Array, parent: Tlv, fn: (child: Tlv, index: number) => boolean | void): void {
  let off = parent.start;
  let i = 0;
  while (off < parent.end) {
    const t = readTlv(buf, off, parent.end);
    if (fn(t, i++) === false) return;
    off = t.end;
  }
}

/** The contents of `tlv` as a subarray of `buf` (shares memory, no copy). */
export function contents(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.start, tlv.end);
}

/** The whole encoding (header + contents) of `tlv` as a subarray of `buf`. */
export function encoded(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.offset, tlv.end);
}

function checkInteger(buf: Uint8Array, tlv: Tlv): void {
  if (tlv.length === 0) throw new DerError(DerErrorCode.BAD_INTEGER, `DER: empty INTEGER at offset ${tlv.offset}`, { offset: tlv.offset });
  if (tlv.length > 1) {
    const a = buf[tlv.start]!;
    const b = buf[tlv.start + 1]!;
    if ((a === 0x00 && b < 0x80) || (a === 0xff && b >= 0x80)) {
      throw new DerError(DerErrorCode.BAD_INTEGER, `DER: non-minimal INTEGER at offset ${tlv.offset}`, { offset: tlv.offset });
    }
  }
}

/** Decodes an INTEGER (any size, signed) as a bigint. */
export function decodeInteger(buf: Uint8Array, tlv: Tlv): bigint {
  checkInteger(buf, tlv);
  let v = 0n;
  for (let i = tlv.start; i < tlv.end; i++) v = (v << 8n) | BigInt(buf[i]!);
  if (buf[tlv.start]! & 0x80) v -= 1n << BigInt(8 * tlv.length);
  return v;
}

/** Decodes a non-negative INTEGER that must fit a JS number (version, pathLen). */
export function decodeSmallInteger(buf: Uint8Array, tlv: Tlv): number {
  checkInteger(buf, tlv);
  if (buf[tlv.start]! & 0x80) {
    throw new DerError(DerErrorCode.INTEGER_OUT_OF_RANGE, `DER: negative INTEGER at offset ${tlv.offset}`, { offset: tlv.offset });
  }
  if (tlv.length > 6) {
    throw new DerError(DerErrorCode.INTEGER_OUT_OF_RANGE, `DER: INTEGER at offset ${tlv.offset} too large`, { offset: tlv.offset });
  }
  let v = 0;
  for (let i = tlv.start; i < tlv.end; i++) v = v * 256 + buf[i]!;
  return v;
}

/**
 * The magnitude bytes of a non-negative INTEGER with the sign-padding 0x00
 * removed (a certificate serial as it is shown in hex). Shares memory.
 */
export function decodeUnsignedIntegerBytes(buf: Buffer, tlv: Tlv): Buffer {
  checkInteger(buf, tlv);
  if (buf[tlv.start]! & 0x80) {
    throw new DerError(DerErrorCode.INTEGER_OUT_OF_RANGE, `DER: negative INTEGER at offset ${tlv.offset}`, { offset: tlv.offset });
  }
  return tlv.length > 1 && buf[tlv.start] === 0 ? buf.subarray(tlv.start + 1, tlv.end) : buf.subarray(tlv.start, tlv.end);
}

/** Decodes an OBJECT IDENTIFIER into dotted form (`1.2.840.10045.2.1`). */
export function decodeOid(buf: Uint8Array, tlv: Tlv): string {
  if (tlv.length === 0) throw new DerError(DerErrorCode.BAD_OID, `DER: empty OID at offset ${tlv.offset}`, { offset: tlv.offset });
  if (buf[tlv.end - 1]! & 0x80) throw new DerError(DerErrorCode.BAD_OID, `DER: OID at offset ${tlv.offset} ends mid-arc`, { offset: tlv.offset });
  // Arcs are plain numbers while they stay exact (below 2^53, i.e. every OID seen in
  // practice); only a longer arc falls back to BigInt. This runs on the issuance hot path.
  let out = '';
  let v = 0;
  let big: bigint | undefined;
  let arcStart = true;
  let first = true;
  for (let i = tlv.start; i < tlv.end; i++) {
    const b = buf[i]!;
    if (arcStart && b === 0x80) {
      throw new DerError(DerErrorCode.BAD_OID, `DER: non-minimal OID arc at offset ${tlv.offset}`, { offset: tlv.offset });
    }
    arcStart = false;
    if (big !== undefined) big = (big << 7n) | BigInt(b & 0x7f);
    else if (v > 0x3ffffffffff) big = (BigInt(v) << 7n) | BigInt(b & 0x7f);
    else v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (first) {
        if (big !== undefined) {
          const top = big < 40n ? 0n : big < 80n ? 1n : 2n;
          out = `${top}.${big - top * 40n}`;
        } else {
          const top = v < 40 ? 0 : v < 80 ? 1 : 2;
          out = `${top}.${v - top * 40}`;
        }
        first = false;
      } else {
        out += '.' + (big !== undefined ? big.toString() : String(v));
      }
      v = 0;
      big = undefined;
      arcStart = true;
    }
  }
  return out;
}

/** A decoded BIT STRING: the bytes (sharing memory) and how many trailing bits are padding. */
export interface BitString {
  readonly unusedBits: number;
  readonly bytes: Buffer;
}

/** Decodes a BIT STRING; DER requires padding bits to be zero. */
export function decodeBitString(buf: Buffer, tlv: Tlv): BitString {
  if (tlv.length === 0) throw new DerError(DerErrorCode.BAD_BIT_STRING, `DER: empty BIT STRING at offset ${tlv.offset}`, { offset: tlv.offset });
  const unusedBits = buf[tlv.start]!;
  if (unusedBits > 7 || (tlv.length === 1 && unusedBits !== 0)) {
    throw new DerError(DerErrorCode.BAD_BIT_STRING, `DER: BIT STRING at offset ${tlv.offset} has ${unusedBits} unused bits`, { offset: tlv.offset });
  }
  if (unusedBits > 0 && (buf[tlv.end - 1]! & ((1 << unusedBits) - 1)) !== 0) {
    throw new DerError(DerErrorCode.BAD_BIT_STRING, `DER: BIT STRING at offset ${tlv.offset} has non-zero padding bits`, { offset: tlv.offset });
  }
  return { unusedBits, bytes: buf.subarray(tlv.start + 1, tlv.end) };
}

/** Decodes a BOOLEAN (DER: 0x00 or 0xFF only). */
export function decodeBoolean(buf: Uint8Array, tlv: Tlv): boolean {
  if (tlv.length !== 1 || (buf[tlv.start] !== 0 && buf[tlv.start] !== 0xff)) {
    throw new DerError(DerErrorCode.BAD_BOOLEAN, `DER: BOOLEAN at offset ${tlv.offset} is not 0x00 or 0xFF`, { offset: tlv.offset });
  }
  return buf[tlv.start] === 0xff;
}

/** Checks that a NULL is empty. */
export function decodeNull(_buf: Uint8Array, tlv: Tlv): null {
  if (tlv.length !== 0) throw new DerError(DerErrorCode.BAD_NULL, `DER: NULL at offset ${tlv.offset} has contents`, { offset: tlv.offset });
  return null;
}

function digits(buf: Uint8Array, at: number, n: number, tlv: Tlv): number {
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = buf[at + i]! - 0x30;
    if (c < 0 || c > 9) throw badTime(tlv, 'non-digit');
    v = v * 10 + c;
  }
  return v;
}

function badTime(tlv: Tlv, why: string): DerError {
  return new DerError(DerErrorCode.BAD_TIME, `DER: bad time at offset ${tlv.offset}: ${why}`, { offset: tlv.offset });
}

/**
 * Decodes a UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
 * (`YYYYMMDDHHMMSSZ`) in the RFC 5280 profile: seconds present, `Z`, no
 * fractions. Rejects impossible dates (Feb 30) rather than rolling them over.
 */
export function decodeTime(buf: Uint8Array, tlv: Tlv): Date {
  let year: number;
  let p: number;
  if (tlv.tag === DerTag.UTC_TIME) {
    if (tlv.length !== 13) throw badTime(tlv, 'UTCTime must be YYMMDDHHMMSSZ');
    const yy = digits(buf, tlv.start, 2, tlv);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    p = tlv.start + 2;
  } else if (tlv.tag === DerTag.GENERALIZED_TIME) {
    if (tlv.length !== 15) throw badTime(tlv, 'GeneralizedTime must be YYYYMMDDHHMMSSZ');
    year = digits(buf, tlv.start, 4, tlv);
    p = tlv.start + 4;
  } else {
    throw new DerError(DerErrorCode.UNEXPECTED_TAG, `DER: expected UTCTime or GeneralizedTime, got ${hex(tlv.tag)} at offset ${tlv.offset}`, {
      offset: tlv.offset,
    });
  }
  const month = digits(buf, p, 2, tlv);
  const day = digits(buf, p + 2, 2, tlv);
  const hour = digits(buf, p + 4, 2, tlv);
  const minute = digits(buf, p + 6, 2, tlv);
  const second = digits(buf, p + 8, 2, tlv);
  if (buf[p + 10] !== 0x5a) throw badTime(tlv, "must end with 'Z'");
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) throw badTime(tlv, 'field out of range');
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const d = new Date(ms);
  if (d.getUTCDate() !== day) throw badTime(tlv, 'no such day');
  // Date.UTC maps years 0-99 to 1900-1999; set the year explicitly.
  if (year < 100) d.setUTCFullYear(year);
  return d;
}

const TEXT_DECODER = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes the string types X.509 names and SANs use: UTF8String, PrintableString,
 * IA5String, T61String (read as Latin-1), BMPString (UTF-16BE). Any other tag
 * (or an implicit [n] tag, such as a GeneralName) is read as IA5 (ASCII).
 */
export function decodeString(buf: Buffer, tlv: Tlv): string {
  const bytes = buf.subarray(tlv.start, tlv.end);
  switch (tlv.tag) {
    case DerTag.UTF8_STRING:
      try {
        return TEXT_DECODER.decode(bytes);
      } catch {
        throw new DerError(DerErrorCode.BAD_STRING, `DER: invalid UTF-8 in UTF8String at offset ${tlv.offset}`, { offset: tlv.offset });
      }
    case DerTag.T61_STRING:
      return bytes.toString('latin1');
    case DerTag.BMP_STRING: {
      if (bytes.length % 2 !== 0) throw new DerError(DerErrorCode.BAD_STRING, `DER: odd-length BMPString at offset ${tlv.offset}`, { offset: tlv.offset });
      const swapped = Buffer.from(bytes);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    default:
      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i]! > 0x7f) {
          throw new DerError(DerErrorCode.BAD_STRING, `DER: non-ASCII byte in ASCII string at offset ${tlv.offset}`, { offset: tlv.offset });
        }
      }
      return bytes.toString('latin1');
  }
}
