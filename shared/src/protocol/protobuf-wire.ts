/**
 * The protobuf binary wire format, just the part the discovery messages need:
 * varints, length-delimited fields and skipping of unknown fields by wire
 * type. Pure (Buffers in, Buffers out, no I/O), so the sidecar can speak the
 * discovery protocol without protobufjs. Malformed input (a truncated varint
 * or length, a length past the end, an invalid wire type, field number 0,
 * an unterminated group, invalid UTF-8 in a string) throws ProtocolError
 * `TRELLIS_PROTOCOL_BAD_MESSAGE` naming the message and the field.
 */
import { ProtocolError } from './resources';


/** How deeply unknown groups may nest before a message is refused (protobuf's own parsers stop at 100). */
const MAX_GROUP_DEPTH = 64;
/** Wire types of the protobuf encoding. */
export const WireType = Object.freeze({
  VARINT: 0,
  I64: 1,
  LEN: 2,
  SGROUP: 3,
  EGROUP: 4,
  I32: 5,
});

/** Stable code of a malformed protobuf message. */
export const BAD_MESSAGE_CODE = 'TRELLIS_PROTOCOL_BAD_MESSAGE';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Reads one message (or sub-message) from `buf[start, end)`. */
export class ProtoReader {
  pos: number;

  constructor(
    private readonly buf: Uint8Array,
    /** Message name for error messages, e.g. `DiscoveryResponse.resources[2]`. */
    readonly path: string,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  /** True while bytes remain. */
  more(): boolean {
    return this.pos < this.end;
  }

  /** Reads a field key; returns field number and wire type. */
  key(): { field: number; wireType: number } {
    const at = this.pos;
    const { lo, hi } = this.varint64('(key)');
    const field = lo >>> 3;
    const wireType = lo & 7;
    if (hi !== 0 || field === 0) throw this.fail('(key)', `invalid field number ${field} at offset ${at}`);
    if (wireType > WireType.I32) throw this.fail(`#${field}`, `invalid wire type ${wireType} at offset ${at}`);
    return { field, wireType };
  }

  /**
   * Reads a varint of up to 10 bytes as its low and high 32-bit halves, so
   * sign-extended negative int32 values (10 bytes) keep their exact low bits.
   */
  varint64(field: string): { lo: number; hi: number } {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw this.fail(field, 'truncated varint');
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if ((b & 0x80) === 0) {
        if (i === 9 && b > 1) throw this.fail(field, 'varint longer than 64 bits');
        return { lo: lo >>> 0, hi: hi >>> 0 };
      }
    }
    throw this.fail(field, 'varint longer than 10 bytes');
  }

  /** A varint as a number; values above 2^53 (never valid for our fields) are rejected. */
  varint(field: string): number {
    const { lo, hi } = this.varint64(field);
    if (hi > 0x1fffff) throw this.fail(field, 'varint too large');
    return hi * 0x100000000 + lo;
  }

  /** A uint32 field (the low 32 bits of the varint, as protobuf truncates). */
  uint32(field: string): number {
    return this.varint64(field).lo;
  }

  /** An int32 field (negative values arrive as 10-byte sign-extended varints). */
  int32(field: string): number {
    return this.varint64(field).lo | 0;
  }

  /** Bounds of a length-delimited field's payload; advances past it. */
  span(field: string): { start: number; end: number } {
    const len = this.varint(field);
    const start = this.pos;
    if (len > this.end - start) throw this.fail(field, `length ${len} exceeds the ${this.end - start} bytes left`);
    this.pos = start + len;
    return { start, end: start + len };
  }

  /** A bytes field, copied out (the input buffer may be reused). */
  bytes(field: string): Buffer {
    const { start, end } = this.span(field);
    return Buffer.from(this.buf.subarray(start, end));
  }

