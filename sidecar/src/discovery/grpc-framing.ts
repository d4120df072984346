/**
 * gRPC message framing (PROTOCOL-HTTP2.md "Length-Prefixed-Message"): a
 * 1-byte compressed flag, a 4-byte big-endian length, then the message.
 * The deframer reassembles messages from HTTP/2 DATA chunks of any size.
 * Pure. We never advertise a compression, so a compressed message is a
 * protocol error; a message over the receive limit is refused before it is
 * buffered.
 */
import { DiscoveryError, DiscoveryErrorCode } from './discovery-error';

/** Prefixes `message` with its gRPC frame header. */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Splits a byte stream into gRPC messages. */
export class MessageDeframer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1;

  constructor(private readonly maxMessageBytes: number) {}

  /** Adds a chunk; returns the messages it completed (in order). Throws DiscoveryError on a bad frame. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 5) break;
        const header = this.take(5);
        if (header[0] !== 0) {
          throw new DiscoveryError(DiscoveryErrorCode.BAD_FRAME, header[0] === 1 ? 'received a compressed message, but no compression was negotiated' : `invalid frame flag ${header[0]}`, { grpcCode: 13 });
        }
        const len = header.readUInt32BE(1);
        if (len > this.maxMessageBytes) {
          throw new DiscoveryError(DiscoveryErrorCode.BAD_FRAME, `received a message larger than the limit (${len} vs. ${this.maxMessageBytes} bytes)`, { grpcCode: 8 });
        }
        this.need = len;
      }
      if (this.buffered < this.need) break;
      out.push(this.take(this.need));
      this.need = -1;
    }
    return out;
  }

  /** True when a message has started but not finished (a stream ending now lost data). */
  partial(): boolean {
    return this.need >= 0 || this.buffered > 0;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const taken = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return taken;
  }
}
