/**
 * A minimal, allocation-light DER walker and length encoder for the issuance
 * hot path.
 *
 * Why not the general DER module in @trellis/shared: the CSR parse and the
 * certificate template run for every pod start and every rotation, so this
 * reader works on offsets into one Buffer (no node objects per element) and
 * the writer only ever prepends a tag and a length to bytes already built.
 * Every malformed input raises `TRELLIS_CA_BAD_DER` naming the structure
 * being read, never an out-of-range read.
 */
import { CaError, CaErrorCode } from './ca-error';

/** One TLV inside a buffer: `buf[start..end)` is the whole element, `buf[valueStart..end)` its value. */
export interface Tlv {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

/**
 * Reads the TLV at `offset`, which must end at or before `limit`.
 * Only single-byte tags and definite minimal lengths (DER) are accepted.
 */
export function readTlv(buf: Buffer, offset: number, limit: number, what: string): Tlv {
  if (offset + 2 > limit) throw bad(what, 'truncated header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw bad(what, 'multi-byte tags are not supported');
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw bad(what, 'indefinite length is not DER');
    if (n > 4) throw bad(what, 'length too large');
    if (p + n > limit) throw bad(what, 'truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    if (buf[p] === 0 || len < 0x80) throw bad(what, 'non-minimal length encoding');
    p += n;
  }
  const end = p + len;
  if (end > limit) throw bad(what, `length ${len} runs past the end of its container`);
  return { tag, start: offset, valueStart: p, end };
}

/** Like {@link readTlv} but also checks the tag. */
export function expectTlv(buf: Buffer, offset: number, limit: number, tag: number, what: string): Tlv {
  const t = readTlv(buf, offset, limit, what);
  if (t.tag !== tag) throw bad(what, `expected tag 0x${tag.toString(16)}, found 0x${t.tag.toString(16)}`);
  return t;
}

/** The encoded length octets for `len` (definite, minimal). */
export function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  if (len < 0x100) return Buffer.from([0x81, len]);
  if (len < 0x10000) return Buffer.from([0x82, len >> 8, len & 0xff]);
  if (len < 0x1000000) return Buffer.from([0x83, len >> 16, (len >> 8) & 0xff, len & 0xff]);
  throw new RangeError(`DER length ${len} too large`);
}

/** Header (tag + length) for a value of `len` bytes. */
export function header(tag: number, len: number): Buffer {
  const l = encodeLength(len);
  const out = Buffer.allocUnsafe(1 + l.length);
  out[0] = tag;
  l.copy(out, 1);
  return out;
}

/** A whole TLV: `tag`, length, then the concatenated `parts`. */
export function tlvOf(tag: number, parts: Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  return Buffer.concat([header(tag, len), ...parts], len + encodeLength(len).length + 1);
}

/** Encodes a dotted OID as its DER value bytes (no tag/length). */
export function oidValue(dotted: string): Buffer {
  const arcs = dotted.split('.').map((s) => Number(s));
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (let i = 2; i < arcs.length; i++) {
    let v = arcs[i]!;
    const stack = [v & 0x7f];
    v = Math.floor(v / 128);
    while (v > 0) {
      stack.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...stack);
  }
  return Buffer.from(out);
}

/** A complete OBJECT IDENTIFIER TLV. */
export function oidTlv(dotted: string): Buffer {
  return tlvOf(0x06, [oidValue(dotted)]);
}

/** True when the OID TLV value at `t` equals `value` (precomputed with {@link oidValue}). */
export function oidEquals(buf: Buffer, t: Tlv, value: Buffer): boolean {
  return t.end - t.valueStart === value.length && buf.compare(value, 0, value.length, t.valueStart, t.end) === 0;
}

/** Encodes `d` as UTCTime (years 1950..2049) or GeneralizedTime (RFC 5280 4.1.2.5), whole seconds, Zulu. */
export function timeTlv(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const two = (n: number): string => (n < 10 ? '0' + n : String(n));
  const rest = two(d.getUTCMonth() + 1) + two(d.getUTCDate()) + two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds()) + 'Z';
  if (y >= 1950 && y < 2050) {
    const s = two(y % 100) + rest;
    return tlvOf(0x17, [Buffer.from(s, 'latin1')]);
  }
  const s = String(y).padStart(4, '0') + rest;
  return tlvOf(0x18, [Buffer.from(s, 'latin1')]);
}

/** Minimal DER INTEGER TLV for a non-negative big-endian magnitude. */
export function unsignedIntegerTlv(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return m[0]! & 0x80 ? tlvOf(0x02, [Buffer.from([0]), m]) : tlvOf(0x02, [m]);
}

function bad(what: string, reason: string): CaError {
  return new CaError(CaErrorCode.BAD_DER, `malformed DER in ${what}: ${reason}`, { field: what });
}