  /** A string field; invalid UTF-8 is rejected as proto3 requires. */
  string(field: string): string {
    const { start, end } = this.span(field);
    try {
      return utf8.decode(this.buf.subarray(start, end));
    } catch {
      throw this.fail(field, 'invalid UTF-8');
    }
  }

  /** A reader over a sub-message's payload. */
  sub(field: string, path: string): ProtoReader {
    const { start, end } = this.span(field);
    return new ProtoReader(this.buf, path, start, end);
  }

  /**
   * Skips one field of wire type `wireType` (its key already read). Nested
   * groups recurse, so their depth is bounded: a few bytes per level must not
   * be able to overflow the stack.
   */
  skip(wireType: number, field: number, depth = 0): void {
    const name = `#${field}`;
    switch (wireType) {
      case WireType.VARINT:
        this.varint64(name);
        return;
      case WireType.I64:
        this.advance(8, name);
        return;
      case WireType.LEN:
        this.span(name);
        return;
      case WireType.I32:
        this.advance(4, name);
        return;
      case WireType.SGROUP: {
        if (depth >= MAX_GROUP_DEPTH) throw this.fail(name, `groups nested deeper than ${MAX_GROUP_DEPTH}`);
        for (;;) {
          if (!this.more()) throw this.fail(name, 'unterminated group');
          const k = this.key();
          if (k.wireType === WireType.EGROUP) {
            if (k.field !== field) throw this.fail(name, `group ended by field ${k.field}`);
            return;
          }
          this.skip(k.wireType, k.field, depth + 1);
        }
      }
      default:
        throw this.fail(name, `unexpected wire type ${wireType}`);
    }
  }

  /** The error for malformed input at this reader. */
  fail(field: string, reason: string): ProtocolError {
    return new ProtocolError(BAD_MESSAGE_CODE, `${this.path}.${field}: ${reason}`, { message: this.path, field });
  }

  private advance(n: number, field: string): void {
    if (n > this.end - this.pos) throw this.fail(field, 'truncated fixed-width field');
    this.pos += n;
  }
}

/** Builds one message; sub-messages are encoded first and added as bytes. */
export class ProtoWriter {
  private readonly parts: Buffer[] = [];
  private readonly scratch = Buffer.allocUnsafe(64);
  private used = 0;
  private total = 0;

  /** A varint field. Negative int32 values take 10 bytes, as protobuf requires. */
  varint(field: number, value: number): this {
    this.rawVarint(field * 8 + WireType.VARINT);
    if (value < 0) this.rawVarint64(BigInt.asUintN(64, BigInt(value)));
    else this.rawVarint(value);
    return this;
  }

  /** A length-delimited field holding `data`. */
  bytes(field: number, data: Uint8Array): this {
    this.rawVarint(field * 8 + WireType.LEN);
    this.rawVarint(data.length);
    this.flushScratch();
    this.parts.push(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length));
    this.total += data.length;
    return this;
  }

  /** A string field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  /** A packed repeated varint field (proto3's default for repeated scalars). */
  packedVarints(field: number, values: readonly number[]): this {
    const inner = new ProtoWriter();
    for (const v of values) inner.rawVarint(v);
    return this.bytes(field, inner.finish());
  }

  /** The encoded message. */
  finish(): Buffer {
    this.flushScratch();
    return this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.total);
  }

  private rawVarint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
    this.reserve(10);
    while (v >= 0x80) {
      this.scratch[this.used++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.scratch[this.used++] = v;
  }

  private rawVarint64(v: bigint): void {
    this.reserve(10);
    while (v >= 0x80n) {
      this.scratch[this.used++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.scratch[this.used++] = Number(v);
  }

  private reserve(n: number): void {
    if (this.used + n > this.scratch.length) this.flushScratch();
  }

  private flushScratch(): void {
    if (this.used === 0) return;
    this.parts.push(Buffer.from(this.scratch.subarray(0, this.used)));
    this.total += this.used;
    this.used = 0;
  }
}
